//! What can go wrong with a converter, sorted by how the sink reacts: load-time errors
//! (`Read`, `Engine`, `Compile`, `World`, `Rejected`) stop a start or a reload before anything is
//! consumed; call-time faults (`Trap`, `Timeout`, `Memory`) fail only the messages of the call,
//! which the converter retries one by one on a fresh instance; `Stuck` stops the sink.

use std::path::PathBuf;
use std::time::Duration;

/// Errors loading, configuring or calling a converter component.
#[derive(Debug, thiserror::Error)]
pub enum ConverterError {
    /// The component file cannot be read.
    #[error("cannot read the converter {}: {error}", path.display())]
    Read {
        /// The file (`plugin.path`).
        path: PathBuf,
        error: std::io::Error,
    },
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
    #[error("the converter {converter} rejected its settings: {reason}")]
    Rejected {
        /// The converter's name and version.
        converter: String,
        /// The converter's own message.
        reason: String,
    },
    /// The converter trapped (panicked, ran out of memory, …).
    #[error("the converter {converter} trapped: {}", failure(error))]
    Trap {
        /// The converter's name and version.
        converter: String,
        /// wasmtime's reason.
        error: wasmtime::Error,
    },
    /// The converter ran past `plugin.timeout.ms` on one call.
    #[error("the converter {converter} ran longer than plugin.timeout.ms ({timeout:?}) on {call} and was stopped")]
    Timeout {
        /// The converter's name and version.
        converter: String,
        /// The limit.
        timeout: Duration,
        /// Which call: `one batch`, or `its configure call`.
        call: &'static str,
    },
    /// The converter failed (trapped) after the host refused to grow its
    /// memory beyond `plugin.memory.mb`: it ran out of memory.
    #[error("the converter {converter} ran out of memory: it asked for {asked} MiB, over plugin.memory.mb ({limit} MiB): {}", failure(error))]
    Memory {
        /// The converter's name and version.
        converter: String,
        /// The limit, in MiB.
        limit: usize,
        /// The size of the refused memory, in MiB (rounded up).
        asked: usize,
        /// wasmtime's reason for the failure that followed.
        error: wasmtime::Error,
    },
    /// The converter keeps timing out: it cannot make progress at all.
    #[error("the converter {converter} cannot make progress: {timeouts} messages in a row ran past plugin.timeout.ms; stopping the sink")]
    Stuck {
        /// The converter's name and version.
        converter: String,
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
