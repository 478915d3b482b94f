//! Builds the test converters of `tests/plugins/*` (workspace members) for wasm32-wasip2, for
//! every test that needs one: the end-to-end tests and the host's unit tests include this file
//! with `#[path = ".../tests/support/build_plugin.rs"] mod build_plugin;`, so it uses std only.
//!
//! Each package is built once per process; concurrent callers wait for the one build. All test
//! binaries build into one stable folder, `<workspace>/target/plugins`, whatever
//! `CARGO_TARGET_DIR` says: cargo's lock on that folder serialises builds from concurrent test
//! binaries, and the second finds the component up to date instead of building it again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Builds the workspace member `package` with `cargo build --release --target wasm32-wasip2`
/// (once per process) and returns the component `<workspace>/target/plugins/wasm32-wasip2/
/// release/<wasm_name>` (`wasm_name` is the file name, e.g. `hostile_plugin.wasm`). A failed
/// build panics with the tail of cargo's stderr, in every test that asks for the package.
pub fn build_plugin(package: &str, wasm_name: &str) -> PathBuf {
    type Cell = Arc<OnceLock<Result<PathBuf, String>>>;
    static BUILDS: Mutex<Option<HashMap<String, Cell>>> = Mutex::new(None);
    let cell: Cell = BUILDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .entry(format!("{package}/{wasm_name}"))
        .or_default()
        .clone();
    let built = cell.get_or_init(|| cargo_build(package, wasm_name));
    match built {
        Ok(path) => path.clone(),
        Err(message) => panic!("{message}"),
    }
}

/// The folder whose `Cargo.toml` has a `[workspace]` table, above this package's manifest.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .map(|text| text.lines().any(|l| l.trim() == "[workspace]"))
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no workspace Cargo.toml above {}", manifest_dir.display()))
        .to_path_buf()
}

fn cargo_build(package: &str, wasm_name: &str) -> Result<PathBuf, String> {
    let root = workspace_root();
    let target_dir = root.join("target").join("plugins");
    let wasm = target_dir
        .join("wasm32-wasip2")
        .join("release")
        .join(wasm_name);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
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
    // The test's own build settings are for the host, not for wasm32-wasip2.
    .env_remove("CARGO_ENCODED_RUSTFLAGS")
    .env_remove("RUSTFLAGS")
    .env_remove("CARGO_BUILD_TARGET")
    .env_remove("CARGO_TARGET_DIR")
    // The profile overrides host/build.rs uses for the bundled plugin.
    .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
    .env("CARGO_PROFILE_RELEASE_STRIP", "true");
    let t0 = Instant::now();
    eprintln!("building {package} (wasm32-wasip2): {cmd:?}");
    let output = cmd
        .output()
        .map_err(|e| format!("building {package}: cannot run cargo: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(60)..].join("\n");
    if !output.status.success() {
        return Err(format!(
            "building {package} for wasm32-wasip2 failed ({}) after {:.1} s; the end of cargo's \
             stderr:\n{tail}",
            output.status,
            t0.elapsed().as_secs_f64()
        ));
    }
    if !wasm.is_file() {
        return Err(format!(
            "building {package} succeeded but {} is missing; the end of cargo's stderr:\n{tail}",
            wasm.display()
        ));
    }
    eprintln!(
        "built {package} in {:.1} s: {}",
        t0.elapsed().as_secs_f64(),
        wasm.display()
    );
    Ok(wasm)
}
