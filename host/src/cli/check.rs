//! `pgsink check`: everything `pgsink run` needs, checked without consuming.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::config::{
    self, is_topic_pattern, DbConfig, Delivery, MetricsAddress, SinkConfig, TableConfig, WriteMode,
};
use crate::converter::{ConverterSpec, Table};
use crate::kafka::redact_secrets;
use crate::postgres::{self, Target};

#[derive(clap::Args)]
pub struct Args {
    /// The configuration.
    #[arg(short, long)]
    config: PathBuf,
    /// How long to wait for the Kafka broker, in seconds.
    #[arg(long, default_value_t = 10)]
    broker_timeout: u64,
}

pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    let process = match config::load_process(&args.config) {
        Ok(process) => process,
        Err(error) => {
            println!("FAIL config     {error}");
            return Ok(ExitCode::from(1));
        }
    };
    let timeout = Duration::from_secs(args.broker_timeout);
    let mut ok = true;
    for (index, sink) in process.sinks.iter().enumerate() {
        if process.sinks.len() > 1 {
            let name = sink.name.as_deref().map(|n| format!(" ({n})"));
            println!("sink {}{}:", index + 1, name.unwrap_or_default());
        }
        for line in super::tokio_runtime()?.block_on(check(sink, timeout)) {
            ok &= line.ok;
            println!("{line}");
        }
    }
    if let Some(address) = &process.metrics_address {
        let line = check_metrics(address);
        ok &= line.ok;
        println!("{line}");
    }
    Ok(super::status(ok))
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    /// What was checked.
    pub what: &'static str,
    /// Passed?
    pub ok: bool,
    /// What was found, or what is wrong.
    pub detail: String,
    /// How to fix a failure.
    pub fix: Option<String>,
}

impl fmt::Display for CheckLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "{status} {:<10} {}", self.what, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n     {:<10} fix: {fix}", "")?;
        }
        Ok(())
    }
}

fn pass(what: &'static str, detail: impl Into<String>) -> CheckLine {
    CheckLine {
        what,
        ok: true,
        detail: detail.into(),
        fix: None,
    }
}

fn fail(what: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> CheckLine {
    CheckLine {
        what,
        ok: false,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Runs every check of one sink; the configuration itself already loaded.
async fn check(config: &SinkConfig, broker_timeout: Duration) -> Vec<CheckLine> {
    let db = &config.db;
    let names: Vec<String> = db
        .tables
        .iter()
        .map(|t| format!("{}.{}", t.schema, t.table))
        .collect();
    let mut lines = vec![pass(
        "config",
        format!(
            "{} topic(s) into {}, delivery {}",
            config.topics.len(),
            names.join(", "),
            config.delivery
        ),
    )];
    let mut tables: Vec<Table> = db
        .tables
        .iter()
        .map(|t| Table::untyped(&t.schema, &t.table, &t.columns))
        .collect();
    match postgres::connect(db).await {
        Err(error) => lines.push(fail(
            "database",
            format!("cannot connect to {}: {error}", postgres::describe(db)),
            "check db.host, db.database, db.username, the password (PGSINK_DB_PASSWORD) and pg_hba.conf",
        )),
        Ok(client) => {
            lines.push(pass("database", format!("connected to {} as {}", postgres::describe(db), db.username)));
            match postgres::installed(&client).await {
                Ok(true) => {
                    lines.push(pass("schema", "the pgsink schema is installed"));
                    if config.delivery == Delivery::Synchronized {
                        lines.push(check_positions(config, &client).await);
                    }
                }
                Ok(false) => lines.push(pass("schema", "the pgsink schema is missing or older than this pgsink; pgsink run installs or upgrades it (or run pgsink sql install)")),
                Err(error) => lines.push(fail("schema", error.to_string(), "grant the sink's user USAGE on schema pgsink")),
            }
            for (table, known) in db.tables.iter().zip(&mut tables) {
                let (line, resolved) = check_table(&client, db, table).await;
                lines.push(line);
                if let Some(resolved) = resolved {
                    *known = resolved;
                }
            }
        }
    }
    lines.push(check_converter(config, &tables));
    lines.extend(check_broker(config, broker_timeout));
    lines
}

/// One table of the sink: it exists with the configured columns, has the key its write mode
/// needs, and the sink's user may write it so. With the table as the converter is told.
async fn check_table(
    client: &tokio_postgres::Client,
    db: &DbConfig,
    table: &TableConfig,
) -> (CheckLine, Option<Table>) {
    let target = match Target::resolve(client, table).await {
        Ok(target) => target,
        Err(error) => {
            let line = fail(
                "table",
                error.to_string(),
                "create the table, or fix its schema, name and columns (names are case-sensitive)",
            );
            return (line, None);
        }
    };
    let mode = table.write_mode;
    // Column privileges count (a table grant gives them all): SELECT to match keys, UPDATE
    // only where upsert changes a column, DELETE for deletes.
    let updated: Vec<&str> = match mode {
        WriteMode::Upsert => (0..target.columns.len())
            .filter(|i| !target.key.contains(&(*i as u32)))
            .map(|i| target.columns[i].as_str())
            .collect(),
        _ => Vec::new(),
    };
    let needed = match (mode, updated.is_empty()) {
        (WriteMode::Append, _) => "INSERT",
        (WriteMode::Upsert, false) => "SELECT, INSERT, UPDATE, DELETE",
        _ => "SELECT, INSERT, DELETE",
    };
    let keyed = mode.is_keyed();
    let privilege = client
        .query_one(
            "SELECT coalesce(bool_and(has_column_privilege($1, c, 'INSERT')
                                      AND (NOT $4 OR has_column_privilege($1, c, 'SELECT'))), true)
                AND coalesce((SELECT bool_and(has_column_privilege($1, u, 'UPDATE'))
                                FROM unnest($3::text[]) u), true)
                AND (NOT $4 OR has_table_privilege($1, 'DELETE'))
                AND (NOT $4 OR has_database_privilege(current_database(), 'TEMPORARY'))
               FROM unnest($2::text[]) c",
            &[&target.qualified(), &target.columns, &updated, &keyed],
        )
        .await
        .map(|row| row.get::<_, bool>(0));
    let described: Vec<String> = target
        .columns
        .iter()
        .zip(&target.column_types)
        .map(|(c, t)| format!("{c} {t}"))
        .collect();
    let key: Vec<&str> = target
        .key
        .iter()
        .map(|&k| target.columns[k as usize].as_str())
        .collect();
    let key = match (key.is_empty(), &target.key_index) {
        (true, _) => "no primary key among these columns".to_string(),
        (false, None) => format!("key {}", key.join(", ")),
        (false, Some(index)) => format!("key {} (unique index {index})", key.join(", ")),
    };
    let topics = match &table.topics[..] {
        [] => String::new(),
        topics => format!("; topics {}", topics.join(", ")),
    };
    let name = target.qualified();
    let user = postgres::quote_ident(&db.username);
    let line = match privilege {
        Ok(true) => pass(
            "table",
            format!(
                "{name} ({}; {key}; write mode {mode}{topics})",
                described.join(", ")
            ),
        ),
        Ok(false) => {
            let temporary = if keyed {
                let database = postgres::quote_ident(&db.database);
                format!("; GRANT TEMPORARY ON DATABASE {database} TO {user}")
            } else {
                String::new()
            };
            let or_temporary = if keyed {
                " or create temporary tables"
            } else {
                ""
            };
            fail(
                "table",
                format!(
                    "{name} exists but {} may not {needed} on it{or_temporary}",
                    db.username
                ),
                format!("GRANT {needed} ON {name} TO {user}{temporary}"),
            )
        }
        Err(error) => fail("table", error.to_string(), "check the table's privileges"),
    };
    (line, Some(target.converter_table()))
}

/// The sink's stored positions: how many, and none that another sink owns in its table or
/// that it stored for another table (the first flush would stop the sink).
async fn check_positions(config: &SinkConfig, client: &tokio_postgres::Client) -> CheckLine {
    let sink = config.identity();
    let db = &config.db;
    let mut found = Ok(Vec::new());
    for table in &db.tables {
        let speaks_for =
            |topic: &str| config.consumes(topic) && std::ptr::eq(db.position_table(topic), table);
        let fills = |topic: &str| config.consumes(topic) && table.takes(topic);
        found = postgres::offsets::conflicts(client, &sink, table, speaks_for, fills).await;
        if found.as_ref().map_or(true, |c| !c.is_empty()) {
            break;
        }
    }
    let stored = postgres::offsets::stored(client, &sink).await;
    match (found, stored) {
        (Ok(conflicts), _) if !conflicts.is_empty() => fail(
            "offsets",
            conflicts[0].to_string(),
            "hand the positions over, or give the sink another name, as said",
        ),
        (Ok(_), Ok(stored)) => {
            let mine = stored
                .keys()
                .filter(|(topic, _)| config.consumes(topic))
                .count();
            pass(
                "offsets",
                format!("sink {sink}: {mine} stored position(s) of its topics"),
            )
        }
        (Err(error), _) | (_, Err(error)) => fail(
            "offsets",
            error.to_string(),
            "grant the sink's user SELECT on pgsink.offsets",
        ),
    }
}

/// `metrics.address` resolves (validation checks only its syntax; names resolve at start).
fn check_metrics(address: &MetricsAddress) -> CheckLine {
    match address.resolve() {
        Ok(resolved) => pass("metrics", format!("{address} listens on {resolved}")),
        Err(error) => fail(
            "metrics",
            error.to_string(),
            "write an IP address, or a host name this machine resolves, in metrics.address",
        ),
    }
}

fn check_converter(config: &SinkConfig, tables: &[Table]) -> CheckLine {
    let loaded = ConverterSpec::load(&config.converter).and_then(|spec| {
        let converter = spec.instantiate(tables)?;
        Ok((
            converter.label(),
            spec.component.hash().to_string(),
            spec.component.wit_version(),
        ))
    });
    match loaded {
        Ok((label, hash, wit)) => pass(
            "converter",
            format!(
                "{label} (pgsink:converter@{wit}) accepts its settings (sha256 {})",
                &hash[..12]
            ),
        ),
        Err(error) => fail(
            "converter",
            format!("{error:#}"),
            "fix plugin.path / plugin.settings / db.json.parse; try it with pgsink convert",
        ),
    }
}

/// A client context that keeps librdkafka's retries out of the check's output:
/// the check reports the outcome itself.
struct Quiet;

impl rdkafka::ClientContext for Quiet {
    fn log(&self, _: rdkafka::config::RDKafkaLogLevel, _: &str, _: &str) {}
    fn error(&self, _: rdkafka::error::KafkaError, _: &str) {}
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

fn check_broker(config: &SinkConfig, timeout: Duration) -> Vec<CheckLine> {
    let servers = config
        .kafka
        .get("bootstrap.servers")
        .cloned()
        .unwrap_or_default();
    let mut client = ClientConfig::new();
    for (key, value) in &config.kafka {
        client.set(key, value);
    }
    let consumer: BaseConsumer<Quiet> = match client.create_with_context(Quiet) {
        Ok(consumer) => consumer,
        Err(error) => {
            return vec![fail(
                "kafka",
                format!(
                    "invalid Kafka settings: {}",
                    redact_secrets(&error.to_string(), &config.kafka)
                ),
                "fix the kafka.* keys (they are librdkafka properties)",
            )]
        }
    };
    let metadata = match consumer.fetch_metadata(None, timeout) {
        Ok(metadata) => metadata,
        Err(error) => {
            return vec![fail(
                "kafka",
                format!("no answer from {servers} within {timeout:?}: {error}"),
                "check kafka.bootstrap.servers and the network, TLS and SASL settings (kafka.security.protocol, …)",
            )]
        }
    };
    let mut lines = vec![pass(
        "kafka",
        format!("{servers}: {} broker(s)", metadata.brokers().len()),
    )];
    for topic in &config.topics {
        if is_topic_pattern(topic) {
            lines.push(pattern_line(topic, &metadata, &servers));
            continue;
        }
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        lines.push(match found {
            Some(t) if t.error().is_none() => pass(
                "topic",
                format!("{topic}: {} partition(s)", t.partitions().len()),
            ),
            _ => fail(
                "topic",
                format!("{topic} does not exist on {servers}"),
                "create the topic or fix `topics` (names are case-sensitive)",
            ),
        });
    }
    lines
}

/// What a topic pattern matches now. Matching nothing is no failure: topics created later are
/// picked up at the next metadata refresh.
fn pattern_line(pattern: &str, metadata: &rdkafka::metadata::Metadata, servers: &str) -> CheckLine {
    let Ok(regex) = regex::Regex::new(pattern) else {
        return fail(
            "topic",
            format!("{pattern} is not a valid pattern"),
            "fix `topics`",
        );
    };
    let mut matched: Vec<String> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && regex.is_match(t.name()))
        .map(|t| format!("{} ({} partition(s))", t.name(), t.partitions().len()))
        .collect();
    matched.sort();
    let detail = if matched.is_empty() {
        format!("{pattern}: matches no topic on {servers} yet; topics created later are consumed within kafka.topic.metadata.refresh.interval.ms")
    } else {
        format!("{pattern}: matches {}", matched.join(", "))
    };
    pass("topic", detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_address_is_resolved_by_check() {
        let line = check_metrics(&"127.0.0.1:9187".parse().unwrap());
        assert!(line.ok, "{line}");
        let line = check_metrics(&"no-such-host.invalid:9187".parse().unwrap());
        assert!(!line.ok, "{line}");
        assert!(
            line.detail
                .contains("metrics.address: cannot resolve `no-such-host.invalid`"),
            "{line}"
        );
    }
}
