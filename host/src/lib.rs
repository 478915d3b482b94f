//! pgsink streams Kafka topics into PostgreSQL tables at COPY speed, turning
//! each message into rows through a WebAssembly converter component.
//!
//! The pieces, in the order a message meets them:
//! - `config`: the TOML (or original `.properties`) configuration, validated once.
//! - `BatchBuilder`: Kafka messages laid out flat for one component call.
//! - `Runtime`, `Plugin`, `Converter`: loading, sandboxing and calling converters,
//!   and checking their untrusted COPY text.
//! - the pipeline: consume, convert, COPY, commit per delivery mode; every delivery decision
//!   (what each message is, when to commit, where to resume) is the ledger's, code without
//!   I/O that a model-based test drives through random interleavings.

mod batch;
mod bindings;
mod check;
mod component_cache;
mod config;
mod conversion;
mod convert_lines;
mod converter;
mod copy_rows;
mod demo;
mod dlq;
mod intake;
mod kafka;
mod ledger;
#[cfg(test)]
mod ledger_model;
mod metrics;
mod pipeline;
mod postgres;
mod reload;
mod sink;
mod stored_offsets;
mod tls;
mod writer;

pub use batch::{BatchBuilder, MessageRef};
pub use bindings::{Column, PluginInfo};
pub use check::{check, CheckLine};
pub use component_cache::ComponentCache;
pub use config::{
    load as load_config, load_process, load_with_plugin as load_config_with_plugin,
    parse_process_toml, parse_properties, parse_toml, ConfigError, DbConfig, Delivery,
    ErrorTolerance, PluginConfig, ProcessConfig, SinkConfig, SslMode,
};
pub use conversion::{Conversion, Converter};
pub use convert_lines::{convert_lines, ConvertError, ConvertSummary};
pub use converter::{
    ConverterInstance, Plugin, PluginError, PluginLimits, Runtime, BUNDLED_PATH_PARSER,
};
pub use copy_rows::check_rows;
pub use demo::{demo, DemoArgs};
pub use dlq::{list as dlq_list, redrive as dlq_redrive, DeadLetterRow, RedriveSummary};
pub use metrics::serve_metrics;
pub use postgres::{connect, quote_ident, DbError, Target, INSTALL_SQL, UNINSTALL_SQL};
pub use reload::{ConverterSpec, ReloadError, ReloadStats};
pub use sink::{load_plugin, plugin_limits, run, ReloadSource};
pub use writer::SinkError;
