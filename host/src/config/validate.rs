//! Validation of one sink: [`Schema`] in, [`SinkConfig`] out, defaults
//! applied. One function per concern, each pure (no files, no network), so
//! that each rule can be read and tested on its own. Errors come in the order
//! the checks run: structure, required keys, then concern by concern.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use super::schema::Schema;
use super::tables::{tables, TOPIC_PLACEHOLDER};
use super::values::{
    is_valid_topic, names, non_empty, parse_host, whole_number, Number, ParseEnumError,
};
use super::{
    is_topic_pattern, ConfigError, ConverterConfig, DbConfig, Delivery, ErrorTolerance, SinkConfig,
    SslMode, TableConfig, WriteMode, DEFAULT_AUTO_OFFSET_RESET, DEFAULT_BOOTSTRAP_SERVERS,
    DEFAULT_BUFFER_SIZE, DEFAULT_CONVERTER_MEMORY_MB, DEFAULT_CONVERTER_TIMEOUT_MS,
    DEFAULT_FLUSH_INTERVAL_MS, DEFAULT_HOST, DEFAULT_PORT, DEFAULT_SCHEMA, DEFAULT_TASKS,
    FORBIDDEN_KAFKA_KEYS, JSON_SETTINGS, MEGABYTE, MIN_BUFFER_SIZE, MIN_CONVERTER_MEMORY_MB,
    PARSE_PATHS_SETTING,
};

pub(super) const DEAD_LETTER_KEY: &str = "errors.deadletter.max.per.minute";

/// How errors name the keys whose name depends on the input format (a
/// `.properties` file uses Kafka Connect's names).
#[derive(Debug, Clone, Copy)]
pub(super) struct KeyNames {
    pub tasks: &'static str,
    pub flush_interval: &'static str,
}

impl KeyNames {
    pub(super) const TOML: KeyNames = KeyNames {
        tasks: "tasks",
        flush_interval: "flush.interval.ms",
    };
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, message)
}

/// Checks every value of one sink, applies defaults and builds the typed configuration.
pub(super) fn sink(s: &Schema, key_names: KeyNames) -> Result<SinkConfig, ConfigError> {
    structure(s)?;
    required(s)?;
    let name = s
        .name
        .as_deref()
        .map(|n| non_empty("name", n))
        .transpose()?;
    let (topics, tasks) = topics_and_tasks(s, key_names)?;
    let (db, table_settings) = db(s, &topics)?;
    let several = s.db_tables.is_some()
        || db.tables.len() > 1
        || s.db_table
            .as_ref()
            .is_some_and(|t| t.contains(TOPIC_PLACEHOLDER));
    if several && name.is_none() {
        return Err(invalid(
            "name",
            "is required for a sink that writes several tables (db.tables, or ${topic} in \
             db.table): it names the sink's offsets and its consumer group",
        ));
    }
    let (delivery, buffer_size, flush_interval) = delivery(s, key_names)?;
    let (errors_tolerance, max_dead_letters_per_minute) = errors(s)?;
    let converter = converter(s, &db.tables, table_settings)?;
    let kafka = kafka(s, name.as_deref(), &db)?;
    Ok(SinkConfig {
        name,
        topics,
        tasks,
        db,
        delivery,
        buffer_size,
        flush_interval,
        errors_tolerance,
        max_dead_letters_per_minute,
        converter,
        kafka,
    })
}

/// Keys that cannot appear in a sink: process-wide ones (left here only when
/// written inside a `[[sink]]` section), nested sections, and `db.port`.
pub(super) fn structure(s: &Schema) -> Result<(), ConfigError> {
    if s.metrics_address.is_some() {
        return Err(invalid(
            "metrics.address",
            "is process-wide: set it at the top level of the file, outside the [[sink]] \
             sections",
        ));
    }
    if s.sink.is_some() {
        return Err(invalid("sink", "[[sink]] sections cannot be nested"));
    }
    no_port_key(s)
}

/// `db.port` is not a key; says where the port goes.
pub(super) fn no_port_key(s: &Schema) -> Result<(), ConfigError> {
    let Some(port) = &s.db_port else {
        return Ok(());
    };
    let port = match port {
        toml::Value::String(p) => p.trim().to_owned(),
        other => other.to_string(),
    };
    let host = s
        .db_host
        .as_deref()
        .and_then(|h| parse_host(h).ok())
        .map_or_else(|| DEFAULT_HOST.to_owned(), |(host, _)| host);
    Err(invalid(
        "db.port",
        format!(
            "not a key: write the port in db.host, e.g. db.host = \"{}:{port}\"",
            super::values::bracketed(&host)
        ),
    ))
}

/// One of an enumeration's names, or its default when the key is absent;
/// `hint` gives advice for a (lowercase) name that is not accepted.
fn choice<T: FromStr<Err = ParseEnumError> + Default>(
    key: &str,
    value: &Option<String>,
    hint: fn(&str) -> &'static str,
) -> Result<T, ConfigError> {
    let Some(value) = value else {
        return Ok(T::default());
    };
    value.parse().map_err(|e| {
        let hint = hint(&value.trim().to_ascii_lowercase());
        invalid(key, format!("{e}{hint}"))
    })
}

/// Required keys, all reported at once.
fn required(s: &Schema) -> Result<(), ConfigError> {
    if let (None, Some((key, _))) = (&s.db_tables, s.table.iter().next()) {
        return Err(invalid(
            &format!("table.{key}"),
            "a [table.NAME] section is read only when db.tables lists NAME",
        ));
    }
    let keys: Vec<&'static str> = [
        (s.topics.is_some(), "topics"),
        (s.db_database.is_some(), "db.database"),
        (s.db_username.is_some(), "db.username"),
        (s.db_table.is_some() || s.db_tables.is_some(), "db.table"),
        (
            s.db_columns.is_some() || s.db_tables.is_some(),
            "db.columns",
        ),
        (
            s.db_json_parse.is_some() || s.plugin_path.is_some() || s.db_tables.is_some(),
            PARSE_PATHS_SETTING,
        ),
    ]
    .into_iter()
    .filter_map(|(present, key)| (!present).then_some(key))
    .collect();
    if keys.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Missing { keys })
    }
}

/// A required key, known to be present after [`required`].
fn present<T>(value: &Option<T>) -> &T {
    value.as_ref().expect("required keys are checked first")
}

fn topics_and_tasks(s: &Schema, key_names: KeyNames) -> Result<(Vec<String>, usize), ConfigError> {
    let topics = names("topics", "topic", present(&s.topics))?;
    for topic in &topics {
        if is_topic_pattern(topic) {
            if let Some(cause) = pattern_error(topic) {
                return Err(invalid(
                    "topics",
                    format!("`{topic}` is not a valid topic pattern: {cause}"),
                ));
            }
        } else if !is_valid_topic(topic) {
            return Err(invalid(
                "topics",
                format!(
                    "`{topic}` is not a valid Kafka topic name (letters, digits, `.`, `_` and \
                     `-`; at most 249 characters; a pattern starts with `^`)"
                ),
            ));
        }
    }
    let key = key_names.tasks;
    let tasks = whole_number(key, s.tasks.as_ref(), "a whole number of tasks")?
        .map(|n| {
            usize::try_from(n)
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| invalid(key, format!("must be at least 1, got {n}")))
        })
        .transpose()?
        .unwrap_or(DEFAULT_TASKS);
    Ok((topics, tasks))
}

/// Why a topic pattern is refused, if it is. librdkafka matches patterns as POSIX extended
/// regular expressions (glibc's `regcomp`), pgsink (`check`, conflicts, dropping positions)
/// with the `regex` crate: only what both read the same way is accepted, so that what
/// `pgsink check` lists is what the consumer subscribes to. Outside brackets that leaves out
/// backslash escapes other than `\.` (`\d` is a `d` to POSIX) and `(?` groups; inside
/// brackets, any backslash (a literal one to POSIX, an escape to `regex`).
fn pattern_error(pattern: &str) -> Option<String> {
    if let Err(error) = regex::Regex::new(pattern) {
        let cause = error.to_string();
        return Some(cause.lines().last().unwrap_or_default().trim().to_string());
    }
    if pattern.contains("(?") {
        return Some(
            "`(?` groups are not POSIX regular expressions, which librdkafka matches".into(),
        );
    }
    let mut chars = pattern.chars();
    let mut in_brackets = false;
    while let Some(c) = chars.next() {
        match c {
            '[' if !in_brackets => in_brackets = true,
            ']' if in_brackets => in_brackets = false,
            '\\' if in_brackets || chars.next() != Some('.') => {
                return Some(
                    "librdkafka matches POSIX regular expressions, where a backslash means \
                     another thing; escape only `.` (as `\\.`) and write classes in brackets \
                     (`[0-9]` for `\\d`)"
                        .into(),
                )
            }
            _ => {}
        }
    }
    None
}

/// `db.*`: connection and tables (with the converter's settings of each table).
fn db(s: &Schema, topics: &[String]) -> Result<(DbConfig, Vec<(String, String)>), ConfigError> {
    let (host, port) = match &s.db_host {
        Some(host) => parse_host(host).map_err(|message| invalid("db.host", message))?,
        None => (DEFAULT_HOST.to_owned(), DEFAULT_PORT),
    };
    let schema = match &s.db_schema {
        Some(schema) => non_empty("db.schema", schema)?,
        None => DEFAULT_SCHEMA.to_owned(),
    };
    let sslmode: SslMode = choice("db.sslmode", &s.db_sslmode, |mode| match mode {
        "verify-ca" => " (verify-full checks the certificate and the host name)",
        "allow" => " (prefer also falls back to plain TCP)",
        _ => "",
    })?;
    let sslrootcert = s
        .db_sslrootcert
        .as_deref()
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
    let mode: WriteMode = choice("db.write.mode", &s.db_write_mode, |mode| match mode {
        "insert" => " (append is COPY; upsert replaces a key's row)",
        "update" | "merge" => " (upsert inserts a new key and replaces an existing one)",
        _ => "",
    })?;
    let (tables, table_settings) = tables(s, &schema, mode, topics)?;
    let db = DbConfig {
        host,
        port,
        database: non_empty("db.database", present(&s.db_database).as_str())?,
        username: non_empty("db.username", present(&s.db_username).as_str())?,
        password: s.db_password.clone().filter(|p| !p.is_empty()),
        tables,
        sslmode,
        sslrootcert,
    };
    Ok((db, table_settings))
}

/// `db.delivery`, `db.buffer.size` and `flush.interval.ms`: when rows are written.
fn delivery(s: &Schema, key_names: KeyNames) -> Result<(Delivery, usize, Duration), ConfigError> {
    let delivery = choice("db.delivery", &s.db_delivery, |_| "")?;
    let key = "db.buffer.size";
    let buffer_size = match whole_number(key, s.db_buffer_size.as_ref(), "a whole number of bytes")?
    {
        Some(n) if n < MIN_BUFFER_SIZE as u64 => {
            return Err(invalid(
                key,
                format!(
                    "{n} bytes is too small; use at least {MIN_BUFFER_SIZE} \
                     (the default is {DEFAULT_BUFFER_SIZE})"
                ),
            ))
        }
        Some(n) => {
            usize::try_from(n).map_err(|_| invalid(key, format!("{n} bytes is too large")))?
        }
        None => DEFAULT_BUFFER_SIZE,
    };
    let key = key_names.flush_interval;
    let flush_ms = match whole_number(
        key,
        s.flush_interval_ms.as_ref(),
        "a whole number of milliseconds",
    )? {
        Some(0) => return Err(invalid(key, "must be greater than 0")),
        Some(n) => n,
        None => DEFAULT_FLUSH_INTERVAL_MS,
    };
    Ok((delivery, buffer_size, Duration::from_millis(flush_ms)))
}

/// `errors.*`: bad messages and the dead-letter safety valve.
fn errors(s: &Schema) -> Result<(ErrorTolerance, Option<u64>), ConfigError> {
    let tolerance = choice("errors.tolerance", &s.errors_tolerance, |_| "")?;
    let max = match whole_number(
        DEAD_LETTER_KEY,
        s.errors_deadletter_max_per_minute.as_ref(),
        "a whole number of messages",
    )? {
        Some(0) => return Err(invalid(DEAD_LETTER_KEY, "must be at least 1, got 0")),
        other => other,
    };
    Ok((tolerance, max))
}

/// `db.json.envelope` and `db.json.tombstone`: with the bundled converter, one of their names
/// (it documents them), so that a typo is reported with the file's line, not at start; another
/// converter gets them as they are written.
fn json_names(s: &Schema) -> Result<Vec<(String, String)>, ConfigError> {
    let mut settings = Vec::new();
    let bundled = s.plugin_path.is_none();
    for (key, value, names) in [
        (
            "db.json.envelope",
            &s.db_json_envelope,
            &["none", "debezium", "connect"][..],
        ),
        (
            "db.json.tombstone",
            &s.db_json_tombstone,
            &["skip", "delete", "fail"][..],
        ),
    ] {
        if let Some(value) = value {
            if !bundled {
                settings.push((key.to_owned(), value.clone()));
                continue;
            }
            let name = value.trim().to_ascii_lowercase();
            if !names.contains(&name.as_str()) {
                return Err(invalid(
                    key,
                    format!("must be one of {}, got {value:?}", names.join(", ")),
                ));
            }
            settings.push((key.to_owned(), name));
        }
    }
    if let Some(casts) = &s.db_json_cast {
        settings.push(("db.json.cast".to_owned(), casts.clone()));
    }
    Ok(settings)
}

/// `plugin.*` and `db.json.*`: the converter, its settings and limits.
fn converter(
    s: &Schema,
    tables: &[TableConfig],
    table_settings: Vec<(String, String)>,
) -> Result<ConverterConfig, ConfigError> {
    let mut settings = Vec::new();
    if let Some(paths) = &s.db_json_parse {
        if paths.trim().is_empty() {
            return Err(invalid(PARSE_PATHS_SETTING, "must not be empty"));
        }
        // With db.tables, each table without its own parse paths is checked against them.
        let count = paths.split(',').count();
        let columns = tables[0].columns.len();
        if count != columns && s.db_tables.is_none() {
            return Err(ConfigError::CountMismatch {
                paths: count,
                columns,
            });
        }
        settings.push((PARSE_PATHS_SETTING.to_owned(), paths.clone()));
    }
    settings.extend(json_names(s)?);
    settings.extend(table_settings);
    for (key, value) in &s.plugin_settings {
        if JSON_SETTINGS.contains(&key.as_str()) {
            return Err(invalid(
                &format!("plugin.settings.{key}"),
                format!("set the top-level {key} instead"),
            ));
        }
        if key.starts_with("table.") {
            return Err(invalid(
                &format!("plugin.settings.{key}"),
                "a table's settings go in its [table.NAME] section",
            ));
        }
        settings.push((key.clone(), value.clone()));
    }
    let number = |key: &str, value: &Option<Number>, what: &str, default: u64| {
        whole_number(key, value.as_ref(), what).map(|n| n.unwrap_or(default))
    };
    let timeout = match number(
        "plugin.timeout.ms",
        &s.plugin_timeout_ms,
        "a whole number of milliseconds",
        DEFAULT_CONVERTER_TIMEOUT_MS,
    )? {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    };
    let key = "plugin.memory.mb";
    let memory_mb = number(
        key,
        &s.plugin_memory_mb,
        "a whole number of megabytes",
        DEFAULT_CONVERTER_MEMORY_MB,
    )?;
    if memory_mb < MIN_CONVERTER_MEMORY_MB {
        return Err(invalid(
            key,
            format!(
                "{memory_mb} MB is too small; use at least {MIN_CONVERTER_MEMORY_MB} \
                 (the default is {DEFAULT_CONVERTER_MEMORY_MB})"
            ),
        ));
    }
    let memory_limit = usize::try_from(memory_mb)
        .ok()
        .and_then(|mb| mb.checked_mul(MEGABYTE))
        .ok_or_else(|| invalid(key, format!("{memory_mb} MB is too large")))?;
    Ok(ConverterConfig {
        path: s
            .plugin_path
            .as_deref()
            .map(|p| non_empty("plugin.path", p).map(Into::into))
            .transpose()?,
        settings,
        timeout,
        memory_limit,
        wall_clock: s.plugin_clock.unwrap_or(false),
        write_modes: tables.iter().map(|t| t.write_mode).collect(),
    })
}

/// `kafka.*`: librdkafka properties, minus those pgsink controls, plus defaults.
fn kafka(
    s: &Schema,
    name: Option<&str>,
    db: &DbConfig,
) -> Result<BTreeMap<String, String>, ConfigError> {
    for (key, reason) in FORBIDDEN_KAFKA_KEYS {
        if s.kafka.contains_key(*key) {
            return Err(ConfigError::ForbiddenKafkaKey {
                key: (*key).to_owned(),
                reason,
            });
        }
    }
    let group_id = match name {
        Some(name) => format!("connect-{name}"),
        None => {
            let first = db.first_table();
            format!("pgsink-{}.{}", first.schema, first.table)
        }
    };
    let mut kafka = s.kafka.clone();
    for (key, default) in [
        ("bootstrap.servers", DEFAULT_BOOTSTRAP_SERVERS.to_owned()),
        ("group.id", group_id),
        ("auto.offset.reset", DEFAULT_AUTO_OFFSET_RESET.to_owned()),
    ] {
        kafka.entry(key.to_owned()).or_insert(default);
    }
    Ok(kafka)
}

#[cfg(test)]
mod tests;
