//! Building the converter components the end-to-end tests run: the test plugins of
//! `tests/plugins/*` (workspace members built for wasm32-wasip2 once per test run) and, through
//! [`run_build`], the example converters with their own build scripts; and the sink configuration of a
//! converter component.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::harness::{
    pg_host_port, pg_user, run_with_timeout, toml_list, toml_str, Broker, Table, TEST_DB,
};

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

/// One build per test plugin and test run, shared by the tests that use it.
type BuildCell = Arc<OnceLock<Result<PathBuf, String>>>;

/// Builds the workspace member `package` (a test converter under `tests/plugins`) for
/// wasm32-wasip2, once per test run, and returns the component
/// `target/plugins/wasm32-wasip2/release/<wasm_name>` (`wasm_name` is the file name, e.g.
/// `hostile_plugin.wasm`). It builds in the target folder and with the profile overrides
/// `host/build.rs` uses for the bundled plugin, so the guest SDK is compiled once for all. A
/// failed build fails the test with the build's output.
pub fn test_plugin_component(package: &'static str, wasm_name: &'static str) -> PathBuf {
    static BUILDS: Mutex<BTreeMap<&'static str, BuildCell>> = Mutex::new(BTreeMap::new());
    let cell = BUILDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(package)
        .or_default()
        .clone();
    let built = cell.get_or_init(|| {
        let root = repo_root();
        let target_dir = root.join("target").join("plugins");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            package,
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true");
        run_build(
            &format!("{package} (wasm32-wasip2)"),
            cmd,
            target_dir.join("wasm32-wasip2/release").join(wasm_name),
        )
    });
    built.clone().unwrap_or_else(|log| panic!("{log}"))
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

/// The `kafka.*` settings of a sink on `broker` in consumer group `group`.
pub fn sink_kafka(broker: &Broker, group: &str) -> Vec<(String, String)> {
    let mut kafka = vec![
        ("bootstrap.servers".to_string(), broker.bootstrap()),
        ("group.id".to_string(), group.to_string()),
    ];
    kafka.extend(broker.sink_kafka_props());
    kafka
}
