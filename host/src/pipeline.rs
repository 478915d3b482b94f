//! One pipeline: a consume thread feeding an async writer, with a conversion stage beside it.
//!
//! The thread polls Kafka, admits each message through the ledger (see `ledger.rs`) and lays
//! a batch out flat; the conversion stage (`conversion_stage.rs`) converts it with one
//! component call while the thread polls the next, then the thread hands the checked rows to
//! the writer, which runs its COPY meanwhile. The thread also decides when to commit (buffer
//! full, flush interval, idle, converter swap, revocation, shutdown) and carries out rewinds,
//! so every delivery decision is made on this one thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::{Headers, Message};
use tokio::sync::watch;

use crate::batch::MessageRef;
use crate::converter::ConverterSpec;
use crate::converter::Table;
use crate::intake::{FlushPolicy, Intake, IntakeError};
use crate::kafka::SinkConsumer;
use crate::pending::ConverterId;
use crate::reload::CanarySample;

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
    /// Which converter the conversion stage runs.
    pub converter_id: Arc<ConverterId>,
    /// Replacement converters, published by the reloader.
    pub specs: watch::Receiver<Arc<ConverterSpec>>,
    /// The tables the sink writes (to instantiate replacements).
    pub tables: Vec<Table>,
    /// Where recent messages are offered for reload canaries.
    pub canary: Arc<CanarySample>,
    /// Set to stop.
    pub shutdown: Arc<AtomicBool>,
    /// When to commit.
    pub policy: FlushPolicy,
}

/// Why the consume loop stopped abnormally: a rewind could not be carried out, or a batch
/// could not be converted.
pub type ConsumeError = IntakeError;

impl ConsumeLoop {
    /// Runs until shutdown or until the writer goes away; at shutdown, commits what was sent
    /// and waits for the outcome.
    pub fn run(mut self) -> Result<(), ConsumeError> {
        match self.consume() {
            Ok(()) => {}
            // The writer's own error says why; the sink reports it.
            Err(IntakeError::WriterGone | IntakeError::ShuttingDown) => return Ok(()),
            Err(error) => return Err(error),
        }
        let mut intake = self.consumer.context().intake();
        match intake.close(&self.consumer) {
            Ok(()) | Err(IntakeError::WriterGone) => Ok(()),
            Err(error) => Err(error),
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
                let consumer = self.consumer.clone();
                let mut intake = consumer.context().intake();
                intake.send_converted()?;
                intake.commit(&self.consumer)?;
                self.swap_converter(&mut intake)?;
            }
            if !self.fill()? {
                let was_idle = std::mem::replace(&mut idle, true);
                let mut intake = self.intake();
                intake.send_converted()?;
                if intake.commit_due(&self.policy, !was_idle) {
                    intake.commit(&self.consumer)?;
                }
                continue;
            }
            idle = false;
            let mut intake = self.intake();
            if intake.ledger.rewind_due() {
                // A revocation's commit failed while the batch was read: it is read again.
                continue;
            }
            self.canary.offer(&intake.builder);
            intake.convert_built()?;
            if intake.commit_due(&self.policy, false) {
                intake.commit(&self.consumer)?;
            }
        }
        Ok(())
    }

    /// Swaps in the converter the reloader published (between two batches).
    fn swap_converter(&mut self, intake: &mut Intake) -> Result<(), IntakeError> {
        let spec = self.specs.borrow_and_update().clone();
        match spec.instantiate(&self.tables) {
            Ok(converter) => {
                self.converter_id = Arc::new(ConverterId {
                    label: converter.label(),
                    hash: spec.component.hash().to_string(),
                    version: spec.version,
                });
                intake.stage.swap(converter, self.converter_id.clone())?;
                tracing::info!(converter = %self.converter_id.label, hash = %self.converter_id.hash,
                    version = spec.version, "converter swapped in");
            }
            Err(error) => {
                tracing::error!(%error, "cannot instantiate the reloaded converter; keeping the previous one");
            }
        }
        Ok(())
    }

    /// Polls until the batch is full, or the fetched messages run out and no more arrive
    /// within [`BATCH_WAIT`]. Each message passes the ledger first (a rebalance callback may
    /// run inside any poll and change what it admits). Returns false if it waited in vain.
    fn fill(&self) -> Result<bool, IntakeError> {
        let mut deadline: Option<Instant> = None;
        loop {
            // Drain what librdkafka has fetched without reading the clock;
            // wait (up to the deadline) only when its queue is empty.
            let polled = match self.consumer.poll(Duration::ZERO) {
                Some(polled) => Some(polled),
                None => {
                    if deadline.is_none() {
                        // Nothing to overlap with: the converted batch goes now, not later.
                        self.intake().send_converted()?;
                    }
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
                Some(Ok(m)) => {
                    // rdkafka measures and checks the topic name on every call.
                    let topic = m.topic();
                    if intake.ledger.admit(topic, m.partition(), m.offset()) {
                        let headers = m.headers();
                        let message = MessageRef {
                            topic,
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
                }
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
        Ok(!self.intake().builder.is_empty())
    }
}
