//! Builds the bundled path-parser converter for `wasm32-wasip2` so that the
//! `pgsink` binary can embed it. Set `PGSINK_BUNDLED_PLUGIN` to a prebuilt
//! component to skip the nested build.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("path_parser.wasm");
    println!("cargo:rerun-if-env-changed=PGSINK_BUNDLED_PLUGIN");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    if let Some(prebuilt) = env::var_os("PGSINK_BUNDLED_PLUGIN") {
        println!("cargo:rerun-if-changed={}", Path::new(&prebuilt).display());
        std::fs::copy(&prebuilt, &out).expect("copy PGSINK_BUNDLED_PLUGIN");
        return;
    }
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    for watched in [
        "wit",
        "guest-sdk/src",
        "guest-sdk/Cargo.toml",
        "plugins/path-parser",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // Beside the workspace's own build output, so a shared CARGO_TARGET_DIR caches it too.
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("plugins");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "path-parser",
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
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .status()
        .expect("run cargo to build the bundled path-parser plugin");
    if !status.success() {
        panic!(
            "building the bundled path-parser plugin failed; is the wasm32-wasip2 target installed? \
             (`rustup target add wasm32-wasip2`)"
        );
    }
    let built = target_dir.join("wasm32-wasip2/release/path_parser.wasm");
    std::fs::copy(&built, &out)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", built.display(), out.display()));
}
