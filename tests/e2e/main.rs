//! End-to-end tests of pgsink: the `pgsink` binary against a real PostgreSQL and two Kafka
//! brokers (librdkafka's in-process mock cluster and tansu). Run them with `tests/run`
//! (`tests/run --test e2e -- synchronized` selects by name); see `harness/mod.rs` for the
//! environment they read.
//!
//! Test names group by feature: `convert_*`, `packaging_*`, `roundtrip_postgres*`,
//! `cdc_*` (envelopes, casts), `synchronized_*`, `guaranteed_*`, `fastest_*`, `two_topics_*`, `dead_letters*`,
//! `errors_*`, `quoted_identifiers*`, `hostile_*` (the corpus in `tests/corpus`),
//! `startup_errors_*`, `properties_file*`, `converters_*`, `reload_*`, `sandbox_*`,
//! `security_*`, `operations_*`, `scale_out_*`, `tls_*`, `write_modes_*`; the broker appears as `_mock` or
//! `_tansu`. Fault tests (kill -9, PostgreSQL crash, disk full, table dropped, broker request
//! errors) are in `faults.rs`.

mod harness;
mod pg_cluster;

mod cdc;
mod config_formats;
mod convert;
mod converters;
mod delivery;
mod errors;
mod faults;
mod hostile_input;
mod interleavings;
mod operations;
mod reload;
mod restart;
mod sandbox;
mod scale_out;
mod selftest;
mod tables;
mod tls;
mod upgrades;
mod write_modes;
