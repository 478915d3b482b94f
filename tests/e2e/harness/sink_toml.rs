//! The TOML configuration of a `pgsink run` of the standard messages, with the settings the
//! tests vary as builder methods.

use std::fmt::Write as _;

use super::{
    pg_host_port, pg_user, sink_kafka, toml_list, toml_str, Broker, Table, STD_PATHS, TEST_DB,
};

/// Builds a TOML configuration for `pgsink run`.
#[derive(Clone, Debug)]
pub struct SinkToml {
    pub topics: Vec<String>,
    pub table: Table,
    pub parse: String,
    pub delivery: Option<String>,
    pub buffer_size: Option<usize>,
    pub flush_ms: Option<u64>,
    pub db_host: String,
    pub database: String,
    pub password: Option<String>,
    /// Extra top-level lines, written as they are.
    pub extra: Vec<String>,
    /// `kafka.*` properties (bootstrap.servers and group.id included).
    pub kafka: Vec<(String, String)>,
}

impl SinkToml {
    /// A sink of the standard messages ([`STD_PATHS`]) into `table`.
    pub fn new(table: &Table, topics: &[&str], broker: &Broker, group: &str) -> SinkToml {
        SinkToml {
            topics: topics.iter().map(|s| s.to_string()).collect(),
            table: table.clone(),
            parse: STD_PATHS.to_string(),
            delivery: None,
            buffer_size: None,
            flush_ms: None,
            db_host: pg_host_port(),
            database: TEST_DB.to_string(),
            password: None,
            extra: Vec::new(),
            kafka: sink_kafka(broker, group),
        }
    }

    pub fn delivery(mut self, mode: &str) -> Self {
        self.delivery = Some(mode.to_string());
        self
    }

    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = Some(bytes);
        self
    }

    pub fn flush_ms(mut self, ms: u64) -> Self {
        self.flush_ms = Some(ms);
        self
    }

    pub fn line(mut self, line: &str) -> Self {
        self.extra.push(line.to_string());
        self
    }

    pub fn kafka(mut self, key: &str, value: &str) -> Self {
        self.kafka.retain(|(k, _)| k != key);
        self.kafka.push((key.to_string(), value.to_string()));
        self
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        if !self.topics.is_empty() {
            let _ = writeln!(s, "topics = {}", toml_list(&self.topics));
        }
        for line in &self.extra {
            let _ = writeln!(s, "{line}");
        }
        let _ = writeln!(s, "db.host = {}", toml_str(&self.db_host));
        let _ = writeln!(s, "db.database = {}", toml_str(&self.database));
        let _ = writeln!(s, "db.username = {}", toml_str(&pg_user()));
        if let Some(pw) = &self.password {
            let _ = writeln!(s, "db.password = {}", toml_str(pw));
        }
        let _ = writeln!(s, "db.schema = {}", toml_str(&self.table.schema));
        let _ = writeln!(s, "db.table = {}", toml_str(&self.table.name));
        let _ = writeln!(s, "db.columns = {}", toml_list(&self.table.columns));
        let _ = writeln!(s, "db.json.parse = {}", toml_str(&self.parse));
        if let Some(d) = &self.delivery {
            let _ = writeln!(s, "db.delivery = {}", toml_str(d));
        }
        if let Some(b) = self.buffer_size {
            let _ = writeln!(s, "db.buffer.size = {b}");
        }
        if let Some(f) = self.flush_ms {
            let _ = writeln!(s, "flush.interval.ms = {f}");
        }
        let _ = writeln!(s, "\n[kafka]");
        for (k, v) in &self.kafka {
            let _ = writeln!(s, "{} = {}", toml_str(k), toml_str(v));
        }
        s
    }
}
