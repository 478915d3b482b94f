//! The configuration as data: one flat struct whose fields are the dotted
//! key names, read from a flat key → value map.
//!
//! A TOML document is flattened first (`[db] host = …`, `db.host = …` and
//! `"db.host" = …` all become `db.host`); a `.properties` file is flat
//! already. Three prefixes are not keys but free-form sections handed on
//! as strings: `kafka.*` (librdkafka properties), `plugin.settings.*`
//! (converter settings) and `table.*` (the tables of `db.tables`, read by the validator). Keeping every value with its place in the document
//! lets type errors and unknown keys point at their line, as TOML's own
//! errors do.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::values::{Number, StringList};
use super::ConfigError;

/// A configuration (a file's top level, one `[[sink]]` section, or both
/// merged) as dotted keys with their values and where they were written.
pub(super) type Flat<'i> = BTreeMap<String, Spanned<DeValue<'i>>>;

pub(super) const KAFKA: &str = "kafka";
pub(super) const SETTINGS: &str = "plugin.settings";
pub(super) const TABLE: &str = "table";
pub(super) const SINK: &str = "sink";

/// Every key, by the name written in files. The field order is the order
/// in which unknown-key errors list the accepted names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Schema {
    #[serde(rename = "name")]
    pub name: Option<String>,
    #[serde(rename = "topics")]
    pub topics: Option<StringList>,
    #[serde(rename = "tasks")]
    pub tasks: Option<Number>,
    #[serde(rename = "db.host")]
    pub db_host: Option<String>,
    /// Not a key: accepted only to say that the port goes in `db.host`.
    #[serde(rename = "db.port")]
    pub db_port: Option<toml::Value>,
    #[serde(rename = "db.database")]
    pub db_database: Option<String>,
    #[serde(rename = "db.username")]
    pub db_username: Option<String>,
    #[serde(rename = "db.password")]
    pub db_password: Option<String>,
    #[serde(rename = "db.schema")]
    pub db_schema: Option<String>,
    #[serde(rename = "db.table")]
    pub db_table: Option<String>,
    #[serde(rename = "db.columns")]
    pub db_columns: Option<StringList>,
    #[serde(rename = "db.tables")]
    pub db_tables: Option<StringList>,
    #[serde(rename = "db.json.parse")]
    pub db_json_parse: Option<String>,
    #[serde(rename = "db.json.envelope")]
    pub db_json_envelope: Option<String>,
    #[serde(rename = "db.json.tombstone")]
    pub db_json_tombstone: Option<String>,
    #[serde(rename = "db.json.cast")]
    pub db_json_cast: Option<String>,
    #[serde(rename = "db.write.mode")]
    pub db_write_mode: Option<String>,
    #[serde(rename = "db.key.columns")]
    pub db_key_columns: Option<StringList>,
    #[serde(rename = "db.delivery")]
    pub db_delivery: Option<String>,
    #[serde(rename = "db.buffer.size")]
    pub db_buffer_size: Option<Number>,
    #[serde(rename = "db.sslmode")]
    pub db_sslmode: Option<String>,
    #[serde(rename = "db.sslrootcert")]
    pub db_sslrootcert: Option<String>,
    #[serde(rename = "flush.interval.ms")]
    pub flush_interval_ms: Option<Number>,
    #[serde(rename = "errors.tolerance")]
    pub errors_tolerance: Option<String>,
    #[serde(rename = "errors.deadletter.max.per.minute")]
    pub errors_deadletter_max_per_minute: Option<Number>,
    #[serde(rename = "plugin.path")]
    pub plugin_path: Option<String>,
    /// Filled from the `plugin.settings.*` keys, never by serde.
    #[serde(rename = "plugin.settings", default)]
    pub plugin_settings: BTreeMap<String, String>,
    #[serde(rename = "plugin.timeout.ms")]
    pub plugin_timeout_ms: Option<Number>,
    #[serde(rename = "plugin.memory.mb")]
    pub plugin_memory_mb: Option<Number>,
    #[serde(rename = "plugin.clock")]
    pub plugin_clock: Option<bool>,
    /// Filled from the `kafka.*` keys, never by serde.
    #[serde(rename = "kafka", default)]
    pub kafka: BTreeMap<String, String>,
    /// Filled from the `table.*` keys (`NAME.columns`, …), never by serde.
    #[serde(rename = "table", default)]
    pub table: BTreeMap<String, String>,
    /// Process-wide: accepted at the top level of a file only.
    #[serde(rename = "metrics.address")]
    pub metrics_address: Option<String>,
    /// The `[[sink]]` sections; inside one, only there to be rejected.
    #[serde(rename = "sink")]
    pub sink: Option<de::IgnoredAny>,
}

impl Schema {
    /// Reads a flat map; the `kafka.*`, `plugin.settings.*` and `table.*` keys must hold
    /// strings.
    pub(super) fn from_flat(mut flat: Flat<'_>) -> Result<Schema, ConfigError> {
        let kafka = split_section(&mut flat, KAFKA);
        let plugin_settings = split_section(&mut flat, SETTINGS);
        let table = split_section(&mut flat, TABLE);
        let entries = Entries {
            entries: flat.into_iter(),
            value: None,
        };
        Ok(Schema {
            kafka,
            plugin_settings,
            table,
            ..Schema::deserialize(de::value::MapAccessDeserializer::new(entries))?
        })
    }
}

/// The keys of [`Schema`], as serde sees them.
fn keys() -> &'static [&'static str] {
    /// A deserializer that only notes the field names a struct asks for.
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probed"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = Schema::deserialize(Probe(&mut fields));
    fields
}

/// Removes the `section.*` keys from `flat`, returning them without the prefix.
fn split_section(flat: &mut Flat<'_>, section: &str) -> BTreeMap<String, String> {
    let prefix = format!("{section}.");
    let names: Vec<String> = flat
        .keys()
        .filter(|k| k.starts_with(&prefix))
        .cloned()
        .collect();
    names
        .into_iter()
        .filter_map(|key| {
            let value = flat.remove(&key)?.into_inner();
            let DeValue::String(value) = value else {
                unreachable!("section values are flattened to strings")
            };
            Some((key[prefix.len()..].to_owned(), value.into_owned()))
        })
        .collect()
}

/// Hands the flat map to serde, so that a value of the wrong type is
/// reported at its place in the document.
struct Entries<'i> {
    entries: std::collections::btree_map::IntoIter<String, Spanned<DeValue<'i>>>,
    value: Option<Spanned<DeValue<'i>>>,
}

impl<'i> MapAccess<'i> for Entries<'i> {
    type Error = toml::de::Error;

    fn next_key_seed<K: DeserializeSeed<'i>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'i>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let value = self.value.take().expect("serde asks for a key first");
        seed.deserialize(ValueDeserializer::from(value))
    }
}

/// A value read from a `.properties` file, which has no TOML place.
pub(super) fn text_value(value: String) -> Spanned<DeValue<'static>> {
    Spanned::new(0..0, DeValue::String(Cow::Owned(value)))
}

/// What a dotted name is to the schema.
enum Place<'a> {
    Key,
    /// Inside a free-form section; the part after the section's name (may be empty).
    InSection(&'a str, &'a str),
    /// The beginning of keys (`db`, `errors.deadletter`).
    Prefix,
    Unknown,
}

fn place(path: &str) -> Place<'_> {
    for section in [KAFKA, SETTINGS, TABLE] {
        if path == section {
            return Place::InSection(section, "");
        }
        if let Some(rest) = path.strip_prefix(section).and_then(|r| r.strip_prefix('.')) {
            return Place::InSection(section, rest);
        }
    }
    let keys = keys();
    if keys.contains(&path) {
        Place::Key
    } else if keys.iter().any(|k| {
        k.strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('.'))
    }) {
        Place::Prefix
    } else {
        Place::Unknown
    }
}

/// Flattens a TOML table (a document, or one `[[sink]]` section) into dotted
/// keys. `sink` is kept as one value; free-form sections become strings.
pub(super) fn flatten_toml<'i>(table: DeTable<'i>) -> Result<Flat<'i>, ConfigError> {
    let mut flat = Flat::new();
    walk("", table, &mut flat)?;
    Ok(flat)
}

fn walk<'i>(prefix: &str, table: DeTable<'i>, out: &mut Flat<'i>) -> Result<(), ConfigError> {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        match place(&path) {
            Place::Key => insert(out, path, value)?,
            Place::InSection(section, name) => {
                let span = value.span();
                let table = if !name.is_empty() {
                    toml::Table::from_iter([(name.to_owned(), plain(value)?)])
                } else if value.get_ref().is_table() {
                    let toml::Value::Table(table) = plain(value)? else {
                        unreachable!("a table stays a table")
                    };
                    table
                } else {
                    return Err(type_error::<toml::Table>(value));
                };
                for (name, text) in flatten_section(section, table)? {
                    let entry = Spanned::new(span.clone(), DeValue::String(Cow::Owned(text)));
                    insert(out, format!("{section}.{name}"), entry)?;
                }
            }
            Place::Prefix if value.get_ref().is_table() => {
                let DeValue::Table(table) = value.into_inner() else {
                    unreachable!("checked above")
                };
                walk(&path, table, out)?;
            }
            Place::Prefix => return Err(type_error::<toml::Table>(value)),
            Place::Unknown => {
                return Err(at(
                    key.span(),
                    &format!(
                        "unknown field `{}`, expected {}",
                        key.get_ref(),
                        one_of(&children(prefix))
                    ),
                )
                .into())
            }
        }
    }
    Ok(())
}

/// The error serde gives `value` when a `T` is expected, at its place.
pub(super) fn type_error<'i, T: Deserialize<'i> + std::fmt::Debug>(
    value: Spanned<DeValue<'i>>,
) -> ConfigError {
    T::deserialize(ValueDeserializer::from(value))
        .expect_err("the value has another type")
        .into()
}

/// A TOML value without its places.
fn plain(value: Spanned<DeValue<'_>>) -> Result<toml::Value, toml::de::Error> {
    let span = value.span();
    Ok(match value.into_inner() {
        DeValue::Datetime(datetime) => toml::Value::Datetime(datetime),
        DeValue::Array(items) => {
            toml::Value::Array(items.into_iter().map(plain).collect::<Result<_, _>>()?)
        }
        DeValue::Table(table) => toml::Value::Table(
            table
                .into_iter()
                .map(|(key, value)| Ok((key.into_inner().into_owned(), plain(value)?)))
                .collect::<Result<_, toml::de::Error>>()?,
        ),
        other => toml::Value::deserialize(ValueDeserializer::from(Spanned::new(span, other)))?,
    })
}

fn insert<'i>(
    out: &mut Flat<'i>,
    key: String,
    value: Spanned<DeValue<'i>>,
) -> Result<(), ConfigError> {
    if out.contains_key(&key) {
        return Err(ConfigError::Duplicate { key });
    }
    out.insert(key, value);
    Ok(())
}

/// The names that may follow `prefix` (`host`, `port`, … after `db`), in field order.
fn children(prefix: &str) -> Vec<&'static str> {
    let mut names = Vec::new();
    for key in keys() {
        let rest = if prefix.is_empty() {
            Some(*key)
        } else {
            key.strip_prefix(prefix).and_then(|r| r.strip_prefix('.'))
        };
        if let Some(name) = rest.and_then(|r| r.split('.').next()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// serde's wording for the accepted names.
fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match &quoted[..] {
        [] => "no fields".to_owned(),
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        more => format!("one of {}", more.join(", ")),
    }
}

/// A TOML error at `span` of the document.
fn at(span: Range<usize>, message: &str) -> toml::de::Error {
    /// Fails whatever it is given, so that the deserializer adds its span.
    struct Fail<'a>(&'a str);

    impl<'de> Visitor<'de> for Fail<'_> {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            Err(E::custom(self.0))
        }
    }

    ValueDeserializer::from(Spanned::new(span, DeValue::Boolean(true)))
        .deserialize_any(Fail(message))
        .expect_err("Fail fails")
}

/// Flattens a free-form section (`kafka`, `plugin.settings`, `table`) to dotted names
/// with string values (in `table`, an array of strings is written joined by commas, as
/// `db.columns` may be).
pub(super) fn flatten_section(
    section: &str,
    table: toml::Table,
) -> Result<BTreeMap<String, String>, ConfigError> {
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
                return Err(ConfigError::invalid(full(), "empty part in the name"));
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
                toml::Value::Array(items)
                    if section == TABLE
                        && items
                            .iter()
                            .all(|i| i.as_str().is_some_and(|s| !s.contains(','))) =>
                {
                    let items: Vec<&str> = items.iter().filter_map(toml::Value::as_str).collect();
                    items.join(",")
                }
                toml::Value::Array(_) if section == TABLE => {
                    return Err(ConfigError::invalid(
                        full(),
                        "an array holds names, and a name here cannot contain a comma",
                    ))
                }
                toml::Value::Array(_) => {
                    return Err(ConfigError::invalid(
                        full(),
                        "arrays are not supported; write a comma-separated string",
                    ))
                }
                toml::Value::Datetime(_) => {
                    return Err(ConfigError::invalid(
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
    use super::super::parse_toml;
    use super::super::test_support::{assert_contains, err, err_text, ok};
    use super::super::{Delivery, ErrorTolerance};
    use super::*;
    use std::time::Duration;

    #[test]
    fn keys_come_from_the_struct_in_field_order() {
        let keys = keys();
        assert_eq!(keys[..3], ["name", "topics", "tasks"]);
        assert!(keys.contains(&"errors.deadletter.max.per.minute"));
        assert_eq!(
            children("plugin"),
            ["path", "settings", "timeout", "memory", "clock"]
        );
        assert_eq!(one_of(&["a"]), "`a`");
        assert_eq!(one_of(&["a", "b"]), "`a` or `b`");
        assert_eq!(one_of(&["a", "b", "c"]), "one of `a`, `b`, `c`");
    }

    #[test]
    fn tables_dotted_and_quoted_keys_flatten_alike() {
        let flat = |text: &str| -> Vec<String> {
            let table = DeTable::parse(text).unwrap().into_inner();
            flatten_toml(table).unwrap().into_keys().collect()
        };
        let expected = ["db.json.parse", "kafka.linger.ms", "plugin.settings.a.b"];
        for text in [
            "db.json.parse = \"x\"\nkafka.linger.ms = 1\nplugin.settings.a.b = 1",
            "[db.json]\nparse = \"x\"\n[kafka]\n\"linger.ms\" = 1\n[plugin]\nsettings = { \"a.b\" = 1 }",
            "\"db.json.parse\" = \"x\"\n\"kafka.linger.ms\" = 1\n\"plugin.settings.a\".b = 1",
        ] {
            assert_eq!(flat(text), expected, "{text}");
        }
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
            a.converter.path.as_deref(),
            Some(std::path::Path::new("conv.wasm"))
        );
        assert_eq!(
            a.converter.settings,
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
        assert_contains(
            &nested,
            "unknown field `prase`, expected one of `parse`, `envelope`",
        );
    }

    #[test]
    fn plugin_settings() {
        let c = ok("plugin.path = \"c.wasm\"\n[plugin.settings]\nb = 1\na = true\nx.y = 2.5\n\"p.q\" = \"s\"");
        assert_eq!(
            c.converter.settings,
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
