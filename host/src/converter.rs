//! Loading converter components and calling them: the WebAssembly runtime.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{self, Batch, Column, Converted, ConverterPre, PluginInfo};
use crate::component_cache::ComponentCache;

/// The bundled parse-path converter, built from `plugins/path-parser`.
pub const BUNDLED_PATH_PARSER: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/path_parser.wasm"));

/// How often the epoch advances when converters have a time limit.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The sandbox limits of one converter instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Wall-clock cap on one call (one batch); `None`: no cap.
    pub timeout: Option<Duration>,
    /// Cap on the instance's linear memory, in bytes.
    pub memory: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            timeout: Some(Duration::from_secs(10)),
            memory: 512 << 20,
        }
    }
}

/// Errors loading, configuring or calling a converter component.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The wasmtime engine could not be set up.
    #[error("cannot set up the WebAssembly engine: {0:#}")]
    Engine(wasmtime::Error),
    /// The file is not a WebAssembly component wasmtime can compile.
    #[error("cannot compile the converter component {source_name}: {error:#}")]
    Compile {
        /// Where the component came from.
        source_name: String,
        /// wasmtime's reason.
        error: wasmtime::Error,
    },
    /// The component does not implement the `pgsink:converter` world.
    #[error("the converter component {source_name} does not fit the pgsink:converter@0.1.0 world: {error:#}")]
    World {
        /// Where the component came from.
        source_name: String,
        /// wasmtime's reason.
        error: wasmtime::Error,
    },
    /// The converter rejected its settings.
    #[error("the converter {plugin} rejected its settings: {reason}")]
    Rejected {
        /// The converter's name and version.
        plugin: String,
        /// The converter's own message.
        reason: String,
    },
    /// The converter trapped (panicked, ran out of memory, …).
    #[error("the converter {plugin} trapped: {error:#}")]
    Trap {
        /// The converter's name and version.
        plugin: String,
        /// wasmtime's reason.
        error: wasmtime::Error,
    },
    /// The converter ran past `plugin.timeout.ms` on one call.
    #[error("the converter {plugin} ran longer than plugin.timeout.ms ({timeout:?}) on one batch and was stopped")]
    Timeout {
        /// The converter's name and version.
        plugin: String,
        /// The limit.
        timeout: Duration,
    },
    /// The converter keeps timing out: it cannot make progress at all.
    #[error("the converter {plugin} cannot make progress: {timeouts} messages in a row ran past plugin.timeout.ms; stopping the sink (nothing is committed past the last flushed rows)")]
    Stuck {
        /// The converter's name and version.
        plugin: String,
        /// Consecutive single-message timeouts.
        timeouts: u32,
    },
}

/// The wasmtime engine every converter of this process is compiled with.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<PluginState>>,
    cache: Option<ComponentCache>,
    epochs: bool,
}

impl Runtime {
    /// An engine tuned for batched synchronous calls: no async, no fuel; epoch
    /// interruption only when `time_limits` (it costs converter speed). Compiled
    /// components are cached in [`ComponentCache::default_dir`].
    pub fn new(time_limits: bool) -> Result<Self, PluginError> {
        let mut runtime = Self::build(time_limits).map_err(PluginError::Engine)?;
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

    /// The same runtime without a disk cache.
    pub fn without_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    fn build(epochs: bool) -> wasmtime::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        config.epoch_interruption(epochs);
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
        // but the context grants nothing: no files, no network, no environment.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            cache: None,
            epochs,
        })
    }

    /// Compiles a component from its bytes (or loads it precompiled from the
    /// cache) and checks it against the WIT world; `source_name` names it in errors.
    pub fn load(&self, bytes: &[u8], source_name: &str) -> Result<Plugin, PluginError> {
        let hash = hex::encode(Sha256::digest(bytes));
        let cached = self
            .cache
            .as_ref()
            .and_then(|cache| cache.load(&self.engine, &hash));
        let component = match cached {
            Some(component) => component,
            None => {
                let component =
                    Component::new(&self.engine, bytes).map_err(|error| PluginError::Compile {
                        source_name: source_name.to_string(),
                        error,
                    })?;
                if let Some(cache) = &self.cache {
                    cache.store(&hash, &component);
                }
                component
            }
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(ConverterPre::new)
            .map_err(|error| PluginError::World {
                source_name: source_name.to_string(),
                error,
            })?;
        Ok(Plugin {
            pre,
            engine: self.engine.clone(),
            epochs: self.epochs,
            hash,
            source_name: source_name.to_string(),
        })
    }

    /// The bundled parse-path converter.
    pub fn bundled(&self) -> Result<Plugin, PluginError> {
        self.load(BUNDLED_PATH_PARSER, "bundled:path-parser")
    }
}

/// A compiled converter component, ready to instantiate.
#[derive(Clone)]
pub struct Plugin {
    pre: ConverterPre<PluginState>,
    engine: Engine,
    epochs: bool,
    hash: String,
    source_name: String,
}

impl Plugin {
    /// SHA-256 of the component bytes, hex: the plugin's identity.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Where the component came from (a path, or `bundled:path-parser`).
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// A new instance within `limits`, configured with `settings` for `columns`.
    pub fn instantiate(
        &self,
        settings: &[(String, String)],
        columns: &[Column],
        limits: PluginLimits,
    ) -> Result<ConverterInstance, PluginError> {
        let state = PluginState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory)
                .trap_on_grow_failure(false)
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let deadline_ticks = match limits.timeout {
            _ if !self.epochs => None,
            Some(timeout) => {
                Some(timeout.as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1) as u64 + 1)
            }
            None => Some(u64::MAX / 2),
        };
        if let Some(ticks) = deadline_ticks {
            store.set_epoch_deadline(ticks);
            store.epoch_deadline_trap();
        }
        let world_error = |error| PluginError::World {
            source_name: self.source_name.clone(),
            error,
        };
        let bindings = self.pre.instantiate(&mut store).map_err(world_error)?;
        let iface = bindings.pgsink_converter_convert();
        let info = iface.call_info(&mut store).map_err(world_error)?;
        let label = format!("{} {}", info.name, info.version);
        let trap = |error| PluginError::Trap {
            plugin: label.clone(),
            error,
        };
        iface
            .call_configure(&mut store, settings, columns)
            .map_err(trap)?
            .map_err(|reason| PluginError::Rejected {
                plugin: label.clone(),
                reason,
            })?;
        Ok(ConverterInstance {
            store,
            bindings,
            info,
            columns: columns.len(),
            deadline_ticks,
            timeout: limits.timeout,
        })
    }
}

/// One live converter instance: a store with its memory and the configured converter.
pub struct ConverterInstance {
    store: Store<PluginState>,
    bindings: bindings::Converter,
    info: PluginInfo,
    columns: usize,
    deadline_ticks: Option<u64>,
    timeout: Option<Duration>,
}

impl ConverterInstance {
    /// The converter's name and version.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The number of fields every row must have.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Converts one batch with one component call. A trap leaves this
    /// instance unusable: make a new one.
    pub fn convert(&mut self, batch: &Batch) -> Result<Converted, PluginError> {
        if let Some(ticks) = self.deadline_ticks {
            self.store.set_epoch_deadline(ticks);
        }
        self.bindings
            .pgsink_converter_convert()
            .call_convert_batch(&mut self.store, batch)
            .map_err(|error| {
                let plugin = format!("{} {}", self.info.name, self.info.version);
                match (error.downcast_ref::<wasmtime::Trap>(), self.timeout) {
                    (Some(wasmtime::Trap::Interrupt), Some(timeout)) => {
                        PluginError::Timeout { plugin, timeout }
                    }
                    _ => PluginError::Trap { plugin, error },
                }
            })
    }
}

/// What a converter's store holds: an empty WASI context and the memory cap.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
