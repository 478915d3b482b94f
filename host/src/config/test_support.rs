//! Configurations and helpers shared by the configuration tests.

use super::{parse_process_toml, parse_toml, ProcessConfig, SinkConfig};

/// The smallest valid single-sink configuration.
pub(crate) const MINIMAL: &str = r#"
    topics = "t"
    db.database = "d"
    db.username = "u"
    db.table = "tab"
    db.columns = "a,b"
    db.json.parse = "/@a,/@b"
"#;

pub(crate) fn minimal_with(extra: &str) -> SinkConfig {
    parse_toml(&format!("{MINIMAL}\n{extra}")).unwrap()
}

pub(crate) const BASE: &str = r#"
topics = "orders"
db.database = "shop"
db.username = "sink"
db.table = "orders"
db.columns = "id,total"
db.json.parse = "/@id,/@total"
"#;

/// `BASE` with `extra` appended; top-level `key = value` lines of `extra`
/// replace `BASE`'s lines for the same key.
pub(crate) fn compose(extra: &str) -> String {
    let key = |line: &str| line.split_once('=').map(|(k, _)| k.trim().to_owned());
    let replaced: Vec<String> = extra
        .lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter_map(key)
        .collect();
    let base: String = BASE
        .lines()
        .filter(|l| key(l).is_none_or(|k| !replaced.contains(&k)))
        .map(|l| format!("{l}\n"))
        .collect();
    format!("{base}{extra}")
}

pub(crate) fn ok(extra: &str) -> SinkConfig {
    parse_toml(&compose(extra)).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn err(extra: &str) -> String {
    parse_toml(&compose(extra))
        .expect_err("configuration should be rejected")
        .to_string()
}

pub(crate) fn err_text(text: &str) -> String {
    parse_toml(text)
        .expect_err("configuration should be rejected")
        .to_string()
}

/// The converter settings of `config`, as string pairs.
pub(crate) fn settings(config: &SinkConfig) -> Vec<(&str, &str)> {
    let settings = config.converter.settings.iter();
    settings.map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

pub(crate) fn assert_contains(haystack: &str, needle: &str) {
    assert!(haystack.contains(needle), "`{needle}` not in:\n{haystack}");
}

pub(crate) fn process(text: &str) -> ProcessConfig {
    parse_process_toml(text).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn process_err(text: &str) -> String {
    parse_process_toml(text)
        .expect_err("configuration should be rejected")
        .to_string()
}

/// Shared connection settings at the top level, two sinks below.
pub(crate) const TWO_SINKS: &str = r#"
db.host = "pg:5433"
db.database = "shop"
db.username = "sink"
db.password = "pw"
db.sslmode = "require"
kafka.bootstrap.servers = "k1:9092"
kafka.fetch.wait.max.ms = 10
plugin.settings.mode = "strict"
plugin.settings.level = 1
errors.deadletter.max.per.minute = 100
metrics.address = "127.0.0.1:9187"

[[sink]]
name = "orders"
topics = "orders"
db.table = "orders"
db.columns = "id,total"
db.json.parse = "/@id,/@total"

[[sink]]
name = "payments"
topics = ["payments", "refunds"]
tasks = 2
db.table = "payments"
db.columns = ["id"]
db.json.parse = "/@id"
db.delivery = "guaranteed"
db.sslmode = "verify-full"
db.sslrootcert = "ca.pem"
errors.deadletter.max.per.minute = 5
kafka."bootstrap.servers" = "k2:9092"
kafka.group.id = "payments-group"
plugin.settings.mode = "lax"
plugin.settings.extra = true
"#;
