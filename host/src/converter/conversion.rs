//! Converting a batch and checking what comes back: a converter that survives its own traps
//! (retrying the batch message by message on fresh instances, so only the guilty messages
//! fail) and attributes every row to the message it came from.

use super::attribution::{attribute, Conversion};
use super::bindings::Table;
use super::error::ConverterError;
use super::instance::ConverterInstance;
use super::runtime::ConverterComponent;
use super::sandbox::ConverterLimits;
use crate::batch::BatchBuilder;

/// Single-message timeouts in a row after which a converter is declared stuck.
const STUCK_AFTER_TIMEOUTS: u32 = 3;

/// A configured converter that survives its own traps.
pub struct Converter {
    component: ConverterComponent,
    settings: Vec<(String, String)>,
    tables: Vec<Table>,
    limits: ConverterLimits,
    instance: ConverterInstance,
    /// Single messages in a row that timed out, across batches (a converter
    /// that times out on everything must be caught even when every batch
    /// holds one or two messages).
    timeouts: u32,
    /// Per table, whether the sink applies its rows by key: deletes are allowed, and every
    /// row needs its key.
    keyed: Vec<bool>,
}

impl Converter {
    /// Instantiates and configures `component` within `limits`.
    pub fn new(
        component: ConverterComponent,
        settings: Vec<(String, String)>,
        tables: Vec<Table>,
        limits: ConverterLimits,
    ) -> Result<Self, ConverterError> {
        let instance = component.instantiate(&settings, &tables, limits)?;
        Ok(Converter {
            component,
            settings,
            tables,
            limits,
            instance,
            timeouts: 0,
            keyed: Vec::new(),
        })
    }

    /// This converter, for a sink that applies the rows of each table by key or not (write
    /// mode upsert or ignore), in table order.
    pub fn keyed(self, keyed: Vec<bool>) -> Self {
        Converter { keyed, ..self }
    }

    /// The converter's `name version`.
    pub fn label(&self) -> String {
        let info = self.instance.info();
        format!("{} {}", info.name, info.version)
    }

    /// Converts `batch`. If the converter traps, the batch is retried one message
    /// at a time on fresh instances, so only the messages that trap fail.
    /// An error means the converter cannot even be instantiated again.
    pub fn convert(&mut self, batch: &BatchBuilder) -> Result<Conversion, ConverterError> {
        if batch.is_empty() {
            return Ok(Conversion::default());
        }
        match self.instance.convert(batch.batch()) {
            Ok(converted) => {
                self.timeouts = 0;
                Ok(attribute(
                    converted,
                    batch.len(),
                    self.instance.tables(),
                    &self.keyed,
                ))
            }
            Err(trap) => {
                tracing::warn!(converter = %self.label(), error = %trap, messages = batch.len(),
                    "converter trapped; retrying the batch one message at a time");
                self.renew()?;
                self.convert_one_by_one(batch)
            }
        }
    }

    fn renew(&mut self) -> Result<(), ConverterError> {
        self.instance = self
            .component
            .instantiate(&self.settings, &self.tables, self.limits)?;
        Ok(())
    }

    fn convert_one_by_one(&mut self, batch: &BatchBuilder) -> Result<Conversion, ConverterError> {
        let mut all = Conversion::default();
        for i in 0..batch.len() {
            match self.instance.convert(batch.single(i).batch()) {
                Ok(converted) => {
                    self.timeouts = 0;
                    let one = attribute(converted, 1, self.instance.tables(), &self.keyed);
                    all.extend_one(i, one);
                }
                Err(trap) => {
                    if matches!(trap, ConverterError::Timeout { .. }) {
                        self.timeouts += 1;
                        if self.timeouts >= STUCK_AFTER_TIMEOUTS {
                            return Err(ConverterError::Stuck {
                                converter: self.label(),
                                timeouts: self.timeouts,
                            });
                        }
                    }
                    all.failed.push((i, trap.to_string()));
                    all.faults += 1;
                    self.renew()?;
                }
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    mod hostile {
        use crate::converter::tests::{batch, hostile, hostile_tables, LIMITS};
        use crate::converter::Converter;
        use crate::converter::ConverterError;

        fn converter() -> Converter {
            Converter::new(hostile(), Vec::new(), hostile_tables(), LIMITS).expect("converter")
        }

        /// A batch mixing good messages with every kind of converter fault: each faulty
        /// message fails alone with a reason naming its cause, the good ones keep their rows
        /// in order, and every message is accounted for exactly once.
        #[test]
        fn sandbox_hostile_messages_fail_alone() {
            let values = [
                "m0",
                "loop",
                "m2",
                "alloc",
                "m4",
                "trap",
                "m6",
                "stack",
                "m8",
                "exit",
                "fail",
                "m11",
                "sleep:600000",
                "m13",
            ];
            let t0 = std::time::Instant::now();
            let c = converter()
                .convert(&batch(&values))
                .expect("no stuck converter");
            // Not a speed target: the ten-minute sleep must have been cut short (a loaded
            // 2-core machine takes up to ~30 s for this batch; unbounded it takes 10 min).
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(120),
                "{:?}",
                t0.elapsed()
            );
            assert_eq!(
                String::from_utf8(c.copy_text).unwrap(),
                "0\tm0\tok\n2\tm2\tok\n4\tm4\tok\n6\tm6\tok\n8\tm8\tok\n11\tm11\tok\n13\tm13\tok\n"
            );
            assert_eq!(c.rows, 7);
            assert_eq!(c.row_messages, [0, 2, 4, 6, 8, 11, 13]);
            let failed: Vec<usize> = c.failed.iter().map(|(i, _)| *i).collect();
            assert_eq!(failed, [1, 3, 5, 7, 9, 10, 12]);
            let reason = |i: usize| &c.failed.iter().find(|(j, _)| *j == i).unwrap().1;
            for (i, word) in [
                (1, "plugin.timeout.ms"),
                (3, "plugin.memory.mb"),
                (5, "trapped"),
                (7, "trapped"),
                (9, "exit status 1"),
                (10, "failing this message on purpose"),
                (12, "plugin.timeout.ms"),
            ] {
                assert!(reason(i).contains(word), "message {i}: {}", reason(i));
            }
            assert_eq!(c.faults, 6, "a rejected message is not a converter fault");
        }

        /// Three messages in a row that time out mean the converter cannot make progress:
        /// the whole batch is an error (nothing of it is loaded or dead-lettered).
        #[test]
        fn sandbox_three_timeouts_in_a_row_are_stuck() {
            let error = converter()
                .convert(&batch(&["m0", "loop", "loop", "loop", "m4"]))
                .expect_err("stuck");
            assert!(
                matches!(error, ConverterError::Stuck { timeouts: 3, .. }),
                "{error:?}"
            );
            assert!(
                error.to_string().contains("cannot make progress"),
                "{error}"
            );
        }

        /// The timeouts in a row are counted across batches: a converter that times out on
        /// every message is stuck even when each batch holds a single message, and a message
        /// converted in between starts the count again.
        #[test]
        fn sandbox_timeouts_in_a_row_count_across_batches() {
            let mut c = converter();
            for _ in 0..2 {
                let one = c.convert(&batch(&["loop"])).expect("one timeout");
                assert_eq!(one.failed.len(), 1);
            }
            assert!(c.convert(&batch(&["m"])).is_ok());
            for _ in 0..2 {
                assert!(
                    c.convert(&batch(&["loop"])).is_ok(),
                    "the count started again"
                );
            }
            let error = c
                .convert(&batch(&["loop"]))
                .expect_err("the third in a row");
            assert!(
                matches!(error, ConverterError::Stuck { timeouts: 3, .. }),
                "{error:?}"
            );
        }

        /// A converter that leaks memory message after message runs out of memory now and
        /// then: the message that hits the cap fails with a memory reason, the instance is
        /// renewed, and no message is lost or converted twice.
        #[test]
        fn sandbox_a_leaking_converter_loses_no_message() {
            let values = ["leak"; 20];
            let c = converter().convert(&batch(&values)).expect("converts");
            assert_eq!(c.rows as usize + c.failed.len(), 20);
            let mut seen: Vec<usize> = c.row_messages.iter().map(|&i| i as usize).collect();
            seen.extend(c.failed.iter().map(|(i, _)| *i));
            seen.sort_unstable();
            assert_eq!(seen, (0..20).collect::<Vec<_>>());
            assert!(c.rows >= 10, "{} rows", c.rows);
            for (i, reason) in &c.failed {
                assert!(
                    reason.contains("ran out of memory"),
                    "message {i}: {reason}"
                );
            }
        }
    }
}
