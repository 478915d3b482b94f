//! A sink's stored offsets in `pgsink.offsets`, keyed by the sink's identity (its `name`, else
//! its first table) rather than by a table: one sink may write several tables in one
//! transaction, and its position is one per partition whatever it writes. The fenced move of
//! a flush is `pgsink.commit_offsets`, in [`flush`](super::flush).

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::config::{is_topic_pattern, DbConfig};

/// The stored next offsets of `sink`'s partitions, of every topic (the caller looks up the
/// partitions it is assigned).
pub async fn stored(
    client: &Client,
    sink: &str,
) -> Result<HashMap<(String, i32), i64>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT topic, partition, next_offset FROM pgsink.offsets WHERE sink = $1",
            &[&sink],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect())
}

/// Makes the positions an older SQL package stored for the sink's first table (`db.table`) and
/// the topics the sink `consumes` the sink's own, where it has none of its own yet (see
/// `sql/install.sql`). Returns the partitions adopted.
pub async fn adopt(
    client: &Client,
    sink: &str,
    first: &DbConfig,
    consumes: impl Fn(&str) -> bool,
) -> Result<i32, tokio_postgres::Error> {
    let marked = client
        .query(
            "SELECT DISTINCT topic FROM pgsink.offsets
              WHERE sink = 'table ' || quote_ident($1) || '.' || quote_ident($2)",
            &[&first.schema, &first.table],
        )
        .await?;
    let topics: Vec<String> = marked
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|t| consumes(t))
        .collect();
    if topics.is_empty() {
        return Ok(0);
    }
    let row = client
        .query_one(
            "SELECT pgsink.adopt_offsets($1, $2, $3, $4)",
            &[&sink, &first.schema, &first.table, &topics],
        )
        .await?;
    Ok(row.get(0))
}

/// Deletes `sink`'s stored offsets of `topics` (names, and the topics a pattern matches, with
/// the pattern engine that validated it): a sink that is not synchronized must not leave stale
/// positions behind, and must not touch another sink's (two unnamed sinks of other topics into
/// one table are one identity). Returns the rows deleted.
pub async fn drop(
    client: &Client,
    sink: &str,
    topics: &[String],
) -> Result<u64, tokio_postgres::Error> {
    let patterns: Vec<regex::Regex> = topics
        .iter()
        .filter(|t| is_topic_pattern(t))
        .filter_map(|p| regex::Regex::new(p).ok())
        .collect();
    let mut doomed: Vec<String> = stored(client, sink)
        .await?
        .into_keys()
        .map(|(topic, _)| topic)
        .filter(|t| topics.contains(t) || patterns.iter().any(|p| p.is_match(t)))
        .collect();
    doomed.sort();
    doomed.dedup();
    client
        .execute(
            "DELETE FROM pgsink.offsets WHERE sink = $1 AND topic = ANY($2)",
            &[&sink, &doomed],
        )
        .await
}

/// A stored position this sink must not use, nor load past: another sink's position in the
/// sink's table, or the sink's own position in another table. `pgsink.commit_offsets` refuses
/// either at the first flush (SQLSTATE PSK02); `pgsink run` and `pgsink check` say so first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The sink that stored it.
    pub owner: String,
    /// The sink that would use it.
    pub sink: String,
    /// The table it was stored for, quoted as `quote_ident` quotes.
    pub stored_table: String,
    /// The sink's first table, quoted the same way.
    pub table: String,
    pub topic: String,
    pub partition: i32,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let Conflict { owner, sink, .. } = self;
        let (topic, partition) = (&self.topic, self.partition);
        if owner == sink {
            write!(
                f,
                "sink {sink} stored {topic}[{partition}] for table {}, and writes {}: two sinks share this name, or db.table changed; give each sink its own name, or start this one over: DELETE FROM pgsink.offsets WHERE sink = {}",
                self.stored_table,
                self.table,
                literal(sink)
            )
        } else {
            write!(
                f,
                "{topic}[{partition}] of table {} is loaded by sink {owner}; sink {sink} would load it again; if this sink was renamed, take its positions over: UPDATE pgsink.offsets SET sink = {} WHERE sink = {}",
                self.table,
                literal(sink),
                literal(owner)
            )
        }
    }
}

/// The stored positions of the topics the sink `consumes` that conflict with it (see
/// [`Conflict`]); the positions an older package left for its first table (`db.table`),
/// which the sink adopts, do not.
pub async fn conflicts(
    client: &Client,
    sink: &str,
    first: &DbConfig,
    consumes: impl Fn(&str) -> bool,
) -> Result<Vec<Conflict>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT sink, first_table, quote_ident($2) || '.' || quote_ident($3), topic, partition
               FROM pgsink.offsets
              WHERE (sink = $1) <> (first_table = quote_ident($2) || '.' || quote_ident($3))
                AND sink <> 'table ' || quote_ident($2) || '.' || quote_ident($3)
              ORDER BY topic, partition",
            &[&sink, &first.schema, &first.table],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Conflict {
            owner: r.get(0),
            sink: sink.to_string(),
            stored_table: r.get(1),
            table: r.get(2),
            topic: r.get(3),
            partition: r.get(4),
        })
        .filter(|c| consumes(&c.topic))
        .collect())
}
