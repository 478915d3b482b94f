//! Attributing what a converter returned: every row to the message it came from and the table
//! it is for, keeping a message's rows only when all of them are well formed and allowed.
//!
//! The converter is untrusted, so nothing it declares is taken on faith: the outcomes must
//! account for every message, the declared row counts must match the lines written, the runs
//! (table and operation per row) must cover exactly those lines, and each row must fit its
//! table ([`check_rows`]) and its operation (an upsert or a delete needs its key). A broken
//! account fails the whole batch (nothing can be attributed); a broken row fails its message.

use memchr::memchr_iter;

use super::bindings::{Converted, Operation, Outcome, RowRun, Table};
use super::output::{check_rows, null_field};

/// The checked result of converting one batch.
#[derive(Debug, Default)]
pub struct Conversion {
    /// COPY text of the rows to load, in message order.
    pub copy_text: Vec<u8>,
    /// Number of rows in `copy_text`.
    pub rows: u64,
    /// For each row of `copy_text`, the index of the message it came from.
    pub row_messages: Vec<u32>,
    /// The table and operation of the rows of `copy_text`, as runs in row order; empty when
    /// every row is an insert into the first table.
    pub runs: Vec<RowRun>,
    /// Messages that failed: their index in the batch and the reason.
    pub failed: Vec<(usize, String)>,
    /// How many of the failures are the converter's own fault (a trap, a
    /// timeout, malformed output) rather than a message it rejected.
    pub faults: usize,
}

impl Conversion {
    /// Appends the conversion of a single message, `message` of the batch.
    pub fn extend_one(&mut self, message: usize, one: Conversion) {
        if !one.runs.is_empty() && self.runs.is_empty() && self.rows > 0 {
            self.runs.push(insert_run(self.rows as u32));
        }
        for run in one.runs.iter().copied() {
            push_run(&mut self.runs, run);
        }
        if one.runs.is_empty() && !self.runs.is_empty() && one.rows > 0 {
            push_run(&mut self.runs, insert_run(one.rows as u32));
        }
        self.copy_text.extend_from_slice(&one.copy_text);
        self.rows += one.rows;
        self.row_messages
            .extend(one.row_messages.iter().map(|_| message as u32));
        self.failed
            .extend(one.failed.into_iter().map(|(_, r)| (message, r)));
        self.faults += one.faults;
    }
}

/// Attributes the rows of `converted` to its `messages` and `tables`, keeping the messages
/// whose rows are all well formed and applicable. An appending table (`keyed[table]` false or
/// absent) loads an `insert` or `upsert` row as it is (an upsert into a table with a key needs
/// its key) and fails a message with a `delete`; a table written by key takes every
/// operation, and every row needs its key. Only a broken contract counts as the
/// converter's fault: a row the sink cannot apply is the message's.
pub fn attribute(
    converted: Converted,
    messages: usize,
    tables: &[Table],
    keyed: &[bool],
) -> Conversion {
    let Converted {
        copy_text,
        runs,
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
    let mut runs = match Runs::new(runs, declared) {
        Ok(runs) => runs,
        Err(reason) => return fail_all(reason),
    };
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
                let mut checked = Ok(());
                // The message's runs go straight into the output, undone if it fails.
                let runs_before = (out.runs.len(), out.runs.last().map(|r| r.count));
                let mut segment_start = start;
                let mut row = 1;
                let mut left = n;
                while left > 0 {
                    let (run, take) = runs.take(left);
                    let end = newlines.nth(take as usize - 1).expect("counted above") + 1;
                    if checked.is_ok() {
                        checked =
                            check_run(&copy_text[segment_start..end], run, row, tables, keyed);
                        push_run(&mut out.runs, run);
                    }
                    segment_start = end;
                    row += take;
                    left -= take;
                }
                let end = segment_start;
                let rows = &copy_text[start..end];
                if checked.is_ok() {
                    out.row_messages
                        .extend(std::iter::repeat_n(i as u32, n as usize));
                } else {
                    out.runs.truncate(runs_before.0);
                    if let (Some(last), Some(count)) = (out.runs.last_mut(), runs_before.1) {
                        last.count = count;
                    }
                }
                match checked {
                    Ok(()) if clean => kept = end,
                    Ok(()) => out.copy_text.extend_from_slice(rows),
                    Err(refusal) => {
                        if clean {
                            out.copy_text.extend_from_slice(&copy_text[..kept]);
                            clean = false;
                        }
                        out.rows -= u64::from(n);
                        if let Refusal::Fault(_) = refusal {
                            out.faults += 1;
                        }
                        out.failed.push((i, refusal.into_reason()));
                    }
                }
                start = end;
            }
        }
    }
    if clean {
        out.copy_text = copy_text;
    }
    if out.runs.iter().all(|r| *r == insert_run(r.count)) {
        out.runs.clear();
    }
    out
}

/// A run of `count` inserts into the first table.
fn insert_run(count: u32) -> RowRun {
    RowRun {
        count,
        table: 0,
        operation: Operation::Insert,
    }
}

/// Appends `run`, merged into the last run when it has the same table and operation.
fn push_run(runs: &mut Vec<RowRun>, run: RowRun) {
    match runs.last_mut() {
        Some(last) if last.table == run.table && last.operation == run.operation => {
            last.count += run.count
        }
        _ => runs.push(run),
    }
}

/// The runs of a batch, consumed row by row.
struct Runs {
    runs: std::vec::IntoIter<RowRun>,
    current: RowRun,
}

impl Runs {
    /// Checks that `runs` cover exactly `rows` rows; no runs: every row inserts into table 0.
    fn new(runs: Vec<RowRun>, rows: u64) -> Result<Runs, String> {
        let runs = if runs.is_empty() && rows > 0 {
            vec![RowRun {
                count: u32::try_from(rows).unwrap_or(u32::MAX),
                table: 0,
                operation: Operation::Insert,
            }]
        } else {
            runs
        };
        let covered: u64 = runs.iter().map(|r| u64::from(r.count)).sum();
        if covered != rows || runs.iter().any(|r| r.count == 0) {
            return Err(format!(
                "the converter described {covered} rows in its runs (or an empty run) but wrote {rows}"
            ));
        }
        Ok(Runs {
            runs: runs.into_iter(),
            current: RowRun {
                count: 0,
                table: 0,
                operation: Operation::Insert,
            },
        })
    }

    /// The run of the next rows and how many of them (at most `wanted`) it covers.
    fn take(&mut self, wanted: u32) -> (RowRun, u32) {
        if self.current.count == 0 {
            self.current = self.runs.next().expect("runs cover every row");
        }
        let take = wanted.min(self.current.count);
        self.current.count -= take;
        (
            RowRun {
                count: take,
                ..self.current
            },
            take,
        )
    }
}

/// Why the rows of a message are not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// The converter broke the contract (a malformed row, an undeclared table): its fault.
    Fault(String),
    /// Well-formed rows the sink cannot apply (a delete in an append-only sink, an upsert
    /// without its key): the message's fault, not the converter's.
    Rejected(String),
}

impl Refusal {
    fn into_reason(self) -> String {
        match self {
            Refusal::Fault(reason) | Refusal::Rejected(reason) => reason,
        }
    }
}

/// Checks the rows of one run inside a message: `first_row` numbers them in the message;
/// `keyed`: per table, whether the sink applies its rows by key.
fn check_run(
    text: &[u8],
    run: RowRun,
    first_row: u32,
    tables: &[Table],
    keyed: &[bool],
) -> Result<(), Refusal> {
    let keyed = keyed.get(run.table as usize).copied().unwrap_or(false);
    let Some(table) = tables.get(run.table as usize) else {
        return Err(Refusal::Fault(format!(
            "the converter sent row {first_row} to table {} but the sink writes {}",
            run.table,
            match tables.len() {
                1 => "1 table (index 0)".to_string(),
                n => format!("{n} tables (0 to {})", n - 1),
            }
        )));
    };
    check_rows(text, table.columns.len()).map_err(Refusal::Fault)?;
    let operation = match run.operation {
        Operation::Delete if !keyed => {
            return Err(Refusal::Rejected(format!(
                "row {first_row} is a delete, and db.write.mode = \"append\" only appends rows \
                 to \"{}\".\"{}\" (upsert or ignore apply deletes)",
                table.schema, table.name
            )))
        }
        Operation::Insert if !keyed => return Ok(()),
        Operation::Insert | Operation::Upsert => "an upsert",
        Operation::Delete => "a delete",
    };
    for (n, row) in text[..text.len() - 1].split(|&b| b == b'\n').enumerate() {
        if let Some(column) = table.key.iter().find(|&&k| null_field(row, k as usize)) {
            return Err(Refusal::Rejected(format!(
                "row {} is {operation} with NULL in the key column {}",
                first_row as usize + n,
                table.columns[*column as usize].name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::converter::bindings::Column;

    fn table(columns: &[&str], key: &[u32]) -> Table {
        Table {
            schema: "public".into(),
            name: "t".into(),
            columns: columns
                .iter()
                .map(|c| Column {
                    name: c.to_string(),
                    type_name: None,
                })
                .collect(),
            key: key.to_vec(),
        }
    }

    fn converted(text: &str, runs: Vec<RowRun>, outcomes: Vec<Outcome>) -> Converted {
        Converted {
            copy_text: text.as_bytes().to_vec(),
            runs,
            outcomes,
        }
    }

    fn run(count: u32, table: u32, operation: Operation) -> RowRun {
        RowRun {
            count,
            table,
            operation,
        }
    }

    fn check(converted: Converted, messages: usize, columns: usize) -> Conversion {
        let names: Vec<String> = (0..columns).map(|c| format!("c{c}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        attribute(converted, messages, &[table(&names, &[])], &[false])
    }

    #[test]
    fn clean_output_is_kept_whole() {
        let c = check(
            converted(
                "a\tb\nc\td\ne\tf\n",
                vec![],
                vec![Outcome::Rows(2), Outcome::Rows(0), Outcome::Rows(1)],
            ),
            3,
            2,
        );
        assert_eq!(c.copy_text, b"a\tb\nc\td\ne\tf\n");
        assert_eq!(c.rows, 3);
        assert_eq!(c.row_messages, [0, 0, 2]);
        assert!(
            c.runs.is_empty(),
            "inserts into the first table need no runs"
        );
        assert!(c.failed.is_empty());
    }

    #[test]
    fn a_malformed_row_fails_only_its_message() {
        let c = check(
            converted(
                "a\tb\nbad\nc\td\n",
                vec![],
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
            converted(
                "a\tb\nc\td\n",
                vec![],
                vec![Outcome::Rows(1), Outcome::Rows(0)],
            ),
            2,
            2,
        );
        assert!(c.copy_text.is_empty());
        assert_eq!(c.failed.len(), 2);
        assert!(c.failed[0].1.contains("declared 1 rows but wrote 2 lines"));
        let c = check(converted("a\tb\n", vec![], vec![Outcome::Rows(1)]), 2, 2);
        assert!(c.failed[1].1.contains("1 outcomes for 2 messages"));
        let c = check(converted("a\tb\nc", vec![], vec![Outcome::Rows(1)]), 1, 2);
        assert_eq!(c.failed.len(), 1);
        for runs in [
            vec![run(1, 0, Operation::Insert)],
            vec![run(2, 0, Operation::Insert), run(1, 0, Operation::Upsert)],
            vec![run(2, 0, Operation::Insert), run(0, 0, Operation::Upsert)],
        ] {
            let c = check(
                converted("a\tb\nc\td\n", runs, vec![Outcome::Rows(2)]),
                1,
                2,
            );
            assert_eq!(c.rows, 0);
            assert!(c.failed[0].1.contains("in its runs"), "{:?}", c.failed);
        }
    }

    /// Runs split across messages and messages split across runs: each row is checked
    /// against its own table and operation, and a row that breaks its rule fails exactly
    /// its message.
    #[test]
    fn runs_are_checked_row_by_row_across_messages() {
        let tables = [table(&["id", "v"], &[0])];
        let c = attribute(
            converted(
                "1\ta\n2\tb\n\\N\tc\n4\td\n5\t\\N\n6\tf\n",
                vec![
                    run(2, 0, Operation::Insert),
                    run(2, 0, Operation::Upsert),
                    run(1, 0, Operation::Delete),
                    run(1, 0, Operation::Upsert),
                ],
                vec![
                    Outcome::Rows(1), // insert 1
                    Outcome::Rows(2), // insert 2, upsert with a NULL key
                    Outcome::Rows(1), // upsert 4
                    Outcome::Rows(1), // delete 5
                    Outcome::Rows(1), // upsert 6
                ],
            ),
            5,
            &tables,
            &[false],
        );
        assert_eq!(
            String::from_utf8(c.copy_text).unwrap(),
            "1\ta\n4\td\n6\tf\n"
        );
        assert_eq!(c.row_messages, [0, 2, 4]);
        assert_eq!(c.rows, 3);
        assert_eq!(
            c.runs,
            [run(1, 0, Operation::Insert), run(2, 0, Operation::Upsert)],
            "the runs of the kept rows, merged"
        );
        assert_eq!(c.failed.len(), 2);
        assert_eq!(c.failed[0].0, 1);
        assert!(
            c.failed[0]
                .1
                .contains("row 2 is an upsert with NULL in the key column id"),
            "{}",
            c.failed[0].1
        );
        assert_eq!(c.failed[1].0, 3);
        assert!(
            c.failed[1]
                .1
                .contains("row 1 is a delete, and db.write.mode = \"append\" only appends rows to \"public\".\"t\""),
            "{}",
            c.failed[1].1
        );
        assert_eq!(
            c.faults, 0,
            "rows the sink cannot apply are not the converter's fault (a reload canary would refuse it)"
        );
    }

    /// A sink that applies rows by key takes deletes, and then every row needs its key: an
    /// insert is applied by key too.
    #[test]
    fn a_keyed_sink_takes_deletes_and_needs_every_key() {
        let tables = [table(&["id", "v"], &[0])];
        let c = attribute(
            converted(
                "1\ta\n\\N\tb\n3\t\\N\n\\N\t\\N\n",
                vec![run(2, 0, Operation::Insert), run(2, 0, Operation::Delete)],
                vec![Outcome::Rows(1); 4],
            ),
            4,
            &tables,
            &[true],
        );
        assert_eq!(c.copy_text, b"1\ta\n3\t\\N\n");
        assert_eq!(c.row_messages, [0, 2]);
        assert_eq!(
            c.runs,
            [run(1, 0, Operation::Insert), run(1, 0, Operation::Delete)]
        );
        let reasons: Vec<&str> = c.failed.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "row 1 is an upsert with NULL in the key column id",
                "row 1 is a delete with NULL in the key column id"
            ]
        );
        assert_eq!(c.faults, 0);
    }

    /// Each table follows its own write mode: a delete into the keyed one is applied, a
    /// delete into the appending one fails its message.
    #[test]
    fn each_table_has_its_own_write_mode() {
        let tables = [table(&["id"], &[0]), table(&["id", "v"], &[0])];
        let c = attribute(
            converted(
                "1\n1\t\\N\n2\n2\t\\N\n",
                vec![
                    run(1, 0, Operation::Insert),
                    run(1, 1, Operation::Delete),
                    run(1, 0, Operation::Delete),
                    run(1, 1, Operation::Delete),
                ],
                vec![Outcome::Rows(2), Outcome::Rows(2)],
            ),
            2,
            &tables,
            &[false, true],
        );
        assert_eq!(c.copy_text, b"1\n1\t\\N\n");
        assert_eq!(c.row_messages, [0, 0]);
        let reasons: Vec<&str> = c.failed.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(reasons.len(), 1);
        assert!(
            reasons[0].starts_with("row 1 is a delete, and db.write.mode"),
            "{}",
            reasons[0]
        );
    }

    /// Messages converted one at a time (after a trap) add up to the batch's conversion:
    /// rows, their messages and their runs, with inserts and upserts interleaved.
    #[test]
    fn one_by_one_conversions_add_up() {
        let tables = [table(&["id", "v"], &[0])];
        let one = |text: &str, runs| {
            attribute(
                converted(text, runs, vec![Outcome::Rows(1)]),
                1,
                &tables,
                &[false],
            )
        };
        let mut all = Conversion::default();
        all.extend_one(0, one("1\ta\n", vec![]));
        all.extend_one(1, one("2\tb\n", vec![run(1, 0, Operation::Upsert)]));
        all.extend_one(2, one("3\tc\n", vec![run(1, 0, Operation::Upsert)]));
        all.extend_one(3, one("4\td\n", vec![]));
        assert_eq!(all.copy_text, b"1\ta\n2\tb\n3\tc\n4\td\n");
        assert_eq!(all.row_messages, [0, 1, 2, 3]);
        assert_eq!(
            all.runs,
            [
                run(1, 0, Operation::Insert),
                run(2, 0, Operation::Upsert),
                run(1, 0, Operation::Insert)
            ]
        );
    }

    #[test]
    fn a_row_for_an_undeclared_table_fails_its_message() {
        let c = attribute(
            converted(
                "1\ta\n2\tb\n",
                vec![run(1, 0, Operation::Insert), run(1, 3, Operation::Insert)],
                vec![Outcome::Rows(1), Outcome::Rows(1)],
            ),
            2,
            &[table(&["id", "v"], &[])],
            &[false],
        );
        assert_eq!(c.copy_text, b"1\ta\n");
        assert_eq!((c.rows, c.row_messages.as_slice()), (1, &[0][..]));
        assert!(c.runs.is_empty(), "only the kept insert is left");
        assert_eq!(c.faults, 1, "an undeclared table breaks the contract");
        assert_eq!(c.failed.len(), 1);
        assert!(
            c.failed[0]
                .1
                .contains("row 1 to table 3 but the sink writes 1 table (index 0)"),
            "{}",
            c.failed[0].1
        );
    }
}
