//! What each column takes: the `db.json.parse` entries and `db.json.cast`, read into a
//! [`ColumnPlan`].
//!
//! A seed parse path (`/@a/#0`) reads the message value, as in the JustOne connector. Every
//! other source starts with `#`, which no seed path can start with (its first character is its
//! delimiter, and `#` is refused as one), so the two languages cannot collide: an old
//! configuration means what it meant.
//!
//! | entry | the column takes |
//! |-------|------------------|
//! | `/@a/#0` | the value's element at this path (with an envelope: the row image's) |
//! | `#key` | the whole key: JSON as a value would give it, or the key's text when it is not JSON |
//! | `#key/@id` | the key's element at the seed path `/@id` |
//! | `#envelope/@source/@lsn` | an element of the Debezium change event itself (`db.json.envelope = "debezium"`) |
//! | `#topic`, `#partition`, `#offset` | the Kafka coordinates |
//! | `#timestamp` | the Kafka timestamp, as `timestamptz` text (NULL when the broker gave none) |
//! | `#header:NAME` | the first header named NAME, as text (NULL when absent or null) |

use pgsink_guest::Column;

use crate::casts::Cast;
use crate::paths::{parse_entries, ParsePath, SETTING};

/// The setting that lists casts: `column:cast` pairs, comma-separated.
pub const CAST_SETTING: &str = "db.json.cast";

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The value (or the row image of an envelope), at this path.
    Value(ParsePath),
    /// The key, at this path (no steps: the whole key).
    Key(ParsePath),
    /// The change event of an envelope, at this path.
    Envelope(ParsePath),
    Topic,
    Partition,
    Offset,
    Timestamp,
    /// The first header with this name.
    Header(String),
}

impl Source {
    /// Whether a cast can apply: only to what a JSON path selects.
    fn is_json(&self) -> bool {
        matches!(
            self,
            Source::Value(_) | Source::Key(_) | Source::Envelope(_)
        )
    }
}

/// One column: where its value comes from and how it is cast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPlan {
    pub source: Source,
    pub cast: Option<Cast>,
}

/// Reads `db.json.parse` (one entry per column of `columns`) and `db.json.cast`.
pub fn plan(
    parse: &str,
    casts: Option<&str>,
    columns: &[Column],
) -> Result<Vec<ColumnPlan>, String> {
    let sources = parse_sources(parse)?;
    if sources.len() != columns.len() {
        return Err(format!(
            "{SETTING} has {} but db.columns lists {}",
            plural(sources.len(), "parse path"),
            plural(columns.len(), "column"),
        ));
    }
    let mut plan: Vec<ColumnPlan> = sources
        .into_iter()
        .map(|source| ColumnPlan { source, cast: None })
        .collect();
    for entry in casts.unwrap_or("").split(',').map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let (name, cast) = entry.rsplit_once(':').ok_or_else(|| {
            format!("{CAST_SETTING}: `{entry}` is not `column:cast` (for example created:epoch-ms)")
        })?;
        let name = name.trim();
        let cast = Cast::parse(cast.trim()).map_err(|e| format!("{CAST_SETTING}: {e}"))?;
        let column = columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| format!("{CAST_SETTING}: there is no column {name:?} in db.columns"))?;
        let target = &mut plan[column];
        if !target.source.is_json() {
            return Err(format!(
                "{CAST_SETTING}: column {name:?} takes Kafka metadata; casts apply to JSON paths"
            ));
        }
        if target.cast.replace(cast).is_some() {
            return Err(format!("{CAST_SETTING}: column {name:?} has two casts"));
        }
    }
    Ok(plan)
}

/// Splits `db.json.parse` on commas and reads every entry.
///
/// Whitespace around each entry is trimmed (so `/@a, /@b` works); a key therefore cannot
/// end a path with whitespace, and no key or header name can contain a comma.
pub fn parse_sources(setting: &str) -> Result<Vec<Source>, String> {
    parse_entries(setting, parse_source)
}

fn parse_source(text: &str) -> Result<Source, String> {
    let Some(special) = text.strip_prefix('#') else {
        return ParsePath::parse(text).map(Source::Value);
    };
    let below = |rest: &str| match rest {
        "" => Ok(ParsePath { steps: Vec::new() }),
        rest => ParsePath::parse(rest),
    };
    // After `#key` comes nothing or a seed path, whose delimiter must then be punctuation:
    // `#keys` is not the key at the path `s`.
    let delimited = |rest: &str| rest.chars().next().is_none_or(|c| c.is_ascii_punctuation());
    if let Some(rest) = special.strip_prefix("key").filter(|r| delimited(r)) {
        return below(rest).map(Source::Key);
    }
    if let Some(rest) = special.strip_prefix("envelope").filter(|r| delimited(r)) {
        return below(rest).map(Source::Envelope);
    }
    if let Some(name) = special.strip_prefix("header:") {
        if name.is_empty() {
            return Err("#header: needs a header name, as in #header:trace-id".into());
        }
        return Ok(Source::Header(name.to_string()));
    }
    match special {
        "topic" => Ok(Source::Topic),
        "partition" => Ok(Source::Partition),
        "offset" => Ok(Source::Offset),
        "timestamp" => Ok(Source::Timestamp),
        _ => Err(
            "a path starts with its delimiter (usually `/`, as in /@key), not with `#`, unless it \
             is #key, #key/…, #envelope/…, #topic, #partition, #offset, #timestamp or #header:NAME"
                .into(),
        ),
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Step;

    fn path(text: &str) -> ParsePath {
        ParsePath::parse(text).unwrap()
    }

    #[test]
    fn every_source_is_read() {
        let whole = ParsePath { steps: Vec::new() };
        let sources = parse_sources(
            "/@a, #key, #key/, #key/@id, #key|@a/b, #envelope/@source/@lsn, #topic, #partition, \
             #offset, #timestamp, #header:trace-id, #header:a:b",
        )
        .unwrap();
        assert_eq!(
            sources,
            [
                Source::Value(path("/@a")),
                Source::Key(whole.clone()),
                Source::Key(whole),
                Source::Key(path("/@id")),
                Source::Key(ParsePath {
                    steps: vec![Step::Key("a/b".into())]
                }),
                Source::Envelope(path("/@source/@lsn")),
                Source::Topic,
                Source::Partition,
                Source::Offset,
                Source::Timestamp,
                Source::Header("trace-id".into()),
                Source::Header("a:b".into()),
            ]
        );
    }

    #[test]
    fn unknown_or_broken_sources_are_refused() {
        for (text, expected) in [
            ("#keys", "is invalid: a path starts with its delimiter"),
            ("#key@id", "not with `@`"),
            ("#key/id", "must start with @"),
            ("#header:", "needs a header name"),
            ("#0", "not with `#`"),
            ("@a", "not with `@`"),
        ] {
            let error = parse_sources(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(
                error.starts_with("db.json.parse: parse path 1 `"),
                "{error}"
            );
        }
    }

    #[test]
    fn casts_name_columns_that_read_json() {
        let columns = Column::names(&["id", "at", "tags", "topic"]);
        let planned = plan(
            "/@id, /@at, #key/@tags, #topic",
            Some("at:epoch-ms, tags : array"),
            &columns,
        )
        .unwrap();
        let casts: Vec<Option<Cast>> = planned.iter().map(|c| c.cast).collect();
        assert_eq!(
            casts,
            [None, Some(Cast::EpochMillis), Some(Cast::Array), None]
        );
        let sources = "/@id, /@at, #key/@tags, #topic";
        for (casts, expected) in [
            ("at", "is not `column:cast`"),
            ("at:epoch", "unknown cast \"epoch\""),
            ("nope:array", "there is no column \"nope\""),
            ("topic:array", "takes Kafka metadata"),
            ("at:array, at:numeric", "has two casts"),
        ] {
            let error = plan(sources, Some(casts), &columns).unwrap_err();
            assert!(error.contains(expected), "{casts}: {error}");
        }
        let error = plan("/@a", None, &columns).unwrap_err();
        assert_eq!(
            error,
            "db.json.parse has 1 parse path but db.columns lists 4 columns"
        );
    }
}
