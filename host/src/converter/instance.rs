//! One live converter instance and what its calls return: a value, or the fault that
//! explains a failure (a deadline, the memory cap, a trap).

use std::time::Duration;

use wasmtime::component::{Func, Instance};
use wasmtime::{AsContextMut, Store};

use super::bindings::{v0_1, Batch, Converted, ConverterInfo, ConverterWorld, Table};
use super::error::ConverterError;
use super::sandbox::SandboxState;

/// The exports of a live instance, by the WIT world it implements.
pub(super) enum Bindings {
    V0_2(ConverterWorld),
    /// The 0.1 `convert-batch` export, typechecked against the host's (0.2) batch type,
    /// which is the same record: a 0.1 converter is handed the batch without a copy.
    V0_1(Func),
}

impl Bindings {
    /// The `convert-batch` export of a 0.1 instance, checked to take the host's batch type.
    pub(super) fn v0_1_convert_batch(
        mut store: impl AsContextMut,
        instance: &Instance,
    ) -> wasmtime::Result<Func> {
        let missing = || wasmtime::format_err!("no export {}", v0_1::INTERFACE);
        let iface = instance
            .get_export_index(&mut store, None, v0_1::INTERFACE)
            .ok_or_else(missing)?;
        let func = instance
            .get_export_index(&mut store, Some(&iface), v0_1::CONVERT_BATCH)
            .ok_or_else(missing)?;
        let typed = instance.get_typed_func::<(&Batch,), (v0_1::Converted,)>(&mut store, &func)?;
        Ok(*typed.func())
    }
}

/// One live converter instance: a store with its memory and the configured converter.
pub struct ConverterInstance {
    pub(super) store: Store<SandboxState>,
    pub(super) bindings: Bindings,
    pub(super) info: ConverterInfo,
    pub(super) tables: Vec<Table>,
    /// The epoch deadline set before each call; `None`: the engine has no epochs.
    pub(super) deadline_ticks: Option<u64>,
    /// `plugin.timeout.ms`, when the engine can enforce it.
    pub(super) timeout: Option<Duration>,
}

impl ConverterInstance {
    /// The converter's name and version.
    pub fn info(&self) -> &ConverterInfo {
        &self.info
    }

    /// The tables it writes, as its `configure` was told.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// Converts one batch with one component call. A trap leaves this
    /// instance unusable: make a new one.
    pub fn convert(&mut self, batch: &Batch) -> Result<Converted, ConverterError> {
        if let Some(ticks) = self.deadline_ticks {
            self.store.set_epoch_deadline(ticks);
        }
        self.store.data_mut().start_call(self.timeout);
        let converted = match &self.bindings {
            Bindings::V0_2(world) => world
                .pgsink_converter_convert()
                .call_convert_batch(&mut self.store, batch),
            Bindings::V0_1(convert_batch) => convert_batch
                .typed::<(&Batch,), (v0_1::Converted,)>(&self.store)
                .and_then(|typed| typed.call(&mut self.store, (batch,)))
                .map(|(converted,)| Converted::from(converted)),
        };
        call_outcome(
            converted,
            || format!("{} {}", self.info.name, self.info.version),
            self.timeout,
            self.store.data(),
            "one batch",
        )
    }
}

/// The outcome of a converter call: its value, or the [`ConverterError`] — a
/// timeout when the epoch deadline interrupted it or it waited (slept) until
/// its deadline, running out of memory when the host refused to grow its
/// memory during the call, otherwise a trap. `converter` names it.
pub(super) fn call_outcome<T>(
    result: Result<T, wasmtime::Error>,
    converter: impl FnOnce() -> String,
    timeout: Option<Duration>,
    state: &SandboxState,
    call: &'static str,
) -> Result<T, ConverterError> {
    match (result, timeout) {
        (Err(error), _) => Err(fault(error, converter(), timeout, state, call)),
        (Ok(_), Some(timeout)) if state.timed_out() => Err(ConverterError::Timeout {
            converter: converter(),
            timeout,
            call,
        }),
        (Ok(value), _) => Ok(value),
    }
}

/// The [`ConverterError`] of a failed converter call (see [`call_outcome`]).
fn fault(
    error: wasmtime::Error,
    converter: String,
    timeout: Option<Duration>,
    state: &SandboxState,
    call: &'static str,
) -> ConverterError {
    const MIB: usize = 1 << 20;
    tracing::debug!(%converter, call, error = ?error, "converter call failed");
    match (error.downcast_ref::<wasmtime::Trap>(), timeout) {
        (Some(wasmtime::Trap::Interrupt), Some(timeout)) => ConverterError::Timeout {
            converter,
            timeout,
            call,
        },
        _ => match state.refused_memory() {
            Some((limit, asked)) => ConverterError::Memory {
                converter,
                limit: limit / MIB,
                asked: asked.div_ceil(MIB),
                error,
            },
            None => ConverterError::Trap { converter, error },
        },
    }
}
