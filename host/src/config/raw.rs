//! The configuration as written (TOML, or `.properties` turned into the same
//! shape), and its validation into a [`SinkConfig`] (one sink) or a
//! [`ProcessConfig`] (a whole file): the one place where values are checked,
//! `[[sink]]` sections inherit the top level, and defaults are applied.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::{
    sink_label, ConfigError, DbConfig, Delivery, PluginConfig, ProcessConfig, SinkConfig, SslMode,
    DEFAULT_AUTO_OFFSET_RESET, DEFAULT_BOOTSTRAP_SERVERS, DEFAULT_BUFFER_SIZE,
    DEFAULT_FLUSH_INTERVAL_MS, DEFAULT_HOST, DEFAULT_PLUGIN_MEMORY_MB, DEFAULT_PLUGIN_TIMEOUT_MS,
    DEFAULT_PORT, DEFAULT_SCHEMA, DEFAULT_TASKS, FORBIDDEN_KAFKA_KEYS, MEGABYTE, MIN_BUFFER_SIZE,
    MIN_PLUGIN_MEMORY_MB, PARSE_PATHS_SETTING,
};

/// The whole configuration as written. Dotted TOML keys nest: `db.json.parse`
/// is `db` → `json` → `parse`.
///
/// The same structure holds a file's top level and each of its `[[sink]]`
/// sections; `metrics` and `sink` are accepted at the top level only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// `name`: the sink's name; the default consumer group is `connect-<name>`.
    #[serde(default)]
    pub name: Option<String>,
    /// `topics`: topics to consume, comma-separated or an array.
    #[serde(default)]
    pub topics: Option<StringList>,
    /// `tasks`: number of parallel pipelines (Kafka Connect's `tasks.max`).
    #[serde(default)]
    pub tasks: Option<Number>,
    /// `db.*`: database connection, target table and delivery.
    #[serde(default)]
    pub db: RawDb,
    /// `flush.*`: flush scheduling.
    #[serde(default)]
    pub flush: RawFlush,
    /// `errors.*`: bad-message handling.
    #[serde(default)]
    pub errors: RawErrors,
    /// `plugin.*`: the converter component.
    #[serde(default)]
    pub plugin: RawPlugin,
    /// `kafka.*`: librdkafka properties, nested keys joined with dots.
    #[serde(default)]
    pub kafka: toml::Table,
    /// `metrics.*`: the process's metrics endpoint (top level only).
    #[serde(default)]
    pub metrics: RawMetrics,
    /// `[[sink]]`: the sinks of a file declaring several; absent for a
    /// single-sink file. Top-level keys are their defaults (top level only).
    #[serde(default)]
    pub sink: Option<Vec<RawConfig>>,
    /// How keys are named in error messages (the `.properties` reader names
    /// Kafka Connect's keys). Not a configuration key.
    #[serde(skip)]
    pub key_names: KeyNames,
}

/// Names used in error messages for keys whose name depends on the input format.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeyNames {
    /// Name of `tasks`.
    pub tasks: &'static str,
    /// Name of `flush.interval.ms`.
    pub flush_interval: &'static str,
}

impl Default for KeyNames {
    fn default() -> Self {
        KeyNames {
            tasks: "tasks",
            flush_interval: "flush.interval.ms",
        }
    }
}

/// `metrics.*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    /// `metrics.address`: `host:port` to serve Prometheus metrics on; default none (off).
    #[serde(default)]
    pub address: Option<String>,
}

/// `db.*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDb {
    /// `db.host`: `host`, `host:port` or `[ipv6]:port`; default `localhost:5432`.
    #[serde(default)]
    pub host: Option<String>,
    /// Not a key: present only to explain that the port goes in `db.host`.
    #[serde(default)]
    pub port: Option<toml::Value>,
    /// `db.database`: database name (required).
    #[serde(default)]
    pub database: Option<String>,
    /// `db.username`: user name (required).
    #[serde(default)]
    pub username: Option<String>,
    /// `db.password`: password (optional; `PGSINK_DB_PASSWORD` overrides it).
    #[serde(default)]
    pub password: Option<String>,
    /// `db.schema`: schema of the target table; default `public`.
    #[serde(default)]
    pub schema: Option<String>,
    /// `db.table`: target table (required).
    #[serde(default)]
    pub table: Option<String>,
    /// `db.columns`: target columns, comma-separated or an array (required).
    #[serde(default)]
    pub columns: Option<StringList>,
    /// `db.json.*`: the bundled converter's parse paths.
    #[serde(default)]
    pub json: RawDbJson,
    /// `db.delivery`: `fastest`, `guaranteed` or `synchronized` (default).
    #[serde(default)]
    pub delivery: Option<String>,
    /// `db.buffer.*`: the COPY buffer.
    #[serde(default)]
    pub buffer: RawDbBuffer,
    /// `db.sslmode`: `disable`, `prefer` (default), `require` or `verify-full`.
    #[serde(default)]
    pub sslmode: Option<String>,
    /// `db.sslrootcert`: PEM CA bundle for `verify-full`; default the system's roots.
    #[serde(default)]
    pub sslrootcert: Option<String>,
}

/// `db.json.*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDbJson {
    /// `db.json.parse`: comma-separated parse paths, one per column.
    #[serde(default)]
    pub parse: Option<String>,
}

/// `db.buffer.*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDbBuffer {
    /// `db.buffer.size`: bytes of COPY text per flush; default 8000000.
    #[serde(default)]
    pub size: Option<Number>,
}

/// `flush.*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlush {
    /// `flush.interval.*`.
    #[serde(default)]
    pub interval: RawFlushInterval,
}

/// `flush.interval.*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlushInterval {
    /// `flush.interval.ms`: flush and offset-commit interval; default 1000.
    #[serde(default)]
    pub ms: Option<Number>,
}

/// `errors.*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawErrors {
    /// `errors.tolerance`: `none` or `all` (default).
    #[serde(default)]
    pub tolerance: Option<String>,
    /// `errors.deadletter.*`: dead-letter limits.
    #[serde(default)]
    pub deadletter: RawDeadLetter,
}

/// `errors.deadletter.*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeadLetter {
    /// `errors.deadletter.max.*`.
    #[serde(default)]
    pub max: RawDeadLetterMax,
}

/// `errors.deadletter.max.*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeadLetterMax {
    /// `errors.deadletter.max.per.*`.
    #[serde(default)]
    pub per: RawDeadLetterMaxPer,
}

/// `errors.deadletter.max.per.*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeadLetterMaxPer {
    /// `errors.deadletter.max.per.minute`: dead letters per pipeline and
    /// minute beyond which the sink stops; default none (no limit).
    #[serde(default)]
    pub minute: Option<Number>,
}

/// `plugin.*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugin {
    /// `plugin.path`: converter component; default the bundled parse-path converter.
    #[serde(default)]
    pub path: Option<String>,
    /// `plugin.settings`: converter settings, nested keys joined with dots.
    #[serde(default)]
    pub settings: toml::Table,
    /// `plugin.timeout.*`.
    #[serde(default)]
    pub timeout: RawPluginTimeout,
    /// `plugin.memory.*`.
    #[serde(default)]
    pub memory: RawPluginMemory,
    /// `plugin.clock`: give the converter the host's wall clock; default false
    /// (the converter's wall clock reads the Unix epoch).
    #[serde(default)]
    pub clock: Option<bool>,
}

/// `plugin.timeout.*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPluginTimeout {
    /// `plugin.timeout.ms`: wall-clock cap on one converter call; default
    /// 10000; 0: no limit.
    #[serde(default)]
    pub ms: Option<Number>,
}

/// `plugin.memory.*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPluginMemory {
    /// `plugin.memory.mb`: the converter's linear-memory cap in MiB; at least
    /// 16; default 512.
    #[serde(default)]
    pub mb: Option<Number>,
}

/// A whole number written as an integer or as a string (`8000000` or `"8000000"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Number {
    /// Written as a TOML integer.
    Int(i64),
    /// Written as a string; parsed (trimmed) during validation.
    Text(String),
}

impl Number {
    fn to_u64(&self) -> Option<u64> {
        match self {
            Number::Int(n) => u64::try_from(*n).ok(),
            Number::Text(s) => s.trim().parse().ok(),
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(n) => write!(f, "{n}"),
            Number::Text(s) => f.write_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;

        impl Visitor<'_> for NumberVisitor {
            type Value = Number;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number, or a string holding one")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number::Int(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                i64::try_from(v)
                    .map(Number::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
                Ok(Number::Text(v.to_owned()))
            }
        }

        deserializer.deserialize_any(NumberVisitor)
    }
}

/// A list of names written as one comma-separated string or as an array of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StringList {
    /// `"a, b"`.
    Joined(String),
    /// `["a", "b"]`.
    Items(Vec<String>),
}

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;

        impl<'de> Visitor<'de> for ListVisitor {
            type Value = StringList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a comma-separated string or an array of strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringList, E> {
                Ok(StringList::Joined(v.to_owned()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(StringList::Items(items))
            }
        }

        deserializer.deserialize_any(ListVisitor)
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl RawConfig {
    /// Validates a whole file: its sinks (one when there are no `[[sink]]`
    /// sections, else one per section, inheriting the top level) and the
    /// process-wide settings.
    pub(super) fn validate_process(mut self) -> Result<ProcessConfig, ConfigError> {
        let metrics_address = self
            .metrics
            .address
            .take()
            .map(|a| socket_address("metrics.address", &a))
            .transpose()?;
        let Some(sections) = self.sink.take() else {
            return Ok(ProcessConfig {
                sinks: vec![self.validate()?],
                metrics_address,
            });
        };
        if sections.is_empty() {
            return Err(invalid(
                "sink",
                "declares no sinks; add [[sink]] sections, or remove `sink` to make the file \
                 one sink",
            ));
        }

        // The top level holds defaults only: check what can be checked
        // without a sink, so that such errors are not blamed on a [[sink]].
        no_port_key(&self.db)?;
        self.kafka = flat_table(flatten("kafka", std::mem::take(&mut self.kafka))?);
        self.plugin.settings = flat_table(flatten(
            "plugin.settings",
            std::mem::take(&mut self.plugin.settings),
        )?);

        let mut sinks = Vec::with_capacity(sections.len());
        for (i, mut section) in sections.into_iter().enumerate() {
            let index = i + 1;
            let name = section.name.clone().or_else(|| self.name.clone());
            let mut inherited = BTreeSet::new();
            let sink = section
                .inherit(&self, &mut inherited)
                .and_then(|()| section.validate())
                .map_err(|error| ConfigError::InSink {
                    index,
                    name,
                    inherited: error_key(&error).is_some_and(|k| inherited.contains(&k)),
                    error: Box::new(error),
                })?;
            sinks.push(sink);
        }
        check_conflicts(&sinks)?;
        Ok(ProcessConfig {
            sinks,
            metrics_address,
        })
    }

    /// Fills what this `[[sink]]` section leaves unset from the file's top
    /// level (`defaults`, whose `kafka` and `plugin.settings` are already
    /// flat), key by key, and adds the inherited keys' names to `inherited`.
    fn inherit(
        &mut self,
        defaults: &RawConfig,
        inherited: &mut BTreeSet<String>,
    ) -> Result<(), ConfigError> {
        fn take<T: Clone>(
            key: &str,
            own: &mut Option<T>,
            default: &Option<T>,
            inherited: &mut BTreeSet<String>,
        ) {
            if own.is_none() && default.is_some() {
                own.clone_from(default);
                inherited.insert(key.to_owned());
            }
        }
        fn merge(
            section: &str,
            own: &mut toml::Table,
            defaults: &toml::Table,
            inherited: &mut BTreeSet<String>,
        ) -> Result<(), ConfigError> {
            let mut merged = flatten(section, std::mem::take(own))?;
            for (key, value) in defaults {
                if !merged.contains_key(key) {
                    let value = value.as_str().expect("flat tables hold strings");
                    merged.insert(key.clone(), value.to_owned());
                    inherited.insert(format!("{section}.{key}"));
                }
            }
            *own = flat_table(merged);
            Ok(())
        }

        // Every field is named, so that a new key cannot be forgotten here.
        let RawConfig {
            name,
            topics,
            tasks,
            db:
                RawDb {
                    host,
                    port,
                    database,
                    username,
                    password,
                    schema,
                    table,
                    columns,
                    json: RawDbJson { parse },
                    delivery,
                    buffer: RawDbBuffer { size },
                    sslmode,
                    sslrootcert,
                },
            flush:
                RawFlush {
                    interval: RawFlushInterval { ms: flush_ms },
                },
            errors:
                RawErrors {
                    tolerance,
                    deadletter:
                        RawDeadLetter {
                            max:
                                RawDeadLetterMax {
                                    per: RawDeadLetterMaxPer { minute },
                                },
                        },
                },
            plugin:
                RawPlugin {
                    path,
                    settings,
                    timeout: RawPluginTimeout { ms: timeout_ms },
                    memory: RawPluginMemory { mb },
                    clock,
                },
            kafka,
            metrics: _,
            sink: _,
            key_names: _,
        } = self;
        let d = defaults;
        take("name", name, &d.name, inherited);
        take("topics", topics, &d.topics, inherited);
        take("tasks", tasks, &d.tasks, inherited);
        take("db.host", host, &d.db.host, inherited);
        take("db.port", port, &d.db.port, inherited);
        take("db.database", database, &d.db.database, inherited);
        take("db.username", username, &d.db.username, inherited);
        take("db.password", password, &d.db.password, inherited);
        take("db.schema", schema, &d.db.schema, inherited);
        take("db.table", table, &d.db.table, inherited);
        take("db.columns", columns, &d.db.columns, inherited);
        take(PARSE_PATHS_SETTING, parse, &d.db.json.parse, inherited);
        take("db.delivery", delivery, &d.db.delivery, inherited);
        take("db.buffer.size", size, &d.db.buffer.size, inherited);
        take("db.sslmode", sslmode, &d.db.sslmode, inherited);
        take("db.sslrootcert", sslrootcert, &d.db.sslrootcert, inherited);
        let flush_default = &d.flush.interval.ms;
        take("flush.interval.ms", flush_ms, flush_default, inherited);
        take(
            "errors.tolerance",
            tolerance,
            &d.errors.tolerance,
            inherited,
        );
        let minute_default = &d.errors.deadletter.max.per.minute;
        take(DEAD_LETTER_KEY, minute, minute_default, inherited);
        take("plugin.path", path, &d.plugin.path, inherited);
        let timeout_default = &d.plugin.timeout.ms;
        take("plugin.timeout.ms", timeout_ms, timeout_default, inherited);
        take("plugin.memory.mb", mb, &d.plugin.memory.mb, inherited);
        take("plugin.clock", clock, &d.plugin.clock, inherited);
        merge("plugin.settings", settings, &d.plugin.settings, inherited)?;
        merge("kafka", kafka, &d.kafka, inherited)
    }

    /// Checks every value of one sink, applies defaults and builds the typed
    /// configuration.
    pub(super) fn validate(self) -> Result<SinkConfig, ConfigError> {
        let RawConfig {
            name,
            topics,
            tasks,
            db,
            flush,
            errors,
            plugin,
            kafka,
            metrics,
            sink,
            key_names,
        } = self;

        // Only left here when written inside a [[sink]] section.
        if metrics.address.is_some() {
            return Err(invalid(
                "metrics.address",
                "is process-wide: set it at the top level of the file, outside the [[sink]] \
                 sections",
            ));
        }
        if sink.is_some() {
            return Err(invalid("sink", "[[sink]] sections cannot be nested"));
        }
        no_port_key(&db)?;

        // Required keys, all reported at once.
        let mut missing = Vec::new();
        for (present, key) in [
            (topics.is_some(), "topics"),
            (db.database.is_some(), "db.database"),
            (db.username.is_some(), "db.username"),
            (db.table.is_some(), "db.table"),
            (db.columns.is_some(), "db.columns"),
            (
                db.json.parse.is_some() || plugin.path.is_some(),
                PARSE_PATHS_SETTING,
            ),
        ] {
            if !present {
                missing.push(key);
            }
        }
        let (Some(topics), Some(database), Some(username), Some(table), Some(columns), true) = (
            topics,
            db.database,
            db.username,
            db.table,
            db.columns,
            missing.is_empty(),
        ) else {
            return Err(ConfigError::Missing { keys: missing });
        };

        let name = name.map(|n| non_empty("name", n)).transpose()?;
        let topics = names("topics", "topic", topics)?;
        if let Some(bad) = topics.iter().find(|t| !is_valid_topic(t)) {
            return Err(invalid(
                "topics",
                format!(
                    "`{bad}` is not a valid Kafka topic name (letters, digits, `.`, `_` and `-`; \
                     at most 249 characters; topic patterns are not supported)"
                ),
            ));
        }
        let tasks = whole_number(key_names.tasks, tasks, "a whole number of tasks")?
            .map(|n| {
                usize::try_from(n)
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| invalid(key_names.tasks, format!("must be at least 1, got {n}")))
            })
            .transpose()?
            .unwrap_or(DEFAULT_TASKS);

        let (host, port) = match db.host {
            Some(host) => parse_host(&host).map_err(|message| invalid("db.host", message))?,
            None => (DEFAULT_HOST.to_owned(), DEFAULT_PORT),
        };
        let schema = match db.schema {
            Some(schema) => non_empty("db.schema", schema)?,
            None => DEFAULT_SCHEMA.to_owned(),
        };
        let sslmode = match db.sslmode {
            Some(mode) => mode.parse().map_err(|e| {
                let hint = match mode.trim().to_ascii_lowercase().as_str() {
                    "verify-ca" => {
                        " (verify-ca is not supported: verify-full checks the certificate too, \
                         and the host name)"
                    }
                    "allow" => " (allow is not supported: prefer also falls back to plain TCP)",
                    _ => "",
                };
                invalid("db.sslmode", format!("{e}{hint}"))
            })?,
            None => SslMode::default(),
        };
        let sslrootcert = db
            .sslrootcert
            .map(|p| non_empty("db.sslrootcert", p).map(Into::into))
            .transpose()?;
        if sslrootcert.is_some() && sslmode != SslMode::VerifyFull {
            return Err(invalid(
                "db.sslrootcert",
                format!(
                    "is used only with db.sslmode = \"verify-full\"; with \"{sslmode}\" the \
                     server's certificate is not checked"
                ),
            ));
        }
        let db_config = DbConfig {
            host,
            port,
            database: non_empty("db.database", database)?,
            username: non_empty("db.username", username)?,
            password: db.password.filter(|p| !p.is_empty()),
            schema,
            table: non_empty("db.table", table)?,
            columns: names("db.columns", "column", columns)?,
            sslmode,
            sslrootcert,
        };

        let delivery = match db.delivery {
            Some(d) => d
                .parse()
                .map_err(|e| invalid("db.delivery", format!("{e}")))?,
            None => Default::default(),
        };
        let buffer_size =
            match whole_number("db.buffer.size", db.buffer.size, "a whole number of bytes")? {
                Some(n) if n < MIN_BUFFER_SIZE as u64 => {
                    return Err(invalid(
                        "db.buffer.size",
                        format!(
                            "{n} bytes is too small; use at least {MIN_BUFFER_SIZE} \
                             (the default is {DEFAULT_BUFFER_SIZE})"
                        ),
                    ))
                }
                Some(n) => usize::try_from(n)
                    .map_err(|_| invalid("db.buffer.size", format!("{n} bytes is too large")))?,
                None => DEFAULT_BUFFER_SIZE,
            };
        let flush_ms = match whole_number(
            key_names.flush_interval,
            flush.interval.ms,
            "a whole number of milliseconds",
        )? {
            Some(0) => return Err(invalid(key_names.flush_interval, "must be greater than 0")),
            Some(n) => n,
            None => DEFAULT_FLUSH_INTERVAL_MS,
        };
        let errors_tolerance = match errors.tolerance {
            Some(t) => t
                .parse()
                .map_err(|e| invalid("errors.tolerance", format!("{e}")))?,
            None => Default::default(),
        };
        let max_dead_letters_per_minute = match whole_number(
            DEAD_LETTER_KEY,
            errors.deadletter.max.per.minute,
            "a whole number of messages",
        )? {
            Some(0) => return Err(invalid(DEAD_LETTER_KEY, "must be at least 1, got 0")),
            other => other,
        };

        let mut settings = Vec::new();
        if let Some(paths) = db.json.parse {
            if paths.trim().is_empty() {
                return Err(invalid(PARSE_PATHS_SETTING, "must not be empty"));
            }
            let count = paths.split(',').count();
            if count != db_config.columns.len() {
                return Err(ConfigError::CountMismatch {
                    paths: count,
                    columns: db_config.columns.len(),
                });
            }
            settings.push((PARSE_PATHS_SETTING.to_owned(), paths));
        }
        for (key, value) in flatten("plugin.settings", plugin.settings)? {
            if key == PARSE_PATHS_SETTING {
                return Err(invalid(
                    format!("plugin.settings.{key}"),
                    "set the top-level db.json.parse instead",
                ));
            }
            settings.push((key, value));
        }
        let timeout = match whole_number(
            "plugin.timeout.ms",
            plugin.timeout.ms,
            "a whole number of milliseconds",
        )?
        .unwrap_or(DEFAULT_PLUGIN_TIMEOUT_MS)
        {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        };
        let memory_mb = whole_number(
            "plugin.memory.mb",
            plugin.memory.mb,
            "a whole number of megabytes",
        )?
        .unwrap_or(DEFAULT_PLUGIN_MEMORY_MB);
        if memory_mb < MIN_PLUGIN_MEMORY_MB {
            return Err(invalid(
                "plugin.memory.mb",
                format!(
                    "{memory_mb} MB is too small; use at least {MIN_PLUGIN_MEMORY_MB} \
                     (the default is {DEFAULT_PLUGIN_MEMORY_MB})"
                ),
            ));
        }
        let memory_limit = usize::try_from(memory_mb)
            .ok()
            .and_then(|mb| mb.checked_mul(MEGABYTE))
            .ok_or_else(|| invalid("plugin.memory.mb", format!("{memory_mb} MB is too large")))?;
        let plugin = PluginConfig {
            path: plugin
                .path
                .map(|p| non_empty("plugin.path", p).map(Into::into))
                .transpose()?,
            settings,
            timeout,
            memory_limit,
            wall_clock: plugin.clock.unwrap_or(false),
        };

        let mut kafka = flatten("kafka", kafka)?;
        for (key, reason) in FORBIDDEN_KAFKA_KEYS {
            if kafka.contains_key(*key) {
                return Err(ConfigError::ForbiddenKafkaKey {
                    key: (*key).to_owned(),
                    reason,
                });
            }
        }
        let group_id = match &name {
            Some(name) => format!("connect-{name}"),
            None => format!("pgsink-{}.{}", db_config.schema, db_config.table),
        };
        for (key, default) in [
            ("bootstrap.servers", DEFAULT_BOOTSTRAP_SERVERS.to_owned()),
            ("group.id", group_id),
            ("auto.offset.reset", DEFAULT_AUTO_OFFSET_RESET.to_owned()),
        ] {
            kafka.entry(key.to_owned()).or_insert(default);
        }

        Ok(SinkConfig {
            name,
            topics,
            tasks,
            db: db_config,
            delivery,
            buffer_size,
            flush_interval: Duration::from_millis(flush_ms),
            errors_tolerance,
            max_dead_letters_per_minute,
            plugin,
            kafka,
        })
    }
}

const DEAD_LETTER_KEY: &str = "errors.deadletter.max.per.minute";

/// `db.port` is not a key; says where the port goes.
fn no_port_key(db: &RawDb) -> Result<(), ConfigError> {
    let Some(port) = &db.port else {
        return Ok(());
    };
    let port = match port {
        toml::Value::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    };
    let host = db
        .host
        .as_deref()
        .and_then(|h| parse_host(h).ok())
        .map_or_else(|| DEFAULT_HOST.to_owned(), |(host, _)| host);
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    Err(invalid(
        "db.port",
        format!("not a key: write the port in db.host, e.g. db.host = \"{host}:{port}\""),
    ))
}

/// A flattened settings table as a TOML table of strings (flattening it again
/// gives it back).
fn flat_table(flat: BTreeMap<String, String>) -> toml::Table {
    flat.into_iter()
        .map(|(key, value)| (key, toml::Value::String(value)))
        .collect()
}

/// The key an error is about, when it is about one value.
fn error_key(error: &ConfigError) -> Option<String> {
    match error {
        ConfigError::Invalid { key, .. } | ConfigError::Duplicate { key } => Some(key.clone()),
        ConfigError::ForbiddenKafkaKey { key, .. } => Some(format!("kafka.{key}")),
        _ => None,
    }
}

/// Rejects sinks of one process that would get in each other's way.
fn check_conflicts(sinks: &[SinkConfig]) -> Result<(), ConfigError> {
    let label = |i: usize| sink_label(i + 1, sinks[i].name.as_deref());
    for (i, a) in sinks.iter().enumerate() {
        for (j, b) in sinks.iter().enumerate().skip(i + 1) {
            let conflict = |problem: String| ConfigError::SinkConflict {
                first: label(i),
                second: label(j),
                problem,
            };
            let group = &a.kafka["group.id"];
            if *group == b.kafka["group.id"] {
                return Err(conflict(format!(
                    "use the same Kafka consumer group {group:?}: Kafka would split the \
                     partitions between them, so each would miss the messages the other \
                     receives; give each sink its own `name` or kafka.group.id"
                )));
            }
            let same_table = (
                &a.db.host,
                a.db.port,
                &a.db.database,
                &a.db.schema,
                &a.db.table,
            ) == (
                &b.db.host,
                b.db.port,
                &b.db.database,
                &b.db.schema,
                &b.db.table,
            );
            let synchronized =
                a.delivery == Delivery::Synchronized && b.delivery == Delivery::Synchronized;
            if let Some(topic) = a.topics.iter().find(|t| b.topics.contains(t)) {
                if same_table && synchronized {
                    return Err(conflict(format!(
                        "both load topic {topic:?} into {}.{} of database {:?} on {} with \
                         synchronized delivery: their offsets would collide (the database keeps \
                         one offset per table, topic and partition); load the topic into this \
                         table with one sink only",
                        a.db.schema,
                        a.db.table,
                        a.db.database,
                        a.db.host_port()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Parses `host:port` (an IP address, `[ipv6]:port`, or a name resolved now,
/// first address) into a socket address to listen on.
fn socket_address(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    let value = value.trim();
    let example = "e.g. \"127.0.0.1:9187\"";
    let address = match value.parse::<SocketAddr>() {
        Ok(address) => address,
        Err(_) => {
            let Some((host, port)) = value.rsplit_once(':') else {
                return Err(invalid(
                    key,
                    format!("`{value}` lacks a port; write host:port, {example}"),
                ));
            };
            if host.is_empty() {
                return Err(invalid(
                    key,
                    format!(
                        "`{value}` has no host; write 0.0.0.0:{port} to listen on every IPv4 \
                         address, or 127.0.0.1:{port} for this machine only"
                    ),
                ));
            }
            if host.contains(':') {
                return Err(invalid(
                    key,
                    format!(
                        "`{value}` is not host:port; write an IPv6 address in brackets, \
                         e.g. \"[::1]:9187\""
                    ),
                ));
            }
            if port.parse::<u16>().is_err() {
                return Err(invalid(
                    key,
                    format!("`{port}` in `{value}` is not a port number (1-65535)"),
                ));
            }
            let resolved = value
                .to_socket_addrs()
                .map_err(|e| invalid(key, format!("cannot resolve `{host}`: {e}")))?
                .next();
            resolved.ok_or_else(|| invalid(key, format!("`{host}` resolves to no address")))?
        }
    };
    if address.port() == 0 {
        return Err(invalid(
            key,
            format!("`{value}`: port 0 would pick a random port; choose one, {example}"),
        ));
    }
    Ok(address)
}

fn non_empty(key: &str, value: String) -> Result<String, ConfigError> {
    if value.trim().is_empty() {
        Err(invalid(key, "must not be empty"))
    } else {
        Ok(value)
    }
}

fn whole_number(key: &str, value: Option<Number>, what: &str) -> Result<Option<u64>, ConfigError> {
    value
        .map(|v| {
            v.to_u64()
                .ok_or_else(|| invalid(key, format!("expected {what}, got `{v}`")))
        })
        .transpose()
}

/// Splits and checks a list of names: items trimmed, none empty, no duplicates.
fn names(key: &str, what: &str, list: StringList) -> Result<Vec<String>, ConfigError> {
    let (items, written): (Vec<String>, _) = match list {
        StringList::Joined(s) => (s.split(',').map(|i| i.trim().to_owned()).collect(), s),
        StringList::Items(v) => {
            let written = format!("{v:?}");
            (
                v.into_iter().map(|i| i.trim().to_owned()).collect(),
                written,
            )
        }
    };
    if items.iter().all(String::is_empty) {
        return Err(invalid(key, format!("must list at least one {what}")));
    }
    if items.iter().any(String::is_empty) {
        return Err(invalid(key, format!("empty {what} name in `{written}`")));
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = items.iter().find(|i| !seen.insert(i.as_str())) {
        return Err(invalid(key, format!("{what} `{dup}` is listed twice")));
    }
    Ok(items)
}

/// Kafka's rule for topic names.
fn is_valid_topic(topic: &str) -> bool {
    topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Splits `db.host` into host and port.
fn parse_host(value: &str) -> Result<(String, u16), String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.chars().any(char::is_whitespace) {
        return Err(format!("`{value}` contains whitespace"));
    }
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("`{p}` in `{value}` is not a port number (1-65535)"))
    };
    if let Some(rest) = value.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{value}` lacks the `]` closing the IPv6 address"))?;
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(format!("`{addr}` in `{value}` is not an IPv6 address"));
        }
        let port = match after {
            "" => DEFAULT_PORT,
            _ => port(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("expected `:port` after `]` in `{value}`"))?,
            )?,
        };
        return Ok((addr.to_owned(), port));
    }
    match value.split_once(':') {
        None => Ok((value.to_owned(), DEFAULT_PORT)),
        Some(_) if value.parse::<Ipv6Addr>().is_ok() => Ok((value.to_owned(), DEFAULT_PORT)),
        Some((_, rest)) if rest.contains(':') => Err(format!(
            "`{value}`: write an IPv6 address in brackets, e.g. `[::1]:5432`"
        )),
        Some(("", _)) => Err(format!("`{value}` has no host name before `:`")),
        Some((host, p)) => Ok((host.to_owned(), port(p)?)),
    }
}

/// Flattens a table of settings to dotted names with string values.
fn flatten(section: &str, table: toml::Table) -> Result<BTreeMap<String, String>, ConfigError> {
    fn walk(
        section: &str,
        prefix: &str,
        table: toml::Table,
        out: &mut BTreeMap<String, String>,
    ) -> Result<(), ConfigError> {
        for (key, value) in table {
            let name = if prefix.is_empty() {
                key
            } else {
                format!("{prefix}.{key}")
            };
            let full = || format!("{section}.{name}");
            if name.is_empty() || name.split('.').any(str::is_empty) {
                return Err(invalid(full(), "empty part in the name"));
            }
            let text = match value {
                toml::Value::Table(t) => {
                    walk(section, &name, t, out)?;
                    continue;
                }
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(_) => {
                    return Err(invalid(
                        full(),
                        "arrays are not supported; write a comma-separated string",
                    ))
                }
                toml::Value::Datetime(_) => {
                    return Err(invalid(
                        full(),
                        "dates are not supported; write the value as a string",
                    ))
                }
            };
            if out.contains_key(&name) {
                return Err(ConfigError::Duplicate { key: full() });
            }
            out.insert(name, text);
        }
        Ok(())
    }

    let mut out = BTreeMap::new();
    walk(section, "", table, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{parse_process_toml, parse_toml, Delivery, ErrorTolerance};
    use super::*;

    const BASE: &str = r#"
topics = "orders"
db.database = "shop"
db.username = "sink"
db.table = "orders"
db.columns = "id,total"
db.json.parse = "/@id,/@total"
"#;

    /// `BASE` with `extra` appended; top-level `key = value` lines of `extra`
    /// replace `BASE`'s lines for the same key.
    fn compose(extra: &str) -> String {
        let key = |line: &str| line.split_once('=').map(|(k, _)| k.trim().to_owned());
        let replaced: Vec<String> = extra
            .lines()
            .take_while(|l| !l.trim_start().starts_with('['))
            .filter_map(key)
            .collect();
        let base: String = BASE
            .lines()
            .filter(|l| key(l).is_none_or(|k| !replaced.contains(&k)))
            .map(|l| format!("{l}\n"))
            .collect();
        format!("{base}{extra}")
    }

    fn ok(extra: &str) -> SinkConfig {
        parse_toml(&compose(extra)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(extra: &str) -> String {
        parse_toml(&compose(extra))
            .expect_err("configuration should be rejected")
            .to_string()
    }

    fn err_text(text: &str) -> String {
        parse_toml(text)
            .expect_err("configuration should be rejected")
            .to_string()
    }

    fn assert_contains(haystack: &str, needle: &str) {
        assert!(haystack.contains(needle), "`{needle}` not in:\n{haystack}");
    }

    #[test]
    fn defaults() {
        let c = ok("");
        assert_eq!(c.name, None);
        assert_eq!(c.topics, ["orders"]);
        assert_eq!(c.tasks, 1);
        assert_eq!((c.db.host.as_str(), c.db.port), ("localhost", 5432));
        assert_eq!(c.db.schema, "public");
        assert_eq!(c.db.password, None);
        assert_eq!(c.delivery, Delivery::Synchronized);
        assert_eq!(c.buffer_size, 8_000_000);
        assert_eq!(c.flush_interval, Duration::from_millis(1000));
        assert_eq!(c.errors_tolerance, ErrorTolerance::All);
        assert_eq!(c.max_dead_letters_per_minute, None);
        assert_eq!(c.db.sslmode, SslMode::Prefer);
        assert_eq!(c.db.sslrootcert, None);
        assert_eq!(c.plugin.timeout, Some(Duration::from_secs(10)));
        assert_eq!(c.plugin.memory_limit, 512 * 1024 * 1024);
        assert_eq!(c.plugin.path, None);
        assert_eq!(
            c.plugin.settings,
            [("db.json.parse".to_owned(), "/@id,/@total".to_owned())]
        );
        let kafka: Vec<_> = c
            .kafka
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            kafka,
            [
                ("auto.offset.reset", "earliest"),
                ("bootstrap.servers", "localhost:9092"),
                ("group.id", "pgsink-public.orders"),
            ]
        );
    }

    #[test]
    fn group_id_derivations() {
        assert_eq!(
            ok(r#"name = "orders-sink""#).kafka["group.id"],
            "connect-orders-sink"
        );
        assert_eq!(
            ok(r#"db.schema = "sales""#).kafka["group.id"],
            "pgsink-sales.orders"
        );
        let c = ok("name = \"n\"\nkafka.group.id = \"mine\"");
        assert_eq!(c.kafka["group.id"], "mine");
    }

    #[test]
    fn dotted_keys_and_sections_are_the_same() {
        let dotted = r#"
name = "s"
topics = "a, b"
tasks = 3
db.host = "db.example:6543"
db.database = "shop"
db.username = "sink"
db.password = "pw"
db.schema = "sales"
db.table = "orders"
db.columns = "id,total"
db.json.parse = "/@id,/@total"
db.delivery = "guaranteed"
db.buffer.size = 16000
flush.interval.ms = 250
errors.tolerance = "none"
plugin.path = "conv.wasm"
plugin.settings.mode = "strict"
kafka.bootstrap.servers = "k1:9092,k2:9092"
kafka.fetch.wait.max.ms = 10
"#;
        let sections = r#"
name = "s"
topics = ["a", "b"]
tasks = "3"

[db]
host = "db.example:6543"
database = "shop"
username = "sink"
password = "pw"
schema = "sales"
table = "orders"
columns = ["id", "total"]
json.parse = "/@id,/@total"
delivery = "GUARANTEED"
buffer = { size = "16000" }

[flush.interval]
ms = "250"

[errors]
tolerance = "None"

[plugin]
path = "conv.wasm"

[plugin.settings]
mode = "strict"

[kafka]
"bootstrap.servers" = "k1:9092,k2:9092"
"fetch.wait.max.ms" = "10"
"#;
        let a = parse_toml(dotted).unwrap();
        let b = parse_toml(sections).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.topics, ["a", "b"]);
        assert_eq!(a.tasks, 3);
        assert_eq!((a.db.host.as_str(), a.db.port), ("db.example", 6543));
        assert_eq!(a.delivery, Delivery::Guaranteed);
        assert_eq!(a.buffer_size, 16000);
        assert_eq!(a.flush_interval, Duration::from_millis(250));
        assert_eq!(a.errors_tolerance, ErrorTolerance::None);
        assert_eq!(
            a.plugin.path.as_deref(),
            Some(std::path::Path::new("conv.wasm"))
        );
        assert_eq!(
            a.plugin.settings,
            [
                ("db.json.parse".to_owned(), "/@id,/@total".to_owned()),
                ("mode".to_owned(), "strict".to_owned()),
            ]
        );
        assert_eq!(a.kafka["group.id"], "connect-s");
    }

    #[test]
    fn kafka_keys_flatten() {
        let forms = [
            r#"kafka.fetch.wait.max.ms = "10""#,
            "kafka.fetch.wait.max.ms = 10",
            "[kafka]\n\"fetch.wait.max.ms\" = 10",
            "[kafka]\nfetch.wait = { max.ms = 10 }",
            "[kafka.fetch]\n\"wait.max.ms\" = \"10\"",
        ];
        for form in forms {
            let c = ok(&format!("\n{form}"));
            assert_eq!(c.kafka["fetch.wait.max.ms"], "10", "{form}");
            assert_eq!(c.kafka.len(), 4, "{form}: {:?}", c.kafka);
        }
        let c = ok("\n[kafka]\n\"bootstrap.servers\" = \"x:1\"\n\"enable.partition.eof\" = false\n\"x.ratio\" = 0.5");
        assert_eq!(c.kafka["bootstrap.servers"], "x:1");
        assert_eq!(c.kafka["enable.partition.eof"], "false");
        assert_eq!(c.kafka["x.ratio"], "0.5");
    }

    #[test]
    fn kafka_errors() {
        assert_contains(
            &err("kafka.bootstrap.servers = [\"a:1\", \"b:2\"]"),
            "kafka.bootstrap.servers: arrays are not supported",
        );
        assert_eq!(
            err("kafka.bootstrap.servers = \"a\"\nkafka.\"bootstrap.servers\" = \"b\""),
            "kafka.bootstrap.servers is given twice"
        );
        assert_contains(
            &err("kafka = \"x\""),
            "invalid type: string \"x\", expected a map",
        );
    }

    #[test]
    fn forbidden_kafka_keys() {
        assert_eq!(
            err("kafka.enable.auto.commit = true"),
            "kafka.enable.auto.commit cannot be set: pgsink commits offsets itself, \
             after each flush, as db.delivery requires"
        );
        assert_contains(
            &err("[kafka]\n\"enable.auto.offset.store\" = false"),
            "kafka.enable.auto.offset.store cannot be set: pgsink stores offsets itself",
        );
        assert_contains(
            &err("kafka.auto.commit.enable = \"false\""),
            "kafka.auto.commit.enable cannot be set",
        );
    }

    #[test]
    fn hosts() {
        let host = |h: &str| {
            let c = ok(&format!("db.host = {h:?}"));
            (c.db.host, c.db.port)
        };
        assert_eq!(host("pg"), ("pg".into(), 5432));
        assert_eq!(host("pg.example.com:5433"), ("pg.example.com".into(), 5433));
        assert_eq!(host("10.1.2.3:6000"), ("10.1.2.3".into(), 6000));
        assert_eq!(host("[::1]:5433"), ("::1".into(), 5433));
        assert_eq!(host("[2001:db8::7]"), ("2001:db8::7".into(), 5432));
        assert_eq!(host("2001:db8::7"), ("2001:db8::7".into(), 5432));
        assert_eq!(host(" pg "), ("pg".into(), 5432));
        assert_eq!(ok("db.host = \"[::1]:6000\"").db.host_port(), "[::1]:6000");
    }

    #[test]
    fn bad_hosts() {
        for (host, expected) in [
            (
                "pg:abc",
                "db.host: `abc` in `pg:abc` is not a port number (1-65535)",
            ),
            (
                "pg:70000",
                "db.host: `70000` in `pg:70000` is not a port number",
            ),
            ("pg:0", "db.host: `0` in `pg:0` is not a port number"),
            ("pg:", "db.host: `` in `pg:` is not a port number"),
            (":5432", "db.host: `:5432` has no host name before `:`"),
            ("", "db.host: must not be empty"),
            ("p g", "db.host: `p g` contains whitespace"),
            ("[::1", "lacks the `]`"),
            ("[::1]5432", "expected `:port` after `]`"),
            ("[db]:5432", "`db` in `[db]:5432` is not an IPv6 address"),
            ("[::1]:x", "`x` in `[::1]:x` is not a port number"),
            ("fe80::1:5432x", "write an IPv6 address in brackets"),
        ] {
            assert_contains(&err(&format!("db.host = {host:?}")), expected);
        }
        assert_contains(
            &err("db.port = 5433"),
            "db.port: not a key: write the port in db.host, e.g. db.host = \"localhost:5433\"",
        );
    }

    #[test]
    fn delivery_values() {
        assert_eq!(ok("db.delivery = \"Fastest\"").delivery, Delivery::Fastest);
        assert_eq!(
            ok("db.delivery = \"SYNCHRONIZED\"").delivery,
            Delivery::Synchronized
        );
        assert_eq!(
            err("db.delivery = \"exactly-once\""),
            "db.delivery: unknown value `exactly-once`; expected `fastest`, `guaranteed` or `synchronized`"
        );
        assert_eq!(
            err("errors.tolerance = \"some\""),
            "errors.tolerance: unknown value `some`; expected `none` or `all`"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(ok("db.buffer.size = \" 1024 \"").buffer_size, 1024);
        assert_eq!(ok("tasks = 4").tasks, 4);
        assert_eq!(
            err("db.buffer.size = \"abc\""),
            "db.buffer.size: expected a whole number of bytes, got `abc`"
        );
        assert_eq!(
            err("db.buffer.size = 1000"),
            "db.buffer.size: 1000 bytes is too small; use at least 1024 (the default is 8000000)"
        );
        assert_contains(&err("db.buffer.size = 0"), "0 bytes is too small");
        assert_eq!(
            err("db.buffer.size = -5"),
            "db.buffer.size: expected a whole number of bytes, got `-5`"
        );
        assert_contains(
            &err("db.buffer.size = 1.5"),
            "invalid type: floating point `1.5`, expected a whole number, or a string holding one",
        );
        assert_eq!(err("tasks = 0"), "tasks: must be at least 1, got 0");
        assert_eq!(
            err("tasks = \"two\""),
            "tasks: expected a whole number of tasks, got `two`"
        );
        assert_eq!(
            err("flush.interval.ms = 0"),
            "flush.interval.ms: must be greater than 0"
        );
        assert_eq!(
            err("flush.interval.ms = \"1s\""),
            "flush.interval.ms: expected a whole number of milliseconds, got `1s`"
        );
    }

    #[test]
    fn lists() {
        let c = ok("db.columns = [\" Id \", \"Total Amount\"]\ndb.json.parse = \"/@id,/@t\"");
        assert_eq!(c.db.columns, ["Id", "Total Amount"]);
        let c = ok("db.columns = \"A , b c\"\ndb.json.parse = \"/@id,/@t\"");
        assert_eq!(c.db.columns, ["A", "b c"]);
        assert_eq!(ok("topics = \" a ,b\"").topics, ["a", "b"]);

        assert_eq!(
            err("topics = \"a,,b\""),
            "topics: empty topic name in `a,,b`"
        );
        assert_eq!(
            err("topics = \"a,b,a\""),
            "topics: topic `a` is listed twice"
        );
        assert_eq!(err("topics = []"), "topics: must list at least one topic");
        assert_eq!(
            err("topics = \" \""),
            "topics: must list at least one topic"
        );
        assert_contains(
            &err("topics = \"^orders.*\""),
            "`^orders.*` is not a valid Kafka topic name",
        );
        assert_contains(
            &err("topics = [1]"),
            "invalid type: integer `1`, expected a string",
        );
        assert_contains(
            &err("topics = 1"),
            "expected a comma-separated string or an array of strings",
        );
        assert_eq!(
            err("db.columns = \"a,a\"\ndb.json.parse = \"/@a,/@b\""),
            "db.columns: column `a` is listed twice"
        );
        // Names are exact: case differs, so these are two columns.
        assert_eq!(ok("db.columns = \"a,A\"").db.columns, ["a", "A"]);
        assert_eq!(
            err("db.columns = \"a,\""),
            "db.columns: empty column name in `a,`"
        );
    }

    #[test]
    fn parse_path_count_must_match_columns() {
        assert_eq!(
            err("db.json.parse = \"/@a,/@b,/@c\"\ndb.columns = \"a,b,c,d\""),
            "db.json.parse has 3 parse paths but db.columns lists 4 columns"
        );
        assert_eq!(
            err("db.json.parse = \"/@a\""),
            "db.json.parse has 1 parse path but db.columns lists 2 columns"
        );
        assert_eq!(
            err("db.json.parse = \" \""),
            "db.json.parse: must not be empty"
        );
    }

    #[test]
    fn missing_keys() {
        assert_eq!(
            err_text(""),
            "missing required keys `topics`, `db.database`, `db.username`, `db.table`, \
             `db.columns`, `db.json.parse` (the bundled converter needs one parse path per \
             column; set plugin.path to use another converter)"
        );
        let without_parse = BASE.replace("db.json.parse = \"/@id,/@total\"\n", "");
        assert_contains(
            &err_text(&without_parse),
            "missing required key `db.json.parse`",
        );
        let with_plugin = format!("{without_parse}plugin.path = \"c.wasm\"");
        let c = parse_toml(&with_plugin).unwrap();
        assert_eq!(c.plugin.settings, []);
        let without_table = BASE.replace("db.table = \"orders\"\n", "");
        assert_eq!(err_text(&without_table), "missing required key `db.table`");
    }

    #[test]
    fn empty_values() {
        let text = BASE.replace("\"shop\"", "\"\"");
        assert_eq!(err_text(&text), "db.database: must not be empty");
        assert_eq!(err("name = \"\""), "name: must not be empty");
        assert_eq!(err("plugin.path = \"\""), "plugin.path: must not be empty");
        assert_eq!(ok("db.password = \"\"").db.password, None);
    }

    #[test]
    fn unknown_keys_are_named() {
        let top = err("colums = \"x\"");
        assert_contains(
            &top,
            "unknown field `colums`, expected one of `name`, `topics`",
        );
        assert_contains(&top, "line 8");
        let db = err("db.hots = \"x\"");
        assert_contains(&db, "unknown field `hots`, expected one of `host`");
        let db_section = err_text("topics = \"t\"\n[db]\nfoo = 1");
        assert_contains(&db_section, "unknown field `foo`");
        let plugin = err("plugin.pth = \"x\"");
        assert_contains(
            &plugin,
            "unknown field `pth`, expected one of `path`, `settings`, `timeout`, `memory`",
        );
        let nested = err("db.json.prase = \"x\"");
        assert_contains(&nested, "unknown field `prase`, expected `parse`");
    }

    #[test]
    fn plugin_settings() {
        let c = ok("plugin.path = \"c.wasm\"\n[plugin.settings]\nb = 1\na = true\nx.y = 2.5\n\"p.q\" = \"s\"");
        assert_eq!(
            c.plugin.settings,
            [
                ("db.json.parse", "/@id,/@total"),
                ("a", "true"),
                ("b", "1"),
                ("p.q", "s"),
                ("x.y", "2.5"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_contains(
            &err("plugin.settings.list = [1]"),
            "plugin.settings.list: arrays are not supported",
        );
        assert_contains(
            &err("plugin.settings.\"db.json.parse\" = \"/@x\""),
            "plugin.settings.db.json.parse: set the top-level db.json.parse instead",
        );
        assert_contains(
            &err("plugin.settings.when = 1979-05-27"),
            "dates are not supported",
        );
    }

    #[test]
    fn plugin_limits() {
        let c = ok("plugin.timeout.ms = 0\nplugin.memory.mb = 16");
        assert_eq!(c.plugin.timeout, None);
        assert_eq!(c.plugin.memory_limit, 16 * 1024 * 1024);
        assert!(!c.plugin.wall_clock, "no wall clock by default");
        assert!(ok("plugin.clock = true").plugin.wall_clock);
        assert!(err("plugin.clock = \"yes\"").contains("plugin"));
        let c = ok("[plugin.timeout]\nms = \"2500\"\n[plugin.memory]\nmb = \" 1024 \"");
        assert_eq!(c.plugin.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(c.plugin.memory_limit, 1 << 30);
        assert_eq!(
            err("plugin.memory.mb = 15"),
            "plugin.memory.mb: 15 MB is too small; use at least 16 (the default is 512)"
        );
        assert_eq!(
            err("plugin.memory.mb = \"1GB\""),
            "plugin.memory.mb: expected a whole number of megabytes, got `1GB`"
        );
        assert_eq!(
            err("plugin.memory.mb = 9223372036854775807"),
            "plugin.memory.mb: 9223372036854775807 MB is too large"
        );
        assert_eq!(
            err("plugin.timeout.ms = -1"),
            "plugin.timeout.ms: expected a whole number of milliseconds, got `-1`"
        );
        assert_contains(
            &err("plugin.timeout.s = 1"),
            "unknown field `s`, expected `ms`",
        );
        assert_contains(&err("plugin.memory = 512"), "invalid type: integer `512`");
    }

    #[test]
    fn tls_settings() {
        assert_eq!(ok("db.sslmode = \"disable\"").db.sslmode, SslMode::Disable);
        assert_eq!(ok("db.sslmode = \"Require\"").db.sslmode, SslMode::Require);
        let c = ok("db.sslmode = \"VERIFY-FULL\"\ndb.sslrootcert = \"certs/ca.pem\"");
        assert_eq!(c.db.sslmode, SslMode::VerifyFull);
        assert_eq!(
            c.db.sslrootcert.as_deref(),
            Some(std::path::Path::new("certs/ca.pem"))
        );
        let c = ok("db.sslmode = \"verify-full\"");
        assert_eq!(
            (c.db.sslmode, c.db.sslrootcert),
            (SslMode::VerifyFull, None)
        );

        assert_eq!(
            err("db.sslmode = \"on\""),
            "db.sslmode: unknown value `on`; expected `disable`, `prefer`, `require` or `verify-full`"
        );
        assert_contains(
            &err("db.sslmode = \"verify-ca\""),
            "(verify-ca is not supported: verify-full checks the certificate too, and the host name)",
        );
        assert_contains(
            &err("db.sslmode = \"allow\""),
            "(allow is not supported: prefer also falls back to plain TCP)",
        );
        assert_eq!(
            err("db.sslrootcert = \"ca.pem\""),
            "db.sslrootcert: is used only with db.sslmode = \"verify-full\"; with \"prefer\" the \
             server's certificate is not checked"
        );
        assert_contains(
            &err("db.sslmode = \"require\"\ndb.sslrootcert = \"ca.pem\""),
            "with \"require\" the server's certificate is not checked",
        );
        assert_eq!(
            err("db.sslmode = \"verify-full\"\ndb.sslrootcert = \" \""),
            "db.sslrootcert: must not be empty"
        );
    }

    #[test]
    fn dead_letter_limit() {
        assert_eq!(
            ok("errors.deadletter.max.per.minute = 100").max_dead_letters_per_minute,
            Some(100)
        );
        assert_eq!(
            ok("[errors.deadletter.max.per]\nminute = \"5\"").max_dead_letters_per_minute,
            Some(5)
        );
        assert_eq!(
            err("errors.deadletter.max.per.minute = 0"),
            "errors.deadletter.max.per.minute: must be at least 1, got 0"
        );
        assert_eq!(
            err("errors.deadletter.max.per.minute = \"many\""),
            "errors.deadletter.max.per.minute: expected a whole number of messages, got `many`"
        );
        assert_contains(
            &err("errors.deadletter.max.per.hour = 1"),
            "unknown field `hour`, expected `minute`",
        );
    }

    fn process(text: &str) -> ProcessConfig {
        parse_process_toml(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn process_err(text: &str) -> String {
        parse_process_toml(text)
            .expect_err("configuration should be rejected")
            .to_string()
    }

    #[test]
    fn metrics_address() {
        let at = |address: &str| {
            process(&compose(&format!("metrics.address = {address:?}"))).metrics_address
        };
        assert_eq!(process(BASE).metrics_address, None);
        assert_eq!(
            at("127.0.0.1:9187"),
            Some("127.0.0.1:9187".parse().unwrap())
        );
        assert_eq!(at(" 0.0.0.0:9187 "), Some("0.0.0.0:9187".parse().unwrap()));
        assert_eq!(at("[::1]:9187"), Some("[::1]:9187".parse().unwrap()));
        let resolved = at("localhost:9187").unwrap();
        assert!(resolved.ip().is_loopback(), "{resolved}");
        assert_eq!(resolved.port(), 9187);
        // A single-sink file may set it; parse_toml checks it too.
        assert_eq!(
            ok("[metrics]\naddress = \"127.0.0.1:1\"").topics,
            ["orders"]
        );

        for (address, expected) in [
            (
                "9187",
                "metrics.address: `9187` lacks a port; write host:port, e.g. \"127.0.0.1:9187\"",
            ),
            (
                ":9187",
                "metrics.address: `:9187` has no host; write 0.0.0.0:9187 to listen on every \
                 IPv4 address, or 127.0.0.1:9187 for this machine only",
            ),
            (
                "::1:9187",
                "metrics.address: `::1:9187` is not host:port; write an IPv6 address in brackets",
            ),
            (
                "127.0.0.1:0",
                "metrics.address: `127.0.0.1:0`: port 0 would pick a random port",
            ),
            (
                "127.0.0.1:99999",
                "metrics.address: `99999` in `127.0.0.1:99999` is not a port number (1-65535)",
            ),
            (
                "localhost:http",
                "`http` in `localhost:http` is not a port number",
            ),
            (
                "no-such-host.invalid:9187",
                "metrics.address: cannot resolve `no-such-host.invalid`",
            ),
        ] {
            assert_contains(
                &process_err(&compose(&format!("metrics.address = {address:?}"))),
                expected,
            );
        }
        assert_contains(
            &err("metrics.port = 1"),
            "unknown field `port`, expected `address`",
        );
    }

    /// Shared connection settings at the top level, two sinks below.
    const TWO_SINKS: &str = r#"
db.host = "pg:5433"
db.database = "shop"
db.username = "sink"
db.password = "pw"
db.sslmode = "require"
kafka.bootstrap.servers = "k1:9092"
kafka.fetch.wait.max.ms = 10
plugin.settings.mode = "strict"
plugin.settings.level = 1
errors.deadletter.max.per.minute = 100
metrics.address = "127.0.0.1:9187"

[[sink]]
name = "orders"
topics = "orders"
db.table = "orders"
db.columns = "id,total"
db.json.parse = "/@id,/@total"

[[sink]]
name = "payments"
topics = ["payments", "refunds"]
tasks = 2
db.table = "payments"
db.columns = ["id"]
db.json.parse = "/@id"
db.delivery = "guaranteed"
db.sslmode = "verify-full"
db.sslrootcert = "ca.pem"
errors.deadletter.max.per.minute = 5
kafka."bootstrap.servers" = "k2:9092"
kafka.group.id = "payments-group"
plugin.settings.mode = "lax"
plugin.settings.extra = true
"#;

    #[test]
    fn sinks_inherit_the_top_level() {
        let p = process(TWO_SINKS);
        assert_eq!(p.metrics_address, Some("127.0.0.1:9187".parse().unwrap()));
        let [orders, payments] = &p.sinks[..] else {
            panic!("{:?}", p.sinks);
        };
        assert_eq!(orders.name.as_deref(), Some("orders"));
        assert_eq!((orders.db.host.as_str(), orders.db.port), ("pg", 5433));
        assert_eq!(orders.db.database, "shop");
        assert_eq!(orders.db.password.as_deref(), Some("pw"));
        assert_eq!(orders.db.sslmode, SslMode::Require);
        assert_eq!(orders.db.table, "orders");
        assert_eq!(orders.delivery, Delivery::Synchronized);
        assert_eq!(orders.max_dead_letters_per_minute, Some(100));
        assert_eq!(orders.tasks, 1);
        let kafka = |c: &SinkConfig| {
            c.kafka
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            kafka(orders),
            [
                "auto.offset.reset=earliest",
                "bootstrap.servers=k1:9092",
                "fetch.wait.max.ms=10",
                "group.id=connect-orders",
            ]
        );
        let settings = |c: &SinkConfig| {
            c.plugin
                .settings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            settings(orders),
            ["db.json.parse=/@id,/@total", "level=1", "mode=strict"]
        );

        // The sink's own values win, key by key, also inside kafka and plugin.settings.
        assert_eq!(payments.topics, ["payments", "refunds"]);
        assert_eq!(payments.tasks, 2);
        assert_eq!(payments.db.host, "pg");
        assert_eq!(payments.db.columns, ["id"]);
        assert_eq!(payments.delivery, Delivery::Guaranteed);
        assert_eq!(payments.db.sslmode, SslMode::VerifyFull);
        assert_eq!(
            payments.db.sslrootcert.as_deref(),
            Some(std::path::Path::new("ca.pem"))
        );
        assert_eq!(payments.max_dead_letters_per_minute, Some(5));
        assert_eq!(
            kafka(payments),
            [
                "auto.offset.reset=earliest",
                "bootstrap.servers=k2:9092",
                "fetch.wait.max.ms=10",
                "group.id=payments-group",
            ]
        );
        assert_eq!(
            settings(payments),
            ["db.json.parse=/@id", "extra=true", "level=1", "mode=lax"]
        );
    }

    #[test]
    fn sink_sections_may_use_tables() {
        let text = r#"
db.database = "shop"
db.username = "sink"
[kafka]
"bootstrap.servers" = "k1:9092"

[[sink]]
topics = "orders"
[sink.db]
table = "orders"
columns = "id"
json.parse = "/@id"
[sink.kafka.bootstrap]
servers = "k9:9092"
[sink.plugin]
timeout.ms = 0
memory.mb = 64
"#;
        let p = process(text);
        let sink = &p.sinks[0];
        assert_eq!(sink.db.table, "orders");
        assert_eq!(sink.kafka["bootstrap.servers"], "k9:9092");
        assert_eq!(sink.plugin.timeout, None);
        assert_eq!(sink.plugin.memory_limit, 64 << 20);
        // One [[sink]] section is one sink: parse_toml accepts it.
        assert_eq!(parse_toml(text).unwrap(), *sink);
    }

    #[test]
    fn one_sink_section_equals_a_single_sink_file() {
        let single = compose("name = \"s\"\ndb.host = \"pg\"\nkafka.linger.ms = 5");
        let sectioned =
            "db.host = \"pg\"\nkafka.linger.ms = 5\n[[sink]]\nname = \"s\"\n".to_owned() + BASE;
        assert_eq!(
            parse_toml(&single).unwrap(),
            parse_toml(&sectioned).unwrap()
        );
        assert_eq!(process(&single).sinks, process(&sectioned).sinks);
    }

    #[test]
    fn several_sinks_are_rejected_by_parse_toml() {
        assert_eq!(
            parse_toml(TWO_SINKS).unwrap_err().to_string(),
            "this file declares 2 sinks ([[sink]] sections); only a file with a single sink \
             can be used here"
        );
    }

    #[test]
    fn sink_errors_name_the_sink() {
        let without_table = TWO_SINKS.replacen("db.table = \"payments\"\n", "", 1);
        assert_eq!(
            process_err(&without_table),
            "sink[2] (name \"payments\"): missing required key `db.table`"
        );
        let unnamed = TWO_SINKS.replacen("name = \"orders\"\n", "", 1);
        let unnamed = unnamed.replacen("db.columns = \"id,total\"", "db.columns = \"id\"", 1);
        assert_eq!(
            process_err(&unnamed),
            "sink[1]: db.json.parse has 2 parse paths but db.columns lists 1 column"
        );
        assert_eq!(
            process_err(&TWO_SINKS.replace("db.delivery = \"guaranteed\"", "db.delivery = \"x\"")),
            "sink[2] (name \"payments\"): db.delivery: unknown value `x`; expected `fastest`, \
             `guaranteed` or `synchronized`"
        );
        // A top-level value is checked in every sink, and said to be inherited.
        assert_eq!(
            process_err(&TWO_SINKS.replace("db.sslmode = \"require\"", "db.sslmode = \"tls\"")),
            "sink[1] (name \"orders\"): db.sslmode: unknown value `tls`; expected `disable`, \
             `prefer`, `require` or `verify-full` (the value is inherited from the top level \
             of the file)"
        );
        assert_contains(
            &process_err(&format!("kafka.enable.auto.commit = false\n{TWO_SINKS}")),
            "sink[1] (name \"orders\"): kafka.enable.auto.commit cannot be set: pgsink commits \
             offsets itself, after each flush, as db.delivery requires (the value is inherited",
        );
        // A top-level sslrootcert with a sink's sslmode = require.
        assert_eq!(
            process_err(&TWO_SINKS.replace(
                "db.sslmode = \"require\"",
                "db.sslmode = \"require\"\ndb.sslrootcert = \"ca.pem\""
            )),
            "sink[1] (name \"orders\"): db.sslrootcert: is used only with db.sslmode = \
             \"verify-full\"; with \"require\" the server's certificate is not checked (the \
             value is inherited from the top level of the file)"
        );
        // Errors in the top level alone are not blamed on a sink.
        assert_eq!(
            process_err(&format!("db.port = 5433\n{TWO_SINKS}")),
            "db.port: not a key: write the port in db.host, e.g. db.host = \"pg:5433\""
        );
        assert_eq!(
            process_err(&format!("kafka.acks = [1]\n{TWO_SINKS}")),
            "kafka.acks: arrays are not supported; write a comma-separated string"
        );
        assert_eq!(
            process_err(&format!(
                "kafka.linger.ms = 1\nkafka.\"linger.ms\" = 2\n{TWO_SINKS}"
            )),
            "kafka.linger.ms is given twice"
        );
        assert_eq!(
            process_err(&format!(
                "{TWO_SINKS}kafka.linger.ms = 1\nkafka.\"linger.ms\" = 2\n"
            )),
            "sink[2] (name \"payments\"): kafka.linger.ms is given twice"
        );
    }

    #[test]
    fn sink_structure_errors() {
        assert_eq!(
            process_err(&format!("{TWO_SINKS}metrics.address = \"127.0.0.1:1\"\n")),
            "sink[2] (name \"payments\"): metrics.address: is process-wide: set it at the top \
             level of the file, outside the [[sink]] sections"
        );
        assert_eq!(
            process_err(&format!("{TWO_SINKS}[[sink.sink]]\nname = \"x\"\n")),
            "sink[2] (name \"payments\"): sink: [[sink]] sections cannot be nested"
        );
        assert_eq!(
            process_err(&format!("sink = []\n{BASE}")),
            "sink: declares no sinks; add [[sink]] sections, or remove `sink` to make the file \
             one sink"
        );
        let unknown = process_err(&TWO_SINKS.replace("tasks = 2", "taks = 2"));
        assert_contains(&unknown, "unknown field `taks`");
        assert_contains(&unknown, "line 24");
        assert_contains(
            &process_err("[sink]\nname = \"x\""),
            "invalid type: map, expected a sequence",
        );
    }

    #[test]
    fn db_port_hint_uses_the_host_without_its_port() {
        assert_eq!(
            err("db.host = \"[::1]:6000\"\ndb.port = \"5433\""),
            "db.port: not a key: write the port in db.host, e.g. db.host = \"[::1]:5433\""
        );
        assert_eq!(
            err("db.host = \"pg\"\ndb.port = 5433"),
            "db.port: not a key: write the port in db.host, e.g. db.host = \"pg:5433\""
        );
    }

    #[test]
    fn conflicting_sinks() {
        let sink = |extra: &str| format!("[[sink]]\n{}\n", compose(extra));
        let two = |a: &str, b: &str| format!("{}{}", sink(a), sink(b));

        assert_eq!(
            process_err(&two(
                "name = \"a\"",
                "name = \"b\"\nkafka.group.id = \"connect-a\""
            )),
            "sink[1] (name \"a\") and sink[2] (name \"b\") use the same Kafka consumer group \
             \"connect-a\": Kafka would split the partitions between them, so each would miss \
             the messages the other receives; give each sink its own `name` or kafka.group.id"
        );
        // Inherited names (and the default group id from the table) collide too.
        assert_contains(
            &process_err(&format!("name = \"n\"\n{}", two("", "db.table = \"x\""))),
            "sink[1] (name \"n\") and sink[2] (name \"n\") use the same Kafka consumer group \
             \"connect-n\"",
        );
        assert_contains(
            &process_err(&two("", "db.schema = \"public\"")),
            "sink[1] and sink[2] use the same Kafka consumer group \"pgsink-public.orders\"",
        );

        assert_eq!(
            process_err(&two(
                "name = \"a\"",
                "name = \"b\"\ntopics = \"other,orders\""
            )),
            "sink[1] (name \"a\") and sink[2] (name \"b\") both load topic \"orders\" into \
             public.orders of database \"shop\" on localhost:5432 with synchronized delivery: \
             their offsets would collide (the database keeps one offset per table, topic and \
             partition); load the topic into this table with one sink only"
        );
        let three = format!(
            "{}{}",
            sink("name = \"x\"\ntopics = \"x\""),
            two("name = \"a\"", "name = \"b\"")
        );
        assert_contains(
            &process_err(&three),
            "sink[2] (name \"a\") and sink[3] (name \"b\")",
        );

        // Fine: not both synchronized, other topics, another table, another database.
        for b in [
            "db.delivery = \"guaranteed\"",
            "topics = \"other\"",
            "db.table = \"orders2\"",
            "db.schema = \"s2\"",
            "db.database = \"shop2\"",
            "db.host = \"pg2\"",
            "db.host = \"localhost:5433\"",
        ] {
            let p = process(&two("name = \"a\"", &format!("name = \"b\"\n{b}")));
            assert_eq!(p.sinks.len(), 2, "{b}");
        }
    }

    #[test]
    fn documented_examples_are_valid() {
        let docs = include_str!("../../../docs/configuration.md");
        let blocks = |lang: &str| -> Vec<&str> {
            let fence = format!("```{lang}\n");
            docs.split(fence.as_str())
                .skip(1)
                .map(|rest| rest.split("```").next().unwrap())
                .collect()
        };
        let toml = blocks("toml");
        let single = toml
            .iter()
            .find(|b| b.contains("accelerometer-sink"))
            .expect("the single-sink example");
        assert_eq!(parse_toml(single).unwrap().tasks, 2);
        let several = toml
            .iter()
            .find(|b| b.contains("[[sink]]"))
            .expect("the multi-sink example");
        let p = process(several);
        assert_eq!(p.sinks.len(), 2);
        assert_eq!(p.metrics_address, Some("127.0.0.1:9187".parse().unwrap()));
        assert_eq!(
            p.sinks[1].kafka["bootstrap.servers"],
            "kafka1:9092,kafka2:9092"
        );
        assert_eq!(p.sinks[1].kafka["fetch.wait.max.ms"], "10");
        let tls = toml
            .iter()
            .find(|b| b.contains("db.sslrootcert"))
            .expect("the TLS example");
        assert_eq!(ok(tls).db.sslmode, SslMode::VerifyFull);
        for properties in blocks("properties") {
            super::super::parse_properties(properties).unwrap();
        }
    }

    #[test]
    fn redacted_shows_the_new_keys() {
        let p = process(TWO_SINKS);
        let orders = p.sinks[0].redacted().to_string();
        let payments = p.sinks[1].redacted().to_string();
        for line in [
            "db.sslmode = \"require\"\n",
            "errors.deadletter.max.per.minute = 100\n",
            "plugin.timeout.ms = 10000\n",
            "plugin.memory.mb = 512\n",
        ] {
            assert_contains(&orders, line);
        }
        assert!(!orders.contains("sslrootcert"), "{orders}");
        assert_contains(
            &payments,
            "db.sslmode = \"verify-full\"\ndb.sslrootcert = \"ca.pem\"\n",
        );
        let unlimited = ok("plugin.timeout.ms = 0").redacted().to_string();
        assert_contains(&unlimited, "plugin.timeout.ms = 0\n");
        assert!(!unlimited.contains("deadletter"), "{unlimited}");
        assert!(!format!("{p:?}").contains("\"pw\""), "{p:?}");
    }
}
