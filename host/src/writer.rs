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

use crate::batch::BatchBuilder;
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
    /// The consumer found nothing new for a while: flush now (not in fastest mode).
    Idle,
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
    /// For each row, the index in `source` of the message it came from.
    pub row_messages: Vec<u32>,
    /// The messages, kept until the flush commits (for rows PostgreSQL rejects).
    pub source: BatchBuilder,
    /// Messages of the batch.
    pub messages: u64,
    /// Messages that failed conversion.
    pub dead_letters: Vec<DeadLetter>,
    /// Per partition, the offset after its last message in the batch.
    pub next_offsets: Vec<(String, i32, i64)>,
    /// The converter that converted the batch.
    pub converter: Arc<ConverterId>,
}

/// Which converter produced a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConverterId {
    /// `name version`, as the converter reports it.
    pub label: String,
    /// SHA-256 of the component.
    pub hash: String,
    /// Swap count (0: the converter the sink started with).
    pub version: u64,
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
    /// Stop if more dead letters than this are committed within a minute.
    pub max_dead_letters_per_minute: Option<u64>,
    /// The sink's name, for metrics.
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
    #[error("{count} dead letters within a minute exceed errors.deadletter.max.per.minute = {max}; stopping before committing them (the converter or the table is probably wrong)")]
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

/// A converted batch waiting for its flush.
struct PendingBatch {
    copy_text: Bytes,
    row_messages: Vec<u32>,
    source: BatchBuilder,
}

/// What is buffered since the last flush.
#[derive(Default)]
struct Pending {
    batches: Vec<PendingBatch>,
    bytes: usize,
    rows: u64,
    messages: u64,
    dead_letters: Vec<DeadLetter>,
    next_offsets: HashMap<Partition, i64>,
    /// The converter of every pending batch (one per flush).
    converter: Arc<ConverterId>,
}

impl Pending {
    fn add(&mut self, batch: ConvertedBatch) {
        self.bytes += batch.copy_text.len();
        self.rows += batch.rows;
        self.messages += batch.messages;
        self.dead_letters.extend(batch.dead_letters);
        for (topic, partition, next) in batch.next_offsets {
            self.next_offsets.insert((topic, partition), next);
        }
        self.converter = batch.converter;
        self.batches.push(PendingBatch {
            copy_text: batch.copy_text,
            row_messages: batch.row_messages,
            source: batch.source,
        });
    }

    fn is_empty(&self) -> bool {
        self.next_offsets.is_empty()
    }

    /// The COPY text of every batch that has rows.
    fn chunks(&self) -> Vec<Bytes> {
        self.batches
            .iter()
            .filter(|b| !b.copy_text.is_empty())
            .map(|b| b.copy_text.clone())
            .collect()
    }

    /// The rows grouped by message: (batch, message index, its rows). A
    /// message's rows are loaded or rejected together.
    fn message_groups(&self) -> Vec<(usize, u32, Bytes)> {
        let mut groups = Vec::new();
        for (b, batch) in self.batches.iter().enumerate() {
            let mut group_start = 0;
            let mut rows = memchr::memchr_iter(b'\n', &batch.copy_text)
                .zip(&batch.row_messages)
                .peekable();
            while let Some((end, &message)) = rows.next() {
                if rows.peek().is_none_or(|&(_, &next)| next != message) {
                    groups.push((b, message, batch.copy_text.slice(group_start..end + 1)));
                    group_start = end + 1;
                }
            }
        }
        groups
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
    /// The pending rows are being streamed into an open COPY.
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
            streaming: true,
            shutdown,
            stats,
            dead_letter_window: (Instant::now(), 0),
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
                if !self.pending.is_empty()
                    && self.pending.converter.version != batch.converter.version
                {
                    // A flush holds the output of one converter version only.
                    self.flush().await?;
                }
                let rows = batch.copy_text.clone();
                self.pending.add(batch);
                if self.streaming && !rows.is_empty() {
                    if let Err(error) = self.writer.stream(rows).await {
                        tracing::warn!(%error, "streaming COPY failed; the flush retries from the buffer");
                        self.writer.abort().await;
                        self.streaming = false;
                    }
                }
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
            Event::Idle => {
                if self.config.delivery != Delivery::Fastest && !self.pending.is_empty() {
                    self.flush().await?;
                }
            }
            Event::Stopped => {}
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

    /// The offset moves of the pending flush (synchronized delivery).
    fn offset_moves(&self) -> Vec<OffsetMove> {
        if self.config.delivery != Delivery::Synchronized {
            return Vec::new();
        }
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
    }

    /// Commits everything pending in one transaction: the streamed COPY if it
    /// is intact, otherwise all of it again. Connection failures are retried
    /// with backoff on fresh connections; rows PostgreSQL rejects are isolated
    /// and dead-lettered (`errors.tolerance = all`).
    async fn flush(&mut self) -> Result<(), SinkError> {
        self.check_dead_letter_rate(self.pending.dead_letters.len() as u64)?;
        let offsets = self.offset_moves();
        let chunks = self.pending.chunks();
        let mut result = {
            let data = FlushData {
                copy_chunks: &chunks,
                dead_letters: &self.pending.dead_letters,
                offsets: &offsets,
                plugin: &self.pending.converter.label,
                plugin_hash: &self.pending.converter.hash,
            };
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
                        Err(error) => {
                            result = Err(error);
                            continue;
                        }
                    }
                    let data = FlushData {
                        copy_chunks: &chunks,
                        dead_letters: &self.pending.dead_letters,
                        offsets: &offsets,
                        plugin: &self.pending.converter.label,
                        plugin_hash: &self.pending.converter.hash,
                    };
                    result = self.writer.flush(&data).await;
                }
                Err(DbError::Data(reason))
                    if self.config.errors_tolerance == ErrorTolerance::All && !isolated =>
                {
                    tracing::warn!(%reason, rows = self.pending.rows, "PostgreSQL rejected a row; isolating the rejected messages");
                    isolated = true;
                    result = self.flush_isolating(&offsets).await;
                }
                Err(error) => return Err(SinkError::Flush(error)),
            }
        }
        let pending = std::mem::take(&mut self.pending);
        self.dead_letter_window.1 += pending.dead_letters.len() as u64;
        crate::metrics::flushed(
            &self.config.sink,
            pending.rows,
            pending.dead_letters.len() as u64,
            pending.bytes,
            started.elapsed(),
        );
        for ((topic, partition), next) in &pending.next_offsets {
            crate::metrics::committed(&self.config.sink, topic, *partition, *next);
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
        for m in &offsets {
            self.stored
                .insert((m.topic.clone(), m.partition), Some(m.next));
        }
        if self.config.delivery != Delivery::Fastest {
            self.commit_kafka(&pending.next_offsets);
        }
        Ok(())
    }

    /// Loads the pending rows message by message group, bisecting with
    /// savepoints, so that only the messages whose rows PostgreSQL rejects
    /// go to the dead-letter table; then commits as usual.
    async fn flush_isolating(&mut self, offsets: &[OffsetMove]) -> Result<(), DbError> {
        let groups = self.pending.message_groups();
        let rows: Vec<Bytes> = groups.iter().map(|(_, _, rows)| rows.clone()).collect();
        let rejected = self.writer.copy_isolating(&rows).await?;
        for (group, reason) in rejected {
            let (batch, message, rows) = &groups[group];
            let source = &self.pending.batches[*batch].source;
            let m = source.message(*message as usize);
            tracing::warn!(topic = m.topic, partition = m.partition, offset = m.offset, %reason,
                "PostgreSQL rejected the row(s) of this message; sending it to pgsink.dead_letters");
            self.pending.rows -= memchr::memchr_iter(b'\n', rows).count() as u64;
            self.pending.dead_letters.push(DeadLetter::new(
                m,
                format!("PostgreSQL rejected the row: {reason}"),
            ));
        }
        let data = FlushData {
            copy_chunks: &[],
            dead_letters: &self.pending.dead_letters,
            offsets,
            plugin: &self.pending.converter.label,
            plugin_hash: &self.pending.converter.hash,
        };
        self.writer.finish(&data).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::MessageRef;

    fn batch(copy_text: &str, row_messages: Vec<u32>, messages: usize) -> ConvertedBatch {
        let mut source = BatchBuilder::new();
        for offset in 0..messages {
            source.push(
                MessageRef {
                    topic: "t",
                    partition: 0,
                    offset: offset as i64,
                    timestamp: None,
                    key: None,
                    value: Some(b"{}"),
                },
                [],
            );
        }
        ConvertedBatch {
            copy_text: Bytes::copy_from_slice(copy_text.as_bytes()),
            rows: row_messages.len() as u64,
            row_messages,
            source,
            messages: messages as u64,
            dead_letters: Vec::new(),
            next_offsets: vec![("t".into(), 0, messages as i64)],
            converter: Arc::default(),
        }
    }

    #[test]
    fn rows_group_by_message_across_batches() {
        let mut pending = Pending::default();
        pending.add(batch("a\nb\nc\n", vec![0, 0, 2], 3));
        pending.add(batch("", vec![], 2));
        pending.add(batch("d\n", vec![1], 2));
        let groups = pending.message_groups();
        let expected = [(0, 0, "a\nb\n"), (0, 2, "c\n"), (2, 1, "d\n")];
        assert_eq!(groups.len(), expected.len());
        for ((b, m, rows), (eb, em, erows)) in groups.iter().zip(expected) {
            assert_eq!((*b, *m, &rows[..]), (eb, em, erows.as_bytes()));
        }
        assert_eq!(pending.chunks().len(), 2);
        assert_eq!(pending.rows, 4);
        assert_eq!(pending.messages, 7);
    }
}
