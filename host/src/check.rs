//! `pgsink check`: everything `pgsink run` needs, checked without consuming.

use std::fmt;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::bindings::Column;
use crate::config::SinkConfig;
use crate::converter::Runtime;
use crate::kafka::redact_secrets;
use crate::postgres::{self, Target};
use crate::sink::{load_plugin, plugin_limits};

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
pub async fn check(config: &SinkConfig, broker_timeout: Duration) -> Vec<CheckLine> {
    let mut lines = vec![pass(
        "config",
        format!(
            "{} topic(s) into {}.{}, delivery {}",
            config.topics.len(),
            config.db.schema,
            config.db.table,
            config.delivery
        ),
    )];
    let db = &config.db;
    let mut columns: Vec<Column> = db
        .columns
        .iter()
        .map(|name| Column {
            name: name.clone(),
            type_name: None,
        })
        .collect();
    match postgres::connect(db).await {
        Err(error) => lines.push(fail(
            "database",
            format!("cannot connect to {}: {error}", postgres::describe(db)),
            "check db.host, db.database, db.username and the password (PGSINK_DB_PASSWORD), and that PostgreSQL accepts connections from here (pg_hba.conf)",
        )),
        Ok(client) => {
            lines.push(pass("database", format!("connected to {} as {}", postgres::describe(db), db.username)));
            match postgres::installed(&client).await {
                Ok(true) => lines.push(pass("schema", "the pgsink schema is installed")),
                Ok(false) => lines.push(pass("schema", "the pgsink schema is missing or older than this pgsink; pgsink run installs or upgrades it (or run pgsink sql install)")),
                Err(error) => lines.push(fail("schema", error.to_string(), "grant the sink's user USAGE on schema pgsink")),
            }
            match Target::resolve(&client, &db.schema, &db.table, &db.columns).await {
                Ok(target) => {
                    let privilege = client
                        .query_one(
                            "SELECT has_table_privilege($1, 'INSERT')",
                            &[&target.qualified()],
                        )
                        .await
                        .map(|row| row.get::<_, bool>(0));
                    let described: Vec<String> = target
                        .columns
                        .iter()
                        .zip(&target.column_types)
                        .map(|(c, t)| format!("{c} {t}"))
                        .collect();
                    match privilege {
                        Ok(true) => lines.push(pass("table", format!("{} ({})", target.qualified(), described.join(", ")))),
                        Ok(false) => lines.push(fail(
                            "table",
                            format!("{} exists but {} may not INSERT into it", target.qualified(), db.username),
                            format!("GRANT INSERT ON {} TO {}", target.qualified(), postgres::quote_ident(&db.username)),
                        )),
                        Err(error) => lines.push(fail("table", error.to_string(), "check the table's privileges")),
                    }
                    for (column, type_name) in columns.iter_mut().zip(&target.column_types) {
                        column.type_name = Some(type_name.clone());
                    }
                }
                Err(error) => lines.push(fail(
                    "table",
                    error.to_string(),
                    "create the table, or fix db.schema, db.table and db.columns (names are case-sensitive)",
                )),
            }
        }
    }
    lines.push(check_plugin(config, &columns));
    lines.extend(check_broker(config, broker_timeout));
    lines
}

fn check_plugin(config: &SinkConfig, columns: &[Column]) -> CheckLine {
    let limits = plugin_limits(&config.plugin);
    let loaded = Runtime::new(limits.timeout.is_some())
        .map_err(anyhow::Error::from)
        .and_then(|runtime| load_plugin(&runtime, config.plugin.path.as_deref()))
        .and_then(|plugin| {
            let hash = plugin.hash().to_string();
            let instance = plugin.instantiate(&config.plugin.settings, columns, limits)?;
            Ok((instance.info().clone(), hash))
        });
    match loaded {
        Ok((info, hash)) => pass(
            "converter",
            format!(
                "{} {} accepts its settings (sha256 {})",
                info.name,
                info.version,
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
