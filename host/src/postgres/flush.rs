//! The flush transaction: the first table's rows streamed into one COPY as they are converted,
//! a COPY per other table, then the dead letters and the fenced offset moves, then COMMIT. In a
//! keyed write mode a table's COPY goes into its staging table on the connection and
//! [`merge`](super::merge) applies it before the rest.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::{Client, CopyInSink, Statement};

use super::merge::Merge;
use super::{connect, describe, storable_text, DbError, DeadLetter, Target};
use crate::config::{DbConfig, TableConfig};
use crate::ledger::OffsetMove;

/// What one flush writes, all in one transaction.
#[derive(Debug, Default)]
pub struct FlushData<'a> {
    /// Per table, in the sink's table order, the COPY text chunks of its rows.
    pub copy_chunks: &'a [Vec<Bytes>],
    pub dead_letters: &'a [DeadLetter],
    /// Offset moves (synchronized delivery only; empty otherwise).
    pub offsets: &'a [OffsetMove],
    /// The converter's `name version`, recorded with dead letters.
    pub plugin: &'a str,
    /// The converter's hash, recorded with dead letters and offsets.
    pub plugin_hash: &'a str,
    /// Per table, whether any of its rows deletes (keyed write modes); a missing entry: none.
    pub deletes: &'a [bool],
}

/// One table's statements on the writer's connection.
struct TableWriter {
    target: Target,
    /// The COPY of its rows: into the table, or into its staging table when keyed.
    copy: Statement,
    /// A keyed write mode's statements; `None` in append mode.
    merge: Option<Merge>,
}

/// A connection with the statements a flush uses, prepared once.
///
/// A flush is one transaction. The COPY of the first table is *streamed*:
/// [`stream`](Self::stream) sends its rows as soon as they are converted, so PostgreSQL
/// parses and stores them while the next batch is converted; [`finish`](Self::finish) COPYs
/// the other tables' rows, applies the keyed ones, adds the dead letters and offsets and
/// commits. [`flush`](Self::flush) does all of it at once from buffered rows (to retry on a
/// new connection).
///
/// Tables are written in the sink's order (inserts: a table others reference comes first)
/// and keyed deletes in the reverse order (a referencing row goes before the row it
/// references).
pub struct Writer {
    client: Client,
    /// The sink's identity: whose offsets and dead letters these are.
    sink: String,
    /// Which table speaks for each topic's positions.
    db: DbConfig,
    tables: Vec<TableWriter>,
    dead_letters: Statement,
    commit_offsets: Statement,
    describe: String,
    /// A transaction is open.
    in_transaction: bool,
    /// The COPY of the open transaction into the first table, while rows are being streamed.
    copy_sink: Option<Pin<Box<CopyInSink<Bytes>>>>,
}

impl Writer {
    /// Connects and prepares the flush statements of sink `sink` for its `targets` (in the
    /// order of `db.tables`), each written as its write mode says (a keyed mode creates the
    /// connection's staging table for it, sized for flushes of about `buffer_size` bytes).
    pub async fn connect(
        db: &DbConfig,
        sink: &str,
        targets: Vec<Target>,
        buffer_size: usize,
    ) -> Result<Writer, DbError> {
        let describe = describe(db);
        let client = connect(db).await?;
        let err = |e| DbError::classify(e, &describe);
        let mut tables = Vec::with_capacity(targets.len());
        let mut session = true;
        for (index, target) in targets.into_iter().enumerate() {
            let merge = target
                .write_mode
                .is_keyed()
                .then(|| Merge::new(&target, index, target.write_mode, buffer_size));
            let copy = match &merge {
                Some(merge) => {
                    // Once, before any temporary table is used, as PostgreSQL requires.
                    if std::mem::take(&mut session) {
                        client.batch_execute(&merge.session).await.map_err(err)?;
                    }
                    client.batch_execute(&merge.create).await.map_err(err)?;
                    client.prepare(&merge.copy).await.map_err(err)?
                }
                None => client
                    .prepare(&target.copy_statement())
                    .await
                    .map_err(err)?,
            };
            tables.push(TableWriter {
                target,
                copy,
                merge,
            });
        }
        let dead_letters = client
            .prepare(
                "INSERT INTO pgsink.dead_letters (sink, table_schema, table_name, topic, partition,
                     \"offset\", message_timestamp, key, value, reason, plugin, plugin_hash)
                 SELECT $12, $1, $2, d.topic, d.partition, d.off,
                        to_timestamp(d.ts / 1000.0), d.key, d.value, d.reason, $10, $11
                   FROM unnest($3::text[], $4::int[], $5::bigint[], $6::bigint[], $7::bytea[], $8::bytea[], $9::text[])
                        AS d(topic, partition, off, ts, key, value, reason)",
            )
            .await
            .map_err(err)?;
        let commit_offsets = client
            .prepare("SELECT pgsink.commit_offsets($1, $2, $3, $4, $5, $6, $7, $8)")
            .await
            .map_err(err)?;
        Ok(Writer {
            client,
            sink: sink.to_string(),
            db: db.clone(),
            tables,
            dead_letters,
            commit_offsets,
            describe,
            in_transaction: false,
            copy_sink: None,
        })
    }

    /// Per table, in the sink's order, whether it is written by key.
    pub fn keyed(&self) -> Vec<bool> {
        self.tables.iter().map(|t| t.merge.is_some()).collect()
    }

    /// The tables, in the sink's order.
    pub fn targets(&self) -> Vec<Target> {
        self.tables.iter().map(|t| t.target.clone()).collect()
    }

    fn error(&self, e: tokio_postgres::Error) -> DbError {
        DbError::classify(e, &self.describe)
    }

    async fn begin(&mut self) -> Result<(), DbError> {
        if !self.in_transaction {
            self.client
                .batch_execute("BEGIN")
                .await
                .map_err(|e| self.error(e))?;
            self.in_transaction = true;
        }
        Ok(())
    }

    /// Sends rows of the first table into the open transaction's COPY, opening both if
    /// needed.
    pub async fn stream(&mut self, rows: Bytes) -> Result<(), DbError> {
        self.begin().await?;
        if self.copy_sink.is_none() {
            let sink = self
                .client
                .copy_in::<_, Bytes>(&self.tables[0].copy)
                .await
                .map_err(|e| self.error(e))?;
            self.copy_sink = Some(Box::pin(sink));
        }
        let sink = self.copy_sink.as_mut().expect("opened above");
        let sent = sink.send(rows).await;
        sent.map_err(|e| self.error(e))
    }

    /// Ends the COPY, writes dead letters and offset moves, and commits.
    pub async fn finish(&mut self, data: &FlushData<'_>) -> Result<(), DbError> {
        let result = self.finish_inner(data).await;
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    async fn finish_inner(&mut self, data: &FlushData<'_>) -> Result<(), DbError> {
        self.begin().await?;
        if let Some(mut sink) = self.copy_sink.take() {
            let finished = sink.as_mut().finish().await;
            finished.map_err(|e| self.error(e))?;
        }
        self.load(data.copy_chunks, data.deletes, true).await?;
        if !data.dead_letters.is_empty() {
            let d = data.dead_letters;
            let topics: Vec<&str> = d.iter().map(|l| l.topic.as_str()).collect();
            let partitions: Vec<i32> = d.iter().map(|l| l.partition).collect();
            let offsets: Vec<i64> = d.iter().map(|l| l.offset).collect();
            let timestamps: Vec<Option<i64>> = d.iter().map(|l| l.timestamp).collect();
            let keys: Vec<Option<&[u8]>> = d.iter().map(|l| l.key.as_deref()).collect();
            let values: Vec<Option<&[u8]>> = d.iter().map(|l| l.value.as_deref()).collect();
            let reasons: Vec<&str> = d.iter().map(|l| l.reason.as_str()).collect();
            let plugin_text = storable_text(data.plugin);
            let plugin: &str = &plugin_text;
            self.client
                .execute(
                    &self.dead_letters,
                    &[
                        &self.tables[0].target.schema,
                        &self.tables[0].target.table,
                        &topics,
                        &partitions,
                        &offsets,
                        &timestamps,
                        &keys,
                        &values,
                        &reasons,
                        &plugin,
                        &data.plugin_hash,
                        &self.sink,
                    ],
                )
                .await
                .map_err(|e| self.error(e))?;
        }
        // One fenced move per table that speaks for some of the topics (usually one).
        let mut groups: Vec<(&TableConfig, Vec<&OffsetMove>)> = Vec::new();
        for m in data.offsets {
            let table = self.db.position_table(&m.topic);
            match groups.iter_mut().find(|(t, _)| std::ptr::eq(*t, table)) {
                Some((_, moves)) => moves.push(m),
                None => groups.push((table, vec![m])),
            }
        }
        for (table, o) in groups {
            let topics: Vec<&str> = o.iter().map(|m| m.topic.as_str()).collect();
            let partitions: Vec<i32> = o.iter().map(|m| m.partition).collect();
            let from: Vec<i64> = o.iter().map(|m| m.from).collect();
            let next: Vec<i64> = o.iter().map(|m| m.next).collect();
            self.client
                .execute(
                    &self.commit_offsets,
                    &[
                        &self.sink,
                        &table.schema,
                        &table.table,
                        &topics,
                        &partitions,
                        &from,
                        &next,
                        &data.plugin_hash,
                    ],
                )
                .await
                .map_err(|e| self.error(e))?;
        }
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| self.error(e))?;
        self.in_transaction = false;
        Ok(())
    }

    /// Abandons the open transaction, if any (its COPY is cancelled).
    pub async fn abort(&mut self) {
        self.copy_sink = None;
        if self.in_transaction {
            if let Err(error) = self.client.batch_execute("ROLLBACK").await {
                tracing::debug!(%error, "ROLLBACK failed (the connection is probably gone)");
            }
            self.in_transaction = false;
        }
    }

    /// In a new transaction, COPYs `groups` (each the rows of one message, as (table, rows)
    /// pairs), bisecting with savepoints around every group range PostgreSQL rejects, until
    /// each rejected group stands alone. Returns the rejected groups with PostgreSQL's reason;
    /// the transaction stays open for [`finish`](Self::finish). In a keyed write mode each range
    /// is applied as it is loaded (a merge can refuse a row too: NOT NULL, CHECK, a foreign
    /// key); ranges go left to right, so the accepted rows are applied in their order.
    pub async fn copy_isolating(
        &mut self,
        groups: &[Vec<(usize, Bytes)>],
    ) -> Result<Vec<(usize, String)>, DbError> {
        self.abort().await;
        self.begin().await?;
        let mut rejected = Vec::new();
        let mid = groups.len() / 2;
        let mut ranges = vec![(mid, groups.len()), (0, mid)];
        while let Some((lo, hi)) = ranges.pop() {
            if lo >= hi {
                continue;
            }
            let loaded = self.copy_savepoint(&groups[lo..hi]).await;
            match loaded {
                Ok(()) => {}
                Err(DbError::Data(reason)) if hi - lo == 1 => rejected.push((lo, reason)),
                Err(DbError::Data(_)) => {
                    let mid = lo + (hi - lo) / 2;
                    ranges.push((mid, hi));
                    ranges.push((lo, mid));
                }
                Err(error) => {
                    self.abort().await;
                    return Err(error);
                }
            }
        }
        Ok(rejected)
    }

    /// COPYs `chunks` into table `table` (its staging table when keyed), if there are any.
    async fn copy(&mut self, table: usize, chunks: &[Bytes]) -> Result<(), tokio_postgres::Error> {
        if chunks.iter().all(Bytes::is_empty) {
            return Ok(());
        }
        let sink = self
            .client
            .copy_in::<_, Bytes>(&self.tables[table].copy)
            .await?;
        futures_util::pin_mut!(sink);
        for rows in chunks {
            sink.feed(rows.clone()).await?;
        }
        sink.as_mut().finish().await.map(|_| ())
    }

    /// Loads `chunks` (per table) into their tables, the first table's excepted when
    /// `streamed` (it went through [`stream`](Self::stream)): first every keyed table's rows
    /// into its staging table, then the keyed deletes from the last table to the first
    /// (`deletes`: per table, whether any of its rows deletes), then from the first table to
    /// the last the staged rows applied (and emptied) or the appended rows COPYed. So a table
    /// that others reference gets its rows before theirs, and loses its rows after theirs.
    async fn load(
        &mut self,
        chunks: &[Vec<Bytes>],
        deletes: &[bool],
        streamed: bool,
    ) -> Result<(), DbError> {
        let chunks_of = |t: usize| chunks.get(t).cloned().unwrap_or_default();
        let copied = |t: usize| t == 0 && streamed;
        let keyed = self.keyed();
        for t in (0..keyed.len()).filter(|&t| keyed[t] && !copied(t)) {
            self.copy(t, &chunks_of(t))
                .await
                .map_err(|e| self.error(e))?;
        }
        // Planned at every flush, not prepared: a cached plan would be the one made for the
        // first flush's row count (the staging table is never analyzed), and a join planned
        // for ten rows is wrong for a hundred thousand.
        for t in (0..keyed.len()).rev() {
            if let (Some(merge), true) = (&self.tables[t].merge, deletes.get(t) == Some(&true)) {
                let statement = merge.delete.clone();
                self.execute(&statement).await?;
            }
        }
        for t in 0..keyed.len() {
            match &self.tables[t].merge {
                Some(merge) => {
                    let (apply, empty) = (merge.apply.clone(), merge.empty.clone());
                    self.execute(&apply).await?;
                    self.execute(&empty).await?;
                }
                None if !copied(t) => {
                    self.copy(t, &chunks_of(t))
                        .await
                        .map_err(|e| self.error(e))?;
                }
                None => {}
            }
        }
        Ok(())
    }

    async fn execute(&self, statement: &str) -> Result<(), DbError> {
        let done = self.client.execute(statement, &[]).await;
        done.map(|_| ()).map_err(|e| self.error(e))
    }

    /// COPYs `groups` inside a savepoint (and applies them, when keyed), rolled back if
    /// PostgreSQL rejects a row.
    async fn copy_savepoint(&mut self, groups: &[Vec<(usize, Bytes)>]) -> Result<(), DbError> {
        self.client
            .batch_execute("SAVEPOINT pgsink_rows")
            .await
            .map_err(|e| self.error(e))?;
        let chunks: Vec<Vec<Bytes>> = (0..self.tables.len())
            .map(|table| {
                let rows = groups.iter().flatten().filter(|(t, _)| *t == table);
                rows.map(|(_, rows)| rows.clone()).collect()
            })
            .collect();
        let copied = self
            .load(&chunks, &vec![true; self.tables.len()], false)
            .await;
        let outcome = match copied {
            Ok(_) => "RELEASE SAVEPOINT pgsink_rows",
            Err(error) => {
                if !matches!(error, DbError::Data(_)) {
                    return Err(error);
                }
                self.client
                    .batch_execute(
                        "ROLLBACK TO SAVEPOINT pgsink_rows; RELEASE SAVEPOINT pgsink_rows",
                    )
                    .await
                    .map_err(|e| self.error(e))?;
                return Err(error);
            }
        };
        self.client
            .batch_execute(outcome)
            .await
            .map_err(|e| self.error(e))
    }

    /// Writes rows, dead letters and offset moves in ONE transaction, from scratch.
    pub async fn flush(&mut self, data: &FlushData<'_>) -> Result<(), DbError> {
        self.abort().await;
        for chunk in data.copy_chunks.first().map_or(&[][..], Vec::as_slice) {
            if let Err(error) = self.stream(chunk.clone()).await {
                self.abort().await;
                return Err(error);
            }
        }
        self.finish(data).await
    }
}
