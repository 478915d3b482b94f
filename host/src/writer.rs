//! The writer: executes what the consume loop decides. It streams converted rows into an
//! open COPY as they arrive and, on [`Command::Commit`], writes the dead letters and the offset
//! moves it is given and commits, all in one transaction; then it reports the [`Outcome`].
//!
//! It decides nothing about offsets (the ledger does, on the consume thread), so it needs no
//! Kafka consumer: data flows one way, source → convert → write → commit, and only the outcome
//! of each commit goes back. A connection that breaks is replaced and the transaction replayed
//! from the buffered rows; a replay after a commit whose reply was lost trips the offset fence
//! (the stored offset already moved), which the consume loop handles like any fence trip.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::config::{DbConfig, Delivery, ErrorTolerance};
use crate::ledger::OffsetMove;
use crate::pending::{ConvertedBatch, Pending};
use crate::postgres::{DbError, DeadLetter, Writer};

/// What the consume loop tells the writer, in order.
pub enum Command {
    /// Converted rows of `epoch`, to stream into the open transaction.
    Rows {
        /// The ledger's epoch when the batch was read; older epochs are discarded.
        epoch: u64,
        /// The rows, dead letters and positions (boxed: a command is moved through a channel).
        batch: Box<ConvertedBatch>,
    },
    /// Commit everything streamed since the last commit, with these offset moves.
    Commit {
        /// The ledger's epoch of the rows it covers.
        epoch: u64,
        /// Per partition, the messages `[from, next)` the commit loads.
        moves: Vec<OffsetMove>,
    },
    /// The consume loop has ended: discard anything uncommitted and stop.
    Stop,
}

/// How a [`Command::Commit`] ended, when the sink goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The rows, dead letters and offsets are in the database.
    Committed,
    /// Nothing was committed and the rows are discarded: the offset fence tripped, or the rows
    /// belonged to an epoch that a rewind abandoned.
    Discarded,
}

/// Counters of one pipeline, shared with the progress reporter.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages consumed and converted.
    pub messages: AtomicU64,
    /// Rows committed to the table.
    pub rows: AtomicU64,
    /// Dead letters committed.
    pub dead_letters: AtomicU64,
    /// Flush transactions committed.
    pub flushes: AtomicU64,
}

/// The writer's settings.
pub struct WriterConfig {
    /// How to reach the database (for reconnects).
    pub db: DbConfig,
    /// Bytes of COPY text a flush holds, about (`db.buffer.size`).
    pub buffer_size: usize,
    pub delivery: Delivery,
    /// What to do with a bad message.
    pub errors_tolerance: ErrorTolerance,
    /// Stop if more dead letters than this are committed within a minute.
    pub max_dead_letters_per_minute: Option<u64>,
    /// The sink's identity: its offsets and dead letters, and its metrics.
    pub sink: String,
}

/// Errors that stop a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The database refused the flush in a way a retry cannot fix.
    #[error("flush failed, nothing committed past the rows already stored: {0}")]
    Flush(DbError),
    /// A bad message with `errors.tolerance = none`.
    #[error("{0} (errors.tolerance = none: stopping; its offset is not committed)")]
    BadMessage(String),
    /// More dead letters than `errors.deadletter.max.per.minute` allows.
    #[error("{count} dead letters within a minute exceed errors.deadletter.max.per.minute = {max}; stopping before committing them")]
    TooManyDeadLetters {
        /// Dead letters in the current minute, these included.
        count: u64,
        /// The configured maximum.
        max: u64,
    },
    /// The sink was asked to stop while the database was unreachable.
    #[error("stopped while PostgreSQL was unreachable; {0} buffered rows were not loaded and their offsets not committed")]
    StoppedUnflushed(u64),
}

/// The writer of one pipeline.
pub struct SinkWriter {
    config: WriterConfig,
    writer: Writer,
    pending: Pending,
    /// The epoch of the pending rows.
    pending_epoch: u64,
    /// Rows and commits of older epochs are discarded (a commit of the epoch before failed).
    min_epoch: u64,
    /// The pending rows of the first table are being streamed into an open COPY.
    streaming: bool,
    shutdown: Arc<AtomicBool>,
    stats: Arc<Stats>,
    /// Dead letters committed in the current one-minute window, and its start.
    dead_letter_window: (Instant, u64),
}

impl SinkWriter {
    /// A writer flushing through `writer`.
    pub fn new(
        config: WriterConfig,
        writer: Writer,
        shutdown: Arc<AtomicBool>,
        stats: Arc<Stats>,
    ) -> Self {
        SinkWriter {
            pending: Pending::new(writer.keyed()),
            config,
            writer,
            pending_epoch: 0,
            min_epoch: 0,
            streaming: true,
            shutdown,
            stats,
            dead_letter_window: (Instant::now(), 0),
        }
    }

    /// Executes commands until [`Command::Stop`] or until the consume loop hangs up, reporting
    /// the outcome of every commit on `outcomes`. An error stops the sink; what is not
    /// committed then is discarded (its offsets are not committed either).
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        outcomes: std_mpsc::Sender<Outcome>,
    ) -> Result<(), SinkError> {
        while let Some(command) = commands.recv().await {
            match command {
                Command::Rows { epoch, batch } => {
                    if self.current(epoch).await {
                        self.add(*batch).await?;
                    }
                }
                Command::Commit { epoch, moves } => {
                    let outcome = if self.current(epoch).await {
                        self.flush(&moves).await?
                    } else {
                        Outcome::Discarded
                    };
                    if outcome == Outcome::Discarded {
                        self.min_epoch = self.min_epoch.max(epoch + 1);
                    }
                    if outcomes.send(outcome).is_err() {
                        break;
                    }
                }
                Command::Stop => break,
            }
        }
        self.discard().await;
        Ok(())
    }

    /// False for a command of an abandoned epoch; a newer epoch discards what is pending.
    async fn current(&mut self, epoch: u64) -> bool {
        if epoch < self.min_epoch || epoch < self.pending_epoch {
            return false;
        }
        if epoch > self.pending_epoch {
            self.discard().await;
            self.pending_epoch = epoch;
        }
        true
    }

    /// Drops the pending rows and rolls back their open transaction.
    async fn discard(&mut self) {
        if !self.pending.is_empty() {
            tracing::debug!(
                rows = self.pending.rows,
                "discarding uncommitted rows of an abandoned epoch"
            );
        }
        self.pending.clear();
        self.writer.abort().await;
        self.streaming = true;
    }

    /// Buffers a batch and streams its first table's rows into the open COPY (tagged for the
    /// staging table in a keyed write mode).
    async fn add(&mut self, batch: ConvertedBatch) -> Result<(), SinkError> {
        if self.config.errors_tolerance == ErrorTolerance::None {
            if let Some(bad) = batch.dead_letters.first() {
                return Err(SinkError::BadMessage(format!(
                    "message {}[{}]@{} failed: {}",
                    bad.topic, bad.partition, bad.offset, bad.reason
                )));
            }
        }
        let rows = self.pending.add(batch);
        if self.streaming && !rows.is_empty() {
            if let Err(error) = self.writer.stream(rows).await {
                tracing::warn!(%error, "streaming COPY failed; the flush retries from the buffer");
                self.writer.abort().await;
                self.streaming = false;
            }
        }
        Ok(())
    }

    /// Refuses a flush that would take the dead letters of the current minute
    /// past `errors.deadletter.max.per.minute`.
    fn check_dead_letter_rate(&mut self, adding: u64) -> Result<(), SinkError> {
        let Some(max) = self.config.max_dead_letters_per_minute else {
            return Ok(());
        };
        if self.dead_letter_window.0.elapsed() >= Duration::from_secs(60) {
            self.dead_letter_window = (Instant::now(), 0);
        }
        let count = self.dead_letter_window.1 + adding;
        if count > max {
            return Err(SinkError::TooManyDeadLetters { count, max });
        }
        Ok(())
    }

    /// Commits everything pending in one transaction with `moves` (written in synchronized
    /// delivery only): the streamed COPY if it is intact, otherwise all of it again. Connection
    /// failures are retried with backoff on fresh connections; rows PostgreSQL rejects are
    /// isolated and dead-lettered (`errors.tolerance = all`), and a retry after that replays
    /// only the rows that were accepted.
    async fn flush(&mut self, moves: &[OffsetMove]) -> Result<Outcome, SinkError> {
        self.check_dead_letter_rate(self.pending.dead_letters.len() as u64)?;
        let offsets: &[OffsetMove] = if self.config.delivery == Delivery::Synchronized {
            moves
        } else {
            &[]
        };
        let mut chunks = self.pending.chunks();
        let deletes = self.pending.deletes();
        let mut result = {
            let data = self.pending.data(&chunks, offsets, &deletes);
            if self.streaming {
                self.writer.finish(&data).await
            } else {
                self.writer.flush(&data).await
            }
        };
        self.streaming = true;
        let mut delay = Duration::from_millis(100);
        let started = Instant::now();
        // Rows are isolated once per flush: a data error after that (in the dead
        // letters or the offsets themselves) is not a row's fault and stops the sink.
        let mut isolated = false;
        loop {
            match result {
                Ok(()) => break,
                Err(DbError::Fenced(reason)) => {
                    tracing::warn!(%reason, "offset fence tripped: the stored offsets are not where this flush starts; rolled back, every partition resumes from the database");
                    self.pending.clear();
                    return Ok(Outcome::Discarded);
                }
                Err(error) if error.is_retryable() => {
                    if self.shutdown.load(Ordering::Relaxed)
                        && started.elapsed() > Duration::from_secs(30)
                    {
                        return Err(SinkError::StoppedUnflushed(self.pending.rows));
                    }
                    tracing::warn!(%error, retry_in = ?delay, "flush failed; reconnecting");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                    let targets = self.writer.targets();
                    let sink = &self.config.sink;
                    let connected =
                        Writer::connect(&self.config.db, sink, targets, self.config.buffer_size);
                    match connected.await {
                        Ok(writer) => self.writer = writer,
                        Err(error) => {
                            result = Err(error);
                            continue;
                        }
                    }
                    let data = self.pending.data(&chunks, offsets, &deletes);
                    result = self.writer.flush(&data).await;
                }
                Err(DbError::Data(reason))
                    if self.config.errors_tolerance == ErrorTolerance::All && !isolated =>
                {
                    tracing::warn!(%reason, rows = self.pending.rows, "PostgreSQL rejected a row; isolating the rejected messages");
                    isolated = true;
                    result = match self.flush_isolating(offsets).await {
                        Ok(accepted) => {
                            chunks = accepted;
                            Ok(())
                        }
                        Err((Some(accepted), error)) => {
                            chunks = accepted;
                            Err(error)
                        }
                        Err((None, error)) => {
                            // The connection broke before the rejected rows were known: the
                            // retry may isolate them again.
                            isolated = false;
                            Err(error)
                        }
                    };
                }
                Err(error) => return Err(SinkError::Flush(error)),
            }
        }
        let pending = &self.pending;
        self.dead_letter_window.1 += pending.dead_letters.len() as u64;
        crate::metrics::flushed(
            &self.config.sink,
            pending.rows,
            pending.dead_letters.len() as u64,
            pending.bytes,
            started.elapsed(),
        );
        for m in moves {
            crate::metrics::committed(&self.config.sink, &m.topic, m.partition, m.next);
        }
        self.stats.rows.fetch_add(pending.rows, Ordering::Relaxed);
        self.stats
            .dead_letters
            .fetch_add(pending.dead_letters.len() as u64, Ordering::Relaxed);
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            rows = pending.rows,
            bytes = pending.bytes,
            dead_letters = pending.dead_letters.len(),
            "flushed"
        );
        self.pending.clear();
        Ok(Outcome::Committed)
    }

    /// Loads the pending rows message by message group, bisecting with
    /// savepoints, so that only the messages whose rows PostgreSQL rejects
    /// go to the dead-letter table; then commits as usual. Returns the rows of
    /// the accepted messages (what a retry on a new connection loads), also with
    /// an error once the rejected messages are known.
    async fn flush_isolating(
        &mut self,
        offsets: &[OffsetMove],
    ) -> Result<Vec<Vec<Bytes>>, (Option<Vec<Vec<Bytes>>>, DbError)> {
        let groups = self.pending.message_groups();
        let rows: Vec<Vec<(usize, Bytes)>> = groups.iter().map(|g| g.rows.clone()).collect();
        let rejected = self
            .writer
            .copy_isolating(&rows)
            .await
            .map_err(|e| (None, e))?;
        let mut refused = vec![false; groups.len()];
        for (group, reason) in rejected {
            refused[group] = true;
            let g = &groups[group];
            let m = self.pending.source(g).message(g.message as usize);
            tracing::warn!(topic = m.topic, partition = m.partition, offset = m.offset, %reason,
                "PostgreSQL rejected the row(s) of this message; sending it to pgsink.dead_letters");
            let lines: usize = g
                .rows
                .iter()
                .map(|(_, r)| memchr::memchr_iter(b'\n', r).count())
                .sum();
            let letter = DeadLetter::new(m, format!("PostgreSQL rejected the row: {reason}"));
            self.pending.rows -= lines as u64;
            self.pending.dead_letters.push(letter);
        }
        let mut accepted = vec![Vec::new(); self.writer.keyed().len()];
        for (group, refused) in groups.into_iter().zip(refused) {
            if !refused {
                for (table, rows) in group.rows {
                    accepted[table].push(rows);
                }
            }
        }
        let deletes = self.pending.deletes();
        let data = self.pending.data(&[], offsets, &deletes);
        match self.writer.finish(&data).await {
            Ok(()) => Ok(accepted),
            Err(error) => Err((Some(accepted), error)),
        }
    }
}
