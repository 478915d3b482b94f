//! Converter components for the tests: the test converters of `tests/plugins/*` (through the
//! one builder in `tests/support/build_plugin.rs`, shared with the host's unit tests), the
//! example converters with their own build scripts ([`run_build`]), and the sink configuration
//! of a converter component.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{pg_host_port, pg_user, run_with_timeout, toml_list, toml_str, Table, TEST_DB};

#[path = "../../support/build_plugin.rs"]
mod build_plugin;

pub use build_plugin::build_plugin;

/// The repository root (the parent of `host/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// The output of a build command, or its log when it failed.
pub fn run_build(what: &str, cmd: Command, output: PathBuf) -> Result<PathBuf, String> {
    let t0 = Instant::now();
    eprintln!("building {what}: {cmd:?}");
    // First builds download the tools (componentize-py, jco): allow for a slow registry.
    let out = run_with_timeout(cmd, b"", Duration::from_secs(1200));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(format!(
            "building {what} failed ({}) after {:.1} s; its output:\n{log}",
            out.status,
            t0.elapsed().as_secs_f64()
        ));
    }
    if !output.is_file() {
        return Err(format!(
            "building {what} succeeded but {} is missing; its output:\n{log}",
            output.display()
        ));
    }
    eprintln!(
        "built {what} in {:.1} s: {}",
        t0.elapsed().as_secs_f64(),
        output.display()
    );
    Ok(output)
}

/// A `pgsink run` (or `convert`) configuration for a converter component: synchronized,
/// flushing every 250 ms, settings under `[plugin.settings]`.
pub fn plugin_config(
    table: &Table,
    topic: &str,
    kafka: &[(String, String)],
    plugin: &Path,
    settings: &[(&str, &str)],
) -> String {
    plugin_config_with(table, topic, kafka, plugin, &[], settings)
}

/// [`plugin_config`] with more top-level `lines` (e.g. `plugin.timeout.ms = 500`).
pub fn plugin_config_with(
    table: &Table,
    topic: &str,
    kafka: &[(String, String)],
    plugin: &Path,
    lines: &[String],
    settings: &[(&str, &str)],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "topics = {}", toml_list(&[topic]));
    let _ = writeln!(s, "db.host = {}", toml_str(&pg_host_port()));
    let _ = writeln!(s, "db.database = {}", toml_str(TEST_DB));
    let _ = writeln!(s, "db.username = {}", toml_str(&pg_user()));
    let _ = writeln!(s, "db.schema = {}", toml_str(&table.schema));
    let _ = writeln!(s, "db.table = {}", toml_str(&table.name));
    let _ = writeln!(s, "db.columns = {}", toml_list(&table.columns));
    let _ = writeln!(s, "db.delivery = \"synchronized\"");
    let _ = writeln!(s, "flush.interval.ms = 250");
    let _ = writeln!(
        s,
        "plugin.path = {}",
        toml_str(plugin.to_str().expect("UTF-8 path"))
    );
    for line in lines {
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(s, "\n[plugin.settings]");
    for (k, v) in settings {
        let _ = writeln!(s, "{} = {}", toml_str(k), toml_str(v));
    }
    let _ = writeln!(s, "\n[kafka]");
    for (k, v) in kafka {
        let _ = writeln!(s, "{} = {}", toml_str(k), toml_str(v));
    }
    s
}
