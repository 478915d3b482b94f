//! One pipeline: a consume-and-convert thread feeding an async writer.
//!
//! The thread polls Kafka, admits each message through the ledger (see `ledger.rs`), lays a
//! batch out flat, converts it with one component call and hands the checked rows to the
//! writer; while the writer runs a COPY, the thread is already converting the next batch. It
//! also decides when to commit (buffer full, flush interval, idle, converter swap, revocation,
//! shutdown) and carries out rewinds, so every delivery decision is made on this one thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Headers, Message};
use tokio::sync::watch;

use crate::batch::{BatchBuilder, MessageRef};
use crate::converter::Column;
use crate::converter::Converter;
use crate::converter::ConverterSpec;
use crate::intake::{FlushPolicy, Intake, IntakeError};
use crate::kafka::SinkConsumer;
use crate::postgres::DeadLetter;
use crate::reload::CanarySample;
use crate::writer::{ConvertedBatch, ConverterId, Stats};

/// Most messages per converter call.
pub const BATCH_MESSAGES: usize = 10_000;
/// Most key/value bytes per converter call.
pub const BATCH_BYTES: usize = 4 << 20;
/// How long a batch waits to fill before it is converted anyway.
const BATCH_WAIT: Duration = Duration::from_millis(50);

/// What the consume loop works with.
pub struct ConsumeLoop {
    /// The Kafka consumer; its context holds the pipeline's [`Intake`].
    pub consumer: Arc<SinkConsumer>,
    pub converter: Converter,
    /// Which converter that is.
    pub converter_id: Arc<ConverterId>,
    /// Replacement converters, published by the reloader.
    pub specs: watch::Receiver<Arc<ConverterSpec>>,
    /// The target columns (to instantiate replacements).
    pub columns: Vec<Column>,
    /// Where recent messages are offered for reload canaries.
    pub canary: Arc<CanarySample>,
    /// Set to stop.
    pub shutdown: Arc<AtomicBool>,
    pub stats: Arc<Stats>,
    /// The sink's name, for metrics.
    pub sink: String,
    /// When to commit.
    pub policy: FlushPolicy,
}

/// Why the consume loop stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// The converter cannot even be instantiated again after a trap.
    #[error(transparent)]
    Converter(#[from] crate::converter::ConverterError),
    /// A rewind could not be carried out.
    #[error(transparent)]
    Intake(IntakeError),
}

impl From<IntakeError> for ConsumeError {
    fn from(error: IntakeError) -> Self {
        ConsumeError::Intake(error)
    }
}

impl ConsumeLoop {
    /// Runs until shutdown or until the writer goes away; at shutdown, commits what was sent
    /// and waits for the outcome.
    pub fn run(mut self) -> Result<(), ConsumeError> {
        match self.consume() {
            Ok(()) => {}
            // The writer's own error says why; the sink reports it.
            Err(ConsumeError::Intake(IntakeError::WriterGone | IntakeError::ShuttingDown)) => {
                return Ok(())
            }
            Err(error) => return Err(error),
        }
        let mut intake = self.consumer.context().intake();
        match intake.close(&self.consumer) {
            Ok(()) | Err(IntakeError::WriterGone) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    fn intake(&self) -> MutexGuard<'_, Intake> {
        self.consumer.context().intake()
    }

    fn consume(&mut self) -> Result<(), ConsumeError> {
        let mut idle = true;
        tracing::debug!(converter = %self.converter_id.label, hash = %self.converter_id.hash, "consume loop started");
        while !self.shutdown.load(Ordering::Relaxed) {
            {
                let consumer = &self.consumer;
                let mut intake = consumer.context().intake();
                intake.check()?;
                intake.settle(consumer)?;
                if intake.ledger.rewind_due() {
                    intake.rewind(consumer)?;
                }
            }
            if self.specs.has_changed().unwrap_or(false) {
                // A commit holds the rows of one converter version only.
                self.intake().commit(&self.consumer)?;
                self.swap_converter();
            }
            if !self.fill() {
                let was_idle = std::mem::replace(&mut idle, true);
                let mut intake = self.intake();
                if intake.commit_due(&self.policy, !was_idle) {
                    intake.commit(&self.consumer)?;
                }
                continue;
            }
            idle = false;
            let source = {
                let mut intake = self.intake();
                if intake.ledger.rewind_due() {
                    // A revocation's commit failed while the batch was read: it is read again.
                    continue;
                }
                std::mem::take(&mut intake.builder)
            };
            self.canary.offer(&source);
            let batch = self.convert(source)?;
            self.stats
                .messages
                .fetch_add(batch.messages, Ordering::Relaxed);
            let mut intake = self.intake();
            intake.send(batch)?;
            if intake.commit_due(&self.policy, false) {
                intake.commit(&self.consumer)?;
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
                    hash: spec.component.hash().to_string(),
                    version: spec.version,
                });
                self.converter = converter;
                tracing::info!(converter = %self.converter_id.label, hash = %self.converter_id.hash,
                    version = spec.version, "converter swapped in");
            }
            Err(error) => {
                tracing::error!(%error, "cannot instantiate the reloaded converter; keeping the previous one");
            }
        }
    }

    /// Polls until the batch is full, or the fetched messages run out and no more arrive
    /// within [`BATCH_WAIT`]. Each message passes the ledger first (a rebalance callback may
    /// run inside any poll and change what it admits). Returns false if it waited in vain.
    fn fill(&self) -> bool {
        let mut deadline: Option<Instant> = None;
        loop {
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
            let mut intake = self.intake();
            match polled {
                None => {}
                Some(Ok(m)) if intake.ledger.admit(m.topic(), m.partition(), m.offset()) => {
                    let headers = m.headers();
                    let message = MessageRef {
                        topic: m.topic(),
                        partition: m.partition(),
                        offset: m.offset(),
                        timestamp: m.timestamp().to_millis(),
                        key: m.key(),
                        value: m.payload(),
                    };
                    intake.builder.push(
                        message,
                        headers
                            .iter()
                            .flat_map(|h| h.iter())
                            .map(|h| (h.key, h.value)),
                    );
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::warn!(%error, "Kafka consumer error");
                }
            }
            if intake.builder.len() >= BATCH_MESSAGES
                || intake.builder.data_len() >= BATCH_BYTES
                || intake.ledger.rewind_due()
            {
                break;
            }
        }
        !self.intake().builder.is_empty()
    }

    /// Converts `source` and turns failures into dead letters.
    fn convert(&mut self, source: BatchBuilder) -> Result<ConvertedBatch, ConsumeError> {
        let started = Instant::now();
        let conversion = self.converter.convert(&source)?;
        crate::metrics::converted(&self.sink, source.len() as u64, started.elapsed());
        let converter = &self.converter_id.label;
        let dead_letters = conversion
            .failed
            .into_iter()
            .map(|(i, reason)| {
                let m = source.message(i);
                tracing::warn!(topic = m.topic, partition = m.partition, offset = m.offset,
                    %converter, %reason, "message cannot be converted; sending it to pgsink.dead_letters");
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
        b.retain(|t, p| !(t == "a" && p == 0));
        assert_eq!(b.len(), 1);
        assert_eq!(b.message(0).offset, 9);
    }
}
