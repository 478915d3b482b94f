//! pgsink streams Kafka topics into PostgreSQL tables at COPY speed, turning
//! each message into rows through a WebAssembly converter component.
//!
//! The pieces, in the order a message meets them:
//! - `config`: the TOML (or original `.properties`) configuration, validated once.
//! - `BatchBuilder`: Kafka messages laid out flat for one component call.
//! - `Runtime`, `Plugin`, `Converter`: loading, sandboxing and calling converters,
//!   and checking their untrusted COPY text.
//! - the pipeline: consume, convert, COPY, commit per delivery mode.

mod batch;
mod bindings;
mod config;
mod conversion;
mod converter;
mod copy_rows;

pub use batch::{BatchBuilder, MessageRef};
pub use bindings::{Column, PluginInfo};
pub use config::{
    load as load_config, parse_properties, parse_toml, ConfigError, DbConfig, Delivery,
    ErrorTolerance, PluginConfig, SinkConfig,
};
pub use conversion::{Conversion, Converter};
pub use converter::{ConverterInstance, Plugin, PluginError, Runtime, BUNDLED_PATH_PARSER};
pub use copy_rows::check_rows;
