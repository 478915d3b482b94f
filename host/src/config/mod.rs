//! pgsink's configuration: reading, validating and describing it.
//!
//! Two input formats lead to the same [`SinkConfig`]:
//!
//! * **TOML** (any file name not ending in `.properties`). The JustOne
//!   `kafka-sink-pg-json` property names keep their meaning as dotted keys
//!   (`db.host = "x"` and `[db] host = "x"` are the same thing), plus pgsink's
//!   own keys (`plugin.*`, `kafka.*`, ...). See [`parse_toml`]. A TOML file
//!   may declare several sinks in `[[sink]]` sections, which inherit the
//!   file's top-level keys; [`parse_process_toml`] and [`load_process`] read
//!   such files into a [`ProcessConfig`].
//! * **Java `.properties`**: the original connector's file, unchanged, plus
//!   `bootstrap.servers`. See [`parse_properties`]. Always one sink.
//!
//! Configuration is data: both formats become one flat map of dotted keys
//! (`db.host`, `kafka.linger.ms`), read into one flat struct whose fields are
//! those names (`schema.rs`). `[[sink]]` sections inherit the top level by a
//! map merge (`sinks.rs`). Validation is pure, one function per concern
//! (`validate.rs`); values are parsed in `values.rs`; `describe.rs` shows a
//! configuration without its secrets. Nothing here touches the network:
//! `metrics.address` is checked for syntax and resolved by the metrics
//! server when it starts ([`MetricsAddress::resolve`]).
//! The user-facing reference is `docs/configuration.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod describe;
mod properties;
mod schema;
mod sinks;
mod tables;
#[cfg(test)]
mod test_support;
mod validate;
mod values;

pub use describe::is_secret_key;
pub(crate) use sinks::sink_label;
pub use values::MetricsAddress;

/// Environment variable that, when set and non-empty, replaces `db.password`.
pub const PASSWORD_ENV: &str = "PGSINK_DB_PASSWORD";
/// Database host used when `db.host` is absent.
pub const DEFAULT_HOST: &str = "localhost";
/// Database port used when `db.host` names none.
pub const DEFAULT_PORT: u16 = 5432;
/// Schema used when `db.schema` is absent.
pub const DEFAULT_SCHEMA: &str = "public";
/// Default `db.buffer.size`, in bytes of COPY text (the original connector's default).
pub const DEFAULT_BUFFER_SIZE: usize = 8_000_000;
/// Smallest accepted `db.buffer.size`, in bytes.
pub const MIN_BUFFER_SIZE: usize = 1024;
/// Default `flush.interval.ms`.
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1000;
/// Default `tasks`.
pub const DEFAULT_TASKS: usize = 1;
/// `bootstrap.servers` used when the configuration sets none.
pub const DEFAULT_BOOTSTRAP_SERVERS: &str = "localhost:9092";
/// `auto.offset.reset` used when the configuration sets none (Kafka Connect's sink default).
pub const DEFAULT_AUTO_OFFSET_RESET: &str = "earliest";
/// Default `plugin.timeout.ms`: wall-clock cap on one converter call.
pub const DEFAULT_CONVERTER_TIMEOUT_MS: u64 = 10_000;
/// Default `plugin.memory.mb`: the converter's linear-memory cap, in MiB.
pub const DEFAULT_CONVERTER_MEMORY_MB: u64 = 512;
/// Smallest accepted `plugin.memory.mb`, in MiB.
pub const MIN_CONVERTER_MEMORY_MB: u64 = 16;
/// Bytes in one of `plugin.memory.mb`'s megabytes (a mebibyte).
pub const MEGABYTE: usize = 1024 * 1024;
/// Name of the converter setting that carries `db.json.parse`.
pub const PARSE_PATHS_SETTING: &str = "db.json.parse";
/// The `db.json.*` keys: top-level keys that reach the converter as settings of the same
/// name (the bundled converter reads them; another converter may).
pub const JSON_SETTINGS: &[&str] = &[
    PARSE_PATHS_SETTING,
    "db.json.envelope",
    "db.json.tombstone",
    "db.json.cast",
];
/// The original connector's class; other `connector.class` values draw a warning.
pub const JUSTONE_CONNECTOR_CLASS: &str = "com.justone.kafka.sink.pg.json.PostgreSQLSinkConnector";

/// Whether a `topics` entry is a pattern: one that starts with `^` is a regular expression, and
/// the sink consumes every topic it matches, now and as topics are created (librdkafka's
/// convention; new topics are found at each `topic.metadata.refresh.interval.ms`).
pub fn is_topic_pattern(entry: &str) -> bool {
    entry.starts_with('^')
}

/// librdkafka properties the sink controls itself, with the reason given to the user.
pub const FORBIDDEN_KAFKA_KEYS: &[(&str, &str)] = &[
    (
        "enable.auto.commit",
        "pgsink commits offsets itself, after each flush, as db.delivery requires",
    ),
    (
        "auto.commit.enable",
        "it is the legacy name of enable.auto.commit; pgsink commits offsets itself",
    ),
    (
        "enable.auto.offset.store",
        "pgsink stores offsets itself, only for messages that reached the database",
    ),
];

/// A validated process configuration: every sink of a file, and the
/// process-wide settings.
///
/// A file without `[[sink]]` sections, and every `.properties` file, gives
/// exactly one sink. `Debug` hides secrets as [`SinkConfig`]'s does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessConfig {
    /// The sinks, in the order of the file's `[[sink]]` sections (never empty).
    pub sinks: Vec<SinkConfig>,
    /// Where to serve Prometheus metrics over HTTP (`metrics.address`, top
    /// level only); `None`: no metrics endpoint.
    pub metrics_address: Option<MetricsAddress>,
}

/// A validated sink configuration.
///
/// `Debug` never shows `db.password`, nor values of Kafka properties or
/// converter settings whose names look secret (`*password*`, `*secret*`, ...).
#[derive(Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// The sink's name (`name`); the default consumer group is `connect-<name>`.
    pub name: Option<String>,
    /// Topics to consume (`topics`), in the order given, without duplicates; an entry that
    /// starts with `^` is a pattern ([`is_topic_pattern`]).
    pub topics: Vec<String>,
    /// Number of parallel pipelines (`tasks`, the original's `tasks.max`).
    pub tasks: usize,
    /// Database connection and target table (`db.*`).
    pub db: DbConfig,
    /// Delivery semantics (`db.delivery`).
    pub delivery: Delivery,
    /// Bytes of COPY text buffered before a flush (`db.buffer.size`).
    pub buffer_size: usize,
    /// Flush and offset-commit interval (`flush.interval.ms`).
    pub flush_interval: Duration,
    /// What to do with a message the converter or the database rejects (`errors.tolerance`).
    pub errors_tolerance: ErrorTolerance,
    /// Safety valve (`errors.deadletter.max.per.minute`): when one pipeline
    /// dead-letters more messages than this within one minute, the sink stops
    /// with an error. `None`: no limit. Always at least 1.
    pub max_dead_letters_per_minute: Option<u64>,
    /// The converter component and its settings (`plugin.*`, `db.json.parse`).
    pub converter: ConverterConfig,
    /// librdkafka properties, defaults applied (bootstrap.servers, group.id, auto.offset.reset).
    pub kafka: BTreeMap<String, String>,
}

/// Database connection and target table.
#[derive(Clone, PartialEq, Eq)]
pub struct DbConfig {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub database: String,
    pub username: String,
    /// Password, if any. Never shown by `Debug`.
    pub password: Option<String>,
    /// The tables the sink writes, in the order a flush writes them (never empty): `db.table`,
    /// one per topic when `db.table` holds `${topic}`, or the `[table.NAME]` sections in the
    /// order `db.tables` lists them.
    pub tables: Vec<TableConfig>,
    /// TLS to the database (`db.sslmode`, as libpq's; default `prefer`).
    pub sslmode: SslMode,
    /// CA bundle (PEM) that verifies the server's certificate under
    /// [`SslMode::VerifyFull`] (`db.sslrootcert`); `None`: the system's roots.
    /// Only ever set with `VerifyFull`. [`load`] makes a relative path
    /// relative to the configuration file's directory.
    pub sslrootcert: Option<PathBuf>,
}

/// One table a sink writes: `db.table` with the `db.*` keys, or a `[table.NAME]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfig {
    /// Unquoted, as the database spells it.
    pub schema: String,
    /// Unquoted, as the database spells it.
    pub table: String,
    /// The columns each row fills, names exactly as given (to be quoted as identifiers).
    pub columns: Vec<String>,
    /// How rows are applied (`db.write.mode`, or the section's `write.mode`).
    pub write_mode: WriteMode,
    /// The columns whose values identify a row (`key.columns`), in key order; `None`: the
    /// table's primary key. Set only with a keyed write mode.
    pub key_columns: Option<Vec<String>>,
    /// The named topics whose messages fill it (a section's `topics`, or the one topic
    /// `${topic}` stands for); empty: every topic of the sink.
    pub topics: Vec<String>,
}

impl TableConfig {
    /// Whether messages of `topic` fill this table.
    pub fn takes(&self, topic: &str) -> bool {
        self.topics.is_empty() || self.topics.iter().any(|t| t == topic)
    }
}

impl DbConfig {
    /// The table that owns the positions of `topic` in `pgsink.offsets` (its `first_table`):
    /// the first table that takes the topic's messages, else the first table. Where one topic
    /// fills several tables they commit together, so one of them speaks for all.
    pub fn position_table(&self, topic: &str) -> &TableConfig {
        self.tables
            .iter()
            .find(|t| t.takes(topic))
            .unwrap_or(&self.tables[0])
    }

    /// The first table (the only one, for most sinks).
    pub fn first_table(&self) -> &TableConfig {
        &self.tables[0]
    }
}

/// TLS to the database (`db.sslmode`), with libpq's meaning of each name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SslMode {
    /// Plain TCP, never TLS.
    Disable,
    /// TLS when the server offers it, else plain TCP; the server's
    /// certificate is not checked.
    #[default]
    Prefer,
    /// TLS or no connection; the server's certificate is not checked.
    Require,
    /// TLS or no connection; the server's certificate must chain to
    /// `db.sslrootcert` (or the system's roots) and name the host in `db.host`.
    VerifyFull,
}

/// Delivery semantics (`db.delivery`), as in the original connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Delivery {
    /// At most once: the buffer is written only when it fills; offsets are
    /// committed independently, so messages may be lost.
    Fastest,
    /// At least once: the buffer is written at every flush, then offsets are
    /// committed; messages may be written twice after a crash.
    Guaranteed,
    /// Exactly once: rows and offsets are written in one database transaction,
    /// and consumption resumes from the offsets stored in the database.
    #[default]
    Synchronized,
}

/// How rows reach the table (`db.write.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WriteMode {
    /// COPY straight into the table; a delete is refused (dead-lettered).
    #[default]
    Append,
    /// The row of a key is the last one seen; deletes remove it.
    Upsert,
    /// The first row of a key stays; later rows of that key are dropped until a delete.
    Ignore,
}

impl WriteMode {
    /// True when rows are applied by key (staged and merged), so deletes can be applied.
    pub fn is_keyed(self) -> bool {
        self != WriteMode::Append
    }
}

/// What happens to a message the converter or the database rejects (`errors.tolerance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ErrorTolerance {
    /// Stop the sink at the first bad message.
    None,
    /// Put the bad message in the dead-letter table and go on.
    #[default]
    All,
}

/// The converter component, its limits and the settings handed to it.
///
/// `Default` is the bundled converter with no settings and the default limits.
#[derive(Clone, PartialEq, Eq)]
pub struct ConverterConfig {
    /// Path of a converter component (`.wasm`); `None` means the bundled
    /// parse-path converter.
    pub path: Option<PathBuf>,
    /// Settings passed to the converter, in order: the `db.json.*` keys that are set
    /// (`db.json.parse` first), then `plugin.settings` sorted by name.
    pub settings: Vec<(String, String)>,
    /// Wall-clock cap on one converter call, i.e. one batch
    /// (`plugin.timeout.ms`, default 10 s); `None` (written 0): no limit.
    pub timeout: Option<Duration>,
    /// Cap on the converter's linear memory, in bytes (`plugin.memory.mb`
    /// MiB, default 512 MiB, at least 16 MiB).
    pub memory_limit: usize,
    /// Whether the converter sees the host's wall clock (`plugin.clock`,
    /// default false: its wall clock reads the Unix epoch).
    pub wall_clock: bool,
    /// How the sink applies the converter's rows, per table in table order (`db.write.mode`):
    /// whether a row may delete, and whether every row needs its key. A table past the end
    /// appends.
    pub write_modes: Vec<WriteMode>,
}

impl Default for ConverterConfig {
    fn default() -> Self {
        ConverterConfig {
            path: None,
            settings: Vec::new(),
            timeout: Some(Duration::from_millis(DEFAULT_CONVERTER_TIMEOUT_MS)),
            memory_limit: DEFAULT_CONVERTER_MEMORY_MB as usize * MEGABYTE,
            wall_clock: false,
            write_modes: Vec::new(),
        }
    }
}

/// An error in the configuration. Every message names the offending key, and
/// [`load`] adds the file's path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An error found in a file (added by [`load`] around the others).
    #[error("{}: {error}", path.display())]
    InFile {
        path: PathBuf,
        /// The error found in it.
        error: Box<ConfigError>,
    },
    /// TOML syntax, an unknown key or a value of the wrong type. The message
    /// names the key and shows the line.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// `.properties` syntax error.
    #[error("invalid properties syntax{}: {message}", line_suffix(*line))]
    PropertiesSyntax {
        /// 1-based line, when known.
        line: Option<usize>,
        message: String,
    },
    /// A `.properties` key pgsink does not know.
    #[error(
        "unknown property `{key}` on line {line}{hint}; accepted: {}",
        properties::accepted()
    )]
    UnknownProperty {
        /// The key as written.
        key: String,
        /// 1-based.
        line: usize,
        /// Extra advice, empty or starting with "; ".
        hint: String,
    },
    /// Two different `.properties` keys set the same thing.
    #[error("`{second}` on line {second_line} sets {target} again (`{first}` on line {first_line} already does)")]
    ConflictingProperties {
        /// What both set, as a pgsink key.
        target: String,
        first: String,
        first_line: usize,
        second: String,
        second_line: usize,
    },
    /// Required keys are absent.
    #[error("{}", missing_message(keys))]
    Missing { keys: Vec<&'static str> },
    /// A value is not acceptable.
    #[error("{key}: {message}")]
    Invalid {
        key: String,
        /// What is wrong with its value.
        message: String,
    },
    /// `db.json.parse` and `db.columns` have different lengths.
    #[error(
        "db.json.parse has {} but db.columns lists {}",
        count(*paths, "parse path", "parse paths"),
        count(*columns, "column", "columns")
    )]
    CountMismatch {
        /// Number of comma-separated parse paths.
        paths: usize,
        columns: usize,
    },
    /// The same key is given twice (for example `kafka.bootstrap.servers` and
    /// `kafka."bootstrap.servers"`).
    #[error("{key} is given twice")]
    Duplicate { key: String },
    /// A librdkafka property the sink controls itself.
    #[error("kafka.{key} cannot be set: {reason}")]
    ForbiddenKafkaKey {
        key: String,
        /// Why the sink controls it.
        reason: &'static str,
    },
    /// An error in one `[[sink]]` section of a file declaring several sinks.
    #[error(
        "{}: {error}{}",
        sink_label(*index, name.as_deref()),
        if *inherited { " (inherited from the top level)" } else { "" }
    )]
    InSink {
        /// 1-based position of the `[[sink]]` section in the file.
        index: usize,
        /// The sink's `name`, own or inherited, if any.
        name: Option<String>,
        /// Whether the offending value comes from the file's top level
        /// rather than from the `[[sink]]` section.
        inherited: bool,
        /// The error found in the sink.
        error: Box<ConfigError>,
    },
    /// Two sinks of one file that cannot run side by side.
    #[error("{first} and {second} {problem}")]
    SinkConflict {
        /// The first sink, as `sink[1] (name "a")`.
        first: String,
        /// The second sink.
        second: String,
        /// What they share and why it is wrong.
        problem: String,
    },
    /// [`load`] or [`parse_toml`] was given a file with several sinks.
    #[error(
        "this file declares {count} sinks ([[sink]] sections); only a file with a single sink \
         can be used here"
    )]
    SeveralSinks {
        /// The number of sinks the file declares.
        count: usize,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" on line {l}")).unwrap_or_default()
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn missing_message(keys: &[&str]) -> String {
    let list = keys
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut message = if keys.len() == 1 {
        format!("missing required key {list}")
    } else {
        format!("missing required keys {list}")
    };
    if keys.contains(&PARSE_PATHS_SETTING) {
        message.push_str(" (one parse path per column, or set plugin.path)");
    }
    message
}

/// Reads a configuration file declaring exactly one sink, picking the format
/// by its extension (`.properties`: Java properties; anything else: TOML).
///
/// It is [`load_process`] for files with one sink: a file with several
/// `[[sink]]` sections is rejected ([`ConfigError::SeveralSinks`]), and
/// `metrics.address` is checked but not returned.
pub fn load(path: &Path) -> Result<SinkConfig, ConfigError> {
    single_sink(load_process(path)?).map_err(|error| in_file(path, error))
}

/// Reads a configuration file with all its sinks, picking the format by its
/// extension (`.properties`: Java properties, one sink; anything else: TOML).
///
/// Beyond [`parse_process_toml`]/[`parse_properties`], it makes relative
/// `plugin.path` and `db.sslrootcert` paths relative to the file's directory
/// and applies [`PGSINK_DB_PASSWORD`](PASSWORD_ENV) to every sink (see
/// [`SinkConfig::apply_password_env`]). Errors found in the file are wrapped
/// in [`ConfigError::InFile`].
pub fn load_process(path: &Path) -> Result<ProcessConfig, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut process = if is_properties_file(path) {
        parse_properties(&properties::decode(bytes)).map(|sink| ProcessConfig {
            sinks: vec![sink],
            metrics_address: None,
        })
    } else {
        match String::from_utf8(bytes) {
            Ok(text) => parse_process_toml(&text),
            Err(e) => Err(ConfigError::invalid(
                "encoding",
                format!(
                    "TOML must be UTF-8 (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            )),
        }
    }
    .map_err(|error| in_file(path, error))?;

    let password = match std::env::var(PASSWORD_ENV) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(ConfigError::invalid(
                PASSWORD_ENV,
                "the environment variable is not valid UTF-8",
            ))
        }
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    for sink in &mut process.sinks {
        if let Some(dir) = dir {
            for file in [sink.converter.path.as_mut(), sink.db.sslrootcert.as_mut()]
                .into_iter()
                .flatten()
            {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            }
        }
        sink.apply_password_env(password.clone());
    }
    Ok(process)
}

fn in_file(path: &Path, error: ConfigError) -> ConfigError {
    ConfigError::InFile {
        path: path.to_owned(),
        error: Box::new(error),
    }
}

/// The only sink of a process configuration.
fn single_sink(process: ProcessConfig) -> Result<SinkConfig, ConfigError> {
    let count = process.sinks.len();
    let mut sinks = process.sinks.into_iter();
    match (sinks.next(), sinks.next()) {
        (Some(sink), None) => Ok(sink),
        _ => Err(ConfigError::SeveralSinks { count }),
    }
}

fn is_properties_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("properties"))
}

/// Loads a single-sink file as [`load`] does, but with `plugin.path` set to
/// `plugin` (for `pgsink convert --plugin`), so a file written for another
/// converter, or with no `db.json.parse`, can be used to try a converter.
pub fn load_with_converter(path: &Path, plugin: &Path) -> Result<SinkConfig, ConfigError> {
    if is_properties_file(path) {
        let mut sink = load(path)?;
        sink.converter.path = Some(plugin.to_owned());
        return Ok(sink);
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| in_file(path, e.into()))?;
    // The quoted dotted key would name `plugin.path` a second time.
    table.remove("plugin.path");
    let plugin_table = table
        .entry("plugin")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(plugin_table) = plugin_table {
        plugin_table.insert(
            "path".into(),
            toml::Value::String(plugin.display().to_string()),
        );
    }
    let mut sink = parse_toml(&table.to_string()).map_err(|error| in_file(path, error))?;
    sink.converter.path = Some(plugin.to_owned());
    sink.apply_password_env(std::env::var(PASSWORD_ENV).ok());
    Ok(sink)
}

/// Parses and validates a TOML configuration declaring exactly one sink
/// (no `[[sink]]` sections, or one). Several sinks are an error
/// ([`ConfigError::SeveralSinks`]); `metrics.address` is checked but not returned.
pub fn parse_toml(text: &str) -> Result<SinkConfig, ConfigError> {
    single_sink(parse_process_toml(text)?)
}

/// Parses and validates a TOML configuration with all its sinks: one when
/// the file has no `[[sink]]` sections, else one per section, each inheriting
/// the file's top-level keys.
pub fn parse_process_toml(text: &str) -> Result<ProcessConfig, ConfigError> {
    sinks::process(text)
}

/// Parses and validates a Java `.properties` configuration (the original
/// connector's file plus `bootstrap.servers`).
pub fn parse_properties(text: &str) -> Result<SinkConfig, ConfigError> {
    let (schema, key_names) = properties::to_schema(text)?;
    validate::sink(&schema, key_names)
}

impl SinkConfig {
    /// Who owns the sink's stored offsets and dead letters: its `name`, else
    /// `<db.schema>.<db.table>` (a sink of several tables has a name). Renaming a sink starts
    /// its positions over, as renaming a Kafka Connect connector changes its consumer group.
    pub fn identity(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => {
                let first = self.db.first_table();
                format!("{}.{}", first.schema, first.table)
            }
        }
    }

    /// Whether the sink consumes `topic`: it is named in `topics`, or a pattern matches it.
    pub fn consumes(&self, topic: &str) -> bool {
        self.topics.iter().any(|entry| {
            entry == topic
                || is_topic_pattern(entry)
                    && regex::Regex::new(entry).is_ok_and(|p| p.is_match(topic))
        })
    }

    /// Replaces `db.password` with `value` (the content of
    /// [`PGSINK_DB_PASSWORD`](PASSWORD_ENV)) when it is set and non-empty.
    pub fn apply_password_env(&mut self, value: Option<String>) {
        if let Some(password) = value.filter(|v| !v.is_empty()) {
            tracing::debug!("db.password taken from {PASSWORD_ENV}");
            self.db.password = Some(password);
        }
    }
}

#[cfg(test)]
mod tests;
