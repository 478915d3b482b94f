//! The writer: buffers converted batches and flushes them to PostgreSQL,
//! committing offsets as the delivery mode says.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::config::{DbConfig, Delivery, ErrorTolerance};
use crate::kafka::{Partition, SinkConsumer};
use crate::postgres::{DbError, DeadLetter, FlushData, OffsetMove, Writer};

/// What the consume loop and the rebalance callbacks tell the writer, in order.
pub enum Event {
    /// Partitions were assigned; their stored offsets (None: no stored row).
    Assigned {
        /// The reset generation these positions belong to.
        generation: u64,
        /// Topic, partition and stored offset.
        partitions: Vec<(String, i32, Option<i64>)>,
    },
    /// A converted batch.
    Batch {
        /// The reset generation the batch was read in.
        generation: u64,
        /// The rows, dead letters and positions.
        batch: ConvertedBatch,
    },
    /// The consume loop has stopped: flush what is left and end.
    Stopped,
    /// Partitions are being revoked: flush, then answer on `done`.
    Revoked {
        /// The partitions leaving this consumer.
        partitions: Vec<Partition>,
        /// Signalled when the flush is over.
        done: std_mpsc::SyncSender<()>,
    },
}

/// A batch after conversion, ready to buffer.
#[derive(Debug, Default)]
pub struct ConvertedBatch {
    /// COPY text rows.
    pub copy_text: Bytes,
    /// Rows in `copy_text`.
    pub rows: u64,
    /// Messages of the batch.
    pub messages: u64,
    /// Messages that failed conversion.
    pub dead_letters: Vec<DeadLetter>,
    /// Per partition, the offset after its last message in the batch.
    pub next_offsets: Vec<(String, i32, i64)>,
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
    /// Delivery mode.
    pub delivery: Delivery,
    /// Flush when this many bytes of COPY text are buffered.
    pub buffer_size: usize,
    /// Flush at least this often (guaranteed and synchronized).
    pub flush_interval: Duration,
    /// What to do with a bad message.
    pub errors_tolerance: ErrorTolerance,
    /// The converter's `name version`.
    pub plugin: String,
    /// The converter's hash.
    pub plugin_hash: String,
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
    /// The sink was asked to stop while the database was unreachable.
    #[error("stopped while PostgreSQL was unreachable; {0} buffered rows were not loaded and their offsets not committed")]
    StoppedUnflushed(u64),
}

/// What is buffered since the last flush.
#[derive(Default)]
struct Pending {
    chunks: Vec<Bytes>,
    bytes: usize,
    rows: u64,
    messages: u64,
    dead_letters: Vec<DeadLetter>,
    next_offsets: HashMap<Partition, i64>,
}

impl Pending {
    fn add(&mut self, batch: ConvertedBatch) {
        if !batch.copy_text.is_empty() {
            self.bytes += batch.copy_text.len();
            self.chunks.push(batch.copy_text);
        }
        self.rows += batch.rows;
        self.messages += batch.messages;
        self.dead_letters.extend(batch.dead_letters);
        for (topic, partition, next) in batch.next_offsets {
            self.next_offsets.insert((topic, partition), next);
        }
    }

    fn is_empty(&self) -> bool {
        self.next_offsets.is_empty()
    }
}

/// The writer of one pipeline.
pub struct SinkWriter {
    config: WriterConfig,
    writer: Writer,
    consumer: Arc<SinkConsumer>,
    pending: Pending,
    /// Synchronized: the stored offset this process believes each partition is at.
    stored: HashMap<Partition, Option<i64>>,
    generation: Arc<AtomicU64>,
    /// After a fence trip: drop batches until the consumer re-positions.
    resetting: bool,
    shutdown: Arc<AtomicBool>,
    stats: Arc<Stats>,
}

impl SinkWriter {
    /// A writer flushing through `writer`.
    pub fn new(
        config: WriterConfig,
        writer: Writer,
        consumer: Arc<SinkConsumer>,
        generation: Arc<AtomicU64>,
        shutdown: Arc<AtomicBool>,
        stats: Arc<Stats>,
    ) -> Self {
        SinkWriter {
            config,
            writer,
            consumer,
            pending: Pending::default(),
            stored: HashMap::new(),
            generation,
            resetting: false,
            shutdown,
            stats,
        }
    }

    /// Runs until the consume loop hangs up, then flushes what is left.
    pub async fn run(mut self, mut events: mpsc::Receiver<Event>) -> Result<(), SinkError> {
        let timed = self.config.delivery != Delivery::Fastest;
        let mut ticker = tokio::time::interval(self.config.flush_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    None | Some(Event::Stopped) => break,
                    Some(event) => self.handle(event).await?,
                },
                _ = ticker.tick(), if timed => {
                    if !self.pending.is_empty() {
                        self.flush().await?;
                    }
                }
            }
        }
        if !self.pending.is_empty() {
            self.flush().await?;
        }
        Ok(())
    }

    async fn handle(&mut self, event: Event) -> Result<(), SinkError> {
        match event {
            Event::Assigned {
                generation,
                partitions,
            } => {
                if generation >= self.generation.load(Ordering::SeqCst) {
                    self.resetting = false;
                }
                for (topic, partition, stored) in partitions {
                    self.stored.insert((topic, partition), stored);
                }
            }
            Event::Batch { generation, batch } => {
                if self.resetting || generation < self.generation.load(Ordering::SeqCst) {
                    return Ok(());
                }
                if self.config.errors_tolerance == ErrorTolerance::None {
                    if let Some(bad) = batch.dead_letters.first() {
                        return Err(SinkError::BadMessage(format!(
                            "message {}[{}]@{} failed: {}",
                            bad.topic, bad.partition, bad.offset, bad.reason
                        )));
                    }
                }
                self.pending.add(batch);
                if self.pending.bytes >= self.config.buffer_size {
                    self.flush().await?;
                }
            }
            Event::Revoked { partitions, done } => {
                if !self.pending.is_empty() {
                    if let Err(error) = self.flush().await {
                        tracing::warn!(%error, "flush before revocation failed; the new owner re-reads from the last committed offsets");
                        self.pending = Pending::default();
                    }
                }
                for p in &partitions {
                    self.stored.remove(p);
                }
                let _ = done.send(());
            }
            Event::Stopped => {}
        }
        Ok(())
    }

    /// Writes everything pending in one transaction, retrying connection
    /// failures with backoff on fresh connections.
    async fn flush(&mut self) -> Result<(), SinkError> {
        let synchronized = self.config.delivery == Delivery::Synchronized;
        let offsets: Vec<OffsetMove> = if synchronized {
            self.pending
                .next_offsets
                .iter()
                .map(|((topic, partition), next)| OffsetMove {
                    topic: topic.clone(),
                    partition: *partition,
                    expected: self
                        .stored
                        .get(&(topic.clone(), *partition))
                        .copied()
                        .flatten(),
                    next: *next,
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut delay = Duration::from_millis(100);
        let started = Instant::now();
        loop {
            let data = FlushData {
                copy_chunks: &self.pending.chunks,
                dead_letters: &self.pending.dead_letters,
                offsets: &offsets,
                plugin: &self.config.plugin,
                plugin_hash: &self.config.plugin_hash,
            };
            match self.writer.flush(&data).await {
                Ok(()) => break,
                Err(DbError::Fenced(reason)) => {
                    tracing::warn!(%reason, "another process moved the stored offsets; rolled back, re-reading from the stored offsets");
                    self.pending = Pending::default();
                    self.resetting = true;
                    self.generation.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
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
                    match Writer::connect(&self.config.db, self.writer.target().clone()).await {
                        Ok(writer) => self.writer = writer,
                        Err(error) => tracing::warn!(%error, "reconnect failed"),
                    }
                }
                Err(error) => return Err(SinkError::Flush(error)),
            }
        }
        let pending = std::mem::take(&mut self.pending);
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
        if synchronized {
            for m in &offsets {
                self.stored
                    .insert((m.topic.clone(), m.partition), Some(m.next));
            }
        }
        if self.config.delivery != Delivery::Fastest {
            self.commit_kafka(&pending.next_offsets);
        }
        Ok(())
    }

    /// Commits the flushed positions to Kafka: the position itself in
    /// guaranteed mode, a copy for lag tools in synchronized mode.
    fn commit_kafka(&self, next_offsets: &HashMap<Partition, i64>) {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in next_offsets {
            if let Err(error) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                tracing::warn!(%error, "cannot build the Kafka commit");
            }
        }
        if let Err(error) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(%error, "Kafka offset commit failed (partitions may have moved)");
        }
    }
}
