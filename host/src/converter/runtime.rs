//! The WebAssembly runtime: one engine per process, components compiled (or loaded
//! precompiled from the cache) and checked against the WIT world once, instances made from
//! them as often as a trap requires.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use super::bindings::{v0_1, ConverterPre, Table};
use super::cache::ComponentCache;
use super::error::ConverterError;
use super::instance::{call_outcome, Bindings, ConverterInstance};
use super::sandbox::{bounded_sleeps, ConverterLimits, SandboxState};

/// The bundled parse-path converter, built from `plugins/path-parser`.
pub const BUNDLED_PATH_PARSER: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/path_parser.wasm"));

/// How often the epoch advances when converters have a time limit.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The wasmtime engine every converter of this process is compiled with.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<SandboxState>>,
    cache: Option<ComponentCache>,
    epochs: bool,
}

impl Runtime {
    /// An engine tuned for batched synchronous calls: no async, no fuel; epoch
    /// interruption only when `time_limits` (it costs converter speed). Compiled
    /// components are cached in [`ComponentCache::default_dir`].
    pub fn new(time_limits: bool) -> Result<Self, ConverterError> {
        let mut runtime = Self::build(time_limits).map_err(ConverterError::Engine)?;
        if let Some(dir) = ComponentCache::default_dir() {
            match ComponentCache::open(&dir, &runtime.engine) {
                Ok(cache) => runtime.cache = Some(cache),
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "no component cache")
                }
            }
        }
        Ok(runtime)
    }

    pub(super) fn build(epochs: bool) -> wasmtime::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        config.epoch_interruption(epochs);
        // Copy-on-write memory images put a component compiled in memory (not mapped from
        // the cache) into a sealed memfd, and the kernel refuses the seal (EBUSY) while any
        // page of it is briefly pinned — seen in CI as "cannot add seals to the memfd" on the
        // JS converter. A converter is instantiated once per task, reload and trap, so
        // copying its data segments instead costs nothing that matters and never fails.
        config.memory_init_cow(false);
        let engine = Engine::new(&config)?;
        if epochs {
            let weak = engine.weak();
            std::thread::Builder::new()
                .name("pgsink-epoch".into())
                .spawn(move || {
                    while let Some(engine) = weak.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        std::thread::sleep(EPOCH_TICK);
                    }
                })
                .map_err(wasmtime::Error::from)?;
        }
        let mut linker = Linker::new(&engine);
        // WASI is linked so that ordinary Rust/Python/JS components instantiate,
        // but the context grants no files, no network, no environment and no
        // wall clock unless `plugin.clock` (it does give a monotonic clock and
        // random numbers: see `SandboxState`).
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bounded_sleeps(&mut linker)?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            cache: None,
            epochs,
        })
    }

    /// Compiles a component from its bytes (or loads it precompiled from the
    /// cache) and checks it against the WIT world; `source_name` names it in errors.
    pub fn load(
        &self,
        bytes: &[u8],
        source_name: &str,
    ) -> Result<ConverterComponent, ConverterError> {
        let hash = hex::encode(Sha256::digest(bytes));
        let cached = self
            .cache
            .as_ref()
            .and_then(|cache| cache.load(&self.engine, &hash));
        let component = match cached {
            Some(component) => component,
            None => {
                let component = Component::new(&self.engine, bytes).map_err(|error| {
                    ConverterError::Compile {
                        source_name: source_name.to_string(),
                        error,
                    }
                })?;
                if let Some(cache) = &self.cache {
                    cache.store(&hash, &component);
                }
                component
            }
        };
        let pre = self.linker.instantiate_pre(&component).and_then(|pre| {
            // The newest world first; a component built for 0.1.0 exports only that.
            match ConverterPre::new(pre.clone()) {
                Ok(pre) => Ok(World::V0_2(pre)),
                Err(newest) => v0_1::ConverterPre::new(pre).map(World::V0_1).map_err(|_| {
                    newest.context("it implements neither pgsink:converter@0.2.0 nor @0.1.0")
                }),
            }
        });
        let pre = pre.map_err(|error| ConverterError::World {
            source_name: source_name.to_string(),
            error,
        })?;
        Ok(ConverterComponent {
            pre,
            runtime: self.clone(),
            hash,
            source_name: source_name.to_string(),
        })
    }

    /// The bundled parse-path converter.
    pub fn bundled(&self) -> Result<ConverterComponent, ConverterError> {
        self.load(BUNDLED_PATH_PARSER, "bundled:path-parser")
    }
}

/// The WIT world a component implements, checked once, ready to instantiate.
#[derive(Clone)]
enum World {
    V0_2(ConverterPre<SandboxState>),
    V0_1(v0_1::ConverterPre<SandboxState>),
}

/// A compiled converter component, ready to instantiate.
#[derive(Clone)]
pub struct ConverterComponent {
    pre: World,
    runtime: Runtime,
    hash: String,
    source_name: String,
}

impl ConverterComponent {
    /// SHA-256 of the component bytes, hex: the converter's identity.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The runtime it was compiled with, which compiles its replacements.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The version of the WIT package the component implements, e.g. `0.2.0`.
    pub fn wit_version(&self) -> &'static str {
        match self.pre {
            World::V0_2(_) => "0.2.0",
            World::V0_1(_) => "0.1.0",
        }
    }

    /// A new instance within `limits`, configured with `settings` for `tables`.
    pub fn instantiate(
        &self,
        settings: &[(String, String)],
        tables: &[Table],
        limits: ConverterLimits,
    ) -> Result<ConverterInstance, ConverterError> {
        let mut store = Store::new(&self.runtime.engine, SandboxState::new(&limits));
        store.limiter(|state| state.limiter());
        let deadline_ticks = match limits.timeout {
            _ if !self.runtime.epochs => None,
            Some(timeout) => {
                Some(timeout.as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1) as u64 + 1)
            }
            None => Some(u64::MAX / 2),
        };
        let timeout = limits.timeout.filter(|_| self.runtime.epochs);
        if let Some(ticks) = deadline_ticks {
            store.set_epoch_deadline(ticks);
            store.epoch_deadline_trap();
        }
        store.data_mut().start_call(timeout);
        let world_error = |error| ConverterError::World {
            source_name: self.source_name.clone(),
            error,
        };
        let (bindings, info, configured) = match &self.pre {
            World::V0_2(pre) => {
                let world = pre.instantiate(&mut store).map_err(world_error)?;
                let iface = world.pgsink_converter_convert();
                let info = iface.call_info(&mut store).map_err(world_error)?;
                let configured = iface.call_configure(&mut store, settings, tables);
                (Bindings::V0_2(world), info, configured)
            }
            World::V0_1(pre) => {
                let instance = pre
                    .instance_pre()
                    .instantiate(&mut store)
                    .map_err(world_error)?;
                let world =
                    v0_1::ConverterWorld::new(&mut store, &instance).map_err(world_error)?;
                let convert_batch =
                    Bindings::v0_1_convert_batch(&mut store, &instance).map_err(world_error)?;
                let iface = world.pgsink_converter_convert();
                let info = iface.call_info(&mut store).map_err(world_error)?;
                let info = super::bindings::ConverterInfo {
                    name: info.name,
                    version: info.version,
                };
                let configured = match tables {
                    [table] => {
                        let columns: Vec<v0_1::Column> = table
                            .columns
                            .iter()
                            .map(|c| v0_1::Column {
                                name: c.name.clone(),
                                type_name: c.type_name.clone(),
                            })
                            .collect();
                        iface.call_configure(&mut store, settings, &columns)
                    }
                    _ => Ok(Err(format!(
                        "it implements pgsink:converter@0.1.0, which writes one table, and the sink declares {}",
                        tables.len()
                    ))),
                };
                (Bindings::V0_1(convert_batch), info, configured)
            }
        };
        let label = format!("{} {}", info.name, info.version);
        let configured = call_outcome(
            configured,
            || label.clone(),
            timeout,
            store.data(),
            "its configure call",
        )?;
        configured.map_err(|reason| ConverterError::Rejected {
            converter: label.clone(),
            reason,
        })?;
        Ok(ConverterInstance {
            store,
            bindings,
            info,
            tables: tables.to_vec(),
            deadline_ticks,
            timeout,
        })
    }
}
