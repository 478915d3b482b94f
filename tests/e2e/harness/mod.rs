//! Shared machinery of the end-to-end tests, one concern a module: the test's context and names
//! (`context`), the `pgsink` process (`processes`, `sink_toml`), PostgreSQL (`postgres`), the
//! standard messages and the delivery checks (`rows`), the brokers (`brokers`), the producer
//! (`producer`), pgsink's HTTP endpoints (`metrics`) and the test converters (`plugins`).
//!
//! Environment (set by `tests/run`):
//! - `PGSINK_TEST_PG`: libpq-style connection string of the PostgreSQL to use
//!   (default `host=127.0.0.1 port=5432 user=postgres`); the tests use its database `pgsink_test`.
//! - `PGSINK_TEST_TANSU`: `host:port` of a running tansu broker (tansu tests fail without it).
//! - `PGSINK_TEST_RUST_LOG`: `RUST_LOG` of the pgsink processes (default `info`).
//!
//! Every test owns a [`Ctx`]: a work directory under `target/tmp/e2e` (kept when the test fails)
//! and the logs of the pgsink processes it started, printed when the test fails.

use std::time::Duration;

mod brokers;
mod context;
mod metrics;
mod plugins;
mod postgres;
mod processes;
mod producer;
mod rows;
mod sink_toml;

pub use brokers::*;
pub use context::*;
pub use metrics::*;
pub use plugins::*;
pub use postgres::*;
pub use processes::*;
pub use producer::*;
pub use rows::*;
pub use sink_toml::*;

/// The binary under test.
pub const PGSINK: &str = env!("CARGO_BIN_EXE_pgsink");
/// Database the tests work in (created when missing).
pub const TEST_DB: &str = "pgsink_test";
/// Generous bound for anything that involves a consumer group (mock: join ~3 s, rebalance
/// 9–18 s): waits poll and return as soon as the condition holds.
pub const LONG: Duration = Duration::from_secs(120);
/// Bound for a pgsink process to exit after SIGTERM.
pub const EXIT: Duration = Duration::from_secs(60);
