//! Building the converter components the end-to-end tests run: the test plugins of
//! `tests/plugins/*` (workspace members built for wasm32-wasip2 once per test run) and, through
//! [`run_build`], the example converters with their own build scripts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::harness::run_with_timeout;

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
