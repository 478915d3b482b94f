//! The conversion stage: a thread per pipeline that converts one batch while the consume
//! thread polls the next, so that one pipeline keeps two cores busy where the machine has them.
//!
//! It is a coprocessor, not a decision maker: the consume thread submits a batch of admitted
//! messages and later takes its conversion back, and only then sends it to the writer. So
//! every delivery decision (send, commit, rewind, revocation) is still made on the consume
//! thread, in order; the stage only makes a batch's conversion overlap the next batch's
//! polling. At most one batch is in the stage: the consume thread takes it back before it
//! submits another, before a commit that must include it (a revocation, a converter swap,
//! the final commit), and before a rewind (which drops it).
//!
//! The thread pays only where a core is free for it: with as many tasks as cores (or more),
//! each pipeline converts on its consume thread instead ("inline"), through the same
//! interface — measured in BENCHMARKS.md, four busy threads on two cores cost more than they
//! overlap.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::batch::BatchBuilder;
use crate::converter::{Converter, ConverterError};
use crate::pending::{ConvertedBatch, ConverterId};
use crate::postgres::DeadLetter;
use crate::writer::Stats;

/// Why a batch came back without a conversion.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The converter failed beyond one message: it cannot be instantiated again after a
    /// trap, or it is stuck (one timeout after another).
    #[error(transparent)]
    Converter(#[from] ConverterError),
    /// The stage's thread ended (it panicked); nothing more can be converted.
    #[error("the conversion thread stopped")]
    Stopped,
}

enum Job {
    Convert(BatchBuilder),
    /// From the next batch on, convert with this converter.
    Swap(Box<Converter>, Arc<ConverterId>),
}

type Done = Result<ConvertedBatch, ConverterError>;

/// See the module documentation.
pub struct ConversionStage {
    mode: Mode,
    in_flight: bool,
}

enum Mode {
    /// Converting on the stage's own thread.
    Threaded {
        jobs: SyncSender<Job>,
        done: Receiver<Done>,
    },
    /// Converting on the caller's thread, when it submits: the machine has no core to spare.
    Inline {
        worker: Box<Worker>,
        /// Boxed: a converted batch is large, and a stage is built once.
        done: Option<Box<Done>>,
    },
}

impl ConversionStage {
    /// Starts the stage converting with `converter` on a thread named `thread`, or, with
    /// `None`, on the caller's thread; `sink` names the sink in metrics, `stats` counts the
    /// messages converted.
    pub fn start(
        converter: Converter,
        id: Arc<ConverterId>,
        sink: String,
        stats: Arc<Stats>,
        thread: Option<String>,
    ) -> std::io::Result<Self> {
        let mut worker = Worker {
            converter,
            id,
            sink,
            stats,
        };
        let Some(name) = thread else {
            return Ok(ConversionStage {
                mode: Mode::Inline {
                    worker: Box::new(worker),
                    done: None,
                },
                in_flight: false,
            });
        };
        let (jobs, inbox) = sync_channel(1);
        let (outbox, done) = sync_channel(1);
        std::thread::Builder::new().name(name).spawn(move || {
            // Ends when the stage is dropped (its sender with it).
            while let Ok(job) = inbox.recv() {
                match job {
                    Job::Convert(source) => {
                        if outbox.send(worker.convert(source)).is_err() {
                            return;
                        }
                    }
                    Job::Swap(converter, id) => {
                        worker.converter = *converter;
                        worker.id = id;
                    }
                }
            }
        })?;
        Ok(ConversionStage {
            mode: Mode::Threaded { jobs, done },
            in_flight: false,
        })
    }

    /// True when conversions overlap the caller's work (the stage has its own thread).
    pub fn overlaps(&self) -> bool {
        matches!(self.mode, Mode::Threaded { .. })
    }

    /// True while a submitted batch has not been taken back.
    pub fn is_busy(&self) -> bool {
        self.in_flight
    }

    /// Hands `source` to the stage; the previous batch must have been taken back.
    pub fn submit(&mut self, source: BatchBuilder) -> Result<(), StageError> {
        assert!(!self.in_flight, "a batch is already being converted");
        match &mut self.mode {
            Mode::Threaded { jobs, .. } => jobs
                .send(Job::Convert(source))
                .map_err(|_| StageError::Stopped)?,
            Mode::Inline { worker, done } => *done = Some(Box::new(worker.convert(source))),
        }
        self.in_flight = true;
        Ok(())
    }

    /// Waits for the batch in the stage, if any, and takes it back.
    pub fn take(&mut self) -> Option<Result<ConvertedBatch, StageError>> {
        if !std::mem::take(&mut self.in_flight) {
            return None;
        }
        let done = match &mut self.mode {
            Mode::Threaded { done, .. } => done.recv().ok(),
            Mode::Inline { done, .. } => done.take().map(|d| *d),
        };
        Some(match done {
            Some(done) => done.map_err(StageError::from),
            None => Err(StageError::Stopped),
        })
    }

    /// Converts every batch submitted from now on with `converter`.
    pub fn swap(&mut self, converter: Converter, id: Arc<ConverterId>) -> Result<(), StageError> {
        match &mut self.mode {
            Mode::Threaded { jobs, .. } => jobs
                .send(Job::Swap(Box::new(converter), id))
                .map_err(|_| StageError::Stopped),
            Mode::Inline { worker, .. } => {
                worker.converter = converter;
                worker.id = id;
                Ok(())
            }
        }
    }
}

/// The stage's thread's state.
struct Worker {
    converter: Converter,
    id: Arc<ConverterId>,
    sink: String,
    stats: Arc<Stats>,
}

impl Worker {
    /// Converts `source` and turns failures into dead letters.
    fn convert(&mut self, source: BatchBuilder) -> Done {
        let started = Instant::now();
        let conversion = self.converter.convert(&source)?;
        crate::metrics::converted(&self.sink, source.len() as u64, started.elapsed());
        self.stats
            .messages
            .fetch_add(source.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let converter = &self.id.label;
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
            runs: conversion.runs,
            messages: source.len() as u64,
            dead_letters,
            next_offsets: next_offsets(&source),
            source,
            converter: self.id.clone(),
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
    use crate::batch::MessageRef;
    use crate::converter::tests::{batch, hostile, hostile_tables, LIMITS};

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

    fn converter() -> Converter {
        Converter::new(hostile(), Vec::new(), hostile_tables(), LIMITS).expect("instantiate")
    }

    fn id(version: u64) -> Arc<ConverterId> {
        Arc::new(ConverterId {
            label: format!("hostile v{version}"),
            hash: "h".into(),
            version,
        })
    }

    fn stage(threaded: bool) -> ConversionStage {
        let stats = Arc::new(Stats::default());
        let thread = threaded.then(|| "test-stage".to_string());
        let stage = ConversionStage::start(converter(), id(0), "test".into(), stats, thread)
            .expect("start the stage");
        assert_eq!(stage.overlaps(), threaded);
        stage
    }

    /// A batch comes back converted, once, with its dead letters and offsets; the caller is
    /// free while it converts (the stage is busy until the batch is taken back).
    #[test]
    fn stage_converts_one_batch_at_a_time() {
        for threaded in [true, false] {
            converts_one_batch_at_a_time(stage(threaded));
        }
    }

    fn converts_one_batch_at_a_time(mut stage: ConversionStage) {
        assert!(stage.take().is_none(), "nothing submitted, nothing to take");
        stage.submit(batch(&["sleep:50", "fail", "ok"])).unwrap();
        assert!(stage.is_busy());
        let converted = stage.take().expect("submitted").expect("converted");
        assert!(!stage.is_busy());
        assert!(stage.take().is_none(), "taken once");
        assert_eq!((converted.messages, converted.rows), (3, 2));
        assert_eq!(converted.row_messages, [0, 2]);
        assert_eq!(converted.dead_letters.len(), 1);
        assert_eq!(converted.next_offsets, [("t".to_string(), 0, 3)]);
        assert_eq!(converted.converter.version, 0);
    }

    /// Batches submitted after a swap are converted by the new converter, the one before it
    /// by the old one.
    #[test]
    fn stage_swaps_between_batches() {
        for threaded in [true, false] {
            swaps_between_batches(stage(threaded));
        }
    }

    fn swaps_between_batches(mut stage: ConversionStage) {
        stage.submit(batch(&["ok"])).unwrap();
        stage.swap(converter(), id(1)).unwrap();
        let before = stage.take().unwrap().unwrap();
        stage.submit(batch(&["ok"])).unwrap();
        let after = stage.take().unwrap().unwrap();
        assert_eq!((before.converter.version, after.converter.version), (0, 1));
    }

    #[test]
    #[should_panic(expected = "already being converted")]
    fn stage_refuses_a_second_batch_in_flight() {
        let mut stage = stage(true);
        stage.submit(batch(&["ok"])).unwrap();
        let _ = stage.submit(batch(&["ok"]));
    }
}
