//! `pgsink run`: every sink of the configuration until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::{self, ProcessConfig};
use crate::supervisor::{self, ReloadSource};

#[derive(clap::Args)]
pub struct Args {
    /// The configuration: TOML, or the original connector's `.properties` file.
    #[arg(short, long)]
    config: PathBuf,
}

pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    let process = config::load_process(&args.config)?;
    super::tokio_runtime()?.block_on(run_sinks(args.config, process))?;
    Ok(ExitCode::SUCCESS)
}

/// Runs every sink of the configuration until a signal (or a sink's failure,
/// which stops the others too after they flush).
async fn run_sinks(path: PathBuf, process: ProcessConfig) -> anyhow::Result<()> {
    let shutdown = Arc::new(AtomicBool::new(false));
    tokio::spawn(stop_on_signal(shutdown.clone()));
    if let Some(address) = process.metrics_address {
        crate::metrics::serve_metrics(address).with_context(|| path.display().to_string())?;
    }
    let mut sinks = tokio::task::JoinSet::new();
    for (index, config) in process.sinks.into_iter().enumerate() {
        tracing::debug!(sink = index + 1, config = %config.redacted(), "configuration");
        let mut watched = vec![path.clone()];
        watched.extend(config.converter.path.clone());
        let config_path = path.clone();
        let reload = ReloadSource {
            read_config: Box::new(move || {
                let process = config::load_process(&config_path).map_err(|e| e.to_string())?;
                process
                    .sinks
                    .into_iter()
                    .nth(index)
                    .map(|sink| sink.converter)
                    .ok_or_else(|| format!("sink {} is gone from the configuration", index + 1))
            }),
            watched,
        };
        let shutdown = shutdown.clone();
        sinks.spawn(async move {
            let name = config.name.clone();
            let result = supervisor::run(config, shutdown.clone(), Some(reload)).await;
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
