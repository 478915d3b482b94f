//! Helpers to unit-test a converter natively with `cargo test`.
//!
//! [`TestSink`] configures a converter for tables given by their column names and converts
//! messages as pgsink would, returning the rows decoded (table, operation, fields) or as COPY
//! text; the test never repeats the column count.

use crate::{convert_batch, BatchOutput, Converter, Message, Operation, Outcome, RowWriter};
use crate::{Settings, Table};

/// The signature of a converter written as a function.
pub type ConvertFn = fn(&Message<'_>, &mut RowWriter<'_>) -> Result<(), String>;

/// A converter configured for some tables, as the sink would run it.
pub struct TestSink<C> {
    converter: C,
    tables: Vec<Table>,
}

/// One row as the sink receives it, its fields decoded from COPY text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRow {
    /// The table's index among the sink's tables.
    pub table: usize,
    pub operation: Operation,
    /// The fields, `None` for NULL.
    pub fields: Vec<Option<String>>,
}

impl<C: Converter> TestSink<C> {
    /// Configures `C` with `settings` for one table with these columns.
    pub fn configure(settings: &[(&str, &str)], columns: &[&str]) -> Result<Self, String> {
        Self::configure_tables(settings, vec![Table::named(columns)])
    }

    /// Configures `C` with `settings` for `tables`.
    pub fn configure_tables(settings: &[(&str, &str)], tables: Vec<Table>) -> Result<Self, String> {
        let settings: Settings = settings.iter().copied().collect();
        let converter = C::configure(&settings, &tables)?;
        Ok(TestSink { converter, tables })
    }

    /// The configured converter.
    pub fn converter(&mut self) -> &mut C {
        &mut self.converter
    }

    /// Converts `messages` as one batch.
    pub fn convert(&mut self, messages: &[Message<'_>]) -> BatchOutput {
        let mut out = BatchOutput::default();
        let messages = messages.iter().cloned().map(Ok);
        convert_batch(&mut self.converter, &self.tables, messages, &mut out);
        out
    }

    /// The COPY text of the rows of a message with this value, or its failure reason.
    pub fn convert_value(&mut self, value: &[u8]) -> Result<String, String> {
        self.convert_message(&Message::from_value(value))
    }

    /// The COPY text of the rows of `message`, or its failure reason.
    pub fn convert_message(&mut self, message: &Message<'_>) -> Result<String, String> {
        let out = self.convert(std::slice::from_ref(message));
        match out.outcomes.into_iter().next() {
            Some(Outcome::Rows(_)) => {
                Ok(String::from_utf8(out.copy_text).expect("COPY text is UTF-8"))
            }
            Some(Outcome::Failed(reason)) => Err(reason),
            None => unreachable!("one outcome per message"),
        }
    }

    /// The rows of `message`, decoded, or its failure reason.
    pub fn rows(&mut self, message: &Message<'_>) -> Result<Vec<TestRow>, String> {
        let out = self.convert(std::slice::from_ref(message));
        if let Some(Outcome::Failed(reason)) = out.outcomes.first() {
            return Err(reason.clone());
        }
        let text = String::from_utf8(out.copy_text).expect("COPY text is UTF-8");
        let mut runs = out
            .runs
            .iter()
            .flat_map(|r| std::iter::repeat_n((r.table as usize, r.operation), r.count as usize));
        Ok(text
            .lines()
            .map(|line| {
                let (table, operation) = runs.next().unwrap_or((0, Operation::Insert));
                TestRow {
                    table,
                    operation,
                    fields: line.split('\t').map(decode_field).collect(),
                }
            })
            .collect())
    }
}

impl TestSink<FunctionConverter> {
    /// A converter written as a function, for one table with these columns.
    pub fn from_fn(convert: ConvertFn, columns: &[&str]) -> Self {
        TestSink {
            converter: FunctionConverter(convert),
            tables: vec![Table::named(columns)],
        }
    }
}

/// A converter written as a function (see [`TestSink::from_fn`]).
pub struct FunctionConverter(ConvertFn);

impl Converter for FunctionConverter {
    fn configure(_: &Settings, _: &[Table]) -> Result<Self, String> {
        Err("a function converter is made with TestSink::from_fn".into())
    }

    fn convert(&mut self, message: &Message<'_>, rows: &mut RowWriter<'_>) -> Result<(), String> {
        (self.0)(message, rows)
    }
}

/// A COPY text field decoded: `None` for NULL, escapes undone.
fn decode_field(field: &str) -> Option<String> {
    if field == "\\N" {
        return None;
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Some(out)
}

/// Converts `messages` for one table of `columns` fields and returns the COPY text and the
/// outcome of each (the lower-level form of [`TestSink::convert`]).
pub fn convert_messages<C: Converter>(
    converter: &mut C,
    columns: usize,
    messages: &[Message<'_>],
) -> BatchOutput {
    let mut out = BatchOutput::default();
    let names: Vec<String> = (0..columns).map(|c| format!("c{c}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let tables = [Table::named(&names)];
    convert_batch(
        converter,
        &tables,
        messages.iter().cloned().map(Ok),
        &mut out,
    );
    out
}

/// Converts one message with this key and value for one table of `columns` fields; returns
/// its COPY text rows or its failure reason (the lower-level form of
/// [`TestSink::convert_message`]).
pub fn convert_value<C: Converter>(
    converter: &mut C,
    columns: usize,
    key: Option<&[u8]>,
    value: &[u8],
) -> Result<String, String> {
    let message = Message {
        key,
        ..Message::from_value(value)
    };
    let out = convert_messages(converter, columns, &[message]);
    match out.outcomes.into_iter().next() {
        Some(Outcome::Rows(_)) => Ok(String::from_utf8(out.copy_text).expect("COPY text is UTF-8")),
        Some(Outcome::Failed(reason)) => Err(reason),
        None => unreachable!("one outcome per message"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_value(message: &Message<'_>, rows: &mut RowWriter<'_>) -> Result<(), String> {
        rows.row()
            .push_opt(message.key_str()?)
            .push_opt(message.value_str()?);
        Ok(())
    }

    crate::export_converter!(fn key_value, columns = 2);

    #[test]
    fn a_function_converter_checks_its_column_count() {
        let mut sink = TestSink::<__PgsinkFunction>::configure(&[], &["k", "v"]).unwrap();
        assert_eq!(sink.convert_value(b"x"), Ok("\\N\tx\n".into()));
        let error = TestSink::<__PgsinkFunction>::configure(&[], &["k"])
            .err()
            .unwrap();
        assert_eq!(
            error,
            "this converter writes 2 column(s) and the table public.test lists 1: k"
        );
    }

    /// A row for a table the sink does not have fails its message, and leaves no row and no
    /// run behind; the messages around it keep theirs.
    #[test]
    fn a_row_for_an_undeclared_table_fails_its_message() {
        fn convert(message: &Message<'_>, rows: &mut RowWriter<'_>) -> Result<(), String> {
            let table = usize::from(message.value == Some(b"elsewhere"));
            rows.upsert(0).push_str("first");
            rows.upsert(table).push_str("second");
            Ok(())
        }
        let mut sink = TestSink::from_fn(convert, &["a"]);
        let out = sink.convert(&[
            Message::from_value(b"here"),
            Message::from_value(b"elsewhere"),
            Message::from_value(b"here"),
        ]);
        assert_eq!(
            out.outcomes,
            [
                Outcome::Rows(2),
                Outcome::Failed(
                    "the converter wrote a row for table 1, and the sink has 1 table(s)".into()
                ),
                Outcome::Rows(2),
            ]
        );
        assert_eq!(out.copy_text, b"first\nsecond\nfirst\nsecond\n");
        assert_eq!(
            out.runs,
            [crate::RowRun {
                count: 4,
                table: 0,
                operation: Operation::Upsert
            }]
        );
    }
}
