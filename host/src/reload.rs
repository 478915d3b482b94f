//! Hot reload: swapping a sink's converter while it runs.
//!
//! A change to the converter file (`plugin.path`) or to the converter settings in the
//! configuration file (or a SIGHUP) makes the reloader build a candidate off
//! the hot path: compile (or load precompiled from the cache), check it
//! against the WIT world, configure it, and convert a canary batch of recent
//! messages. Only then is it published; each pipeline swaps it in between two
//! batches, and the writer commits everything converted by the old converter
//! before it buffers anything from the new one. If any step fails, the old
//! converter keeps running and the error is logged and counted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::batch::BatchBuilder;
use crate::config::{ConverterConfig, WriteMode};
use crate::converter::{ConverterError, ConverterSpec, Table};

/// Messages kept as the canary batch for the next reload.
pub const CANARY_MESSAGES: usize = 100;

/// Recent messages of a sink, shared by its pipelines, for canary conversions.
#[derive(Default)]
pub struct CanarySample(Mutex<Option<BatchBuilder>>);

impl CanarySample {
    /// Keeps the first messages of `batch` as the next canary.
    pub fn offer(&self, batch: &BatchBuilder) {
        if let Ok(mut slot) = self.0.try_lock() {
            let mut sample = BatchBuilder::new();
            for i in 0..batch.len().min(CANARY_MESSAGES) {
                sample.append_from(batch, i);
            }
            *slot = Some(sample);
        }
    }

    fn take(&self) -> BatchBuilder {
        self.0
            .lock()
            .map(|slot| slot.as_ref().map(clone_batch).unwrap_or_default())
            .unwrap_or_default()
    }
}

fn clone_batch(batch: &BatchBuilder) -> BatchBuilder {
    let mut copy = BatchBuilder::new();
    for i in 0..batch.len() {
        copy.append_from(batch, i);
    }
    copy
}

/// Reload counters, for logs and metrics.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Converters swapped in.
    pub swapped: AtomicU64,
    /// Candidates rejected (the old converter kept running).
    pub rejected: AtomicU64,
}

/// Why a candidate converter was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration file no longer loads.
    #[error("the configuration no longer loads: {0}")]
    Config(String),
    /// Reading, compiling, checking or configuring the candidate failed.
    #[error(transparent)]
    Converter(#[from] ConverterError),
    /// The configuration changes what the running writer and stored positions follow.
    #[error("{0} cannot change while the sink runs (the writer and the stored positions follow it); restart the sink to change it")]
    Fixed(&'static str),
    /// The candidate failed its canary batch.
    #[error("the new converter failed its canary batch of {messages} recent messages: {reason}")]
    Canary {
        messages: usize,
        /// What went wrong.
        reason: String,
    },
}

/// Watches one sink's converter and publishes checked replacements.
pub struct Reloader {
    /// Re-reads this sink's converter configuration from the configuration file.
    pub read_config: Box<dyn Fn() -> Result<ConverterConfig, String> + Send + Sync>,
    /// Files whose changes trigger a reload (the configuration, the converter).
    pub watched: Vec<PathBuf>,
    /// The tables the sink writes.
    pub tables: Vec<Table>,
    /// Where pipelines pick up new converters.
    pub publish: watch::Sender<Arc<ConverterSpec>>,
    /// Recent messages for the canary.
    pub canary: Arc<CanarySample>,
    pub stats: Arc<ReloadStats>,
    /// The sink's name, for metrics.
    pub sink: String,
}

impl Reloader {
    /// Runs until `shutdown`, reloading on file changes and SIGHUP.
    pub async fn run(self, shutdown: Arc<AtomicBool>) {
        let (tx, mut changes) = mpsc::channel::<()>(16);
        let watched: Vec<PathBuf> = self
            .watched
            .iter()
            .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
            .collect();
        let names = watched.clone();
        let watcher_tx = tx.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                if event
                    .paths
                    .iter()
                    .any(|p| names.iter().any(|n| same_file(p, n)))
                {
                    let _ = watcher_tx.try_send(());
                }
            }
        });
        let _watcher = match watcher {
            Ok(mut watcher) => {
                for dir in watched.iter().filter_map(|p| p.parent()) {
                    if let Err(error) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                        tracing::warn!(dir = %dir.display(), %error, "cannot watch for converter changes");
                    }
                }
                Some(watcher)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch files; reload with SIGHUP");
                None
            }
        };
        let mut hangups =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let this = Arc::new(self);
        while !shutdown.load(Ordering::Relaxed) {
            let hangup = async {
                match hangups.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(()) = changes.recv() => {
                    // Editors and builds write in several steps: let them finish.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    while changes.try_recv().is_ok() {}
                }
                _ = hangup => tracing::info!("SIGHUP: reloading the converter"),
                _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
            }
            let reloader = this.clone();
            let outcome = tokio::task::spawn_blocking(move || reloader.try_reload()).await;
            match outcome {
                Ok(Ok(Some(version))) => {
                    this.stats.swapped.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::reloaded(&this.sink, "swapped");
                    tracing::info!(version, "converter reloaded");
                }
                Ok(Ok(None)) => tracing::debug!("converter unchanged"),
                Ok(Err(error)) => {
                    this.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::reloaded(&this.sink, "rejected");
                    tracing::error!(error = %error, "converter reload rejected; the previous converter keeps running");
                }
                Err(error) => tracing::error!(%error, "converter reload panicked"),
            }
        }
    }

    /// Builds and checks a candidate; publishes it if it differs from the
    /// current converter. Returns the new version, or None if nothing changed.
    pub fn try_reload(&self) -> Result<Option<u64>, ReloadError> {
        let config = (self.read_config)().map_err(ReloadError::Config)?;
        let current = self.publish.borrow().clone();
        let runtime = current.component.runtime();
        fixed_while_running(
            (&current.write_modes, &current.settings),
            (&config.write_modes, &config.settings),
        )?;
        let candidate = ConverterSpec::load_with(runtime, &config, current.version + 1)?;
        if candidate.component.hash() == current.component.hash()
            && candidate.settings == current.settings
            && candidate.limits == current.limits
        {
            return Ok(None);
        }
        let mut converter = candidate.instantiate(&self.tables)?;
        let canary = self.canary.take();
        let conversion = converter.convert(&canary)?;
        if conversion.faults > 0 {
            let reason = conversion
                .failed
                .first()
                .map(|(_, r)| r.clone())
                .unwrap_or_default();
            return Err(ReloadError::Canary {
                messages: canary.len(),
                reason: format!(
                    "{} of them hit a converter fault, first: {reason}",
                    conversion.faults
                ),
            });
        }
        let version = candidate.version;
        tracing::info!(converter = %converter.label(), hash = candidate.component.hash(), version,
            canary = canary.len(), "new converter passed its checks");
        self.publish.send_replace(Arc::new(candidate));
        Ok(Some(version))
    }
}

/// Refuses a reloaded configuration whose tables' write modes or topics differ from the
/// running ones (each given as its write modes and converter settings): the writer's staging
/// tables and the tables that record each topic's positions were set up for those.
fn fixed_while_running(
    running: (&[WriteMode], &[(String, String)]),
    new: (&[WriteMode], &[(String, String)]),
) -> Result<(), ReloadError> {
    if running.0 != new.0 {
        return Err(ReloadError::Fixed("the tables' write modes"));
    }
    let topics = |settings: &[(String, String)]| -> Vec<(String, String)> {
        let tables = settings.iter().filter(|(k, _)| k.starts_with("table."));
        tables
            .filter(|(k, _)| k.ends_with(".topics"))
            .cloned()
            .collect()
    };
    if topics(running.1) != topics(new.1) {
        return Err(ReloadError::Fixed("the tables' topics"));
    }
    Ok(())
}

fn same_file(event_path: &Path, watched: &Path) -> bool {
    event_path == watched
        || event_path.file_name() == watched.file_name() && event_path.parent() == watched.parent()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn write_modes_and_table_topics_are_fixed_while_running() {
        let modes = [WriteMode::Upsert, WriteMode::Append];
        let settings = pairs(&[("table.a.json.parse", "/@id"), ("table.b.topics", "x")]);
        let running = (&modes[..], &settings[..]);
        let paths = pairs(&[("table.a.json.parse", "/@id, /@v"), ("table.b.topics", "x")]);
        assert!(fixed_while_running(running, (&modes, &paths)).is_ok());
        let swapped = [WriteMode::Append, WriteMode::Upsert];
        let error = fixed_while_running(running, (&swapped, &settings)).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("the tables' write modes cannot change"),
            "{error}"
        );
        let moved = pairs(&[("table.a.json.parse", "/@id"), ("table.b.topics", "y")]);
        let error = fixed_while_running(running, (&modes, &moved)).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("the tables' topics cannot change"),
            "{error}"
        );
    }
}
