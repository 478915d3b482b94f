//! pgsink streams Kafka topics into PostgreSQL tables at COPY speed, turning
//! each message into rows through a WebAssembly converter component.
//!
//! Data flows one way: source → convert → write → commit. Where each concern lives (and where
//! a new config key, write mode or WIT version goes) is in `ARCHITECTURE.md`; in short:
//! - `config/`: the TOML (or original `.properties`) configuration, validated once, purely.
//! - `kafka.rs`, `intake.rs`, `batch.rs`: the consumer, its rebalance callbacks, and messages
//!   laid out flat for one converter call.
//! - `converter/`: loading, sandboxing and calling converters, and checking their untrusted
//!   COPY text.
//! - `pipeline.rs` → `conversion_stage.rs` → `writer.rs` → `postgres.rs`: consume on a thread,
//!   convert on another (overlapping), COPY and commit in a task, per delivery mode. Every delivery decision (what each message is, when
//!   to commit, where to resume) is `ledger.rs`'s: code without I/O that a model-based test
//!   (`ledger_model.rs`) drives through random interleavings.
//! - `supervisor.rs`: one sink's pipelines and its converter reloader (`reload.rs`).
//! - `cli/`: the subcommands.
//!
//! The library exists for the `pgsink` binary and the benchmarks; it exports what they use.

mod batch;
mod cli;
mod config;
mod conversion_stage;
mod converter;
mod intake;
mod kafka;
mod ledger;
#[cfg(test)]
mod ledger_model;
mod metrics;
mod pending;
mod pipeline;
mod postgres;
mod reload;
mod stored_offsets;
mod supervisor;
mod tls;
mod writer;

pub use batch::{BatchBuilder, MessageRef};
pub use cli::Command;
pub use converter::{Column, Converter, ConverterLimits, Runtime, Table};
