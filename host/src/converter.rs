//! Loading converter components and calling them: the WebAssembly runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, Resource, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, StoreContextMut, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::{DynPollable, Pollable};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

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
    /// Whether the converter sees the host's wall clock; otherwise its wall
    /// clock reads the Unix epoch.
    pub wall_clock: bool,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            timeout: Some(Duration::from_secs(10)),
            memory: 512 << 20,
            wall_clock: false,
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
    #[error("the converter {plugin} trapped: {}", failure(error))]
    Trap {
        /// The converter's name and version.
        plugin: String,
        /// wasmtime's reason.
        error: wasmtime::Error,
    },
    /// The converter ran past `plugin.timeout.ms` on one call.
    #[error("the converter {plugin} ran longer than plugin.timeout.ms ({timeout:?}) on {call} and was stopped")]
    Timeout {
        /// The converter's name and version.
        plugin: String,
        /// The limit.
        timeout: Duration,
        /// Which call: `one batch`, or `its configure call`.
        call: &'static str,
    },
    /// The converter failed (trapped) after the host refused to grow its
    /// memory beyond `plugin.memory.mb`: it ran out of memory.
    #[error("the converter {plugin} ran out of memory: it asked for {asked} MiB, more than plugin.memory.mb ({limit} MiB) allows, and then failed: {}", failure(error))]
    Memory {
        /// The converter's name and version.
        plugin: String,
        /// The limit, in MiB.
        limit: usize,
        /// The size of the refused memory, in MiB (rounded up).
        asked: usize,
        /// wasmtime's reason for the failure that followed.
        error: wasmtime::Error,
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

/// What a trap says, without the WebAssembly backtrace wasmtime adds (a
/// dozen lines of function indexes, which would fill every dead letter's
/// reason; `Debug` of the error keeps it): `wasm trap: …`, with a hint for
/// the trap Rust panics and aborts end in.
fn failure(error: &wasmtime::Error) -> String {
    let hint = match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::UnreachableCodeReached) => " (a panic or abort in the converter)",
        _ => "",
    };
    format!("{}{hint}", error.root_cause())
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
        // but the context grants no files, no network, no environment and no
        // wall clock unless `plugin.clock` (it does give a monotonic clock and
        // random numbers: see `PluginState`).
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
        let clock = Monotonic(Instant::now());
        let mut wasi = WasiCtx::builder();
        wasi.monotonic_clock(clock);
        if !limits.wall_clock {
            wasi.wall_clock(UnixEpoch);
        }
        let state = PluginState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: MemoryCap {
                limits: StoreLimitsBuilder::new()
                    .memory_size(limits.memory)
                    .trap_on_grow_failure(false)
                    .build(),
                limit: limits.memory,
                refused: None,
            },
            clock,
            deadline: None,
            cut_short: Arc::new(AtomicBool::new(false)),
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
        let timeout = limits.timeout.filter(|_| self.epochs);
        if let Some(ticks) = deadline_ticks {
            store.set_epoch_deadline(ticks);
            store.epoch_deadline_trap();
        }
        store.data_mut().start_call(timeout);
        let world_error = |error| PluginError::World {
            source_name: self.source_name.clone(),
            error,
        };
        let bindings = self.pre.instantiate(&mut store).map_err(world_error)?;
        let iface = bindings.pgsink_converter_convert();
        let info = iface.call_info(&mut store).map_err(world_error)?;
        let label = format!("{} {}", info.name, info.version);
        let configured = iface.call_configure(&mut store, settings, columns);
        let configured = call_outcome(
            configured,
            || label.clone(),
            timeout,
            store.data(),
            "its configure call",
        )?;
        configured.map_err(|reason| PluginError::Rejected {
            plugin: label.clone(),
            reason,
        })?;
        Ok(ConverterInstance {
            store,
            bindings,
            info,
            columns: columns.len(),
            deadline_ticks,
            timeout,
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
        self.store.data_mut().start_call(self.timeout);
        let converted = self
            .bindings
            .pgsink_converter_convert()
            .call_convert_batch(&mut self.store, batch);
        call_outcome(
            converted,
            || format!("{} {}", self.info.name, self.info.version),
            self.timeout,
            self.store.data(),
            "one batch",
        )
    }
}

/// The outcome of a converter call: its value, or the [`PluginError`] — a
/// timeout when the epoch deadline interrupted it or it waited (slept) until
/// its deadline, running out of memory when the host refused to grow its
/// memory during the call, otherwise a trap. `plugin` names the converter.
fn call_outcome<T>(
    result: Result<T, wasmtime::Error>,
    plugin: impl FnOnce() -> String,
    timeout: Option<Duration>,
    state: &PluginState,
    call: &'static str,
) -> Result<T, PluginError> {
    match (result, timeout) {
        (Err(error), _) => Err(fault(error, plugin(), timeout, state, call)),
        (Ok(_), Some(timeout)) if state.timed_out() => Err(PluginError::Timeout {
            plugin: plugin(),
            timeout,
            call,
        }),
        (Ok(value), _) => Ok(value),
    }
}

/// The [`PluginError`] of a failed converter call (see [`call_outcome`]).
fn fault(
    error: wasmtime::Error,
    plugin: String,
    timeout: Option<Duration>,
    state: &PluginState,
    call: &'static str,
) -> PluginError {
    const MIB: usize = 1 << 20;
    tracing::debug!(%plugin, call, error = ?error, "converter call failed");
    match (error.downcast_ref::<wasmtime::Trap>(), timeout) {
        (Some(wasmtime::Trap::Interrupt), Some(timeout)) => PluginError::Timeout {
            plugin,
            timeout,
            call,
        },
        _ => match state.limits.refused {
            Some(asked) => PluginError::Memory {
                plugin,
                limit: state.limits.limit / MIB,
                asked: asked.div_ceil(MIB),
                error,
            },
            None => PluginError::Trap { plugin, error },
        },
    }
}

/// What a converter's store holds: a WASI context and the memory cap.
///
/// The WASI context has no preopened directories, no environment variables or
/// arguments, closed stdin, stdout and stderr that discard what they get, and
/// no network (sockets may be created, but every address is refused and name
/// lookups are denied). Its wall clock reads the Unix epoch unless
/// `plugin.clock = true` gives it the host's. It does give a monotonic clock
/// (time since the instance was made) and random numbers, which language
/// runtimes need; sleeps are cut short at
/// the end of the call's `plugin.timeout.ms` (see [`bounded_sleeps`]).
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: MemoryCap,
    /// The monotonic clock the WASI context gives the converter.
    clock: Monotonic,
    /// When the current call runs out of `plugin.timeout.ms`; `None`: no limit.
    deadline: Option<Instant>,
    /// Set when the converter waited in a sleep until `deadline`: the call has
    /// run out of time even if it goes on to return.
    cut_short: Arc<AtomicBool>,
}

impl PluginState {
    /// Resets the per-call state before a call into the converter.
    fn start_call(&mut self, timeout: Option<Duration>) {
        self.deadline = timeout.map(|t| Instant::now() + t);
        self.cut_short.store(false, Ordering::Relaxed);
        self.limits.refused = None;
    }

    /// True if the current call waited until its deadline.
    fn timed_out(&self) -> bool {
        self.cut_short.load(Ordering::Relaxed)
    }
}

/// `plugin.memory.mb` as a [`ResourceLimiter`]: [`StoreLimits`], remembering
/// the last refused growth so that a failure after it is reported as running
/// out of memory rather than as a bare trap.
struct MemoryCap {
    limits: StoreLimits,
    /// The cap, in bytes.
    limit: usize,
    /// The size a memory was refused to grow to during the current call.
    refused: Option<usize>,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed && desired > self.limit {
            self.refused = Some(desired);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// The wall clock of a converter without `plugin.clock`: always the Unix epoch,
/// so a converter learns nothing of the date and converts the same way today
/// and tomorrow.
struct UnixEpoch;

impl HostWallClock for UnixEpoch {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// The converter's monotonic clock: nanoseconds since its instance was made
/// (as WASI's default clock), readable by the host to bound sleeps.
#[derive(Debug, Clone, Copy)]
struct Monotonic(Instant);

impl Monotonic {
    fn nanos(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl HostMonotonicClock for Monotonic {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.nanos()
    }
}

/// A sleep of the converter: ready at `until` (`None`: never). When `until`
/// is the call's deadline rather than the time the converter asked for, a wait
/// that lasts until then sets `cut_short`: the call has run out of time.
struct Sleep {
    until: Option<tokio::time::Instant>,
    cut_short: Option<Arc<AtomicBool>>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Sleep {
    async fn ready(&mut self) {
        match self.until {
            Some(until) => tokio::time::sleep_until(until).await,
            None => std::future::pending().await,
        }
        if let Some(flag) = &self.cut_short {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// Replaces WASI's `subscribe-duration` and `subscribe-instant` (every way a
/// converter can wait: `poll`, `pollable.block`, `std::thread::sleep`) with
/// versions whose sleeps end at the end of the current call's
/// `plugin.timeout.ms` at the latest; a call that waits until then has timed
/// out ([`PluginState::cut_short`]). The epoch deadline only interrupts
/// WebAssembly code, not a wait inside the host: without this, a converter
/// that sleeps for an hour would hold its pipeline for an hour, and one that
/// sleeps forever would hold it forever.
fn bounded_sleeps(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    fn subscribe(
        mut store: StoreContextMut<'_, PluginState>,
        nanos: u64,
    ) -> wasmtime::Result<(Resource<DynPollable>,)> {
        let state = store.data_mut();
        let wanted = Instant::now().checked_add(Duration::from_nanos(nanos));
        let sleep = match (wanted, state.deadline) {
            (Some(wanted), Some(deadline)) if wanted <= deadline => Sleep {
                until: Some(wanted.into()),
                cut_short: None,
            },
            (_, Some(deadline)) => Sleep {
                until: Some(deadline.into()),
                cut_short: Some(state.cut_short.clone()),
            },
            (wanted, None) => Sleep {
                until: wanted.map(Into::into),
                cut_short: None,
            },
        };
        let sleep = state.table.push(sleep)?;
        Ok((wasmtime_wasi::p2::subscribe(&mut state.table, sleep)?,))
    }
    linker.allow_shadowing(true);
    let mut clock = linker.instance("wasi:clocks/monotonic-clock@0.2.12")?;
    clock.func_wrap(
        "subscribe-duration",
        |store: StoreContextMut<'_, PluginState>, (nanos,): (u64,)| subscribe(store, nanos),
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |store: StoreContextMut<'_, PluginState>, (when,): (u64,)| {
            let now = store.data().clock.nanos();
            subscribe(store, when.saturating_sub(now))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::OnceLock;
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    use super::*;
    use crate::batch::{BatchBuilder, MessageRef};

    /// The time limit of the sandbox tests: long enough for an ordinary batch on a busy
    /// machine, short enough to keep the tests quick.
    pub(crate) const TIMEOUT: Duration = Duration::from_millis(500);

    /// The sandbox limits of the tests: [`TIMEOUT`], and 32 MiB of memory.
    pub(crate) const LIMITS: PluginLimits = PluginLimits {
        timeout: Some(TIMEOUT),
        memory: 32 << 20,
        wall_clock: false,
    };

    /// The test converter `tests/plugins/hostile`, built for wasm32-wasip2 once per test run
    /// into `target/plugins` (as the end-to-end tests build it, so it is built once for both).
    pub(crate) fn hostile_component() -> &'static [u8] {
        static BUILT: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
        let built = BUILT.get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("host/ has a parent")
                .to_path_buf();
            let target_dir = root.join("target").join("plugins");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
            let output = Command::new(cargo)
                .args(["build", "--release", "--target", "wasm32-wasip2"])
                .args(["-p", "hostile-plugin", "--manifest-path"])
                .arg(root.join("Cargo.toml"))
                .arg("--target-dir")
                .arg(&target_dir)
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_BUILD_TARGET")
                .env_remove("CARGO_TARGET_DIR")
                .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
                .env("CARGO_PROFILE_RELEASE_STRIP", "true")
                .output()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            let wasm: PathBuf = target_dir.join("wasm32-wasip2/release/hostile_plugin.wasm");
            if !output.status.success() {
                return Err(format!(
                    "building tests/plugins/hostile failed ({}):\n{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            std::fs::read(&wasm).map_err(|e| format!("read {}: {e}", wasm.display()))
        });
        built.as_deref().unwrap_or_else(|log| panic!("{log}"))
    }

    /// A runtime with time limits and no disk cache.
    pub(crate) fn runtime() -> Runtime {
        Runtime::build(true).expect("engine")
    }

    /// The hostile converter's columns: offset, command, result.
    pub(crate) fn hostile_columns() -> Vec<Column> {
        ["kafka_offset", "command", "result"]
            .iter()
            .map(|name| Column {
                name: name.to_string(),
                type_name: None,
            })
            .collect()
    }

    /// The hostile converter, compiled.
    pub(crate) fn hostile() -> Plugin {
        runtime()
            .load(hostile_component(), "hostile_plugin.wasm")
            .expect("load the hostile converter")
    }

    /// A batch of messages with these values, at offsets 0, 1, … of partition 0 of `t`.
    pub(crate) fn batch(values: &[&str]) -> BatchBuilder {
        let mut b = BatchBuilder::new();
        for (offset, value) in values.iter().enumerate() {
            b.push(
                MessageRef {
                    topic: "t",
                    partition: 0,
                    offset: offset as i64,
                    timestamp: None,
                    key: None,
                    value: Some(value.as_bytes()),
                },
                [],
            );
        }
        b
    }

    fn instance(settings: &[(&str, &str)]) -> ConverterInstance {
        let settings: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        hostile()
            .instantiate(&settings, &hostile_columns(), LIMITS)
            .expect("instantiate the hostile converter")
    }

    /// Converts one message on a fresh instance: the result column of its row, or the error.
    fn one(command: &str) -> Result<String, PluginError> {
        let converted = instance(&[]).convert(batch(&[command]).batch())?;
        let text = String::from_utf8(converted.copy_text).expect("UTF-8");
        let fields: Vec<&str> = text.trim_end_matches('\n').split('\t').collect();
        assert_eq!(fields.len(), 3, "one row of 3 fields: {text:?}");
        Ok(fields[2].to_string())
    }

    /// Converts one message that must fail, and says how long it took.
    fn failing(command: &str) -> (PluginError, Duration) {
        let t0 = Instant::now();
        let error = one(command).expect_err(command);
        (error, t0.elapsed())
    }

    /// An infinite loop is stopped by the epoch deadline soon after `plugin.timeout.ms`, and
    /// reported as a timeout naming the limit.
    #[test]
    fn sandbox_an_infinite_loop_is_stopped_at_the_timeout() {
        let (error, took) = failing("loop");
        assert!(
            matches!(error, PluginError::Timeout { call: "one batch", timeout, .. } if timeout == TIMEOUT),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("plugin.timeout.ms (500ms)"),
            "{error}"
        );
        assert!(
            took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(10),
            "{took:?}"
        );
    }

    /// A sleep inside the host (a blocking WASI call, which the epoch deadline cannot
    /// interrupt) ends at `plugin.timeout.ms` too, while short sleeps still sleep.
    #[test]
    fn sandbox_a_long_sleep_is_cut_at_the_timeout() {
        let (error, took) = failing("sleep:30000");
        assert!(matches!(error, PluginError::Timeout { .. }), "{error:?}");
        assert!(took < TIMEOUT + Duration::from_secs(10), "{took:?}");
        let slept = one("sleep:50").expect("a short sleep");
        let ms: u64 = slept
            .strip_prefix("slept ")
            .and_then(|s| s.strip_suffix(" ms"))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{slept}"));
        assert!((50..2000).contains(&ms), "{slept}");
    }

    /// A memory bomb cannot grow past `plugin.memory.mb`, and its failure is reported as
    /// running out of memory, naming the limit; a converter that checks its allocations sees
    /// them refused below the limit.
    #[test]
    fn sandbox_a_memory_bomb_is_stopped_at_the_memory_cap() {
        let (error, _) = failing("alloc");
        match &error {
            PluginError::Memory { limit, asked, .. } => {
                assert_eq!(*limit, 32);
                assert!(*asked > 32, "{error}");
            }
            other => panic!("expected a memory error: {other:?}"),
        }
        assert!(
            error.to_string().contains("plugin.memory.mb (32 MiB)"),
            "{error}"
        );
        let refused = one("alloc_try").expect("alloc_try makes a row");
        let mib: usize = refused
            .strip_prefix("refused after ")
            .and_then(|s| s.strip_suffix(" MiB"))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{refused}"));
        assert!((16..32).contains(&mib), "{refused}");
    }

    /// A panic, a stack overflow and a WASI `exit` are traps: an error for the call, never a
    /// crash of the host.
    #[test]
    fn sandbox_panics_stack_overflows_and_exits_are_traps() {
        for (command, word) in [
            (
                "trap",
                "wasm trap: wasm `unreachable` instruction executed (a panic or abort",
            ),
            ("stack", "wasm trap: out of bounds memory access"),
            ("exit", "Exited with i32 exit status 1"),
        ] {
            let (error, _) = failing(command);
            assert!(
                matches!(error, PluginError::Trap { .. }),
                "{command}: {error:?}"
            );
            let text = error.to_string();
            assert!(
                text.contains("trapped") && text.contains(word),
                "{command}: {text}"
            );
            assert!(
                !text.contains('\n'),
                "one line, without the backtrace: {text}"
            );
        }
    }

    /// From the inside, the sandbox has no files, no environment and no network.
    #[test]
    fn sandbox_grants_no_files_environment_or_network() {
        for probe in ["fs", "env", "net"] {
            let result = one(probe).expect(probe);
            assert!(!result.contains("GRANTED"), "{probe}: {result}");
            assert!(result.contains("denied"), "{probe}: {result}");
        }
        let env = one("env").unwrap();
        assert!(env.starts_with("vars: 0 []; args: 0 []"), "{env}");
    }

    /// The clock probe's wall-clock reading, in seconds since the epoch, under `limits`.
    fn wall_clock_seconds(limits: PluginLimits) -> (u64, String) {
        let converted = hostile()
            .instantiate(&[], &hostile_columns(), limits)
            .expect("instantiate the hostile converter")
            .convert(batch(&["clock"]).batch())
            .expect("the clock probe converts");
        let text = String::from_utf8(converted.copy_text).expect("UTF-8");
        let probe = text
            .trim_end_matches('\n')
            .split('\t')
            .nth(2)
            .unwrap_or_default();
        let wall = probe
            .strip_prefix("wall: ")
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{probe}"));
        (wall, probe.to_string())
    }

    /// What the sandbox gives: no wall clock by default (it reads the Unix epoch), the host's
    /// with `plugin.clock = true`; a monotonic clock and random numbers always (language
    /// runtimes need them). Documented here so that a change is a decision.
    #[test]
    fn sandbox_wall_clock_only_when_configured_monotonic_and_random_always() {
        let (wall, probe) = wall_clock_seconds(LIMITS);
        assert_eq!(wall, 0, "{probe}: no wall clock without plugin.clock");
        assert!(!probe.contains("monotonic: 0 ns"), "{probe}");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let with_clock = PluginLimits {
            wall_clock: true,
            ..LIMITS
        };
        let (wall, probe) = wall_clock_seconds(with_clock);
        assert!(wall.abs_diff(now) < 60, "{probe}: the host's wall clock");
        let (a, b) = (one("random").unwrap(), one("random").unwrap());
        assert_ne!(a, b, "two instances get different random seeds");
    }

    /// A `configure` that never returns, runs out of memory, traps or rejects its settings
    /// fails the instantiation with an error saying which, in bounded time.
    #[test]
    fn sandbox_misbehaving_configure_fails_the_instantiation() {
        let plugin = hostile();
        let try_configure = |how: &str| {
            let settings = vec![("configure".to_string(), how.to_string())];
            let t0 = Instant::now();
            let result = plugin.instantiate(&settings, &hostile_columns(), LIMITS);
            assert!(t0.elapsed() < TIMEOUT + Duration::from_secs(10));
            result
                .err()
                .unwrap_or_else(|| panic!("configure = {how} must fail"))
        };
        let error = try_configure("loop");
        assert!(
            matches!(
                error,
                PluginError::Timeout {
                    call: "its configure call",
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("on its configure call"),
            "{error}"
        );
        assert!(
            matches!(try_configure("alloc"), PluginError::Memory { .. }),
            "alloc"
        );
        assert!(
            matches!(try_configure("trap"), PluginError::Trap { .. }),
            "trap"
        );
        let error = try_configure("reject");
        assert!(matches!(error, PluginError::Rejected { .. }), "{error:?}");
        assert!(error.to_string().contains("on purpose"), "{error}");
    }

    /// After a trap the instance is not reused; a fresh one from the same plugin works.
    #[test]
    fn sandbox_a_fresh_instance_works_after_a_trap() {
        let plugin = hostile();
        let mut first = plugin.instantiate(&[], &hostile_columns(), LIMITS).unwrap();
        assert!(first.convert(batch(&["loop"]).batch()).is_err());
        let mut second = plugin.instantiate(&[], &hostile_columns(), LIMITS).unwrap();
        let converted = second.convert(batch(&["a", "b"]).batch()).unwrap();
        assert_eq!(converted.copy_text, b"0\ta\tok\n1\tb\tok\n");
    }
}
