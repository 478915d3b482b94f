//! `pgsink dlq`: looking at dead letters and re-driving them after a fix.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::SinkExt;

use crate::batch::{BatchBuilder, MessageRef};
use crate::config::{self, SinkConfig};
use crate::converter::ConverterSpec;
use crate::pending::split_by_table;
use crate::postgres::{self, Target};

#[derive(clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Show the dead letters of the sink, oldest first.
    List {
        /// The configuration.
        #[arg(short, long)]
        config: PathBuf,
        /// Show at most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Convert dead letters again and load those that now convert, removing
    /// them from the dead letters (one transaction). Those still failing keep
    /// their place with the new reason.
    Redrive {
        /// The configuration (its converter and table are used).
        #[arg(short, long)]
        config: PathBuf,
        /// Only these dead letters (ids from `dlq list`); default all of the sink's.
        #[arg(long, value_delimiter = ',')]
        id: Option<Vec<i64>>,
        /// Report what would happen, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::List { config, limit } => {
            let config = config::load(&config)?;
            let letters = super::tokio_runtime()?.block_on(list(&config, limit))?;
            println!(
                "{:>8}  {:<24} {:>5} {:>10}  {:<29}  reason / value",
                "id", "topic", "part", "offset", "failed at"
            );
            for l in &letters {
                println!(
                    "{:>8}  {:<24} {:>5} {:>10}  {:<29}  {}\n{:>83}{}",
                    l.id,
                    l.topic,
                    l.partition,
                    l.offset,
                    l.failed_at,
                    l.reason,
                    "",
                    l.value_preview
                );
            }
            println!("{} dead letter(s) shown", letters.len());
        }
        Action::Redrive {
            config,
            id,
            dry_run,
        } => {
            let config = config::load(&config)?;
            let summary = super::tokio_runtime()?.block_on(redrive(&config, id, dry_run))?;
            println!(
                "{}{} dead letter(s) read: {} loaded as {} row(s), {} still failing",
                if dry_run { "dry run: " } else { "" },
                summary.read,
                summary.loaded,
                summary.rows,
                summary.still_failing
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One dead letter, as `pgsink dlq list` shows it.
#[derive(Debug, Clone)]
pub struct DeadLetterRow {
    /// Its id in `pgsink.dead_letters`.
    pub id: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// When it failed (text).
    pub failed_at: String,
    pub reason: String,
    /// The first bytes of the value, escaped.
    pub value_preview: String,
}

/// Which dead letters are the sink's: its own, and those an older pgsink stored for its first
/// table and its topics that no start has adopted yet; of its first table either way, so that
/// another sink of the same name is never re-driven into this one's table (`$1` identity, `$2`
/// schema, `$3` table, `$4` topics).
const THE_SINKS: &str = "table_schema = $2 AND table_name = $3
     AND (sink = $1 OR (sink = 'table ' || pgsink.qualified($2, $3)
                        AND topic = ANY($4)))";

/// Connects, refusing a `pgsink` schema older than this binary's (its dead letters are not
/// keyed by sink yet).
async fn connect(config: &SinkConfig) -> anyhow::Result<tokio_postgres::Client> {
    let client = postgres::connect(&config.db).await?;
    let current = postgres::installed(&client)
        .await
        .context("cannot read the pgsink schema's version")?;
    if !current {
        anyhow::bail!("the pgsink schema is missing or older than this pgsink; run `pgsink sql install` (or start the sink) first");
    }
    Ok(client)
}

/// The dead letters of the sink, oldest first.
async fn list(config: &SinkConfig, limit: i64) -> anyhow::Result<Vec<DeadLetterRow>> {
    let client = connect(config).await?;
    let first = config.db.first_table();
    let rows = client
        .query(
            &format!(
                "SELECT id, topic, partition, \"offset\", failed_at::text, reason,
                        coalesce(encode(substring(value FROM 1 FOR 80), 'escape'), '(null)')
                   FROM pgsink.dead_letters
                  WHERE {THE_SINKS}
                  ORDER BY id LIMIT $5"
            ),
            &[
                &config.identity(),
                &first.schema,
                &first.table,
                &config.topics,
                &limit,
            ],
        )
        .await
        .context("cannot read pgsink.dead_letters")?;
    Ok(rows
        .iter()
        .map(|r| DeadLetterRow {
            id: r.get(0),
            topic: r.get(1),
            partition: r.get(2),
            offset: r.get(3),
            failed_at: r.get(4),
            reason: r.get(5),
            value_preview: r.get(6),
        })
        .collect())
}

/// A dead letter read back for a re-drive.
struct StoredLetter {
    id: i64,
    topic: String,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// What a re-drive did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RedriveSummary {
    /// Dead letters read.
    pub read: u64,
    /// Of those, converted and loaded (and removed from the dead letters).
    pub loaded: u64,
    /// Rows they became.
    pub rows: u64,
    /// Still failing (reason updated).
    pub still_failing: u64,
}

/// Converts dead letters again with the sink's current converter and loads
/// the ones that now convert, removing them from the dead letters — all in
/// one transaction. `ids` limits it to those dead letters. With `dry_run`
/// nothing is changed.
async fn redrive(
    config: &SinkConfig,
    ids: Option<Vec<i64>>,
    dry_run: bool,
) -> anyhow::Result<RedriveSummary> {
    if let Some(keyed) = config.db.tables.iter().find(|t| t.write_mode.is_keyed()) {
        anyhow::bail!(
            "dlq redrive appends rows, and {} is written in write mode \"{}\": a re-driven message could replace a newer row of its key; replay the topic from the message's offset instead",
            keyed.table,
            keyed.write_mode
        );
    }
    let mut client = connect(config).await?;
    let mut targets = Vec::with_capacity(config.db.tables.len());
    for table in &config.db.tables {
        targets.push(Target::resolve(&client, table).await?);
    }
    let spec = ConverterSpec::load(&config.converter)?;
    let tables: Vec<_> = targets.iter().map(Target::converter_table).collect();
    let mut converter = spec.instantiate(&tables)?;

    let tx = client.transaction().await?;
    let rows = tx
        .query(
            &format!(
                "SELECT id, topic, partition, \"offset\",
                        (extract(epoch FROM message_timestamp) * 1000)::bigint, key, value
                   FROM pgsink.dead_letters
                  WHERE {THE_SINKS} AND ($5::bigint[] IS NULL OR id = ANY($5))
                  ORDER BY id
                  FOR UPDATE SKIP LOCKED"
            ),
            &[
                &config.identity(),
                &targets[0].schema,
                &targets[0].table,
                &config.topics,
                &ids,
            ],
        )
        .await?;
    let mut summary = RedriveSummary {
        read: rows.len() as u64,
        ..RedriveSummary::default()
    };
    let letters: Vec<StoredLetter> = rows
        .iter()
        .map(|r| StoredLetter {
            id: r.get(0),
            topic: r.get(1),
            partition: r.get(2),
            offset: r.get(3),
            timestamp: r.get(4),
            key: r.get(5),
            value: r.get(6),
        })
        .collect();
    for chunk in letters.chunks(crate::pipeline::BATCH_MESSAGES) {
        let mut batch = BatchBuilder::new();
        for letter in chunk {
            batch.push(
                MessageRef {
                    topic: &letter.topic,
                    partition: letter.partition,
                    offset: letter.offset,
                    timestamp: letter.timestamp,
                    key: letter.key.as_deref(),
                    value: letter.value.as_deref(),
                },
                [],
            );
        }
        let conversion = converter.convert(&batch)?;
        let failed: HashMap<usize, String> = conversion.failed.into_iter().collect();
        let loaded: Vec<i64> = chunk
            .iter()
            .enumerate()
            .filter(|(i, _)| !failed.contains_key(i))
            .map(|(_, letter)| letter.id)
            .collect();
        summary.loaded += loaded.len() as u64;
        summary.rows += conversion.rows;
        summary.still_failing += failed.len() as u64;
        let (texts, _) = split_by_table(
            &conversion.copy_text,
            &conversion.row_messages,
            &conversion.runs,
            targets.len(),
        );
        for (target, text) in targets.iter().zip(texts) {
            if text.is_empty() {
                continue;
            }
            let sink = tx.copy_in::<_, Bytes>(&target.copy_statement()).await?;
            futures_util::pin_mut!(sink);
            sink.send(text).await?;
            sink.as_mut()
                .finish()
                .await
                .context("PostgreSQL still rejects re-driven rows; nothing was changed")?;
        }
        tx.execute(
            "DELETE FROM pgsink.dead_letters WHERE id = ANY($1)",
            &[&loaded],
        )
        .await?;
        for (i, reason) in failed {
            tx.execute(
                "UPDATE pgsink.dead_letters SET reason = $2, failed_at = now(), plugin = $3, plugin_hash = $4 WHERE id = $1",
                &[&chunk[i].id, &reason, &converter.label(), &spec.component.hash()],
            )
            .await?;
        }
    }
    if dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(summary)
}
