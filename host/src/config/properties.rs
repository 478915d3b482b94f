//! Java `.properties` input: the original JustOne connector's file, unchanged,
//! plus `bootstrap.servers`.
//!
//! The properties are mapped onto the same flat keys a TOML file is flattened
//! to, and validated by the same code. Values are trimmed, as
//! Kafka Connect does. A key given twice keeps its last value (Java's rule),
//! with a warning; two different keys setting the same thing are an error.

use std::collections::BTreeMap;

use super::schema::{flatten_section, text_value, Flat, Schema, KAFKA};
use super::validate::KeyNames;
use super::{ConfigError, JUSTONE_CONNECTOR_CLASS};

/// Keys taken over unchanged from the original connector.
const DIRECT: &[&str] = &[
    "name",
    "topics",
    "db.host",
    "db.database",
    "db.username",
    "db.password",
    "db.schema",
    "db.table",
    "db.columns",
    "db.json.parse",
    "db.json.envelope",
    "db.json.tombstone",
    "db.json.cast",
    "db.write.mode",
    "db.key.columns",
    "db.delivery",
    "db.buffer.size",
    "db.sslmode",
    "db.sslrootcert",
    "errors.tolerance",
    "errors.deadletter.max.per.minute",
];

/// Keys accepted besides [`DIRECT`]: mapped, or ignored with a warning.
const OTHER: &[&str] = &[
    "connector.class",
    "tasks.max",
    "bootstrap.servers",
    "offset.flush.interval.ms",
    "kafka.*",
    "consumer.*",
    "key.converter",
    "value.converter",
];

/// Keys accepted in a `.properties` file, for error messages and docs.
pub(super) fn accepted() -> String {
    DIRECT
        .iter()
        .chain(OTHER)
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

const CONVERTER_IGNORED: &str = "pgsink hands raw message bytes to its converter";

/// What a `.properties` key does.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// Sets this key (`db.host`, `kafka.fetch.min.bytes`).
    Set(String),
    /// Accepted and ignored, with this reason in a warning.
    Ignore(&'static str),
    /// Not accepted; the string is a hint, empty or starting with "; ".
    Unknown(&'static str),
}

fn target(key: &str) -> Target {
    let path = |key: &str| Target::Set(key.to_owned());
    if DIRECT.contains(&key) {
        return path(key);
    }
    match key {
        "tasks.max" => return path("tasks"),
        "bootstrap.servers" => return path("kafka.bootstrap.servers"),
        "offset.flush.interval.ms" => return path("flush.interval.ms"),
        "connector.class" => return Target::Ignore("pgsink is the sink"),
        "offset.storage.file.filename" => {
            return Target::Ignore(
                "pgsink keeps offsets in Kafka and, with synchronized delivery, in the database",
            )
        }
        "tasks" => return Target::Unknown("; write `tasks.max` in a .properties file"),
        "flush.interval.ms" => {
            return Target::Unknown("; write `offset.flush.interval.ms` in a .properties file")
        }
        "db.port" => return Target::Unknown("; write the port in db.host (`host:port`)"),
        "metrics.address" => {
            return Target::Unknown(
                "; the metrics endpoint is set in TOML files only (a top-level metrics.address)",
            )
        }
        _ => {}
    }
    for prefix in ["kafka.", "consumer."] {
        if let Some(property) = key.strip_prefix(prefix) {
            return if property.is_empty() {
                Target::Unknown("; name a librdkafka property after the prefix")
            } else {
                path(&format!("kafka.{property}"))
            };
        }
    }
    for converter in [
        "key.converter",
        "value.converter",
        "internal.key.converter",
        "internal.value.converter",
    ] {
        if key == converter || key.starts_with(&format!("{converter}.")) {
            return Target::Ignore(CONVERTER_IGNORED);
        }
    }
    if key == "plugin.path" || key.starts_with("plugin.") {
        return Target::Unknown(
            "; converter components are chosen in TOML files only \
             (Kafka Connect's worker plugin.path is not needed)",
        );
    }
    Target::Unknown("")
}

/// Decodes a `.properties` file: UTF-8 when valid, else ISO-8859-1 (what Java reads).
pub(super) fn decode(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|e| e.into_bytes().iter().map(|&b| char::from(b)).collect())
}

/// Reads properties into the schema TOML is read into, with the names its
/// errors give the keys that Kafka Connect names differently.
pub(super) fn to_schema(text: &str) -> Result<(Schema, KeyNames), ConfigError> {
    let mut flat = Flat::new();
    // Where each key was set: key → (property, line).
    let mut set_by: BTreeMap<String, (String, usize)> = BTreeMap::new();

    let lines =
        java_properties::PropertiesIter::new_with_encoding(text.as_bytes(), encoding_rs::UTF_8);
    for line in lines {
        let line = line.map_err(|e| {
            let text = e.to_string();
            let message = text
                .rsplit_once(" (line_number =")
                .map_or(&*text, |(m, _)| m);
            ConfigError::PropertiesSyntax {
                line: e.line_number(),
                message: message.to_owned(),
            }
        })?;
        let number = line.line_number();
        let java_properties::LineContent::KVPair(key, value) = line.consume_content() else {
            continue;
        };
        let value = value.trim().to_owned();
        let path = match target(&key) {
            Target::Set(path) => path,
            Target::Ignore(reason) => {
                if key == "connector.class" && value == JUSTONE_CONNECTOR_CLASS {
                    tracing::debug!(line = number, "connector.class ignored: {reason}");
                } else {
                    tracing::warn!(line = number, "{key} = {value} ignored: {reason}");
                }
                continue;
            }
            Target::Unknown(hint) => {
                return Err(ConfigError::UnknownProperty {
                    key,
                    line: number,
                    hint: hint.to_owned(),
                })
            }
        };

        if let Some((first, first_line)) = set_by.get(&path) {
            if *first != key {
                return Err(ConfigError::ConflictingProperties {
                    target: path,
                    first: first.clone(),
                    first_line: *first_line,
                    second: key,
                    second_line: number,
                });
            }
            tracing::warn!(
                "{key} is set on lines {first_line} and {number}; the last value is used"
            );
        }
        if let Some(property) = path.strip_prefix("kafka.") {
            // A TOML file's rules for librdkafka names (no empty part).
            let table = toml::Table::from_iter([(property.to_owned(), value.clone().into())]);
            flatten_section(KAFKA, table)?;
        }
        set_by.insert(path.clone(), (key, number));
        flat.insert(path, text_value(value));
    }

    let names = KeyNames {
        tasks: "tasks.max",
        flush_interval: "offset.flush.interval.ms",
    };
    Ok((Schema::from_flat(flat)?, names))
}

#[cfg(test)]
mod tests {
    use super::super::{parse_properties, parse_toml, Delivery, SslMode};
    use super::*;

    /// The original connector's file, filled in, plus bootstrap.servers.
    const ORIGINAL: &str = r#"
# Name of the connector (do not change)
name=justone-kafka-sink-pg-json
connector.class=com.justone.kafka.sink.pg.json.PostgreSQLSinkConnector
tasks.max=1
topics=justone
db.host=localhost:5432
db.database=justone
db.username=justone
db.password=justone
db.schema=example
db.table=accelerometer
db.columns=device,rate,x,y,z
db.json.parse=/@device,/@rate,/@x,/@y,/@z
! delivery semantics
db.delivery=synchronized
db.buffer.size=8000000
bootstrap.servers=kafka:9092
"#;

    const EQUIVALENT_TOML: &str = r#"
name = "justone-kafka-sink-pg-json"
tasks = 1
topics = "justone"
db.host = "localhost:5432"
db.database = "justone"
db.username = "justone"
db.password = "justone"
db.schema = "example"
db.table = "accelerometer"
db.columns = "device,rate,x,y,z"
db.json.parse = "/@device,/@rate,/@x,/@y,/@z"
db.delivery = "synchronized"
db.buffer.size = 8000000
kafka.bootstrap.servers = "kafka:9092"
"#;

    fn err(text: &str) -> String {
        parse_properties(text)
            .expect_err("properties should be rejected")
            .to_string()
    }

    fn assert_contains(haystack: &str, needle: &str) {
        assert!(haystack.contains(needle), "`{needle}` not in:\n{haystack}");
    }

    #[test]
    fn original_file_equals_toml() {
        let from_properties = parse_properties(ORIGINAL).unwrap();
        let from_toml = parse_toml(EQUIVALENT_TOML).unwrap();
        assert_eq!(from_properties, from_toml);
        assert_eq!(
            from_properties.kafka["group.id"],
            "connect-justone-kafka-sink-pg-json"
        );
        assert_eq!(from_properties.kafka["bootstrap.servers"], "kafka:9092");
        assert_eq!(
            from_properties.db.tables[0].columns,
            ["device", "rate", "x", "y", "z"]
        );
        assert_eq!(from_properties.delivery, Delivery::Synchronized);
    }

    #[test]
    fn kafka_connect_names_and_ignored_keys() {
        let text = format!(
            "{ORIGINAL}
offset.flush.interval.ms = 60000
errors.tolerance = none
tasks.max : 4
consumer.fetch.min.bytes=1024
kafka.fetch.wait.max.ms=10
connector.class=org.example.Other
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=false
value.converter.schemas.enable=false
internal.value.converter.schemas.enable=false
offset.storage.file.filename=/tmp/connect.offsets
"
        );
        let c = parse_properties(&text).unwrap();
        assert_eq!(c.flush_interval, std::time::Duration::from_secs(60));
        assert_eq!(c.errors_tolerance, super::super::ErrorTolerance::None);
        assert_eq!(c.tasks, 4);
        assert_eq!(c.kafka["fetch.min.bytes"], "1024");
        assert_eq!(c.kafka["fetch.wait.max.ms"], "10");
        assert_eq!(c.kafka.len(), 5);
    }

    #[test]
    fn values_are_trimmed_and_escapes_decoded() {
        let text = ORIGINAL
            .replace("db.buffer.size=8000000", "db.buffer.size = 8000000   ")
            .replace(
                "db.table=accelerometer",
                "db.table=acc\\u00E9l\\\n    erometer",
            )
            .replace("db.password=justone", "db.password=");
        let c = parse_properties(&text).unwrap();
        assert_eq!(c.buffer_size, 8_000_000);
        assert_eq!(c.db.tables[0].table, "accélerometer");
        assert_eq!(c.db.password, None);
    }

    #[test]
    fn bad_numbers() {
        assert_eq!(
            err(&ORIGINAL.replace("db.buffer.size=8000000", "db.buffer.size = abc")),
            "db.buffer.size: expected a whole number of bytes, got `abc`"
        );
        assert_eq!(
            err(&ORIGINAL.replace("tasks.max=1", "tasks.max=one")),
            "tasks.max: expected a whole number of tasks, got `one`"
        );
        assert_eq!(
            err(&ORIGINAL.replace("tasks.max=1", "tasks.max=0")),
            "tasks.max: must be at least 1, got 0"
        );
        assert_eq!(
            err(&format!("{ORIGINAL}offset.flush.interval.ms=1.5\n")),
            "offset.flush.interval.ms: expected a whole number of milliseconds, got `1.5`"
        );
    }

    #[test]
    fn unknown_and_misplaced_keys() {
        let e = err(&format!("{ORIGINAL}db.hots=x\n"));
        assert_contains(
            &e,
            "unknown property `db.hots` on line 19; accepted: name, topics, db.host",
        );
        assert_contains(&e, "connector.class, tasks.max, bootstrap.servers");
        assert_contains(
            &err(&format!("{ORIGINAL}tasks=2\n")),
            "unknown property `tasks` on line 19; write `tasks.max` in a .properties file",
        );
        assert_contains(
            &err(&format!("{ORIGINAL}plugin.path=/usr/share/java\n")),
            "unknown property `plugin.path` on line 19; converter components are chosen in TOML files only",
        );
        assert_contains(
            &err(&format!("{ORIGINAL}consumer.=x\n")),
            "unknown property `consumer.`",
        );
        assert_contains(
            &err(&format!("{ORIGINAL}db.port=5433\n")),
            "write the port in db.host",
        );
    }

    #[test]
    fn conflicts_and_repeats() {
        assert_eq!(
            err(&format!("{ORIGINAL}kafka.bootstrap.servers=other:9092\n")),
            "`kafka.bootstrap.servers` on line 19 sets kafka.bootstrap.servers again \
             (`bootstrap.servers` on line 18 already does)"
        );
        assert_contains(
            &err(&format!(
                "{ORIGINAL}consumer.bootstrap.servers=other:9092\n"
            )),
            "`consumer.bootstrap.servers` on line 19 sets kafka.bootstrap.servers again",
        );
        // The same key twice: the last value wins, as in Java.
        let c = parse_properties(&format!("{ORIGINAL}db.table=second\n")).unwrap();
        assert_eq!(c.db.tables[0].table, "second");
    }

    #[test]
    fn forbidden_kafka_keys_and_missing_keys() {
        assert_contains(
            &err(&format!("{ORIGINAL}consumer.enable.auto.commit=true\n")),
            "kafka.enable.auto.commit cannot be set",
        );
        assert_eq!(
            err("topics=t\ndb.database=d\ndb.username=u\ndb.columns=a\n"),
            "missing required keys `db.table`, `db.json.parse` (one parse path per column, or \
             set plugin.path)"
        );
        assert_eq!(
            err(&ORIGINAL.replace("db.columns=device,rate,x,y,z", "db.columns=device,rate,x,y")),
            "db.json.parse has 5 parse paths but db.columns lists 4 columns"
        );
    }

    #[test]
    fn tls_and_dead_letter_keys() {
        let c = parse_properties(&format!(
            "{ORIGINAL}db.sslmode = Verify-Full\ndb.sslrootcert = /etc/pg/ca.pem\n\
             errors.deadletter.max.per.minute = 50\n"
        ))
        .unwrap();
        assert_eq!(c.db.sslmode, SslMode::VerifyFull);
        assert_eq!(
            c.db.sslrootcert.as_deref(),
            Some(std::path::Path::new("/etc/pg/ca.pem"))
        );
        assert_eq!(c.max_dead_letters_per_minute, Some(50));
        let toml = parse_toml(&format!(
            "{EQUIVALENT_TOML}db.sslmode = \"verify-full\"\ndb.sslrootcert = \"/etc/pg/ca.pem\"\n\
             errors.deadletter.max.per.minute = 50\n"
        ))
        .unwrap();
        assert_eq!(c, toml);

        assert_eq!(
            err(&format!("{ORIGINAL}db.sslmode=on\n")),
            "db.sslmode: unknown value `on`; expected `disable`, `prefer`, `require` or `verify-full`"
        );
        assert_contains(
            &err(&format!("{ORIGINAL}db.sslrootcert=ca.pem\n")),
            "db.sslrootcert: is used only with db.sslmode = \"verify-full\"",
        );
        assert_eq!(
            err(&format!("{ORIGINAL}errors.deadletter.max.per.minute=0\n")),
            "errors.deadletter.max.per.minute: must be at least 1, got 0"
        );
    }

    #[test]
    fn toml_only_keys() {
        assert_contains(
            &err(&format!("{ORIGINAL}metrics.address=127.0.0.1:9187\n")),
            "unknown property `metrics.address` on line 19; the metrics endpoint is set in TOML \
             files only",
        );
        assert_contains(
            &err(&format!("{ORIGINAL}plugin.timeout.ms=100\n")),
            "unknown property `plugin.timeout.ms` on line 19; converter components are chosen \
             in TOML files only",
        );
        assert_contains(
            &err(&format!("{ORIGINAL}sink.name=x\n")),
            "unknown property `sink.name` on line 19; accepted:",
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        assert_eq!(
            err("topics=t\ndb.table=\\u00G1\n"),
            "invalid properties syntax on line 2: Malformed \\uxxxx encoding: not hex."
        );
    }

    #[test]
    fn decode_falls_back_to_latin1() {
        assert_eq!(decode("é".as_bytes().to_vec()), "é");
        assert_eq!(decode(vec![b'a', 0xE9]), "aé");
    }
}
