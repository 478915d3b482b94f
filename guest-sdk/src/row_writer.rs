//! COPY-text rows, escaped so that no value can break the stream.

use std::fmt::{self, Write as _};

/// Bytes that COPY text must escape, with the letter that follows the backslash.
const fn escape_table() -> [u8; 256] {
    let mut table = [0u8; 256];
    table[b'\\' as usize] = b'\\';
    table[b'\t' as usize] = b't';
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[0] = b'0';
    table
}
static ESCAPES: [u8; 256] = escape_table();

/// Appends `value` to `out` escaped for PostgreSQL COPY text format.
///
/// Backslash, tab, newline and carriage return are written as backslash
/// sequences. A NUL character cannot be stored in PostgreSQL text at all, so
/// it is an error (nothing is appended then).
pub fn escape_copy_text(value: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let bytes = value.as_bytes();
    let start = out.len();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPES[b as usize];
        if esc == 0 {
            continue;
        }
        if esc == b'0' {
            out.truncate(start);
            return Err(
                "a value contains a NUL character, which PostgreSQL text cannot store".into(),
            );
        }
        out.extend_from_slice(&bytes[run..i]);
        out.push(b'\\');
        out.push(esc);
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    Ok(())
}

/// What a row asks of its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Add the row.
    Insert,
    /// The row as it should be: replaces the row with the same key, or is added.
    Upsert,
    /// Remove the row with this key: only the key columns are read (write NULL in the others).
    Delete,
}

impl Operation {
    /// `insert`, `upsert` or `delete`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Upsert => "upsert",
            Operation::Delete => "delete",
        }
    }
}

/// Consecutive rows that go to the same table with the same operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRun {
    /// Number of rows.
    pub count: u32,
    /// The table, as an index in the tables given to `configure`.
    pub table: u32,
    pub operation: Operation,
}

/// Collects the rows of one batch; hands out one [`Row`] at a time.
#[derive(Debug)]
pub struct RowWriter<'a> {
    out: &'a mut Vec<u8>,
    /// The column count of each table.
    widths: Vec<usize>,
    /// The table and operation of every row written, as runs.
    runs: Vec<RowRun>,
    rows: u32,
    error: Option<String>,
}

/// Where a message's rows start, to discard them if it fails.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    bytes: usize,
    runs: usize,
    last_run: u32,
}

impl<'a> RowWriter<'a> {
    /// A writer appending rows of one table of `columns` fields to `out`.
    pub fn new(out: &'a mut Vec<u8>, columns: usize) -> Self {
        Self::for_tables(out, vec![columns])
    }

    /// A writer appending rows to `out` for tables of these column counts.
    pub fn for_tables(out: &'a mut Vec<u8>, widths: Vec<usize>) -> Self {
        RowWriter {
            out,
            widths,
            runs: Vec::new(),
            rows: 0,
            error: None,
        }
    }

    /// The number of fields every row of the first table must have.
    pub fn columns(&self) -> usize {
        self.widths.first().copied().unwrap_or(0)
    }

    /// Starts a row inserted into the first table. Push exactly
    /// [`columns`](Self::columns) fields; the row ends when it is dropped.
    pub fn row(&mut self) -> Row<'_, 'a> {
        self.row_for(0, Operation::Insert)
    }

    /// Starts a row inserted into table `table` (its index among the sink's tables).
    pub fn insert(&mut self, table: usize) -> Row<'_, 'a> {
        self.row_for(table, Operation::Insert)
    }

    /// Starts a row that replaces (or adds) the row with its key in table `table`.
    pub fn upsert(&mut self, table: usize) -> Row<'_, 'a> {
        self.row_for(table, Operation::Upsert)
    }

    /// Starts a row that deletes the row with its key from table `table`: push every
    /// column, NULL for those outside the key.
    pub fn delete(&mut self, table: usize) -> Row<'_, 'a> {
        self.row_for(table, Operation::Delete)
    }

    /// Starts a row for `table` with `operation`.
    pub fn row_for(&mut self, table: usize, operation: Operation) -> Row<'_, 'a> {
        let width = match self.widths.get(table) {
            Some(&width) => width,
            None => {
                let declared = self.widths.len();
                self.fail(format!(
                    "the converter wrote a row for table {table}, and the sink has {declared} table(s)"
                ));
                usize::MAX
            }
        };
        Row {
            writer: self,
            table: table as u32,
            operation,
            width,
            fields: 0,
        }
    }

    /// Rows written since the last [`take_outcome`](Self::take_outcome).
    pub fn rows(&self) -> u32 {
        self.rows
    }

    /// Ends one message: its row count, or the first error its rows hit
    /// (a wrong field count or a NUL character). Resets the counters.
    pub fn take_outcome(&mut self) -> Result<u32, String> {
        let rows = std::mem::take(&mut self.rows);
        match self.error.take() {
            Some(error) => Err(error),
            None => Ok(rows),
        }
    }

    /// The bytes written so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// The runs of the rows written: empty when every row is an insert into the first table.
    pub fn into_runs(self) -> Vec<RowRun> {
        let plain = self
            .runs
            .iter()
            .all(|r| r.table == 0 && r.operation == Operation::Insert);
        if plain {
            Vec::new()
        } else {
            self.runs
        }
    }

    pub(crate) fn mark(&self) -> Mark {
        Mark {
            bytes: self.out.len(),
            runs: self.runs.len(),
            last_run: self.runs.last().map_or(0, |r| r.count),
        }
    }

    /// Drops everything written after `mark` (a failed message's rows).
    pub(crate) fn rollback(&mut self, mark: Mark) {
        self.out.truncate(mark.bytes);
        self.runs.truncate(mark.runs);
        if let Some(last) = self.runs.last_mut() {
            last.count = mark.last_run;
        }
    }

    fn fail(&mut self, error: String) {
        self.error.get_or_insert(error);
    }

    fn record(&mut self, table: u32, operation: Operation) {
        match self.runs.last_mut() {
            Some(last) if last.table == table && last.operation == operation => last.count += 1,
            _ => self.runs.push(RowRun {
                count: 1,
                table,
                operation,
            }),
        }
    }
}

/// One row being written; it ends (with a newline) when dropped.
#[derive(Debug)]
pub struct Row<'w, 'a> {
    writer: &'w mut RowWriter<'a>,
    table: u32,
    operation: Operation,
    width: usize,
    fields: usize,
}

impl Row<'_, '_> {
    fn separate(&mut self) {
        if self.fields > 0 {
            self.writer.out.push(b'\t');
        }
        self.fields += 1;
    }

    /// Appends a text field.
    pub fn push_str(&mut self, value: &str) -> &mut Self {
        self.separate();
        if let Err(e) = escape_copy_text(value, self.writer.out) {
            self.writer.fail(e);
        }
        self
    }

    /// Appends a NULL field.
    pub fn push_null(&mut self) -> &mut Self {
        self.separate();
        self.writer.out.extend_from_slice(b"\\N");
        self
    }

    /// Appends an optional text field: NULL for `None`.
    pub fn push_opt(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.push_str(v),
            None => self.push_null(),
        }
    }

    /// Appends a field formatted with [`Display`](fmt::Display) (numbers, dates…).
    pub fn push_display(&mut self, value: impl fmt::Display) -> &mut Self {
        let mut field = self.field();
        let _ = write!(field, "{value}");
        self
    }

    /// Starts a field written in pieces, for values decoded on the fly.
    pub fn field(&mut self) -> Field<'_> {
        self.separate();
        let writer = &mut *self.writer;
        Field {
            out: &mut *writer.out,
            error: &mut writer.error,
        }
    }
}

impl Drop for Row<'_, '_> {
    fn drop(&mut self) {
        if self.fields != self.width && self.width != usize::MAX {
            let (fields, columns) = (self.fields, self.width);
            self.writer.fail(format!(
                "the converter wrote a row of {fields} fields for {columns} columns"
            ));
        }
        self.writer.out.push(b'\n');
        self.writer.rows += 1;
        self.writer.record(self.table, self.operation);
    }
}

/// A text field written in pieces, each escaped.
#[derive(Debug)]
pub struct Field<'w> {
    out: &'w mut Vec<u8>,
    error: &'w mut Option<String>,
}

impl Field<'_> {
    /// Appends text to the field.
    pub fn push_str(&mut self, piece: &str) {
        if let Err(e) = escape_copy_text(piece, self.out) {
            self.error.get_or_insert(e);
        }
    }

    /// Appends one character to the field.
    pub fn push_char(&mut self, c: char) {
        self.push_str(c.encode_utf8(&mut [0; 4]));
    }
}

impl fmt::Write for Field<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

/// The reference COPY-text decoder the repository's tests share.
#[cfg(test)]
#[path = "../../tests/corpus/copy_text.rs"]
mod copy_text;

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    use crate::{convert_batch, BatchOutput, Converter, Message, Outcome, Settings, Table};

    use super::copy_text;

    fn escaped(s: &str) -> Result<String, String> {
        let mut out = Vec::new();
        escape_copy_text(s, &mut out).map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn escapes_the_four_copy_specials() {
        assert_eq!(escaped("a\\b\tc\nd\re").unwrap(), "a\\\\b\\tc\\nd\\re");
        assert_eq!(escaped("plain é ✓").unwrap(), "plain é ✓");
        assert_eq!(escaped("").unwrap(), "");
        assert_eq!(escaped("\\N").unwrap(), "\\\\N");
    }

    #[test]
    fn nul_is_an_error_and_writes_nothing() {
        let mut out = b"keep".to_vec();
        assert!(escape_copy_text("a\0b", &mut out)
            .unwrap_err()
            .contains("NUL"));
        assert_eq!(out, b"keep");
    }

    #[test]
    fn rows_have_separators_nulls_and_newlines() {
        let mut out = Vec::new();
        let mut w = RowWriter::new(&mut out, 3);
        w.row().push_str("x").push_null().push_display(42);
        w.row()
            .push_opt(None)
            .push_opt(Some("y\tz"))
            .field()
            .push_char('é');
        assert_eq!(w.take_outcome(), Ok(2));
        assert_eq!(out, b"x\t\\N\t42\n\\N\ty\\tz\t\xc3\xa9\n");
    }

    #[test]
    fn wrong_field_count_fails_the_message() {
        let mut out = Vec::new();
        let mut w = RowWriter::new(&mut out, 2);
        w.row().push_str("only one");
        let err = w.take_outcome().unwrap_err();
        assert_eq!(err, "the converter wrote a row of 1 fields for 2 columns");
        assert_eq!(w.take_outcome(), Ok(0), "outcome resets after each message");
    }

    /// Characters that matter to COPY text (its four escaped bytes, the letters of its escape
    /// sequences, `\N`, `\.`, NUL), other controls and multi-byte text, plus any character.
    fn hostile_char() -> impl Strategy<Value = char> {
        prop_oneof![
            3 => prop::sample::select(vec![
                '\\', '\t', '\n', '\r', 'N', '.', '0', '7', 'x', 'b', 'f', 'v', 't', 'n', 'r',
                '\u{8}', '\u{b}', '\u{c}', '\u{1f}', '\u{7f}', '\u{85}', '\u{2028}', 'é', '😀',
            ]),
            1 => Just('\0'),
            2 => any::<char>(),
        ]
    }

    fn hostile_text() -> impl Strategy<Value = String> {
        prop::collection::vec(hostile_char(), 0..24).prop_map(String::from_iter)
    }

    /// A planned field: its value (None: NULL) and how to write it.
    type PlannedField = (Option<String>, u8);

    /// A planned row: which table and operation (`selector % 2`, `selector / 2 % 3`) and
    /// its fields.
    type PlannedRow = (u8, Vec<PlannedField>);

    /// The table and operation a planned row selects.
    fn selected(selector: u8) -> (u32, Operation) {
        let operation = [Operation::Insert, Operation::Upsert, Operation::Delete];
        (
            u32::from(selector % 2),
            operation[usize::from(selector / 2 % 3)],
        )
    }

    /// A converter that writes the rows planned for each message (by offset), each field
    /// through one of the SDK's ways of writing a field.
    struct Planned {
        /// Per message: its rows.
        plan: Vec<Vec<PlannedRow>>,
    }

    impl Converter for Planned {
        fn configure(_: &Settings, _: &[Table]) -> Result<Self, String> {
            Ok(Planned { plan: Vec::new() })
        }

        fn convert(
            &mut self,
            message: &Message<'_>,
            rows: &mut RowWriter<'_>,
        ) -> Result<(), String> {
            for (selector, fields) in &self.plan[message.offset as usize] {
                let (table, operation) = selected(*selector);
                let mut row = rows.row_for(table as usize, operation);
                for (value, how) in fields {
                    match (value, how % 4) {
                        (None, _) => {
                            row.push_null();
                        }
                        (Some(v), 0) => {
                            row.push_str(v);
                        }
                        (Some(v), 1) => {
                            // In pieces of one to three characters.
                            let mut field = row.field();
                            let chars: Vec<char> = v.chars().collect();
                            for piece in chars.chunks(1 + usize::from(*how) % 3) {
                                field.push_str(&String::from_iter(piece));
                            }
                        }
                        (Some(v), 2) => {
                            let mut field = row.field();
                            v.chars().for_each(|c| field.push_char(c));
                        }
                        (Some(v), _) => {
                            row.push_display(v);
                        }
                    }
                }
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// The escaper's contract, for any text: without NUL, the result holds no raw tab,
        /// newline or carriage return, and PostgreSQL's COPY decoding (the reference decoder)
        /// gives the text back, never NULL (`\N` included); with a NUL, it is an error and
        /// nothing is appended.
        #[test]
        fn escaped_text_decodes_back_to_the_text(text in hostile_text(), before in "[a-z\\\\]{0,3}") {
            let mut out = before.clone().into_bytes();
            let result = escape_copy_text(&text, &mut out);
            if text.contains('\0') {
                prop_assert!(result.unwrap_err().contains("NUL"));
                prop_assert_eq!(out, before.into_bytes(), "nothing appended");
                return Ok(());
            }
            prop_assert!(result.is_ok());
            let escaped = &out[before.len()..];
            prop_assert!(!escaped.iter().any(|b| matches!(b, b'\t' | b'\n' | b'\r')), "{:?}", escaped);
            let specials = text.bytes().filter(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r')).count();
            prop_assert_eq!(escaped.len(), text.len() + specials, "one backslash per special byte");
            let mut line = escaped.to_vec();
            line.push(b'\n');
            prop_assert_eq!(copy_text::decode(&line), Ok(vec![vec![Some(text)]]));
        }

        /// Whole batches through `convert_batch` with every way of writing a field, rows for two
        /// tables (of `columns` and `columns + 1` fields) with every operation: the COPY text
        /// decodes to exactly the rows of the messages that succeed, in order, and the runs
        /// give each of them its table and operation; a message with a NUL or a row of the
        /// wrong width fails alone and leaves no byte and no run behind.
        #[test]
        fn batches_decode_to_the_rows_of_the_messages_that_succeed(
            columns in 1usize..5,
            plan in prop::collection::vec(
                prop::collection::vec(
                    (any::<u8>(), prop::collection::vec((prop::option::weighted(0.8, hostile_text()), any::<u8>()), 1..7)),
                    0..4,
                ),
                0..8,
            ),
        ) {
            let mut converter = Planned { plan };
            let messages: Vec<Message<'_>> = (0..converter.plan.len())
                .map(|i| Message { offset: i as i64, ..Message::from_value(b"") })
                .collect();
            let mut out = BatchOutput::default();
            let names: Vec<String> = (0..=columns).map(|c| format!("c{c}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let tables = [Table::named(&names[..columns]), Table::named(&names)];
            convert_batch(&mut converter, &tables, messages.into_iter().map(Ok), &mut out);
            let mut expected_runs: Vec<(u32, Operation)> = Vec::new();
            prop_assert_eq!(out.outcomes.len(), converter.plan.len());
            let mut expected_rows = Vec::new();
            for (i, rows) in converter.plan.iter().enumerate() {
                let nul = rows.iter().flat_map(|(_, fields)| fields).any(|(v, _)| v.as_deref().is_some_and(|v| v.contains('\0')));
                let width = rows.iter().find(|(selector, fields)| fields.len() != columns + usize::from(selector % 2));
                match (&out.outcomes[i], nul, width) {
                    (Outcome::Rows(n), false, None) => {
                        prop_assert_eq!(*n as usize, rows.len());
                        expected_rows.extend(rows.iter().map(|(_, fields)| {
                            fields.iter().map(|(v, _)| v.clone()).collect::<copy_text::Row>()
                        }));
                        expected_runs.extend(rows.iter().map(|(selector, _)| selected(*selector)));
                    }
                    (Outcome::Failed(reason), true, None) => prop_assert!(reason.contains("NUL"), "{}", reason),
                    (Outcome::Failed(reason), false, Some(_)) => prop_assert!(reason.contains("fields for"), "{}", reason),
                    (Outcome::Failed(reason), true, Some(_)) => {
                        prop_assert!(reason.contains("NUL") || reason.contains("fields for"), "{}", reason)
                    }
                    (outcome, nul, width) => prop_assert!(false, "message {}: {:?} (NUL {}, wrong width {:?})", i, outcome, nul, width),
                }
            }
            prop_assert_eq!(copy_text::decode(&out.copy_text), Ok(expected_rows));
            let runs: Vec<(u32, Operation)> = out
                .runs
                .iter()
                .flat_map(|r| std::iter::repeat_n((r.table, r.operation), r.count as usize))
                .collect();
            if expected_runs.iter().all(|&run| run == (0, Operation::Insert)) {
                prop_assert!(out.runs.is_empty(), "plain inserts need no runs: {:?}", out.runs);
            } else {
                prop_assert_eq!(runs, expected_runs);
                prop_assert!(out.runs.windows(2).all(|w| (w[0].table, w[0].operation) != (w[1].table, w[1].operation)), "runs are merged");
            }
        }
    }
}
