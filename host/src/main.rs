//! The `pgsink` command line.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use pgsink::{Column, Converter, Runtime};

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
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sink until SIGINT or SIGTERM, then flush and commit.
    Run {
        /// The configuration: TOML, or the original connector's `.properties` file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Convert messages read one per line and print the COPY rows; no Kafka or
    /// database needed. Failed lines are reported on stderr; exit status 1 if any.
    Convert {
        /// The configuration (the same file `pgsink run` reads).
        #[arg(short, long)]
        config: PathBuf,
        /// A converter component to use instead of the configured one.
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// Read messages from this file instead of stdin.
        #[arg(long)]
        input: Option<PathBuf>,
    },
    /// Install or remove the `pgsink` schema (offsets, dead letters) in the configured database.
    Sql {
        /// What to do.
        #[arg(value_enum)]
        action: SqlAction,
        /// The configuration naming the database.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Check everything `run` needs without consuming: configuration, converter,
    /// database, table and columns, broker and topics. One line per check, with a
    /// fix for each failure; exit status 1 if any check fails.
    Check {
        /// The configuration.
        #[arg(short, long)]
        config: PathBuf,
        /// How long to wait for the Kafka broker, in seconds.
        #[arg(long, default_value_t = 10)]
        broker_timeout: u64,
    },
    /// List dead letters, or re-drive them through the current converter after a fix.
    Dlq {
        /// What to do.
        #[command(subcommand)]
        action: DlqAction,
    },
    /// A self-contained demo: starts a Kafka broker inside this process, produces
    /// sample messages, sinks them into a PostgreSQL table and shows the rows.
    Demo(pgsink::DemoArgs),
}

#[derive(Subcommand)]
enum DlqAction {
    /// Show the dead letters of the sink's table, oldest first.
    List {
        /// The configuration.
        #[arg(short, long)]
        config: PathBuf,
        /// Show at most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Convert dead letters again and load those that now convert, removing
    /// them from the dead letters (one transaction). Those still failing keep
    /// their place with the new reason.
    Redrive {
        /// The configuration (its converter and table are used).
        #[arg(short, long)]
        config: PathBuf,
        /// Only these dead letters (ids from `dlq list`); default all of the table.
        #[arg(long, value_delimiter = ',')]
        id: Option<Vec<i64>>,
        /// Report what would happen, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SqlAction {
    /// Create or upgrade the schema (idempotent).
    Install,
    /// Drop the schema with its offsets and dead letters.
    Uninstall,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match execute(cli.command) {
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

fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config: path } => {
            let process = pgsink::load_process(&path)?;
            let runtime = tokio_runtime()?;
            runtime.block_on(run_sinks(path, process))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Convert {
            config,
            plugin,
            input,
        } => {
            let config = match &plugin {
                Some(plugin) => pgsink::load_config_with_plugin(&config, plugin)?,
                None => pgsink::load_config(&config)?,
            };
            let limits = pgsink::plugin_limits(&config.plugin);
            let runtime = Runtime::new(limits.timeout.is_some())?;
            let plugin = pgsink::load_plugin(&runtime, config.plugin.path.as_deref())?;
            let columns: Vec<Column> = config
                .db
                .columns
                .iter()
                .map(|name| Column {
                    name: name.clone(),
                    type_name: None,
                })
                .collect();
            let mut converter =
                Converter::new(plugin, config.plugin.settings.clone(), columns, limits)?;
            let topic = config.topics.first().map(String::as_str).unwrap_or("stdin");
            let stdout = io::stdout().lock();
            let stderr = io::stderr().lock();
            let summary = match input {
                Some(path) => {
                    let file = File::open(&path)
                        .with_context(|| format!("cannot open {}", path.display()))?;
                    pgsink::convert_lines(
                        &mut converter,
                        topic,
                        BufReader::new(file),
                        stdout,
                        stderr,
                    )?
                }
                None => pgsink::convert_lines(
                    &mut converter,
                    topic,
                    io::stdin().lock(),
                    stdout,
                    stderr,
                )?,
            };
            tracing::debug!(?summary, "converted");
            Ok(if summary.failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Sql { action, config } => {
            let config = pgsink::load_config(&config)?;
            tokio_runtime()?.block_on(async {
                let client = pgsink::connect(&config.db).await?;
                match action {
                    SqlAction::Install => client.batch_execute(pgsink::INSTALL_SQL).await?,
                    SqlAction::Uninstall => client.batch_execute(pgsink::UNINSTALL_SQL).await?,
                }
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            config,
            broker_timeout,
        } => {
            let process = match pgsink::load_process(&config) {
                Ok(process) => process,
                Err(error) => {
                    println!("FAIL config     {error}");
                    return Ok(ExitCode::from(1));
                }
            };
            let timeout = std::time::Duration::from_secs(broker_timeout);
            let mut ok = true;
            for (index, sink) in process.sinks.iter().enumerate() {
                if process.sinks.len() > 1 {
                    println!(
                        "sink {}{}:",
                        index + 1,
                        sink.name
                            .as_deref()
                            .map(|n| format!(" ({n})"))
                            .unwrap_or_default()
                    );
                }
                for line in tokio_runtime()?.block_on(pgsink::check(sink, timeout)) {
                    ok &= line.ok;
                    println!("{line}");
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Dlq { action } => match action {
            DlqAction::List { config, limit } => {
                let config = pgsink::load_config(&config)?;
                let letters = tokio_runtime()?.block_on(pgsink::dlq_list(&config, limit))?;
                println!(
                    "{:>8}  {:<24} {:>5} {:>10}  {:<29}  reason / value",
                    "id", "topic", "part", "offset", "failed at"
                );
                for l in &letters {
                    println!(
                        "{:>8}  {:<24} {:>5} {:>10}  {:<29}  {}\n{:>83}{}",
                        l.id,
                        l.topic,
                        l.partition,
                        l.offset,
                        l.failed_at,
                        l.reason,
                        "",
                        l.value_preview
                    );
                }
                println!("{} dead letter(s) shown", letters.len());
                Ok(ExitCode::SUCCESS)
            }
            DlqAction::Redrive {
                config,
                id,
                dry_run,
            } => {
                let config = pgsink::load_config(&config)?;
                let summary =
                    tokio_runtime()?.block_on(pgsink::dlq_redrive(&config, id, dry_run))?;
                println!(
                    "{}{} dead letter(s) read: {} loaded as {} row(s), {} still failing",
                    if dry_run { "dry run: " } else { "" },
                    summary.read,
                    summary.loaded,
                    summary.rows,
                    summary.still_failing
                );
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Demo(args) => {
            tokio_runtime()?.block_on(pgsink::demo(args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs every sink of the configuration until a signal (or a sink's failure,
/// which stops the others too after they flush).
async fn run_sinks(path: PathBuf, process: pgsink::ProcessConfig) -> anyhow::Result<()> {
    let shutdown = Arc::new(AtomicBool::new(false));
    tokio::spawn(stop_on_signal(shutdown.clone()));
    if let Some(address) = process.metrics_address {
        pgsink::serve_metrics(address)?;
    }
    let mut sinks = tokio::task::JoinSet::new();
    for (index, config) in process.sinks.into_iter().enumerate() {
        tracing::debug!(sink = index + 1, config = %config.redacted(), "configuration");
        let mut watched = vec![path.clone()];
        watched.extend(config.plugin.path.clone());
        let config_path = path.clone();
        let reload = pgsink::ReloadSource {
            read_config: Box::new(move || {
                let process = pgsink::load_process(&config_path).map_err(|e| e.to_string())?;
                process
                    .sinks
                    .into_iter()
                    .nth(index)
                    .map(|sink| sink.plugin)
                    .ok_or_else(|| format!("sink {} is gone from the configuration", index + 1))
            }),
            watched,
        };
        let shutdown = shutdown.clone();
        sinks.spawn(async move {
            let name = config.name.clone();
            let result = pgsink::run(config, shutdown.clone(), Some(reload)).await;
            if result.is_err() {
                shutdown.store(true, Ordering::SeqCst);
            }
            result.with_context(|| match name {
                Some(name) => format!("sink {} ({name})", index + 1),
                None => format!("sink {}", index + 1),
            })
        });
    }
    let mut failure = None;
    while let Some(joined) = sinks.join_next().await {
        if let Err(error) = joined? {
            failure.get_or_insert(error);
        }
    }
    failure.map_or(Ok(()), Err)
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Sets `shutdown` on SIGINT or SIGTERM; a second signal exits at once.
async fn stop_on_signal(shutdown: Arc<AtomicBool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    for n in 0.. {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        if n > 0 {
            eprintln!("pgsink: second signal, exiting without flushing");
            std::process::exit(130);
        }
        tracing::info!("stopping: flushing and committing");
        shutdown.store(true, Ordering::SeqCst);
    }
}
