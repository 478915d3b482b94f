//! Converting a batch through a plugin and checking what comes back.

use memchr::memchr_iter;

use crate::batch::BatchBuilder;
use crate::bindings::{Column, Converted, Outcome};
use crate::converter::{ConverterInstance, Plugin, PluginError, PluginLimits};

/// Single-message timeouts in a row after which a converter is declared stuck.
const STUCK_AFTER_TIMEOUTS: u32 = 3;
use crate::copy_rows::check_rows;

/// The checked result of converting one batch.
#[derive(Debug, Default)]
pub struct Conversion {
    /// COPY text of the rows to load, in message order.
    pub copy_text: Vec<u8>,
    /// Number of rows in `copy_text`.
    pub rows: u64,
    /// For each row of `copy_text`, the index of the message it came from.
    pub row_messages: Vec<u32>,
    /// Messages that failed: their index in the batch and the reason.
    pub failed: Vec<(usize, String)>,
    /// How many of the failures are the converter's own fault (a trap, a
    /// timeout, malformed output) rather than a message it rejected.
    pub faults: usize,
}

/// A configured converter that survives plugin traps.
pub struct Converter {
    plugin: Plugin,
    settings: Vec<(String, String)>,
    columns: Vec<Column>,
    limits: PluginLimits,
    instance: ConverterInstance,
}

impl Converter {
    /// Instantiates and configures `plugin` within `limits`.
    pub fn new(
        plugin: Plugin,
        settings: Vec<(String, String)>,
        columns: Vec<Column>,
        limits: PluginLimits,
    ) -> Result<Self, PluginError> {
        let instance = plugin.instantiate(&settings, &columns, limits)?;
        Ok(Converter {
            plugin,
            settings,
            columns,
            limits,
            instance,
        })
    }

    /// The plugin this converter runs.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// The converter's `name version`.
    pub fn label(&self) -> String {
        let info = self.instance.info();
        format!("{} {}", info.name, info.version)
    }

    /// Converts `batch`. If the plugin traps, the batch is retried one message
    /// at a time on fresh instances, so only the messages that trap fail.
    /// An error means the plugin cannot even be instantiated again.
    pub fn convert(&mut self, batch: &BatchBuilder) -> Result<Conversion, PluginError> {
        if batch.is_empty() {
            return Ok(Conversion::default());
        }
        match self.instance.convert(batch.batch()) {
            Ok(converted) => Ok(check(converted, batch.len(), self.instance.columns())),
            Err(trap) => {
                tracing::warn!(plugin = %self.label(), error = %trap, messages = batch.len(),
                    "converter trapped; retrying the batch one message at a time");
                self.renew()?;
                self.convert_one_by_one(batch)
            }
        }
    }

    fn renew(&mut self) -> Result<(), PluginError> {
        self.instance = self
            .plugin
            .instantiate(&self.settings, &self.columns, self.limits)?;
        Ok(())
    }

    fn convert_one_by_one(&mut self, batch: &BatchBuilder) -> Result<Conversion, PluginError> {
        let mut all = Conversion::default();
        let mut timeouts = 0;
        for i in 0..batch.len() {
            match self.instance.convert(batch.single(i).batch()) {
                Ok(converted) => {
                    timeouts = 0;
                    let one = check(converted, 1, self.instance.columns());
                    all.copy_text.extend_from_slice(&one.copy_text);
                    all.rows += one.rows;
                    all.row_messages
                        .extend(one.row_messages.iter().map(|_| i as u32));
                    all.failed
                        .extend(one.failed.into_iter().map(|(_, r)| (i, r)));
                    all.faults += one.faults;
                }
                Err(trap) => {
                    if matches!(trap, PluginError::Timeout { .. }) {
                        timeouts += 1;
                        if timeouts >= STUCK_AFTER_TIMEOUTS {
                            return Err(PluginError::Stuck {
                                plugin: self.label(),
                                timeouts,
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

/// Attributes the rows of `converted` to its `messages` and keeps the well-formed ones.
fn check(converted: Converted, messages: usize, columns: usize) -> Conversion {
    let Converted {
        copy_text,
        outcomes,
    } = converted;
    let fail_all = |reason: String| Conversion {
        failed: (0..messages).map(|i| (i, reason.clone())).collect(),
        faults: messages,
        ..Conversion::default()
    };
    if outcomes.len() != messages {
        return fail_all(format!(
            "the converter returned {} outcomes for {messages} messages",
            outcomes.len()
        ));
    }
    let declared: u64 = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Rows(n) => u64::from(*n),
            Outcome::Failed(_) => 0,
        })
        .sum();
    let written = memchr_iter(b'\n', &copy_text).count() as u64;
    if declared != written || copy_text.last().is_some_and(|&b| b != b'\n') {
        return fail_all(format!(
            "the converter declared {declared} rows but wrote {written} lines"
        ));
    }
    let mut out = Conversion {
        rows: declared,
        row_messages: Vec::with_capacity(declared as usize),
        ..Conversion::default()
    };
    let mut newlines = memchr_iter(b'\n', &copy_text);
    let mut start = 0;
    let mut kept = 0; // bytes of copy_text known good and not yet moved
    let mut clean = true;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Outcome::Failed(reason) => out.failed.push((i, reason)),
            Outcome::Rows(0) => {}
            Outcome::Rows(n) => {
                let end = newlines.nth(n as usize - 1).expect("counted above") + 1;
                let rows = &copy_text[start..end];
                let checked = check_rows(rows, columns);
                if checked.is_ok() {
                    out.row_messages
                        .extend(std::iter::repeat_n(i as u32, n as usize));
                }
                match checked {
                    Ok(()) if clean => kept = end,
                    Ok(()) => out.copy_text.extend_from_slice(rows),
                    Err(reason) => {
                        if clean {
                            out.copy_text.extend_from_slice(&copy_text[..kept]);
                            clean = false;
                        }
                        out.rows -= u64::from(n);
                        out.failed.push((i, reason));
                        out.faults += 1;
                    }
                }
                start = end;
            }
        }
    }
    if clean {
        out.copy_text = copy_text;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converted(text: &str, outcomes: Vec<Outcome>) -> Converted {
        Converted {
            copy_text: text.as_bytes().to_vec(),
            outcomes,
        }
    }

    #[test]
    fn clean_output_is_kept_whole() {
        let c = check(
            converted(
                "a\tb\nc\td\ne\tf\n",
                vec![Outcome::Rows(2), Outcome::Rows(0), Outcome::Rows(1)],
            ),
            3,
            2,
        );
        assert_eq!(c.copy_text, b"a\tb\nc\td\ne\tf\n");
        assert_eq!(c.rows, 3);
        assert_eq!(c.row_messages, [0, 0, 2]);
        assert!(c.failed.is_empty());
    }

    #[test]
    fn a_malformed_row_fails_only_its_message() {
        let c = check(
            converted(
                "a\tb\nbad\nc\td\n",
                vec![
                    Outcome::Rows(1),
                    Outcome::Rows(1),
                    Outcome::Failed("nope".into()),
                    Outcome::Rows(1),
                ],
            ),
            4,
            2,
        );
        assert_eq!(c.copy_text, b"a\tb\nc\td\n");
        assert_eq!(c.rows, 2);
        assert_eq!(c.row_messages, [0, 3]);
        assert_eq!(c.failed.len(), 2);
        assert_eq!(c.failed[0].0, 1);
        assert!(c.failed[0].1.contains("1 fields for 2"));
        assert_eq!(c.failed[1], (2, "nope".to_string()));
        assert_eq!(c.faults, 1, "a rejected message is not a converter fault");
    }

    #[test]
    fn mismatched_accounting_fails_the_whole_batch() {
        let c = check(
            converted("a\tb\nc\td\n", vec![Outcome::Rows(1), Outcome::Rows(0)]),
            2,
            2,
        );
        assert!(c.copy_text.is_empty());
        assert_eq!(c.failed.len(), 2);
        assert!(c.failed[0].1.contains("declared 1 rows but wrote 2 lines"));
        let c = check(converted("a\tb\n", vec![Outcome::Rows(1)]), 2, 2);
        assert!(c.failed[1].1.contains("1 outcomes for 2 messages"));
        let c = check(converted("a\tb\nc", vec![Outcome::Rows(1)]), 1, 2);
        assert_eq!(c.failed.len(), 1);
    }
}
