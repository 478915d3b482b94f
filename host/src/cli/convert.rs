//! `pgsink convert`: run a converter over lines of input, no Kafka or database needed.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::batch::{BatchBuilder, MessageRef};
use crate::config;
use crate::converter::{Column, Converter, ConverterError, ConverterSpec};
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
}

pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    let config = match &args.plugin {
        Some(plugin) => config::load_with_converter(&args.config, plugin)?,
        None => config::load(&args.config)?,
    };
    let columns = Column::untyped(&config.db.columns);
    let mut converter = ConverterSpec::load(&config.converter)?.instantiate(&columns)?;
    let topic = config.topics.first().map(String::as_str).unwrap_or("stdin");
    let (stdout, stderr) = (io::stdout().lock(), io::stderr().lock());
    let summary = match args.input {
        Some(path) => {
            let file =
                File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            convert_lines(&mut converter, topic, BufReader::new(file), stdout, stderr)?
        }
        None => convert_lines(&mut converter, topic, io::stdin().lock(), stdout, stderr)?,
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

/// Converts each line of `input` as one message value (topic `topic`,
/// partition 0, offset = line number − 1). COPY rows go to `rows`; each failed
/// line is reported to `errors` as `line N: reason`.
fn convert_lines(
    converter: &mut Converter,
    topic: &str,
    input: impl BufRead,
    mut rows: impl Write,
    mut errors: impl Write,
) -> Result<ConvertSummary, ConvertError> {
    let mut summary = ConvertSummary::default();
    let mut builder = BatchBuilder::new();
    let mut first_line = 1u64;
    let mut lines = input.split(b'\n');
    loop {
        let line = lines.next().transpose()?;
        let at_end = line.is_none();
        if let Some(mut line) = line {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let offset = (first_line - 1) as i64 + builder.len() as i64;
            builder.push(
                MessageRef {
                    topic,
                    partition: 0,
                    offset,
                    timestamp: None,
                    key: None,
                    value: Some(&line),
                },
                [],
            );
            if builder.len() < BATCH_MESSAGES {
                continue;
            }
        }
        if !builder.is_empty() {
            let conversion = converter.convert(&builder)?;
            rows.write_all(&conversion.copy_text)?;
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
