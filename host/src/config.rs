//! pgsink's configuration: reading, validating and describing it.
//!
//! Two input formats lead to the same [`SinkConfig`]:
//!
//! * **TOML** (any file name not ending in `.properties`). The JustOne
//!   `kafka-sink-pg-json` property names keep their meaning as dotted keys
//!   (`db.host = "x"` and `[db] host = "x"` are the same thing), plus pgsink's
//!   own keys (`plugin.*`, `kafka.*`, ...). See [`parse_toml`].
//! * **Java `.properties`**: the original connector's file, unchanged, plus
//!   `bootstrap.servers`. See [`parse_properties`].
//!
//! Both formats are turned into one raw, serde-derived structure
//! (`raw::RawConfig`) and checked in one place (`RawConfig::validate`).
//! The user-facing reference is `docs/configuration.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

mod properties;
mod raw;

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
/// Name of the converter setting that carries `db.json.parse`.
pub const PARSE_PATHS_SETTING: &str = "db.json.parse";
/// The original connector's class; other `connector.class` values draw a warning.
pub const JUSTONE_CONNECTOR_CLASS: &str = "com.justone.kafka.sink.pg.json.PostgreSQLSinkConnector";

/// librdkafka properties the sink controls itself, with the reason given to the user.
pub const FORBIDDEN_KAFKA_KEYS: &[(&str, &str)] = &[
    (
        "enable.auto.commit",
        "pgsink commits offsets itself, after each flush, as db.delivery requires",
    ),
    (
        "auto.commit.enable",
        "it is librdkafka's legacy name for enable.auto.commit; pgsink commits offsets itself, \
         after each flush, as db.delivery requires",
    ),
    (
        "enable.auto.offset.store",
        "pgsink stores offsets itself, only for messages that reached the database",
    ),
];

/// A validated sink configuration.
///
/// `Debug` never shows `db.password`, nor values of Kafka properties or
/// converter settings whose names look secret (`*password*`, `*secret*`, ...).
#[derive(Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// The sink's name (`name`); the default consumer group is `connect-<name>`.
    pub name: Option<String>,
    /// Topics to consume (`topics`), in the order given, without duplicates.
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
    /// The converter component and its settings (`plugin.*`, `db.json.parse`).
    pub plugin: PluginConfig,
    /// librdkafka properties, defaults applied (bootstrap.servers, group.id, auto.offset.reset).
    pub kafka: BTreeMap<String, String>,
}

/// Database connection and target table.
#[derive(Clone, PartialEq, Eq)]
pub struct DbConfig {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database name.
    pub database: String,
    /// User name.
    pub username: String,
    /// Password, if any. Never shown by `Debug`.
    pub password: Option<String>,
    /// Schema of the target table.
    pub schema: String,
    /// Target table.
    pub table: String,
    /// Target columns, names exactly as given (to be quoted as identifiers).
    pub columns: Vec<String>,
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

/// What happens to a message the converter or the database rejects (`errors.tolerance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ErrorTolerance {
    /// Stop the sink at the first bad message.
    None,
    /// Put the bad message in the dead-letter table and go on.
    #[default]
    All,
}

/// The converter component and the settings handed to it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PluginConfig {
    /// Path of a converter component (`.wasm`); `None` means the bundled
    /// parse-path converter.
    pub path: Option<PathBuf>,
    /// Settings passed to the converter, in order: `("db.json.parse", paths)`
    /// first when `db.json.parse` is set, then `plugin.settings` sorted by name.
    pub settings: Vec<(String, String)>,
}

/// An error in the configuration. Every message names the offending key, and
/// [`load`] adds the file's path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An error found in a file (added by [`load`] around the others).
    #[error("{}: {error}", path.display())]
    InFile {
        /// The file.
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
        /// What is wrong.
        message: String,
    },
    /// A `.properties` key pgsink does not know.
    #[error(
        "unknown property `{key}` on line {line}{hint}; accepted: {}",
        properties::ACCEPTED.join(", ")
    )]
    UnknownProperty {
        /// The key as written.
        key: String,
        /// 1-based line.
        line: usize,
        /// Extra advice, empty or starting with "; ".
        hint: String,
    },
    /// Two different `.properties` keys set the same thing.
    #[error("`{second}` on line {second_line} sets {target} again (`{first}` on line {first_line} already does)")]
    ConflictingProperties {
        /// What both set, as a pgsink key.
        target: String,
        /// The first key.
        first: String,
        /// Its line.
        first_line: usize,
        /// The second key.
        second: String,
        /// Its line.
        second_line: usize,
    },
    /// Required keys are absent.
    #[error("{}", missing_message(keys))]
    Missing {
        /// The absent keys.
        keys: Vec<&'static str>,
    },
    /// A value is not acceptable.
    #[error("{key}: {message}")]
    Invalid {
        /// The key.
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
        /// Number of columns.
        columns: usize,
    },
    /// The same key is given twice (for example `kafka.bootstrap.servers` and
    /// `kafka."bootstrap.servers"`).
    #[error("{key} is given twice")]
    Duplicate {
        /// The key.
        key: String,
    },
    /// A librdkafka property the sink controls itself.
    #[error("kafka.{key} cannot be set: {reason}")]
    ForbiddenKafkaKey {
        /// The librdkafka property.
        key: String,
        /// Why the sink controls it.
        reason: &'static str,
    },
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
        message.push_str(
            " (the bundled converter needs one parse path per column; \
             set plugin.path to use another converter)",
        );
    }
    message
}

/// Error returned by [`Delivery::from_str`] and [`ErrorTolerance::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value `{value}`; expected {expected}")]
pub struct ParseEnumError {
    value: String,
    expected: &'static str,
}

impl Delivery {
    /// The lowercase name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Fastest => "fastest",
            Delivery::Guaranteed => "guaranteed",
            Delivery::Synchronized => "synchronized",
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Delivery {
    type Err = ParseEnumError;

    /// Case-insensitive, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Delivery::Fastest,
            Delivery::Guaranteed,
            Delivery::Synchronized,
        ]
        .into_iter()
        .find(|d| d.as_str().eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| ParseEnumError {
            value: s.to_owned(),
            expected: "`fastest`, `guaranteed` or `synchronized`",
        })
    }
}

impl ErrorTolerance {
    /// The lowercase name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorTolerance::None => "none",
            ErrorTolerance::All => "all",
        }
    }
}

impl fmt::Display for ErrorTolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorTolerance {
    type Err = ParseEnumError;

    /// Case-insensitive, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [ErrorTolerance::None, ErrorTolerance::All]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseEnumError {
                value: s.to_owned(),
                expected: "`none` or `all`",
            })
    }
}

/// Reads a configuration file, picking the format by its extension
/// (`.properties`: Java properties; anything else: TOML).
///
/// Beyond [`parse_toml`]/[`parse_properties`], it resolves a relative
/// `plugin.path` against the file's directory and applies
/// [`PGSINK_DB_PASSWORD`](PASSWORD_ENV) (see [`SinkConfig::apply_password_env`]).
/// Errors found in the file are wrapped in [`ConfigError::InFile`].
pub fn load(path: &Path) -> Result<SinkConfig, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let in_file = |error| ConfigError::InFile {
        path: path.to_owned(),
        error: Box::new(error),
    };
    let mut config = if is_properties_file(path) {
        parse_properties(&properties::decode(bytes))
    } else {
        match String::from_utf8(bytes) {
            Ok(text) => parse_toml(&text),
            Err(e) => Err(ConfigError::Invalid {
                key: "encoding".into(),
                message: format!(
                    "TOML must be UTF-8 (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            }),
        }
    }
    .map_err(in_file)?;

    if let Some(plugin) = config.plugin.path.as_mut() {
        if plugin.is_relative() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                *plugin = dir.join(&*plugin);
            }
        }
    }

    match std::env::var(PASSWORD_ENV) {
        Ok(value) => config.apply_password_env(Some(value)),
        Err(std::env::VarError::NotPresent) => {}
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(ConfigError::Invalid {
                key: PASSWORD_ENV.into(),
                message: "the environment variable is not valid UTF-8".into(),
            })
        }
    }
    Ok(config)
}

fn is_properties_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("properties"))
}

/// Parses and validates a TOML configuration.
pub fn parse_toml(text: &str) -> Result<SinkConfig, ConfigError> {
    toml::from_str::<raw::RawConfig>(text)?.validate()
}

/// Parses and validates a Java `.properties` configuration (the original
/// connector's file plus `bootstrap.servers`).
pub fn parse_properties(text: &str) -> Result<SinkConfig, ConfigError> {
    properties::to_raw(text)?.validate()
}

impl SinkConfig {
    /// Replaces `db.password` with `value` (the content of
    /// [`PGSINK_DB_PASSWORD`](PASSWORD_ENV)) when it is set and non-empty.
    pub fn apply_password_env(&mut self, value: Option<String>) {
        if let Some(password) = value.filter(|v| !v.is_empty()) {
            tracing::debug!("db.password taken from {PASSWORD_ENV}");
            self.db.password = Some(password);
        }
    }

    /// A view for logs: `Display` prints the effective configuration as TOML-like
    /// `key = value` lines, `Debug` as [`SinkConfig`]'s `Debug`. Neither shows
    /// the password or secret-looking Kafka properties and converter settings.
    pub fn redacted(&self) -> Redacted<'_> {
        Redacted(self)
    }
}

/// See [`SinkConfig::redacted`].
pub struct Redacted<'a>(&'a SinkConfig);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        if let Some(name) = &c.name {
            writeln!(f, "name = {name:?}")?;
        }
        writeln!(f, "topics = {:?}", c.topics)?;
        writeln!(f, "tasks = {}", c.tasks)?;
        writeln!(f, "db.host = {:?}", c.db.host_port())?;
        writeln!(f, "db.database = {:?}", c.db.database)?;
        writeln!(f, "db.username = {:?}", c.db.username)?;
        if c.db.password.is_some() {
            writeln!(f, "db.password = \"***\"")?;
        }
        writeln!(f, "db.schema = {:?}", c.db.schema)?;
        writeln!(f, "db.table = {:?}", c.db.table)?;
        writeln!(f, "db.columns = {:?}", c.db.columns)?;
        let (parse_paths, settings): (Vec<_>, Vec<_>) = c
            .plugin
            .settings
            .iter()
            .partition(|(key, _)| key == PARSE_PATHS_SETTING);
        for (_, paths) in parse_paths {
            writeln!(f, "db.json.parse = {paths:?}")?;
        }
        writeln!(f, "db.delivery = \"{}\"", c.delivery)?;
        writeln!(f, "db.buffer.size = {}", c.buffer_size)?;
        writeln!(f, "flush.interval.ms = {}", c.flush_interval.as_millis())?;
        writeln!(f, "errors.tolerance = \"{}\"", c.errors_tolerance)?;
        match &c.plugin.path {
            Some(path) => writeln!(f, "plugin.path = {:?}", path.display().to_string())?,
            None => writeln!(f, "# plugin.path unset: bundled parse-path converter")?,
        }
        for (key, value) in settings {
            writeln!(f, "plugin.settings.{key:?} = {:?}", shown(key, value))?;
        }
        let mut kafka = c.kafka.iter().peekable();
        while let Some((key, value)) = kafka.next() {
            write!(f, "kafka.{key:?} = {:?}", shown(key, value))?;
            if kafka.peek().is_some() {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

impl DbConfig {
    /// `host:port`, with brackets around an IPv6 address.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Whether a Kafka property or converter setting is hidden from logs.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "token", "credential", "key.pem"]
        .iter()
        .any(|word| key.contains(word))
        || key == "sasl.oauthbearer.config"
}

fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret_key(key) {
        "***"
    } else {
        value
    }
}

/// Debug view of a settings list or map with secret-looking values hidden.
struct SecretsHidden<'a, I>(&'a I);

impl<'a, I> fmt::Debug for SecretsHidden<'a, I>
where
    &'a I: IntoIterator<Item = (&'a String, &'a String)>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.into_iter().map(|(k, v)| (k, shown(k, v))))
            .finish()
    }
}

impl fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("columns", &self.columns)
            .finish()
    }
}

impl fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings: Vec<_> = self
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), shown(k, v)))
            .collect();
        f.debug_struct("PluginConfig")
            .field("path", &self.path)
            .field("settings", &settings)
            .finish()
    }
}

impl fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkConfig")
            .field("name", &self.name)
            .field("topics", &self.topics)
            .field("tasks", &self.tasks)
            .field("db", &self.db)
            .field("delivery", &self.delivery)
            .field("buffer_size", &self.buffer_size)
            .field("flush_interval", &self.flush_interval)
            .field("errors_tolerance", &self.errors_tolerance)
            .field("plugin", &self.plugin)
            .field("kafka", &SecretsHidden(&self.kafka))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error without the [`ConfigError::InFile`] wrapper.
    fn root(error: &ConfigError) -> &ConfigError {
        match error {
            ConfigError::InFile { error, .. } => root(error),
            other => other,
        }
    }

    const MINIMAL: &str = r#"
        topics = "t"
        db.database = "d"
        db.username = "u"
        db.table = "tab"
        db.columns = "a,b"
        db.json.parse = "/@a,/@b"
    "#;

    fn minimal_with(extra: &str) -> SinkConfig {
        parse_toml(&format!("{MINIMAL}\n{extra}")).unwrap()
    }

    #[test]
    fn delivery_parses_case_insensitively_and_prints_lowercase() {
        assert_eq!("FASTEST".parse::<Delivery>(), Ok(Delivery::Fastest));
        assert_eq!(" Guaranteed ".parse::<Delivery>(), Ok(Delivery::Guaranteed));
        assert_eq!("synchronized".parse(), Ok(Delivery::Synchronized));
        assert_eq!(Delivery::Guaranteed.to_string(), "guaranteed");
        let err = "exactly-once".parse::<Delivery>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown value `exactly-once`; expected `fastest`, `guaranteed` or `synchronized`"
        );
        assert_eq!(Delivery::default(), Delivery::Synchronized);
    }

    #[test]
    fn error_tolerance_parses_case_insensitively() {
        assert_eq!("NONE".parse(), Ok(ErrorTolerance::None));
        assert_eq!("All".parse(), Ok(ErrorTolerance::All));
        assert_eq!(ErrorTolerance::None.to_string(), "none");
        assert!("some".parse::<ErrorTolerance>().is_err());
    }

    #[test]
    fn password_env_overrides_only_when_non_empty() {
        let mut config = minimal_with(r#"db.password = "file""#);
        config.apply_password_env(None);
        assert_eq!(config.db.password.as_deref(), Some("file"));
        config.apply_password_env(Some(String::new()));
        assert_eq!(config.db.password.as_deref(), Some("file"));
        config.apply_password_env(Some("env".into()));
        assert_eq!(config.db.password.as_deref(), Some("env"));

        let mut config = minimal_with("");
        assert_eq!(config.db.password, None);
        config.apply_password_env(Some("env".into()));
        assert_eq!(config.db.password.as_deref(), Some("env"));
    }

    #[test]
    fn debug_and_redacted_hide_secrets() {
        let config = minimal_with(
            r#"
            name = "orders"
            db.password = "hunter2"
            kafka.sasl.password = "kafkapw"
            kafka.ssl.key.password = "keypw"
            plugin.settings.api_token = "tok"
            plugin.settings.mode = "strict"
            "#,
        );
        let debug = format!("{config:?}");
        let db_debug = format!("{:?}", config.db);
        let redacted_debug = format!("{:?}", config.redacted());
        let display = config.redacted().to_string();
        for text in [&debug, &db_debug, &redacted_debug, &display] {
            for secret in ["hunter2", "kafkapw", "keypw", "tok\""] {
                assert!(!text.contains(secret), "{secret} shown in {text}");
            }
        }
        assert!(db_debug.contains(r#"password: Some("***")"#), "{db_debug}");
        assert!(debug.contains("strict"), "{debug}");
        assert!(display.contains("db.password = \"***\""), "{display}");
        assert!(
            display.contains("kafka.\"group.id\" = \"connect-orders\""),
            "{display}"
        );
        assert!(
            display.contains("db.host = \"localhost:5432\""),
            "{display}"
        );
        assert!(
            display.contains("\ndb.json.parse = \"/@a,/@b\"\n"),
            "{display}"
        );
        assert!(
            display.contains("plugin.settings.\"mode\" = \"strict\""),
            "{display}"
        );
        assert!(
            !display.contains("plugin.settings.\"db.json.parse\""),
            "{display}"
        );
    }

    #[test]
    fn missing_message_lists_keys() {
        let err = ConfigError::Missing {
            keys: vec!["topics", "db.table"],
        };
        assert_eq!(
            err.to_string(),
            "missing required keys `topics`, `db.table`"
        );
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pgsink-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn load_picks_format_by_extension_and_resolves_plugin_path() {
        let dir = temp_dir("load");
        let toml_path = dir.join("sink.toml");
        std::fs::write(
            &toml_path,
            format!("{MINIMAL}\nplugin.path = \"plugins/conv.wasm\"\n"),
        )
        .unwrap();
        let config = load(&toml_path).unwrap();
        assert_eq!(config.plugin.path, Some(dir.join("plugins/conv.wasm")));

        let abs = dir.join("abs.toml");
        std::fs::write(
            &abs,
            format!("{MINIMAL}\nplugin.path = \"/opt/conv.wasm\"\n"),
        )
        .unwrap();
        assert_eq!(
            load(&abs).unwrap().plugin.path,
            Some(PathBuf::from("/opt/conv.wasm"))
        );

        let props = dir.join("sink.properties");
        std::fs::write(
            &props,
            "topics=t\ndb.database=d\ndb.username=u\ndb.table=tab\ndb.columns=a,b\ndb.json.parse=/@a,/@b\n",
        )
        .unwrap();
        let from_props = load(&props).unwrap();
        let mut expected = parse_toml(MINIMAL).unwrap();
        expected.db.password.clone_from(&from_props.db.password); // PGSINK_DB_PASSWORD may be set
        assert_eq!(from_props, expected);

        // The same properties text read as TOML is a TOML error naming the file.
        let wrong = dir.join("sink.conf");
        std::fs::copy(&props, &wrong).unwrap();
        let err = load(&wrong).unwrap_err();
        assert!(matches!(root(&err), ConfigError::Toml(_)), "{err:?}");
        assert!(
            err.to_string().starts_with(&wrong.display().to_string()),
            "{err}"
        );

        let err = load(&dir.join("absent.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("absent.toml"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn load_reads_latin1_properties() {
        let dir = temp_dir("latin1");
        let path = dir.join("sink.properties");
        let mut bytes =
            b"topics=t\ndb.database=d\ndb.username=u\ndb.table=tab\ndb.columns=caf".to_vec();
        bytes.push(0xE9); // é in ISO-8859-1, as Java writes it
        bytes.extend_from_slice(b"\ndb.json.parse=/@c\n");
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(load(&path).unwrap().db.columns, ["café"]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
