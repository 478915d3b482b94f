//! The `pgsink` command line: parsing, logging, and the subcommands of `cli/`.

use std::io;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// Stream Kafka topics into PostgreSQL tables at COPY speed, converting each
/// message into rows with a WebAssembly converter (by default the bundled
/// JSON parse-path converter).
#[derive(Parser)]
#[command(name = "pgsink", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr. The level comes from RUST_LOG (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: pgsink::Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command.execute() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("pgsink: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn"));
    // Colours only for a terminal: journald, files and pipes get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_writer(io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
