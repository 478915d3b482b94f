//! The configuration as written (TOML, or `.properties` turned into the same
//! shape), and its validation into a [`SinkConfig`]: the one place where
//! values are checked and defaults applied.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv6Addr;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::{
    ConfigError, DbConfig, PluginConfig, SinkConfig, DEFAULT_AUTO_OFFSET_RESET,
    DEFAULT_BOOTSTRAP_SERVERS, DEFAULT_BUFFER_SIZE, DEFAULT_FLUSH_INTERVAL_MS, DEFAULT_HOST,
    DEFAULT_PORT, DEFAULT_SCHEMA, DEFAULT_TASKS, FORBIDDEN_KAFKA_KEYS, MIN_BUFFER_SIZE,
    PARSE_PATHS_SETTING,
};

/// The whole configuration as written. Dotted TOML keys nest: `db.json.parse`
/// is `db` → `json` → `parse`.
#[derive(Debug, Default, Deserialize)]
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

/// `db.*`.
#[derive(Debug, Default, Deserialize)]
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
}

/// `db.json.*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDbJson {
    /// `db.json.parse`: comma-separated parse paths, one per column.
    #[serde(default)]
    pub parse: Option<String>,
}

/// `db.buffer.*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDbBuffer {
    /// `db.buffer.size`: bytes of COPY text per flush; default 8000000.
    #[serde(default)]
    pub size: Option<Number>,
}

/// `flush.*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlush {
    /// `flush.interval.*`.
    #[serde(default)]
    pub interval: RawFlushInterval,
}

/// `flush.interval.*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlushInterval {
    /// `flush.interval.ms`: flush and offset-commit interval; default 1000.
    #[serde(default)]
    pub ms: Option<Number>,
}

/// `errors.*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawErrors {
    /// `errors.tolerance`: `none` or `all` (default).
    #[serde(default)]
    pub tolerance: Option<String>,
}

/// `plugin.*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugin {
    /// `plugin.path`: converter component; default the bundled parse-path converter.
    #[serde(default)]
    pub path: Option<String>,
    /// `plugin.settings`: converter settings, nested keys joined with dots.
    #[serde(default)]
    pub settings: toml::Table,
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
    /// Checks every value, applies defaults and builds the typed configuration.
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
            key_names,
        } = self;

        if let Some(port) = &db.port {
            return Err(invalid(
                "db.port",
                format!(
                    "not a key: write the port in db.host, e.g. db.host = \"{}:{port}\"",
                    db.host.as_deref().unwrap_or(DEFAULT_HOST)
                ),
            ));
        }

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
        let db_config = DbConfig {
            host,
            port,
            database: non_empty("db.database", database)?,
            username: non_empty("db.username", username)?,
            password: db.password.filter(|p| !p.is_empty()),
            schema,
            table: non_empty("db.table", table)?,
            columns: names("db.columns", "column", columns)?,
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
        let plugin = PluginConfig {
            path: plugin
                .path
                .map(|p| non_empty("plugin.path", p).map(Into::into))
                .transpose()?,
            settings,
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
            plugin,
            kafka,
        })
    }
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
    use super::super::{parse_toml, Delivery, ErrorTolerance};
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
            "unknown field `pth`, expected `path` or `settings`",
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
}
