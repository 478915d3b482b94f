//! Loading converter components and calling them: the WebAssembly runtime.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{self, Batch, Column, Converted, ConverterPre, PluginInfo};

/// The bundled parse-path converter, built from `plugins/path-parser`.
pub const BUNDLED_PATH_PARSER: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/path_parser.wasm"));

/// Linear memory one converter instance may grow to.
const MEMORY_LIMIT: usize = 512 << 20;

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
}

/// The wasmtime engine every converter of this process is compiled with.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<PluginState>>,
}

impl Runtime {
    /// An engine tuned for batched synchronous calls (no async, no fuel, no epochs).
    pub fn new() -> Result<Self, PluginError> {
        Self::build().map_err(PluginError::Engine)
    }

    fn build() -> wasmtime::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        // WASI is linked so that ordinary Rust/Python/JS components instantiate,
        // but the context grants nothing: no files, no network, no environment.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
        })
    }

    /// Compiles a component from its bytes; `source_name` names it in errors.
    pub fn load(&self, bytes: &[u8], source_name: &str) -> Result<Plugin, PluginError> {
        let component =
            Component::new(&self.engine, bytes).map_err(|error| PluginError::Compile {
                source_name: source_name.to_string(),
                error,
            })?;
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
            hash: hex::encode(Sha256::digest(bytes)),
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

    /// A new instance, configured with `settings` for `columns`.
    pub fn instantiate(
        &self,
        settings: &[(String, String)],
        columns: &[Column],
    ) -> Result<ConverterInstance, PluginError> {
        let state = PluginState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(MEMORY_LIMIT)
                .instances(4)
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
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
        })
    }
}

/// One live converter instance: a store with its memory and the configured converter.
pub struct ConverterInstance {
    store: Store<PluginState>,
    bindings: bindings::Converter,
    info: PluginInfo,
    columns: usize,
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
        self.bindings
            .pgsink_converter_convert()
            .call_convert_batch(&mut self.store, batch)
            .map_err(|error| PluginError::Trap {
                plugin: format!("{} {}", self.info.name, self.info.version),
                error,
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
