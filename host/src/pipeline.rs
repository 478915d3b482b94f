//! One pipeline: a consume-and-convert thread feeding an async writer.
//!
//! The thread polls Kafka, lays a batch out flat, converts it with one
//! component call and hands the checked rows to the writer; while the writer
//! runs a COPY, the thread is already converting the next batch.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::Offset;
use tokio::sync::{mpsc, watch};

use crate::batch::{BatchBuilder, MessageRef};
use crate::bindings::Column;
use crate::conversion::Converter;
use crate::kafka::{Partition, SinkConsumer};
use crate::postgres::DeadLetter;
use crate::reload::{CanarySample, ConverterSpec};
use crate::writer::{ConvertedBatch, ConverterId, Event, Stats};

/// Most messages per converter call.
pub const BATCH_MESSAGES: usize = 10_000;
/// Most key/value bytes per converter call.
pub const BATCH_BYTES: usize = 4 << 20;
/// How long a batch waits to fill before it is converted anyway.
const BATCH_WAIT: Duration = Duration::from_millis(50);

/// What the consume loop shares with the rest of the pipeline.
pub struct ConsumeLoop {
    /// The Kafka consumer.
    pub consumer: Arc<SinkConsumer>,
    /// The converter.
    pub converter: Converter,
    /// Which converter that is.
    pub converter_id: Arc<ConverterId>,
    /// Replacement converters, published by the reloader.
    pub specs: watch::Receiver<Arc<ConverterSpec>>,
    /// The target columns (to instantiate replacements).
    pub columns: Vec<Column>,
    /// Where recent messages are offered for reload canaries.
    pub canary: Arc<CanarySample>,
    /// To the writer.
    pub events: mpsc::Sender<Event>,
    /// Set to stop.
    pub shutdown: Arc<AtomicBool>,
    /// Bumped by the writer when the offset fence trips.
    pub generation: Arc<AtomicU64>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// The sink's name, for metrics.
    pub sink: String,
    /// Whether messages of revoked partitions must be dropped from a batch
    /// in the making (not in fastest mode, where they are already committed).
    pub drop_revoked: bool,
}

/// Why the consume loop stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// The converter cannot even be instantiated again after a trap.
    #[error(transparent)]
    Plugin(#[from] crate::converter::PluginError),
}

impl ConsumeLoop {
    /// Runs until shutdown or until the writer goes away.
    pub fn run(mut self) -> Result<(), ConsumeError> {
        let mut builder = BatchBuilder::new();
        let mut generation = self.generation.load(Ordering::SeqCst);
        let mut idle = true;
        tracing::debug!(plugin = %self.converter_id.label, hash = %self.converter_id.hash, "consume loop started");
        while !self.shutdown.load(Ordering::Relaxed) {
            if self.specs.has_changed().unwrap_or(false) {
                self.swap_converter();
            }
            let wanted = self.generation.load(Ordering::SeqCst);
            if wanted != generation {
                generation = wanted;
                builder.clear();
                self.reposition(generation);
            }
            if !self.fill(&mut builder) {
                if !idle {
                    // Nothing more is coming for now: let the writer commit what it
                    // holds instead of waiting for the flush interval.
                    idle = true;
                    if self.events.blocking_send(Event::Idle).is_err() {
                        break;
                    }
                }
                continue;
            }
            idle = false;
            self.canary.offer(&builder);
            let source = std::mem::take(&mut builder);
            let batch = self.convert(source)?;
            self.stats
                .messages
                .fetch_add(batch.messages, Ordering::Relaxed);
            if self
                .events
                .blocking_send(Event::Batch { generation, batch })
                .is_err()
            {
                break;
            }
        }
        Ok(())
    }

    /// Swaps in the converter the reloader published (between two batches).
    fn swap_converter(&mut self) {
        let spec = self.specs.borrow_and_update().clone();
        match spec.instantiate(&self.columns) {
            Ok(converter) => {
                self.converter_id = Arc::new(ConverterId {
                    label: converter.label(),
                    hash: spec.plugin.hash().to_string(),
                    version: spec.version,
                });
                self.converter = converter;
                tracing::info!(plugin = %self.converter_id.label, hash = %self.converter_id.hash,
                    version = spec.version, "converter swapped in");
            }
            Err(error) => {
                tracing::error!(%error, "cannot instantiate the reloaded converter; keeping the previous one");
            }
        }
    }

    /// Polls until the batch is full, or the fetched messages run out and
    /// no more arrive within [`BATCH_WAIT`]. Returns false if it waited in vain.
    fn fill(&self, builder: &mut BatchBuilder) -> bool {
        let mut deadline: Option<Instant> = None;
        while builder.len() < BATCH_MESSAGES && builder.data_len() < BATCH_BYTES {
            // Drain what librdkafka has fetched without reading the clock;
            // wait (up to the deadline) only when its queue is empty.
            let polled = match self.consumer.poll(Duration::ZERO) {
                Some(polled) => Some(polled),
                None => {
                    let deadline = *deadline.get_or_insert_with(|| Instant::now() + BATCH_WAIT);
                    let timeout = deadline.saturating_duration_since(Instant::now());
                    if timeout.is_zero() {
                        break;
                    }
                    self.consumer.poll(timeout)
                }
            };
            match polled {
                None => {}
                Some(Ok(m)) => {
                    let headers = m.headers();
                    let message = MessageRef {
                        topic: m.topic(),
                        partition: m.partition(),
                        offset: m.offset(),
                        timestamp: m.timestamp().to_millis(),
                        key: m.key(),
                        value: m.payload(),
                    };
                    builder.push(
                        message,
                        headers
                            .iter()
                            .flat_map(|h| h.iter())
                            .map(|h| (h.key, h.value)),
                    );
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "Kafka consumer error");
                }
            }
            if self.drop_revoked && self.consumer.context().was_revoked() {
                let revoked = self.consumer.context().take_revoked();
                if !revoked.is_empty() && !builder.is_empty() {
                    retain_assigned(builder, &revoked);
                }
            }
        }
        !builder.is_empty()
    }

    /// Converts `source` and turns failures into dead letters.
    fn convert(&mut self, source: BatchBuilder) -> Result<ConvertedBatch, ConsumeError> {
        let started = Instant::now();
        let conversion = self.converter.convert(&source)?;
        crate::metrics::converted(&self.sink, source.len() as u64, started.elapsed());
        let plugin = &self.converter_id.label;
        let dead_letters = conversion
            .failed
            .into_iter()
            .map(|(i, reason)| {
                let m = source.message(i);
                tracing::warn!(topic = m.topic, partition = m.partition, offset = m.offset,
                    %plugin, %reason, "message cannot be converted; sending it to pgsink.dead_letters");
                DeadLetter::new(m, reason)
            })
            .collect();
        Ok(ConvertedBatch {
            copy_text: Bytes::from(conversion.copy_text),
            rows: conversion.rows,
            row_messages: conversion.row_messages,
            messages: source.len() as u64,
            dead_letters,
            next_offsets: next_offsets(&source),
            source,
            converter: self.converter_id.clone(),
        })
    }

    /// After the offset fence tripped: start every assigned partition again
    /// from the offset stored in the database.
    fn reposition(&self, generation: u64) {
        let mut assignment = match self.consumer.assignment() {
            Ok(tpl) => tpl,
            Err(error) => {
                tracing::error!(%error, "cannot read the assignment to re-position");
                return;
            }
        };
        if !self.consumer.context().position_at_stored(&mut assignment) {
            return;
        }
        for elem in assignment.elements() {
            if let Offset::Offset(offset) = elem.offset() {
                if let Err(error) = self.consumer.seek(
                    elem.topic(),
                    elem.partition(),
                    Offset::Offset(offset),
                    Duration::from_secs(10),
                ) {
                    tracing::error!(%error, topic = elem.topic(), partition = elem.partition(), "seek failed");
                }
            }
        }
        tracing::info!(generation, "re-positioned at the stored offsets");
    }
}

/// Per partition, the offset after its last message in the batch.
fn next_offsets(builder: &BatchBuilder) -> Vec<(String, i32, i64)> {
    let batch = builder.batch();
    let mut next: Vec<(u32, i32, i64)> = Vec::new();
    let mut last = usize::MAX;
    for m in &batch.messages {
        let hit = match next.get(last) {
            Some(&(t, p, _)) if t == m.topic && p == m.partition => Some(last),
            _ => next
                .iter()
                .position(|&(t, p, _)| t == m.topic && p == m.partition),
        };
        match hit {
            Some(i) => {
                next[i].2 = next[i].2.max(m.offset + 1);
                last = i;
            }
            None => {
                next.push((m.topic, m.partition, m.offset + 1));
                last = next.len() - 1;
            }
        }
    }
    next.into_iter()
        .map(|(t, p, o)| (batch.topics[t as usize].clone(), p, o))
        .collect()
}

/// Drops the messages of `revoked` partitions from a batch in the making.
fn retain_assigned(builder: &mut BatchBuilder, revoked: &[Partition]) {
    let revoked: HashSet<(&str, i32)> = revoked.iter().map(|(t, p)| (t.as_str(), *p)).collect();
    let mut kept = BatchBuilder::new();
    for i in 0..builder.len() {
        let m = builder.message(i);
        if !revoked.contains(&(m.topic, m.partition)) {
            kept.append_from(builder, i);
        }
    }
    *builder = kept;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(b: &mut BatchBuilder, topic: &str, partition: i32, offset: i64) {
        b.push(
            MessageRef {
                topic,
                partition,
                offset,
                timestamp: None,
                key: None,
                value: Some(b"{}"),
            },
            [],
        );
    }

    #[test]
    fn next_offsets_per_partition() {
        let mut b = BatchBuilder::new();
        push(&mut b, "a", 0, 5);
        push(&mut b, "a", 0, 6);
        push(&mut b, "a", 1, 9);
        push(&mut b, "b", 0, 2);
        push(&mut b, "a", 0, 8);
        assert_eq!(
            next_offsets(&b),
            vec![("a".into(), 0, 9), ("a".into(), 1, 10), ("b".into(), 0, 3)]
        );
    }

    #[test]
    fn revoked_partitions_leave_the_batch() {
        let mut b = BatchBuilder::new();
        push(&mut b, "a", 0, 5);
        push(&mut b, "a", 1, 9);
        push(&mut b, "a", 0, 6);
        retain_assigned(&mut b, &[("a".into(), 0)]);
        assert_eq!(b.len(), 1);
        assert_eq!(b.message(0).offset, 9);
    }
}
