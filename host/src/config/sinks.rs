//! A whole TOML file: the process-wide settings and its sinks.
//!
//! A file without `[[sink]]` sections is one sink. Otherwise each section
//! inherits the file's top level by a merge of flat maps (the section's keys
//! win, key by key, also inside `kafka.*` and `plugin.settings.*`), and the
//! sinks are then checked against each other: two sinks that would share a
//! consumer group or the offsets of a table cannot run in one process.

use std::collections::BTreeSet;

use serde::de::IgnoredAny;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::schema::{flatten_toml, type_error, Flat, Schema, SINK};
use super::validate::{self, KeyNames};
use super::values::MetricsAddress;
use super::{is_topic_pattern, ConfigError, Delivery, ProcessConfig, SinkConfig};

/// Parses and validates a TOML file with all its sinks.
pub(super) fn process(text: &str) -> Result<ProcessConfig, ConfigError> {
    process_in(text).map_err(|error| with_input(error, text))
}

/// Lets TOML errors show the line they are about.
fn with_input(error: ConfigError, text: &str) -> ConfigError {
    match error {
        ConfigError::Toml(mut e) => {
            e.set_input(Some(text));
            ConfigError::Toml(e)
        }
        ConfigError::InSink {
            index,
            name,
            inherited,
            error,
        } => ConfigError::InSink {
            index,
            name,
            inherited,
            error: Box::new(with_input(*error, text)),
        },
        other => other,
    }
}

fn process_in(text: &str) -> Result<ProcessConfig, ConfigError> {
    let mut top = flatten_toml(DeTable::parse(text)?.into_inner())?;
    let sections = top.remove(SINK);
    let mut defaults = Schema::from_flat(top.clone())?;
    let metrics_address = defaults
        .metrics_address
        .take()
        .map(|a| a.parse::<MetricsAddress>())
        .transpose()?;
    top.remove("metrics.address");
    let Some(sections) = sections else {
        return Ok(ProcessConfig {
            sinks: vec![validate::sink(&defaults, KeyNames::TOML)?],
            metrics_address,
        });
    };
    if !sections.get_ref().is_array() {
        return Err(type_error::<Vec<IgnoredAny>>(sections));
    }
    let DeValue::Array(sections) = sections.into_inner() else {
        unreachable!("checked above")
    };
    let sections: Vec<_> = sections.into_iter().collect();
    if sections.is_empty() {
        return Err(ConfigError::invalid(
            SINK,
            "declares no sinks; add [[sink]] sections, or remove `sink` to make the file one sink",
        ));
    }
    // The top level holds defaults only: what can be checked without a sink
    // is checked here, so that such errors are not blamed on a [[sink]].
    validate::no_port_key(&defaults)?;

    let sections = sections
        .into_iter()
        .enumerate()
        .map(|(i, section)| Section::read(i + 1, section, &top))
        .collect::<Result<Vec<_>, _>>()?;
    let sinks = sections
        .into_iter()
        .map(Section::validate)
        .collect::<Result<Vec<_>, _>>()?;
    check_conflicts(&sinks)?;
    Ok(ProcessConfig {
        sinks,
        metrics_address,
    })
}

/// One `[[sink]]` section (1-based `index`) merged over the top level, read but not yet
/// validated: every section is read before any is validated, so that a typo or a value of
/// the wrong type anywhere in the file is reported (with its line) before a validation error.
struct Section {
    index: usize,
    name: Option<String>,
    schema: Schema,
    /// The keys that come from the top level.
    inherited: BTreeSet<String>,
}

impl Section {
    fn read<'i>(
        index: usize,
        section: Spanned<DeValue<'i>>,
        top: &Flat<'i>,
    ) -> Result<Section, ConfigError> {
        if !section.get_ref().is_table() {
            return Err(type_error::<toml::Table>(section));
        }
        let DeValue::Table(table) = section.into_inner() else {
            unreachable!("checked above")
        };
        let own_name = table
            .iter()
            .find(|(key, _)| key.get_ref() == "name")
            .and_then(|(_, value)| value.get_ref().as_str().map(str::to_owned));
        let name = own_name.or_else(|| top.get("name")?.get_ref().as_str().map(str::to_owned));
        let in_sink = |error| in_sink(index, &name, error, false);
        let own = flatten_toml(table).map_err(in_sink)?;
        let inherited: BTreeSet<String> = top
            .keys()
            .filter(|key| !own.contains_key(*key))
            .cloned()
            .collect();
        let mut merged = top.clone();
        merged.extend(own);
        let schema = Schema::from_flat(merged).map_err(in_sink)?;
        Ok(Section {
            index,
            name,
            schema,
            inherited,
        })
    }

    fn validate(self) -> Result<SinkConfig, ConfigError> {
        validate::sink(&self.schema, KeyNames::TOML).map_err(|error| {
            let inherited = error_key(&error).is_some_and(|k| self.inherited.contains(&k));
            in_sink(self.index, &self.name, error, inherited)
        })
    }
}

/// `error` as one of sink `index`'s; TOML errors show their line and stay as they are.
fn in_sink(
    index: usize,
    name: &Option<String>,
    error: ConfigError,
    inherited: bool,
) -> ConfigError {
    match error {
        ConfigError::Toml(_) => error,
        error => ConfigError::InSink {
            index,
            name: name.clone(),
            inherited,
            error: Box::new(error),
        },
    }
}

/// The key an error is about, when it is about one value.
fn error_key(error: &ConfigError) -> Option<String> {
    match error {
        ConfigError::Invalid { key, .. } | ConfigError::Duplicate { key } => Some(key.clone()),
        ConfigError::ForbiddenKafkaKey { key, .. } => Some(format!("kafka.{key}")),
        _ => None,
    }
}

/// How errors name one sink of a multi-sink file: `sink[2] (name "orders")`.
pub(crate) fn sink_label(index: usize, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("sink[{index}] (name {name:?})"),
        None => format!("sink[{index}]"),
    }
}

/// The topics (or patterns) both sinks may consume: ones both name, named topics the other's
/// pattern matches, or the same pattern. Two different patterns are not compared (which topics
/// both match is only known at run time).
fn shared_topics<'a>(a: &'a SinkConfig, b: &'a SinkConfig) -> Vec<&'a String> {
    let matches = |entry: &str, topic: &str| {
        is_topic_pattern(entry)
            && !is_topic_pattern(topic)
            && regex::Regex::new(entry).is_ok_and(|p| p.is_match(topic))
    };
    let shared = |x: &&String| {
        b.topics
            .iter()
            .any(|y| x.as_str() == y.as_str() || matches(x, y) || matches(y, x))
    };
    a.topics.iter().filter(shared).collect()
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
                    "use the same Kafka consumer group {group:?}, so each would miss \
                     messages; give each its own `name` or kafka.group.id"
                )));
            }
            let database = |c: &SinkConfig| (c.db.host.clone(), c.db.port, c.db.database.clone());
            let synchronized =
                a.delivery == Delivery::Synchronized && b.delivery == Delivery::Synchronized;
            let shared = shared_topics(a, b);
            for topic in &shared {
                // Both would load the topic's messages into one table, each from its own
                // positions (`sql/install.sql` keeps one sink per position table; this also
                // sees the tables a sink writes after its first).
                let takes = |c: &'_ SinkConfig| {
                    let tables = c.db.tables.iter().filter(|t| t.takes(topic));
                    tables
                        .map(|t| (t.schema.clone(), t.table.clone()))
                        .collect::<Vec<_>>()
                };
                let theirs = takes(b);
                let both = takes(a).into_iter().find(|t| theirs.contains(t));
                if let (true, true, Some((schema, table))) =
                    (synchronized, database(a) == database(b), both)
                {
                    return Err(conflict(format!(
                        "both load topic {topic:?} into {}.{schema}.{table} on {} with \
                         synchronized delivery: their offsets would collide",
                        a.db.database,
                        a.db.host_port()
                    )));
                }
            }
            if let Some(topic) = shared.first() {
                // Whatever the delivery: a sink that is not synchronized drops its positions.
                if database(a) == database(b) && a.identity() == b.identity() {
                    return Err(conflict(format!(
                        "both load topic {topic:?} as sink {:?} into {} on {} with synchronized \
                         delivery: their offsets would collide; give each its own `name`",
                        a.identity(),
                        a.db.database,
                        a.db.host_port()
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
