//! A disk cache of precompiled converter components.
//!
//! Compiling a component takes from a few hundred milliseconds (Rust) to
//! seconds (Python, JavaScript); loading a precompiled one takes a couple.
//! Precompiled code is trusted machine code, so the cache only loads files
//! pgsink wrote itself: each file carries an HMAC-SHA256 under a random key
//! that pgsink keeps in the cache folder (mode 0600), and a file whose tag does
//! not match is ignored and recompiled.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

type HmacSha256 = Hmac<Sha256>;

const KEY_FILE: &str = "cache.key";
const TAG_LEN: usize = 32;

/// Where precompiled components are kept, by component hash and engine configuration.
#[derive(Clone)]
pub struct ComponentCache {
    dir: PathBuf,
    key: [u8; 32],
    engine_tag: String,
}

/// Feeds `Hash` output into SHA-256, for a fingerprint stable across runs.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

impl ComponentCache {
    /// The default folder: `$PGSINK_CACHE_DIR`, else `$XDG_CACHE_HOME/pgsink/components`,
    /// else `$HOME/.cache/pgsink/components`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("PGSINK_CACHE_DIR") {
            return (!dir.is_empty()).then(|| PathBuf::from(dir));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
        Some(base.join("pgsink").join("components"))
    }

    /// Opens (creating if needed) the cache in `dir` for `engine`'s configuration.
    pub fn open(dir: &Path, engine: &Engine) -> io::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let key_path = dir.join(KEY_FILE);
        let key = match fs::read(&key_path) {
            Ok(bytes) if bytes.len() == 32 => bytes.try_into().expect("32 bytes"),
            _ => {
                let mut key = [0u8; 32];
                fs::File::open("/dev/urandom")
                    .and_then(|mut f| io::Read::read_exact(&mut f, &mut key))?;
                write_private(&key_path, &key)?;
                // Another process may have won the race: use whatever is there now.
                fs::read(&key_path)?
                    .try_into()
                    .map_err(|_| io::Error::other("the cache key file is damaged"))?
            }
        };
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        Ok(ComponentCache {
            dir: dir.to_path_buf(),
            key,
            engine_tag: format!("{:016x}", hasher.finish()),
        })
    }

    fn path(&self, component_hash: &str) -> PathBuf {
        self.dir
            .join(format!("{component_hash}-{}.cwasm", self.engine_tag))
    }

    fn mac(&self, bytes: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length");
        mac.update(bytes);
        mac
    }

    /// The precompiled component with this hash, if the cache holds an intact one.
    pub fn load(&self, engine: &Engine, component_hash: &str) -> Option<Component> {
        let path = self.path(component_hash);
        let file = fs::read(&path).ok()?;
        if file.len() < TAG_LEN {
            return None;
        }
        let (code, tag) = file.split_at(file.len() - TAG_LEN);
        if self.mac(code).verify_slice(tag).is_err() {
            tracing::warn!(path = %path.display(), "ignoring a cached component pgsink did not write");
            return None;
        }
        // SAFETY: the HMAC proves pgsink wrote these bytes with `Component::serialize`
        // for an engine of this configuration; wasmtime checks the version again.
        match unsafe { Component::deserialize(engine, code) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot load a cached component");
                None
            }
        }
    }

    /// Stores `component` under its hash (best effort: failures are logged).
    pub fn store(&self, component_hash: &str, component: &Component) {
        let result = component
            .serialize()
            .map_err(io::Error::other)
            .and_then(|mut code| {
                let tag = self.mac(&code).finalize().into_bytes();
                code.extend_from_slice(&tag);
                write_private(&self.path(component_hash), &code)
            });
        if let Err(error) = result {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot cache the compiled component");
        }
    }
}

/// Writes `bytes` to `path` readable by this user only, atomically: into a file of this
/// process first, then renamed, so that a reader never sees half a file.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?
        .write_all(bytes)?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).unwrap();
        let component =
            Component::new(&engine, crate::converter::runtime::BUNDLED_PATH_PARSER).unwrap();
        let cache = ComponentCache::open(dir.path(), &engine).unwrap();
        assert!(cache.load(&engine, "abc").is_none());
        cache.store("abc", &component);
        assert!(cache.load(&engine, "abc").is_some());
        // Another key (another installation) does not trust these files.
        let path = cache.path("abc");
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(cache.load(&engine, "abc").is_none());
        let reopened = ComponentCache::open(dir.path(), &engine).unwrap();
        assert_eq!(reopened.key, cache.key, "the key persists");
    }
}
