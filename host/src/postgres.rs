//! Everything pgsink says to PostgreSQL: connecting, the SQL package, the
//! target table's shape, stored offsets, and the flush transaction.

use std::collections::HashMap;
use std::time::Duration;

use std::pin::Pin;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::CopyInSink;
use tokio_postgres::{Client, NoTls, Socket, Statement};

use crate::batch::MessageRef;
use crate::config::DbConfig;
use crate::converter::{Column, Table};
use crate::ledger::OffsetMove;
use crate::tls::{self, Tls};

/// The SQL package, also shipped as `sql/install.sql`.
pub const INSTALL_SQL: &str = include_str!("../../sql/install.sql");
/// Removes the SQL package, also shipped as `sql/uninstall.sql`.
pub const UNINSTALL_SQL: &str = include_str!("../../sql/uninstall.sql");

/// The SQLSTATE `pgsink.commit_offsets` raises when the offset fence trips.
const FENCE_SQLSTATE: &str = "PSK01";

/// Errors talking to PostgreSQL, sorted by what the sink should do about them.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The connection failed or broke; retrying on a new connection may work.
    #[error("PostgreSQL connection to {target}: {}", error_chain(.error))]
    Connection {
        /// `host:port/database`.
        target: String,
        /// The driver's error (shown in the message, so not a `source`).
        error: tokio_postgres::Error,
    },
    /// PostgreSQL ran out of a resource (SQLSTATE class 53: disk full, out of
    /// memory, too many connections); retrying later may work.
    #[error("PostgreSQL at {target} is out of resources (SQLSTATE {code}): {text}")]
    Resources {
        /// `host:port/database`.
        target: String,
        /// The SQLSTATE, e.g. `53100` (disk full).
        code: String,
        /// The server's message.
        text: String,
    },
    /// Another process moved a partition's stored offset: roll back and re-seek.
    #[error("offset fence: {0}")]
    Fenced(String),
    /// PostgreSQL rejected a row's value (bad cast, constraint, too long).
    #[error("PostgreSQL rejected the data: {0}")]
    Data(String),
    /// The target table is missing, or lacks columns.
    #[error("{0}")]
    Table(String),
    /// Any other database error; the sink stops.
    #[error("PostgreSQL error: {0}")]
    Other(String),
}

impl DbError {
    /// Sorts a driver error by how to react to it.
    pub fn classify(error: tokio_postgres::Error, target: &str) -> DbError {
        let Some(db) = error.as_db_error() else {
            return DbError::Connection {
                target: target.to_string(),
                error,
            };
        };
        let code = db.code().code();
        let text = match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        };
        let text = match db.where_() {
            Some(w) if w.starts_with("COPY") => format!("{text}; {w}"),
            _ => text,
        };
        if code == FENCE_SQLSTATE {
            DbError::Fenced(text)
        } else if code.starts_with("22") || code.starts_with("23") {
            DbError::Data(text)
        } else if code.starts_with("53") {
            DbError::Resources {
                target: target.to_string(),
                code: code.to_string(),
                text,
            }
        } else if code.starts_with("08")
            || code.starts_with("57P")
            || code == SqlState::T_R_SERIALIZATION_FAILURE.code()
            || code == SqlState::T_R_DEADLOCK_DETECTED.code()
        {
            DbError::Connection {
                target: target.to_string(),
                error,
            }
        } else {
            DbError::Other(format!("{text} (SQLSTATE {code})"))
        }
    }

    /// True when a new connection and a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DbError::Connection { .. } | DbError::Resources { .. })
    }
}

/// An error and its causes, `outer: inner: innermost` (the driver's own
/// message leaves the cause out, and that is where TLS and I/O details are).
fn error_chain(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Quotes an SQL identifier: `my "table"` becomes `"my ""table"""`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `host:port/database`, for messages (never the password).
pub fn describe(db: &DbConfig) -> String {
    format!("{}/{}", db.host_port(), db.database)
}

/// Opens a connection; the connection task runs on the current tokio runtime.
///
/// TLS follows `db.sslmode` and `db.sslrootcert` with libpq's meaning (see
/// `tls.rs`); a TLS setup that cannot even start (an unreadable
/// `db.sslrootcert`, no system roots) is a [`DbError::Other`], not retried.
pub async fn connect(db: &DbConfig) -> Result<Client, DbError> {
    /// Connects through `tls` and spawns the connection task.
    async fn connect_with<T>(
        config: &tokio_postgres::Config,
        tls: T,
        target: &str,
    ) -> Result<Client, DbError>
    where
        T: MakeTlsConnect<Socket>,
        T::Stream: Send + 'static,
    {
        let (client, connection) = config
            .connect(tls)
            .await
            .map_err(|e| DbError::classify(e, target))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    let mut config = tokio_postgres::Config::new();
    config
        .host(&db.host)
        .port(db.port)
        .dbname(&db.database)
        .user(&db.username)
        .application_name("pgsink")
        .connect_timeout(Duration::from_secs(10));
    if let Some(password) = &db.password {
        config.password(password);
    }
    let target = describe(db);
    let tls = tls::for_db(db).map_err(|e| DbError::Other(format!("TLS to {target}: {e}")))?;
    match tls {
        Tls::Off => {
            config.ssl_mode(PgSslMode::Disable);
            connect_with(&config, NoTls, &target).await
        }
        Tls::On(mode, connector) => {
            config.ssl_mode(mode);
            connect_with(&config, connector, &target).await
        }
    }
}

/// Installs or upgrades the SQL package (idempotent, serialized by an advisory lock).
pub async fn install(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(INSTALL_SQL).await
}

/// The version of the SQL package this binary installs (`pgsink N:` in the schema's comment).
pub const SQL_VERSION: i32 = 2;

/// True when the SQL package is installed, at [`SQL_VERSION`] or newer (an older one lacks
/// what this binary relies on, e.g. version 2's fence on the start of each flush).
pub async fn installed(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT coalesce(substring(obj_description(to_regnamespace('pgsink'), 'pg_namespace')
                                       FROM '^pgsink ([0-9]+):')::int, 0)",
            &[],
        )
        .await?;
    Ok(row.get::<_, i32>(0) >= SQL_VERSION)
}

/// The sink's target: a table and the columns each row fills, in order.
#[derive(Debug, Clone)]
pub struct Target {
    /// Schema name, unquoted.
    pub schema: String,
    /// Table name, unquoted.
    pub table: String,
    /// Column names, unquoted, in row order.
    pub columns: Vec<String>,
    /// The PostgreSQL type of each column (`format_type`), in row order.
    pub column_types: Vec<String>,
    /// The primary key's columns, as indexes in `columns`, in key order; empty when the
    /// table has no primary key or the sink does not fill all of its columns.
    pub key: Vec<u32>,
}

impl Target {
    /// Looks the table up and checks that every configured column exists.
    pub async fn resolve(
        client: &Client,
        schema: &str,
        table: &str,
        columns: &[String],
    ) -> Result<Target, DbError> {
        let rows = client
            .query(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod)
                   FROM pg_attribute a
                   JOIN pg_class c ON c.oid = a.attrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
                    AND a.attnum > 0 AND NOT a.attisdropped
                  ORDER BY a.attnum",
                &[&schema, &table],
            )
            .await
            .map_err(|e| DbError::Other(e.to_string()))?;
        let name = format!("{}.{}", quote_ident(schema), quote_ident(table));
        if rows.is_empty() {
            return Err(DbError::Table(format!(
                "the table {name} does not exist (create it first; db.schema and db.table name it)"
            )));
        }
        let existing: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let missing: Vec<&str> = columns
            .iter()
            .filter(|c| !existing.contains_key(c.as_str()))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            let have: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
            return Err(DbError::Table(format!(
                "the table {name} has no column {} (its columns: {}; names are case-sensitive)",
                missing.join(", "),
                have.join(", ")
            )));
        }
        let primary_key: Vec<String> = client
            .query(
                "SELECT a.attname
                   FROM pg_index i
                   JOIN pg_class c ON c.oid = i.indrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                  WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary
                  ORDER BY array_position(i.indkey::int2[], a.attnum)",
                &[&schema, &table],
            )
            .await
            .map_err(|e| DbError::Other(e.to_string()))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let key: Option<Vec<u32>> = primary_key
            .iter()
            .map(|k| columns.iter().position(|c| c == k).map(|i| i as u32))
            .collect();
        Ok(Target {
            schema: schema.to_string(),
            table: table.to_string(),
            columns: columns.to_vec(),
            column_types: columns.iter().map(|c| existing[c].clone()).collect(),
            key: key.unwrap_or_default(),
        })
    }

    /// The table as a converter is told about it: columns with their types, in row order,
    /// and the key.
    pub fn converter_table(&self) -> Table {
        Table {
            schema: self.schema.clone(),
            name: self.table.clone(),
            columns: self
                .columns
                .iter()
                .zip(&self.column_types)
                .map(|(name, type_name)| Column {
                    name: name.clone(),
                    type_name: Some(type_name.clone()),
                })
                .collect(),
            key: self.key.clone(),
        }
    }

    /// `"schema"."table"`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }

    /// The `COPY … FROM STDIN` statement of this target.
    pub fn copy_statement(&self) -> String {
        let columns: Vec<String> = self.columns.iter().map(|c| quote_ident(c)).collect();
        format!(
            "COPY {} ({}) FROM STDIN",
            self.qualified(),
            columns.join(", ")
        )
    }

    /// The stored next offsets of `topics`' partitions for this table.
    pub async fn stored_offsets(
        &self,
        client: &Client,
        topics: &[String],
    ) -> Result<HashMap<(String, i32), i64>, tokio_postgres::Error> {
        let rows = client
            .query(
                "SELECT topic, partition, next_offset FROM pgsink.offsets
                  WHERE table_schema = $1 AND table_name = $2 AND topic = ANY($3)",
                &[&self.schema, &self.table, &topics],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect())
    }

    /// Deletes the stored offsets of `topics` for this table: a sink that is not synchronized
    /// must not leave stale positions behind, and must not touch other sinks' (another topic's
    /// synchronized sink may load into the same table). Returns the rows deleted.
    pub async fn drop_state(
        &self,
        client: &Client,
        topics: &[String],
    ) -> Result<u64, tokio_postgres::Error> {
        client
            .execute(
                "DELETE FROM pgsink.offsets
                  WHERE table_schema = $1 AND table_name = $2 AND topic = ANY($3)",
                &[&self.schema, &self.table, &topics],
            )
            .await
    }
}

/// One message that goes to the dead-letter table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Why it could not be loaded.
    pub reason: String,
}

impl DeadLetter {
    /// A dead letter for `message`, failed for `reason`.
    pub fn new(message: MessageRef<'_>, reason: String) -> Self {
        DeadLetter {
            topic: message.topic.to_string(),
            partition: message.partition,
            offset: message.offset,
            timestamp: message.timestamp,
            key: message.key.map(<[u8]>::to_vec),
            value: message.value.map(<[u8]>::to_vec),
            reason: storable_text(&reason).into_owned(),
        }
    }
}

/// `text` as PostgreSQL can store it in a `text` column: a NUL character
/// (which a converter's reason or name may carry) becomes the two characters `\0`.
pub fn storable_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\\0"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// What one flush writes, all in one transaction.
#[derive(Debug, Default)]
pub struct FlushData<'a> {
    /// COPY text chunks of the rows.
    pub copy_chunks: &'a [Bytes],
    pub dead_letters: &'a [DeadLetter],
    /// Offset moves (synchronized delivery only; empty otherwise).
    pub offsets: &'a [OffsetMove],
    /// The converter's `name version`, recorded with dead letters.
    pub plugin: &'a str,
    /// The converter's hash, recorded with dead letters and offsets.
    pub plugin_hash: &'a str,
}

/// A connection with the statements a flush uses, prepared once.
///
/// A flush is one transaction. Its COPY is *streamed*: [`stream`](Self::stream)
/// sends rows as soon as they are converted, so PostgreSQL parses and stores
/// them while the next batch is converted; [`finish`](Self::finish) adds the
/// dead letters and offsets and commits. [`flush`](Self::flush) does all of it
/// at once from buffered rows (to retry on a new connection).
pub struct Writer {
    client: Client,
    target: Target,
    copy: Statement,
    dead_letters: Statement,
    commit_offsets: Statement,
    describe: String,
    /// A transaction is open.
    in_transaction: bool,
    /// The COPY of the open transaction, while rows are being streamed.
    copy_sink: Option<Pin<Box<CopyInSink<Bytes>>>>,
}

impl Writer {
    /// Connects and prepares the flush statements for `target`.
    pub async fn connect(db: &DbConfig, target: Target) -> Result<Writer, DbError> {
        let describe = describe(db);
        let client = connect(db).await?;
        let err = |e| DbError::classify(e, &describe);
        let copy = client
            .prepare(&target.copy_statement())
            .await
            .map_err(err)?;
        let dead_letters = client
            .prepare(
                "INSERT INTO pgsink.dead_letters (table_schema, table_name, topic, partition, \"offset\",
                     message_timestamp, key, value, reason, plugin, plugin_hash)
                 SELECT $1, $2, d.topic, d.partition, d.off,
                        to_timestamp(d.ts / 1000.0), d.key, d.value, d.reason, $10, $11
                   FROM unnest($3::text[], $4::int[], $5::bigint[], $6::bigint[], $7::bytea[], $8::bytea[], $9::text[])
                        AS d(topic, partition, off, ts, key, value, reason)",
            )
            .await
            .map_err(err)?;
        let commit_offsets = client
            .prepare("SELECT pgsink.commit_offsets($1, $2, $3, $4, $5, $6, $7)")
            .await
            .map_err(err)?;
        Ok(Writer {
            client,
            target,
            copy,
            dead_letters,
            commit_offsets,
            describe,
            in_transaction: false,
            copy_sink: None,
        })
    }

    /// The target table.
    pub fn target(&self) -> &Target {
        &self.target
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

    /// Sends rows into the open transaction's COPY, opening both if needed.
    pub async fn stream(&mut self, rows: Bytes) -> Result<(), DbError> {
        self.begin().await?;
        if self.copy_sink.is_none() {
            let sink = self
                .client
                .copy_in::<_, Bytes>(&self.copy)
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
                        &self.target.schema,
                        &self.target.table,
                        &topics,
                        &partitions,
                        &offsets,
                        &timestamps,
                        &keys,
                        &values,
                        &reasons,
                        &plugin,
                        &data.plugin_hash,
                    ],
                )
                .await
                .map_err(|e| self.error(e))?;
        }
        if !data.offsets.is_empty() {
            let o = data.offsets;
            let topics: Vec<&str> = o.iter().map(|m| m.topic.as_str()).collect();
            let partitions: Vec<i32> = o.iter().map(|m| m.partition).collect();
            let from: Vec<i64> = o.iter().map(|m| m.from).collect();
            let next: Vec<i64> = o.iter().map(|m| m.next).collect();
            self.client
                .execute(
                    &self.commit_offsets,
                    &[
                        &self.target.schema,
                        &self.target.table,
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

    /// In a new transaction, COPYs `groups` (each the rows of one message),
    /// bisecting with savepoints around every group range PostgreSQL rejects,
    /// until each rejected group stands alone. Returns the rejected groups
    /// with PostgreSQL's reason; the transaction stays open for
    /// [`finish`](Self::finish).
    pub async fn copy_isolating(
        &mut self,
        groups: &[Bytes],
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

    /// COPYs `groups` inside a savepoint, rolled back if PostgreSQL rejects a row.
    async fn copy_savepoint(&mut self, groups: &[Bytes]) -> Result<(), DbError> {
        self.client
            .batch_execute("SAVEPOINT pgsink_rows")
            .await
            .map_err(|e| self.error(e))?;
        let copied = async {
            let sink = self.client.copy_in::<_, Bytes>(&self.copy).await?;
            futures_util::pin_mut!(sink);
            for rows in groups {
                sink.feed(rows.clone()).await?;
            }
            sink.as_mut().finish().await
        }
        .await;
        let outcome = match copied {
            Ok(_) => "RELEASE SAVEPOINT pgsink_rows",
            Err(e) => {
                let error = self.error(e);
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
        for chunk in data.copy_chunks {
            if let Err(error) = self.stream(chunk.clone()).await {
                self.abort().await;
                return Err(error);
            }
        }
        self.finish(data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_quoted() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(
            quote_ident("My \"odd\"; table"),
            "\"My \"\"odd\"\"; table\""
        );
        let target = Target {
            schema: "S p".into(),
            table: "t\"1".into(),
            columns: vec!["Id".into(), "a;b".into()],
            column_types: vec!["bigint".into(), "text".into()],
            key: vec![0],
        };
        assert_eq!(
            target.copy_statement(),
            "COPY \"S p\".\"t\"\"1\" (\"Id\", \"a;b\") FROM STDIN"
        );
    }
}
