//! The intake of one pipeline: the [`Ledger`], the batch being built, the batch being
//! converted, and the link to the writer — what the consume loop and the rebalance callbacks
//! share — with the I/O that carries out the ledger's decisions: seeks, Kafka commits,
//! reading stored offsets.
//!
//! Both users run on the consume thread (librdkafka calls the rebalance callback inside
//! `poll`), so the mutex around an intake is never contended; it only makes the consumer's
//! context `Sync`. Because the callback holds the batch being built, a revocation drops the
//! revoked partitions' messages from it at once, before any later assignment can add some;
//! the batch being converted it waits for and sends, so that the commit before the
//! revocation includes it (its messages were admitted: dropping them would skip them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::batch::BatchBuilder;
use crate::config::Delivery;
use crate::conversion_stage::{ConversionStage, StageError};
use crate::ledger::{Ledger, OffsetMove, Partition};
use crate::pending::ConvertedBatch;
use crate::stored_offsets::StoredOffsets;
use crate::writer::{Command, Outcome};

/// How often a seek is tried before the pipeline stops (librdkafka refuses a seek while a
/// partition's fetcher is still starting).
const SEEK_TRIES: u32 = 20;

/// Why the consume side stops.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The writer has stopped (its own error says why) or the sink is shutting down.
    #[error("the writer has stopped")]
    WriterGone,
    /// A partition could not be sought back after a rewind; reading on would skip messages.
    #[error("cannot seek {topic}[{partition}] back to offset {offset}: {error}")]
    Seek {
        topic: String,
        partition: i32,
        /// Where it had to go.
        offset: i64,
        /// librdkafka's reason.
        error: String,
    },
    /// The sink is shutting down during a rewind.
    #[error("shutting down")]
    ShuttingDown,
    /// A batch could not be converted (the converter cannot be instantiated again, or is stuck).
    #[error(transparent)]
    Conversion(#[from] StageError),
    /// A batch could not be converted during a revocation (logged then); the pipeline stops
    /// without sending or committing anything more.
    #[error(
        "a batch could not be converted during a revocation; stopping without committing more"
    )]
    ConversionLost,
}

/// When the consume loop hands a commit to the writer.
#[derive(Debug, Clone, Copy)]
pub struct FlushPolicy {
    /// When this many bytes of rows were sent since the last commit.
    pub buffer_size: usize,
    /// At least this often (None: only when the buffer is full, fastest delivery).
    pub interval: Option<Duration>,
    /// As soon as the consumer finds nothing new.
    pub when_idle: bool,
}

/// See the module documentation.
pub struct Intake {
    /// The delivery decisions.
    pub ledger: Ledger,
    /// Messages admitted and not yet converted.
    pub builder: BatchBuilder,
    /// Messages admitted and being converted.
    pub stage: ConversionStage,
    delivery: Delivery,
    commands: mpsc::Sender<Command>,
    outcomes: std_mpsc::Receiver<Outcome>,
    /// Synchronized delivery: where the database says each partition stands.
    stored: Option<StoredOffsets>,
    shutdown: Arc<AtomicBool>,
    /// Bytes of rows sent since the last commit.
    unplanned_bytes: usize,
    last_commit: Instant,
    /// Set when the writer went away inside a callback; the consume loop stops.
    writer_gone: bool,
    /// Set when a conversion failed inside a callback; the consume loop stops with it.
    conversion_failed: Option<StageError>,
    /// Admitted messages were lost with a failed conversion: nothing may be sent or committed
    /// any more (a later batch of their partitions would commit over them).
    conversion_lost: bool,
    /// The consume loop has made its final commit: a revocation now (closing the consumer)
    /// has nothing to commit and no writer to commit with.
    closed: bool,
}

impl Intake {
    /// An intake sending to a writer through `commands` and hearing back on `outcomes`.
    pub fn new(
        stage: ConversionStage,
        delivery: Delivery,
        commands: mpsc::Sender<Command>,
        outcomes: std_mpsc::Receiver<Outcome>,
        stored: Option<StoredOffsets>,
        shutdown: Arc<AtomicBool>,
    ) -> Intake {
        Intake {
            ledger: Ledger::new(),
            builder: BatchBuilder::new(),
            stage,
            delivery,
            commands,
            outcomes,
            stored,
            shutdown,
            unplanned_bytes: 0,
            last_commit: Instant::now(),
            writer_gone: false,
            conversion_failed: None,
            conversion_lost: false,
            closed: false,
        }
    }

    /// Errs if the writer went away or a conversion failed (seen by a callback, which cannot
    /// return an error).
    pub fn check(&mut self) -> Result<(), IntakeError> {
        if let Some(error) = self.conversion_failed.take() {
            return Err(error.into());
        }
        if self.conversion_lost {
            return Err(IntakeError::ConversionLost);
        }
        if self.writer_gone {
            return Err(IntakeError::WriterGone);
        }
        Ok(())
    }

    /// Takes the batch being built to the conversion stage, after sending the one before it
    /// (waiting for its conversion).
    pub fn convert_built(&mut self) -> Result<(), IntakeError> {
        if self.conversion_lost {
            return Err(IntakeError::ConversionLost);
        }
        self.send_converted()?;
        let source = self.builder.take_presized();
        self.stage.submit(source)?;
        if !self.stage.overlaps() {
            // Converted already: nothing to wait for.
            self.send_converted()?;
        }
        Ok(())
    }

    /// Waits for the batch being converted, if any, and sends it to the writer — unless a
    /// rewind is due, which reads its messages again.
    pub fn send_converted(&mut self) -> Result<(), IntakeError> {
        match self.stage.take() {
            Some(converted) if !self.ledger.rewind_due() => self.send(converted?),
            Some(converted) => converted.map(drop).map_err(IntakeError::from),
            None => Ok(()),
        }
    }

    /// Applies the outcomes the writer has reported so far.
    pub fn settle<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), IntakeError> {
        loop {
            match self.outcomes.try_recv() {
                Ok(outcome) => self.apply(outcome, consumer, CommitMode::Async),
                Err(std_mpsc::TryRecvError::Empty) => return Ok(()),
                Err(std_mpsc::TryRecvError::Disconnected) => return self.gone(),
            }
        }
    }

    /// Blocks until the commit in flight, if any, is settled.
    fn wait_in_flight<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        mode: CommitMode,
    ) -> Result<(), IntakeError> {
        while self.ledger.in_flight() {
            match self.outcomes.recv() {
                Ok(outcome) => self.apply(outcome, consumer, mode),
                Err(_) => return self.gone(),
            }
        }
        Ok(())
    }

    fn gone(&mut self) -> Result<(), IntakeError> {
        self.writer_gone = true;
        Err(IntakeError::WriterGone)
    }

    fn apply<C: ConsumerContext>(
        &mut self,
        outcome: Outcome,
        consumer: &BaseConsumer<C>,
        mode: CommitMode,
    ) {
        match outcome {
            Outcome::Committed => {
                let moves = self.ledger.committed();
                if self.delivery != Delivery::Fastest {
                    commit_kafka(consumer, &moves, mode);
                }
            }
            Outcome::Discarded => {
                tracing::info!("a flush was rolled back; every partition resumes from where the database stands");
                self.ledger.failed();
            }
        }
    }

    /// Hands a converted batch to the writer.
    fn send(&mut self, batch: ConvertedBatch) -> Result<(), IntakeError> {
        if self.conversion_lost {
            return Err(IntakeError::ConversionLost);
        }
        self.ledger.sent(
            batch
                .next_offsets
                .iter()
                .map(|(t, p, n)| (t.as_str(), *p, *n)),
        );
        self.unplanned_bytes += batch.copy_text.len();
        let epoch = self.ledger.epoch();
        self.tell_writer(Command::Rows {
            epoch,
            batch: Box::new(batch),
        })
    }

    fn tell_writer(&mut self, command: Command) -> Result<(), IntakeError> {
        if self.commands.blocking_send(command).is_err() {
            return self.gone();
        }
        Ok(())
    }

    /// True when `policy` says the rows sent so far should be committed now.
    pub fn commit_due(&self, policy: &FlushPolicy, idle: bool) -> bool {
        self.ledger.has_pending()
            && (self.unplanned_bytes >= policy.buffer_size
                || (idle && policy.when_idle)
                || policy
                    .interval
                    .is_some_and(|i| self.last_commit.elapsed() >= i))
    }

    /// Settles the commit in flight, then hands the next one to the writer (if anything is
    /// pending). Does not wait for its outcome.
    pub fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), IntakeError> {
        self.commit_with(consumer, CommitMode::Async)
    }

    fn commit_with<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        mode: CommitMode,
    ) -> Result<(), IntakeError> {
        if self.conversion_lost {
            return Err(IntakeError::ConversionLost);
        }
        self.wait_in_flight(consumer, mode)?;
        let Some(moves) = self.ledger.plan() else {
            return Ok(());
        };
        self.unplanned_bytes = 0;
        self.last_commit = Instant::now();
        let epoch = self.ledger.epoch();
        self.tell_writer(Command::Commit { epoch, moves })
    }

    /// The final commit of the consume loop: sends the batch being converted, commits
    /// everything sent, waits for the outcome, and from then on lets revocations release
    /// partitions without committing.
    pub fn close<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), IntakeError> {
        let sent = self.send_converted();
        let result = self.commit_and_wait(consumer).and(sent);
        self.closed = true;
        result
    }

    /// Commits everything sent and waits for the outcome (at a revocation and at the end).
    pub fn commit_and_wait<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), IntakeError> {
        self.commit_with(consumer, CommitMode::Sync)?;
        self.wait_in_flight(consumer, CommitMode::Sync)
    }

    /// Carries out a rewind: drops the batch being built, then seeks every assigned partition
    /// to its stored offset or, without one, to where the ledger says its data started.
    pub fn rewind<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), IntakeError> {
        // Its outcome moves the stored offsets (or not); it must not be taken for a later one's.
        self.wait_in_flight(consumer, CommitMode::Async)?;
        let targets = self.ledger.rewind();
        self.builder.clear();
        if let Some(Err(error)) = self.stage.take() {
            return Err(error.into());
        }
        self.unplanned_bytes = 0;
        let stored = match &mut self.stored {
            Some(reader) => reader
                .read(&self.shutdown)
                .ok_or(IntakeError::ShuttingDown)?,
            None => HashMap::new(),
        };
        let mut positions = Vec::new();
        for resume in targets {
            let target = stored.get(&resume.partition).copied().or(resume.from);
            if let (true, Some(offset)) = (resume.must_seek(target), target) {
                seek(consumer, &resume.partition, offset, &self.shutdown)?;
            }
            positions.push((resume.partition.1, target));
            self.ledger.resumed(&resume.partition, target);
        }
        tracing::info!(
            epoch = self.ledger.epoch(),
            ?positions,
            "rewound: reading again from the stored offsets (none: nothing was read yet)"
        );
        Ok(())
    }

    /// Partitions are assigned: points `tpl` at their stored offsets (synchronized delivery)
    /// and records them. False when shutdown interrupted reading the stored offsets.
    pub fn assigned(&mut self, tpl: &mut TopicPartitionList) -> bool {
        let stored = match &mut self.stored {
            Some(reader) => match reader.read(&self.shutdown) {
                Some(stored) => stored,
                None => return false,
            },
            None => HashMap::new(),
        };
        let mut starts = Vec::new();
        for elem in tpl.elements() {
            let partition = (elem.topic().to_string(), elem.partition());
            let start = stored.get(&partition).copied();
            starts.push((partition, start));
        }
        for ((topic, partition), start) in starts.iter_mut() {
            if let Some(offset) = *start {
                if let Err(error) =
                    tpl.set_partition_offset(topic, *partition, Offset::Offset(offset))
                {
                    // Then the data starts wherever Kafka says; the fence refuses a commit that
                    // does not start at the stored offset, and the rewind seeks there.
                    tracing::error!(%error, topic, partition, "cannot set the start offset; reading from Kafka's position instead");
                    *start = None;
                }
            }
        }
        let shown: Vec<(&str, i32, Option<i64>)> = starts
            .iter()
            .map(|((t, p), start)| (t.as_str(), *p, *start))
            .collect();
        tracing::info!(partitions = ?shown, "assigned; starting from the offsets stored in PostgreSQL (none: Kafka's committed offset or auto.offset.reset)");
        self.ledger.assign(starts);
        self.log_holding();
        true
    }

    /// Logs every partition held now (an incremental rebalance names only those that move).
    fn log_holding(&self) {
        tracing::info!(partitions = ?self.ledger.partitions(), "holding");
    }

    /// Partitions are being revoked: their messages leave the batch being built, what the
    /// writer holds is committed first (not in fastest delivery, and not once the consume loop
    /// has made its final commit), then the ledger forgets them — a rewind follows if the
    /// writer still holds rows of them.
    pub fn revoked<C: ConsumerContext>(
        &mut self,
        partitions: Vec<Partition>,
        consumer: &BaseConsumer<C>,
    ) {
        tracing::info!(?partitions, "partitions revoked");
        if self.delivery != Delivery::Fastest {
            if self.stage.is_busy() {
                tracing::debug!(
                    "a batch is being converted; it is sent before the revocation's commit"
                );
            }
            match self.send_converted() {
                Ok(()) => {}
                Err(IntakeError::Conversion(error)) => {
                    tracing::error!(%error, "the batch being converted at the revocation failed; stopping");
                    self.conversion_failed = Some(error);
                    self.conversion_lost = true;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot send the batch being converted before the revocation")
                }
            }
            self.builder
                .retain(|t, p| !partitions.iter().any(|(rt, rp)| rt == t && *rp == p));
            if !self.closed && !self.writer_gone && self.ledger.revoke(&partitions) {
                if let Err(error) = self.commit_and_wait(consumer) {
                    tracing::warn!(%error, "cannot commit before the revocation");
                }
            }
        }
        if self.delivery == Delivery::Fastest {
            self.ledger.release_keeping_rows(&partitions);
        } else {
            self.ledger.forget(&partitions);
        }
        self.log_holding();
    }
}

/// Seeks `partition` to `offset`, retrying while librdkafka is still starting its fetcher.
fn seek<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    (topic, partition): &Partition,
    offset: i64,
    shutdown: &AtomicBool,
) -> Result<(), IntakeError> {
    let mut tries = 0;
    loop {
        match consumer.seek(
            topic,
            *partition,
            Offset::Offset(offset),
            Duration::from_secs(10),
        ) {
            Ok(()) => return Ok(()),
            Err(error) => {
                tries += 1;
                if shutdown.load(Ordering::Relaxed) {
                    return Err(IntakeError::ShuttingDown);
                }
                if tries >= SEEK_TRIES {
                    return Err(IntakeError::Seek {
                        topic: topic.clone(),
                        partition: *partition,
                        offset,
                        error: error.to_string(),
                    });
                }
                tracing::debug!(%error, topic, partition, offset, "seek refused; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Commits the flushed positions to Kafka: the position itself in guaranteed delivery, a copy
/// for lag tools in synchronized delivery.
fn commit_kafka<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    moves: &[OffsetMove],
    mode: CommitMode,
) {
    if moves.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for m in moves {
        if let Err(error) = tpl.add_partition_offset(&m.topic, m.partition, Offset::Offset(m.next))
        {
            tracing::warn!(%error, "cannot build the Kafka commit");
        }
    }
    if let Err(error) = consumer.commit(&tpl, mode) {
        tracing::debug!(%error, "Kafka offset commit failed (partitions may have moved)");
    }
}

#[cfg(test)]
mod tests {
    //! The conversion stage at the moments that matter, forced: a revocation and a rewind
    //! while a batch is being converted. The test plays the writer on the other end of the
    //! channels; the consumer talks to an in-process mock broker, for the Kafka commits.

    use std::sync::Arc;

    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::DefaultConsumerContext;
    use rdkafka::mocking::MockCluster;

    use super::*;
    use crate::batch::MessageRef;
    use crate::converter::tests::{hostile, hostile_tables, LIMITS};
    use crate::converter::{Converter, ConverterError};
    use crate::pending::ConverterId;
    use crate::writer::Stats;

    struct Rig {
        _cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
        intake: Intake,
        consumer: BaseConsumer<DefaultConsumerContext>,
        commands: mpsc::Receiver<Command>,
        outcomes: std_mpsc::Sender<Outcome>,
    }

    fn rig() -> Rig {
        let converter =
            Converter::new(hostile(), Vec::new(), hostile_tables(), LIMITS).expect("converter");
        let id = Arc::new(ConverterId::default());
        let stats = Arc::new(Stats::default());
        let stage = ConversionStage::start(converter, id, "t".into(), stats, Some("test".into()))
            .expect("stage");
        let (command_tx, commands) = mpsc::channel(8);
        let (outcomes, outcome_rx) = std_mpsc::channel();
        let shutdown = Arc::new(AtomicBool::new(false));
        let mut intake = Intake::new(
            stage,
            Delivery::Guaranteed,
            command_tx,
            outcome_rx,
            None,
            shutdown,
        );
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("t", 0);
        tpl.add_partition("t", 1);
        assert!(intake.assigned(&mut tpl));
        let cluster = MockCluster::new(1).expect("mock broker");
        cluster.create_topic("t", 2, 1).expect("topic");
        let consumer: BaseConsumer<DefaultConsumerContext> = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "intake-tests")
            .create()
            .expect("consumer");
        consumer.assign(&tpl).expect("assign");
        Rig {
            _cluster: cluster,
            intake,
            consumer,
            commands,
            outcomes,
        }
    }

    /// Admits `values` at offsets 0, 1, … of `t[partition]` and submits them for conversion.
    fn convert(intake: &mut Intake, partition: i32, values: &[&str]) {
        for (offset, value) in values.iter().enumerate() {
            assert!(intake.ledger.admit("t", partition, offset as i64));
            intake
                .builder
                .push(message(partition, offset as i64, value), []);
        }
        intake.convert_built().expect("submitted");
    }

    fn message(partition: i32, offset: i64, value: &str) -> MessageRef<'_> {
        MessageRef {
            topic: "t",
            partition,
            offset,
            timestamp: None,
            key: None,
            value: Some(value.as_bytes()),
        }
    }

    /// Plays the writer: records what reaches it and commits every commit.
    fn play_writer(
        mut commands: mpsc::Receiver<Command>,
        outcomes: std_mpsc::Sender<Outcome>,
    ) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while let Some(command) = commands.blocking_recv() {
                match command {
                    Command::Rows { batch, .. } => seen.push(format!("rows {}", batch.rows)),
                    Command::Commit { moves, .. } => {
                        let moved: Vec<_> = moves
                            .iter()
                            .map(|m| format!("{}[{}] {}..{}", m.topic, m.partition, m.from, m.next))
                            .collect();
                        seen.push(format!("commit {}", moved.join(", ")));
                        outcomes.send(Outcome::Committed).expect("outcome");
                    }
                    Command::Stop => break,
                }
            }
            seen
        })
    }

    /// A revocation while a batch is still converting waits for it, sends it, and commits it
    /// before the partitions go: nothing admitted is dropped, nothing is committed twice.
    #[test]
    fn revocation_while_converting_sends_and_commits_the_batch() {
        let r = rig();
        let (mut intake, consumer) = (r.intake, r.consumer);
        // Long enough that the revocation surely comes while it converts.
        convert(&mut intake, 0, &["sleep:300", "ok"]);
        assert!(intake.stage.is_busy());
        let writer = play_writer(r.commands, r.outcomes);
        intake.revoked(vec![("t".into(), 0), ("t".into(), 1)], &consumer);
        assert!(!intake.stage.is_busy());
        assert!(intake.ledger.partitions().is_empty());
        intake.check().expect("no failure");
        drop(intake);
        let seen = writer.join().expect("writer");
        assert_eq!(seen, ["rows 2", "commit t[0] 0..2"]);
    }

    /// A conversion that fails during a revocation loses admitted messages: from then on
    /// nothing is sent or committed — not the revocation's commit, not a later batch of the
    /// same partition (which would commit over the lost ones), not the final commit.
    #[test]
    fn conversion_lost_in_a_revocation_stops_every_commit() {
        let r = rig();
        let (mut intake, consumer) = (r.intake, r.consumer);
        let writer = play_writer(r.commands, r.outcomes);
        // Three single-message timeouts in a row: the converter is stuck.
        convert(&mut intake, 0, &["loop", "loop", "loop"]);
        intake.revoked(vec![("t".into(), 1)], &consumer);
        assert!(matches!(
            intake.check(),
            Err(IntakeError::Conversion(StageError::Converter(
                ConverterError::Stuck { .. }
            )))
        ));
        for offset in 3..5 {
            assert!(intake.ledger.admit("t", 0, offset));
            intake.builder.push(message(0, offset, "ok"), []);
        }
        assert!(matches!(
            intake.convert_built(),
            Err(IntakeError::ConversionLost)
        ));
        assert!(matches!(
            intake.close(&consumer),
            Err(IntakeError::ConversionLost)
        ));
        drop(intake);
        let seen = writer.join().expect("writer");
        assert!(seen.is_empty(), "nothing reached the writer: {seen:?}");
    }

    /// A batch whose conversion ends after a rewind became due is dropped, not sent: the
    /// rewind reads its messages again.
    #[test]
    fn converted_batch_after_a_failed_commit_is_dropped() {
        let Rig {
            mut intake,
            mut commands,
            ..
        } = rig();
        convert(&mut intake, 1, &["sleep:100"]);
        intake.ledger.failed();
        intake.send_converted().expect("no failure");
        assert!(!intake.stage.is_busy());
        assert!(commands.try_recv().is_err(), "nothing reached the writer");
    }
}
