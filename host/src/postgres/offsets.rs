//! A sink's stored offsets in `pgsink.offsets`, keyed by the sink's identity (its `name`, else
//! its table) rather than by a table: one sink may write several tables in one transaction,
//! and its position is one per partition whatever it writes. Each row also records the table
//! that speaks for its topic (`first_table`: [`DbConfig::position_table`]), so that one
//! table's position in a partition has one owner. The fenced move of a flush is
//! `pgsink.commit_offsets`, in [`flush`](super::flush).
//!
//! The functions below act on the positions of one such table and the topics it speaks for
//! (`speaks_for`); a caller runs them for each table of the sink.
//!
//! [`DbConfig::position_table`]: crate::config::DbConfig::position_table

use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::config::TableConfig;

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

/// Makes the positions an older SQL package stored for `first` and the topics it speaks for
/// the sink's own, where it has none of its own yet (see `sql/install.sql`). Returns the
/// partitions adopted.
pub async fn adopt(
    client: &Client,
    sink: &str,
    first: &TableConfig,
    consumes: impl Fn(&str) -> bool,
) -> Result<i32, tokio_postgres::Error> {
    let marked = "sink = 'table ' || pgsink.qualified($1, $2)";
    let params: [&(dyn ToSql + Sync); 2] = [&first.schema, &first.table];
    let topics = consumed_topics(client, marked, &params, consumes).await?;
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

/// Deletes the stored offsets of `first` and the topics it speaks for (`consumes`) that are
/// the sink's own, or an older package's for that table (see `sql/install.sql`): a sink that
/// is not synchronized must not leave positions that a later synchronized start would resume
/// from, and must not touch another sink's (two sinks may share a name across tables).
/// Returns the rows deleted.
pub async fn drop(
    client: &Client,
    sink: &str,
    first: &TableConfig,
    consumes: impl Fn(&str) -> bool,
) -> Result<u64, tokio_postgres::Error> {
    const MINE: &str = "first_table = pgsink.qualified($2, $3)
                        AND (sink = $1 OR sink = 'table ' || pgsink.qualified($2, $3))";
    let params: [&(dyn ToSql + Sync); 3] = [&sink, &first.schema, &first.table];
    let doomed = consumed_topics(client, MINE, &params, consumes).await?;
    client
        .execute(
            &format!("DELETE FROM pgsink.offsets WHERE {MINE} AND topic = ANY($4)"),
            &[&sink, &first.schema, &first.table, &doomed],
        )
        .await
}

/// The topics of the rows `filter` selects (with `params`) that the sink `consumes`.
async fn consumed_topics(
    client: &Client,
    filter: &str,
    params: &[&(dyn ToSql + Sync)],
    consumes: impl Fn(&str) -> bool,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!("SELECT DISTINCT topic FROM pgsink.offsets WHERE {filter}"),
            params,
        )
        .await?;
    let topics = rows.iter().map(|r| r.get::<_, String>(0));
    Ok(topics.filter(|t| consumes(t)).collect())
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
    /// The table it was stored for, as `pgsink.qualified` writes it.
    pub stored_table: String,
    /// The table that speaks for the topic in the sink, quoted the same way.
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
                "sink {sink} stored {topic}[{partition}] for table {}, and writes {}: two sinks share this name (give each its own), or the sink's tables changed: if only their order or topics did, move the positions with UPDATE pgsink.offsets SET first_table = {} WHERE sink = {} AND first_table = {}; if it writes a new table, start over with DELETE FROM pgsink.offsets WHERE sink = {} AND first_table = {}",
                self.stored_table,
                self.table,
                literal(&self.table),
                literal(sink),
                literal(&self.stored_table),
                literal(sink),
                literal(&self.stored_table)
            )
        } else {
            write!(
                f,
                "{topic}[{partition}] of table {} is loaded by sink {owner}; sink {sink} would load it again; if this sink was renamed, take its positions over: UPDATE pgsink.offsets SET sink = {} WHERE sink = {} AND first_table = {}",
                self.table,
                literal(sink),
                literal(owner),
                literal(&self.table)
            )
        }
    }
}

/// The stored positions that conflict with the sink (see [`Conflict`]) in table `first`:
/// the sink's own positions of the topics the table speaks for (`speaks_for`) stored for
/// another table, and another sink's positions in this table of the topics whose messages fill
/// it (`fills`). The positions an older package left for the table, which the sink adopts, do
/// not conflict.
///
/// The second rule is what sees a sink whose positions are recorded for a table this sink
/// writes as one of its later tables (two sinks loading one topic into one table). The
/// reverse, a sink that writes this sink's position table as one of its later tables, is
/// seen only when both are in one file ([`crate::config`] refuses it).
pub async fn conflicts(
    client: &Client,
    sink: &str,
    first: &TableConfig,
    speaks_for: impl Fn(&str) -> bool,
    fills: impl Fn(&str) -> bool,
) -> Result<Vec<Conflict>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT sink, first_table, pgsink.qualified($2, $3), topic, partition
               FROM pgsink.offsets
              WHERE (sink = $1) <> (first_table = pgsink.qualified($2, $3))
                AND sink <> 'table ' || pgsink.qualified($2, $3)
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
        .filter(|c| {
            if c.owner == c.sink {
                speaks_for(&c.topic)
            } else {
                fills(&c.topic)
            }
        })
        .collect())
}
