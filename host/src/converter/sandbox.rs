//! The sandbox a converter runs in: what its WASI context grants (nothing that reaches outside
//! the process: no files, network, environment or wall clock unless `plugin.clock`), the
//! memory cap, and sleeps bounded by the call's deadline. A converter is untrusted code; the
//! sandbox is what makes a hostile one harmless (see `tests.rs` and `tests/e2e/sandbox.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::{ResourceLimiter, StoreContextMut, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::{DynPollable, Pollable};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use crate::config::ConverterConfig;

/// The sandbox limits of one converter instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConverterLimits {
    /// Wall-clock cap on one call (one batch); `None`: no cap.
    pub timeout: Option<Duration>,
    /// Cap on the instance's linear memory, in bytes.
    pub memory: usize,
    /// Whether the converter sees the host's wall clock; otherwise its wall
    /// clock reads the Unix epoch.
    pub wall_clock: bool,
}

impl Default for ConverterLimits {
    /// The limits of a configuration that sets none.
    fn default() -> Self {
        ConverterLimits::from(&ConverterConfig::default())
    }
}

impl From<&ConverterConfig> for ConverterLimits {
    fn from(config: &ConverterConfig) -> Self {
        ConverterLimits {
            timeout: config.timeout,
            memory: config.memory_limit,
            wall_clock: config.wall_clock,
        }
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
pub struct SandboxState {
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

impl SandboxState {
    /// A fresh sandbox within `limits`: see the type's documentation for what it grants.
    pub(super) fn new(limits: &ConverterLimits) -> Self {
        let clock = Monotonic(Instant::now());
        let mut wasi = WasiCtx::builder();
        wasi.monotonic_clock(clock);
        if !limits.wall_clock {
            wasi.wall_clock(UnixEpoch);
        }
        SandboxState {
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
        }
    }

    /// The store's resource limiter.
    pub(super) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }

    /// When the current call was refused memory: the cap and the size asked for, in bytes.
    pub(super) fn refused_memory(&self) -> Option<(usize, usize)> {
        self.limits.refused.map(|asked| (self.limits.limit, asked))
    }

    /// Resets the per-call state before a call into the converter.
    pub(super) fn start_call(&mut self, timeout: Option<Duration>) {
        self.deadline = timeout.map(|t| Instant::now() + t);
        self.cut_short.store(false, Ordering::Relaxed);
        self.limits.refused = None;
    }

    /// True if the current call waited until its deadline.
    pub(super) fn timed_out(&self) -> bool {
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
/// out ([`SandboxState::cut_short`]). The epoch deadline only interrupts
/// WebAssembly code, not a wait inside the host: without this, a converter
/// that sleeps for an hour would hold its pipeline for an hour, and one that
/// sleeps forever would hold it forever.
pub(super) fn bounded_sleeps(linker: &mut Linker<SandboxState>) -> wasmtime::Result<()> {
    fn subscribe(
        mut store: StoreContextMut<'_, SandboxState>,
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
        |store: StoreContextMut<'_, SandboxState>, (nanos,): (u64,)| subscribe(store, nanos),
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |store: StoreContextMut<'_, SandboxState>, (when,): (u64,)| {
            let now = store.data().clock.nanos();
            subscribe(store, when.saturating_sub(now))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
