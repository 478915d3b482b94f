//! `pgsink convert`: run a converter over lines of input, no Kafka or database needed.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::batch::{BatchBuilder, MessageRef};
use crate::config;
use crate::converter::{Converter, ConverterError, ConverterSpec, Operation, Table};
use crate::pipeline::BATCH_MESSAGES;

#[derive(clap::Args)]
pub struct Args {
    /// The configuration (the same file `pgsink run` reads).
    #[arg(short, long)]
    config: PathBuf,
    /// A converter component to use instead of the configured one.
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Read messages from this file instead of stdin.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Each line is a key and a value separated by SEP (the first SEP on the line); a line
    /// without it is a value with a null key.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// An empty key or value is null, not empty: `KEY<SEP>` with nothing after it is a tombstone.
    #[arg(long)]
    empty_is_null: bool,
    /// The topic the messages come from (default: the first topic the configuration names);
    /// it decides which tables they fill when tables take given topics.
    #[arg(long)]
    topic: Option<String>,
}

/// How a line of input becomes a message.
#[derive(Debug, Clone, Default)]
struct LineFormat {
    key_separator: Option<Vec<u8>>,
    empty_is_null: bool,
}

impl LineFormat {
    /// The key and value of `line`.
    fn split<'a>(&self, line: &'a [u8]) -> (Option<&'a [u8]>, Option<&'a [u8]>) {
        let (key, value) = match &self.key_separator {
            Some(sep) => match memchr::memmem::find(line, sep) {
                Some(at) => (Some(&line[..at]), &line[at + sep.len()..]),
                None => (None, line),
            },
            None => (None, line),
        };
        let present = |part: &'a [u8]| Some(part).filter(|p| !(self.empty_is_null && p.is_empty()));
        (key.and_then(present), present(value))
    }
}

pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    let config = match &args.plugin {
        Some(plugin) => config::load_with_converter(&args.config, plugin)?,
        None => config::load(&args.config)?,
    };
    let tables: Vec<Table> = config
        .db
        .tables
        .iter()
        .map(|t| Table::untyped(&t.schema, &t.table, &t.columns))
        .collect();
    let mut converter = ConverterSpec::load(&config.converter)?.instantiate(&tables)?;
    if args.key_separator.as_deref() == Some("") {
        anyhow::bail!("--key-separator must not be empty");
    }
    let format = LineFormat {
        key_separator: args.key_separator.map(String::into_bytes),
        empty_is_null: args.empty_is_null,
    };
    let input = Input {
        topic: args.topic.as_deref().unwrap_or_else(|| {
            config
                .topics
                .iter()
                .find(|t| !config::is_topic_pattern(t))
                .map_or("stdin", String::as_str)
        }),
        format: &format,
        tables: &tables,
    };
    let (stdout, stderr) = (io::stdout().lock(), io::stderr().lock());
    let summary = match args.input {
        Some(path) => {
            let file =
                File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            convert_lines(&mut converter, &input, BufReader::new(file), stdout, stderr)?
        }
        None => convert_lines(&mut converter, &input, io::stdin().lock(), stdout, stderr)?,
    };
    tracing::debug!(?summary, "converted");
    Ok(super::status(summary.failed == 0))
}

/// How many lines converted and how many failed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConvertSummary {
    pub messages: u64,
    pub rows: u64,
    /// Lines that failed.
    pub failed: u64,
}

/// Errors of `pgsink convert`.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Reading input or writing output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The converter cannot run.
    #[error(transparent)]
    Converter(#[from] ConverterError),
}

/// Where the lines come from and where their rows go.
struct Input<'a> {
    topic: &'a str,
    format: &'a LineFormat,
    tables: &'a [Table],
}

/// Converts each line of `lines` as one message (topic `input.topic`, partition 0,
/// offset = line number − 1). COPY rows go to `rows` — each prefixed with its operation and
/// table and a tab, unless every row is an insert into the first table; each failed line is
/// reported to `errors` as `line N: reason`.
fn convert_lines(
    converter: &mut Converter,
    input: &Input<'_>,
    lines: impl BufRead,
    mut rows: impl Write,
    mut errors: impl Write,
) -> Result<ConvertSummary, ConvertError> {
    let mut summary = ConvertSummary::default();
    let mut builder = BatchBuilder::new();
    let mut first_line = 1u64;
    let mut lines = lines.split(b'\n');
    loop {
        let line = lines.next().transpose()?;
        let at_end = line.is_none();
        if let Some(mut line) = line {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let offset = (first_line - 1) as i64 + builder.len() as i64;
            let (key, value) = input.format.split(&line);
            builder.push(
                MessageRef {
                    topic: input.topic,
                    partition: 0,
                    offset,
                    timestamp: None,
                    key,
                    value,
                },
                [],
            );
            if builder.len() < BATCH_MESSAGES {
                continue;
            }
        }
        if !builder.is_empty() {
            let conversion = converter.convert(&builder)?;
            write_rows(&mut rows, &conversion, input.tables)?;
            for (i, reason) in &conversion.failed {
                writeln!(errors, "line {}: {reason}", first_line + *i as u64)?;
            }
            summary.messages += builder.len() as u64;
            summary.rows += conversion.rows;
            summary.failed += conversion.failed.len() as u64;
            first_line += builder.len() as u64;
            builder.clear();
        }
        if at_end {
            break;
        }
    }
    rows.flush()?;
    Ok(summary)
}
/// Writes the rows of `conversion`, each prefixed with `operation table<TAB>` when the rows
/// are not all inserts into the first table.
fn write_rows(
    out: &mut impl Write,
    conversion: &crate::converter::Conversion,
    tables: &[Table],
) -> io::Result<()> {
    if conversion.runs.is_empty() {
        return out.write_all(&conversion.copy_text);
    }
    let mut rows = conversion.copy_text.split_inclusive(|&b| b == b'\n');
    for run in &conversion.runs {
        let operation = match run.operation {
            Operation::Insert => "insert",
            Operation::Upsert => "upsert",
            Operation::Delete => "delete",
        };
        let table = &tables[run.table as usize].name;
        for row in rows.by_ref().take(run.count as usize) {
            write!(out, "{operation} {table}\t")?;
            out.write_all(row)?;
        }
    }
    Ok(())
}
