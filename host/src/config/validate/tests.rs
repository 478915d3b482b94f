//! One sink's values: defaults, each concern's rules and their messages.

use std::time::Duration;

use super::super::test_support::{assert_contains, err, err_text, ok, BASE};
use super::super::{parse_toml, Delivery, ErrorTolerance, SslMode, WriteMode};

#[test]
fn defaults() {
    let c = ok("");
    assert_eq!(c.name, None);
    assert_eq!(c.topics, ["orders"]);
    assert_eq!(c.tasks, 1);
    assert_eq!((c.db.host.as_str(), c.db.port), ("localhost", 5432));
    assert_eq!(c.db.tables[0].schema, "public");
    assert_eq!(c.db.password, None);
    assert_eq!(c.delivery, Delivery::Synchronized);
    assert_eq!(c.buffer_size, 8_000_000);
    assert_eq!(c.flush_interval, Duration::from_millis(1000));
    assert_eq!(c.errors_tolerance, ErrorTolerance::All);
    assert_eq!(c.max_dead_letters_per_minute, None);
    assert_eq!(c.db.sslmode, SslMode::Prefer);
    assert_eq!(c.db.sslrootcert, None);
    assert_eq!(c.converter.timeout, Some(Duration::from_secs(10)));
    assert_eq!(c.converter.memory_limit, 512 * 1024 * 1024);
    assert_eq!(c.converter.path, None);
    assert_eq!(
        c.converter.settings,
        [("db.json.parse".to_owned(), "/@id,/@total".to_owned())]
    );
    let kafka: Vec<_> = c
        .kafka
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        kafka,
        [
            ("auto.offset.reset", "earliest"),
            ("bootstrap.servers", "localhost:9092"),
            ("group.id", "pgsink-public.orders"),
        ]
    );
}

#[test]
fn group_id_derivations() {
    assert_eq!(
        ok(r#"name = "orders-sink""#).kafka["group.id"],
        "connect-orders-sink"
    );
    assert_eq!(
        ok(r#"db.schema = "sales""#).kafka["group.id"],
        "pgsink-sales.orders"
    );
    let c = ok("name = \"n\"\nkafka.group.id = \"mine\"");
    assert_eq!(c.kafka["group.id"], "mine");
}

#[test]
fn forbidden_kafka_keys() {
    assert_eq!(
        err("kafka.enable.auto.commit = true"),
        "kafka.enable.auto.commit cannot be set: pgsink commits offsets itself, \
         after each flush, as db.delivery requires"
    );
    assert_contains(
        &err("[kafka]\n\"enable.auto.offset.store\" = false"),
        "kafka.enable.auto.offset.store cannot be set: pgsink stores offsets itself",
    );
    assert_contains(
        &err("kafka.auto.commit.enable = \"false\""),
        "kafka.auto.commit.enable cannot be set",
    );
}

#[test]
fn hosts() {
    let host = |h: &str| {
        let c = ok(&format!("db.host = {h:?}"));
        (c.db.host, c.db.port)
    };
    assert_eq!(host("pg"), ("pg".into(), 5432));
    assert_eq!(host("pg.example.com:5433"), ("pg.example.com".into(), 5433));
    assert_eq!(host("10.1.2.3:6000"), ("10.1.2.3".into(), 6000));
    assert_eq!(host("[::1]:5433"), ("::1".into(), 5433));
    assert_eq!(host("[2001:db8::7]"), ("2001:db8::7".into(), 5432));
    assert_eq!(host("2001:db8::7"), ("2001:db8::7".into(), 5432));
    assert_eq!(host(" pg "), ("pg".into(), 5432));
    assert_eq!(ok("db.host = \"[::1]:6000\"").db.host_port(), "[::1]:6000");
}

#[test]
fn bad_hosts() {
    for (host, expected) in [
        (
            "pg:abc",
            "db.host: `abc` in `pg:abc` is not a port number (1-65535)",
        ),
        (
            "pg:70000",
            "db.host: `70000` in `pg:70000` is not a port number",
        ),
        ("pg:0", "db.host: `0` in `pg:0` is not a port number"),
        ("pg:", "db.host: `` in `pg:` is not a port number"),
        (":5432", "db.host: `:5432` has no host name before `:`"),
        ("", "db.host: must not be empty"),
        ("p g", "db.host: `p g` contains whitespace"),
        ("[::1", "lacks the `]`"),
        ("[::1]5432", "expected `:port` after `]`"),
        ("[db]:5432", "`db` in `[db]:5432` is not an IPv6 address"),
        ("[::1]:x", "`x` in `[::1]:x` is not a port number"),
        ("fe80::1:5432x", "write an IPv6 address in brackets"),
    ] {
        assert_contains(&err(&format!("db.host = {host:?}")), expected);
    }
    assert_contains(
        &err("db.port = 5433"),
        "db.port: not a key: write the port in db.host, e.g. db.host = \"localhost:5433\"",
    );
}

#[test]
fn db_port_hint_uses_the_host_without_its_port() {
    assert_eq!(
        err("db.host = \"[::1]:6000\"\ndb.port = \"5433\""),
        "db.port: not a key: write the port in db.host, e.g. db.host = \"[::1]:5433\""
    );
    assert_eq!(
        err("db.host = \"pg\"\ndb.port = 5433"),
        "db.port: not a key: write the port in db.host, e.g. db.host = \"pg:5433\""
    );
}

#[test]
fn delivery_values() {
    assert_eq!(ok("db.delivery = \"Fastest\"").delivery, Delivery::Fastest);
    assert_eq!(
        ok("db.delivery = \"SYNCHRONIZED\"").delivery,
        Delivery::Synchronized
    );
    assert_eq!(
        err("db.delivery = \"exactly-once\""),
        "db.delivery: unknown value `exactly-once`; expected `fastest`, `guaranteed` or `synchronized`"
    );
    assert_eq!(
        err("errors.tolerance = \"some\""),
        "errors.tolerance: unknown value `some`; expected `none` or `all`"
    );
}

#[test]
fn numbers() {
    assert_eq!(ok("db.buffer.size = \" 1024 \"").buffer_size, 1024);
    assert_eq!(ok("tasks = 4").tasks, 4);
    assert_eq!(
        err("db.buffer.size = \"abc\""),
        "db.buffer.size: expected a whole number of bytes, got `abc`"
    );
    assert_eq!(
        err("db.buffer.size = 1000"),
        "db.buffer.size: 1000 bytes is too small; use at least 1024 (the default is 8000000)"
    );
    assert_contains(&err("db.buffer.size = 0"), "0 bytes is too small");
    assert_eq!(
        err("db.buffer.size = -5"),
        "db.buffer.size: expected a whole number of bytes, got `-5`"
    );
    assert_contains(
        &err("db.buffer.size = 1.5"),
        "invalid type: floating point `1.5`, expected a whole number, or a string holding one",
    );
    assert_eq!(err("tasks = 0"), "tasks: must be at least 1, got 0");
    assert_eq!(
        err("tasks = \"two\""),
        "tasks: expected a whole number of tasks, got `two`"
    );
    assert_eq!(
        err("flush.interval.ms = 0"),
        "flush.interval.ms: must be greater than 0"
    );
    assert_eq!(
        err("flush.interval.ms = \"1s\""),
        "flush.interval.ms: expected a whole number of milliseconds, got `1s`"
    );
}

#[test]
fn lists() {
    let c = ok("db.columns = [\" Id \", \"Total Amount\"]\ndb.json.parse = \"/@id,/@t\"");
    assert_eq!(c.db.tables[0].columns, ["Id", "Total Amount"]);
    let c = ok("db.columns = \"A , b c\"\ndb.json.parse = \"/@id,/@t\"");
    assert_eq!(c.db.tables[0].columns, ["A", "b c"]);
    assert_eq!(ok("topics = \" a ,b\"").topics, ["a", "b"]);

    assert_eq!(
        err("topics = \"a,,b\""),
        "topics: empty topic name in `a,,b`"
    );
    assert_eq!(
        err("topics = \"a,b,a\""),
        "topics: topic `a` is listed twice"
    );
    assert_eq!(err("topics = []"), "topics: must list at least one topic");
    assert_eq!(
        err("topics = \" \""),
        "topics: must list at least one topic"
    );
    // A `^` makes a pattern (librdkafka's convention), checked as a regular expression.
    let patterns = ok("topics = \"^orders-.*,payments\"");
    assert_eq!(patterns.topics, ["^orders-.*", "payments"]);
    for (topic, consumed) in [("orders-eu", true), ("payments", true), ("orders", false)] {
        assert_eq!(patterns.consumes(topic), consumed, "{topic}");
    }
    assert_eq!(
        err("topics = \"^orders-(eu\""),
        "topics: `^orders-(eu` is not a valid topic pattern: error: unclosed group"
    );
    // Only what POSIX (librdkafka) and the `regex` crate (pgsink check) read the same way.
    assert_eq!(
        ok("topics = \"^orders\\\\.eu-[0-9]+$\"").topics,
        ["^orders\\.eu-[0-9]+$"]
    );
    for refused in ["^orders-\\\\d+", "^orders[\\\\.]x", "^(?i)orders"] {
        assert_contains(
            &err(&format!("topics = \"{refused}\"")),
            "is not a valid topic pattern",
        );
    }
    assert_contains(
        &err("topics = \"orders.*\""),
        "`orders.*` is not a valid Kafka topic name (letters, digits, `.`, `_` and `-`; at \
         most 249 characters; a pattern starts with `^`)",
    );
    assert_contains(
        &err("topics = [1]"),
        "invalid type: integer `1`, expected a string",
    );
    assert_contains(
        &err("topics = 1"),
        "expected a comma-separated string or an array of strings",
    );
    assert_eq!(
        err("db.columns = \"a,a\"\ndb.json.parse = \"/@a,/@b\""),
        "db.columns: column `a` is listed twice"
    );
    // Names are exact: case differs, so these are two columns.
    assert_eq!(ok("db.columns = \"a,A\"").db.tables[0].columns, ["a", "A"]);
    assert_eq!(
        err("db.columns = \"a,\""),
        "db.columns: empty column name in `a,`"
    );
}

#[test]
fn parse_path_count_must_match_columns() {
    assert_eq!(
        err("db.json.parse = \"/@a,/@b,/@c\"\ndb.columns = \"a,b,c,d\""),
        "db.json.parse has 3 parse paths but db.columns lists 4 columns"
    );
    assert_eq!(
        err("db.json.parse = \"/@a\""),
        "db.json.parse has 1 parse path but db.columns lists 2 columns"
    );
    assert_eq!(
        err("db.json.parse = \" \""),
        "db.json.parse: must not be empty"
    );
}

#[test]
fn missing_keys() {
    assert_eq!(
        err_text(""),
        "missing required keys `topics`, `db.database`, `db.username`, `db.table`, \
         `db.columns`, `db.json.parse` (one parse path per column, or set plugin.path)"
    );
    let without_parse = BASE.replace("db.json.parse = \"/@id,/@total\"\n", "");
    assert_contains(
        &err_text(&without_parse),
        "missing required key `db.json.parse`",
    );
    let with_plugin = format!("{without_parse}plugin.path = \"c.wasm\"");
    let c = parse_toml(&with_plugin).unwrap();
    assert_eq!(c.converter.settings, []);
    let without_table = BASE.replace("db.table = \"orders\"\n", "");
    assert_eq!(err_text(&without_table), "missing required key `db.table`");
}

#[test]
fn empty_values() {
    let text = BASE.replace("\"shop\"", "\"\"");
    assert_eq!(err_text(&text), "db.database: must not be empty");
    assert_eq!(err("name = \"\""), "name: must not be empty");
    assert_eq!(err("plugin.path = \"\""), "plugin.path: must not be empty");
    assert_eq!(ok("db.password = \"\"").db.password, None);
}

#[test]
fn plugin_limits() {
    let c = ok("plugin.timeout.ms = 0\nplugin.memory.mb = 16");
    assert_eq!(c.converter.timeout, None);
    assert_eq!(c.converter.memory_limit, 16 * 1024 * 1024);
    assert!(!c.converter.wall_clock, "no wall clock by default");
    assert!(ok("plugin.clock = true").converter.wall_clock);
    assert!(err("plugin.clock = \"yes\"").contains("plugin"));
    let c = ok("[plugin.timeout]\nms = \"2500\"\n[plugin.memory]\nmb = \" 1024 \"");
    assert_eq!(c.converter.timeout, Some(Duration::from_millis(2500)));
    assert_eq!(c.converter.memory_limit, 1 << 30);
    assert_eq!(
        err("plugin.memory.mb = 15"),
        "plugin.memory.mb: 15 MB is too small; use at least 16 (the default is 512)"
    );
    assert_eq!(
        err("plugin.memory.mb = \"1GB\""),
        "plugin.memory.mb: expected a whole number of megabytes, got `1GB`"
    );
    assert_eq!(
        err("plugin.memory.mb = 9223372036854775807"),
        "plugin.memory.mb: 9223372036854775807 MB is too large"
    );
    assert_eq!(
        err("plugin.timeout.ms = -1"),
        "plugin.timeout.ms: expected a whole number of milliseconds, got `-1`"
    );
    assert_contains(
        &err("plugin.timeout.s = 1"),
        "unknown field `s`, expected `ms`",
    );
    assert_contains(&err("plugin.memory = 512"), "invalid type: integer `512`");
}

#[test]
fn tls_settings() {
    assert_eq!(ok("db.sslmode = \"disable\"").db.sslmode, SslMode::Disable);
    assert_eq!(ok("db.sslmode = \"Require\"").db.sslmode, SslMode::Require);
    let c = ok("db.sslmode = \"VERIFY-FULL\"\ndb.sslrootcert = \"certs/ca.pem\"");
    assert_eq!(c.db.sslmode, SslMode::VerifyFull);
    assert_eq!(
        c.db.sslrootcert.as_deref(),
        Some(std::path::Path::new("certs/ca.pem"))
    );
    let c = ok("db.sslmode = \"verify-full\"");
    assert_eq!(
        (c.db.sslmode, c.db.sslrootcert),
        (SslMode::VerifyFull, None)
    );

    assert_eq!(
        err("db.sslmode = \"on\""),
        "db.sslmode: unknown value `on`; expected `disable`, `prefer`, `require` or `verify-full`"
    );
    assert_contains(
        &err("db.sslmode = \"verify-ca\""),
        "(verify-full checks the certificate and the host name)",
    );
    assert_contains(
        &err("db.sslmode = \"allow\""),
        "(prefer also falls back to plain TCP)",
    );
    assert_eq!(
        err("db.sslrootcert = \"ca.pem\""),
        "db.sslrootcert: is used only with db.sslmode = \"verify-full\"; with \"prefer\" the \
         server's certificate is not checked"
    );
    assert_contains(
        &err("db.sslmode = \"require\"\ndb.sslrootcert = \"ca.pem\""),
        "with \"require\" the server's certificate is not checked",
    );
    assert_eq!(
        err("db.sslmode = \"verify-full\"\ndb.sslrootcert = \" \""),
        "db.sslrootcert: must not be empty"
    );
}

#[test]
fn dead_letter_limit() {
    assert_eq!(
        ok("errors.deadletter.max.per.minute = 100").max_dead_letters_per_minute,
        Some(100)
    );
    assert_eq!(
        ok("[errors.deadletter.max.per]\nminute = \"5\"").max_dead_letters_per_minute,
        Some(5)
    );
    assert_eq!(
        err("errors.deadletter.max.per.minute = 0"),
        "errors.deadletter.max.per.minute: must be at least 1, got 0"
    );
    assert_eq!(
        err("errors.deadletter.max.per.minute = \"many\""),
        "errors.deadletter.max.per.minute: expected a whole number of messages, got `many`"
    );
    assert_contains(
        &err("errors.deadletter.max.per.hour = 1"),
        "unknown field `hour`, expected `minute`",
    );
}

#[test]
fn write_mode_and_key_columns() {
    let c = ok("");
    assert_eq!(
        (c.db.tables[0].write_mode, &c.db.tables[0].key_columns),
        (WriteMode::Append, &None)
    );
    assert_eq!(c.converter.write_modes, [WriteMode::Append]);
    let c = ok("db.write.mode = \" Upsert \"\ndb.key.columns = \"total, id\"");
    assert_eq!(c.db.tables[0].write_mode, WriteMode::Upsert);
    assert_eq!(
        c.converter.write_modes,
        [WriteMode::Upsert],
        "the converter's rows follow it"
    );
    assert_eq!(
        c.db.tables[0].key_columns.as_deref(),
        Some(&["total".to_string(), "id".to_string()][..])
    );
    assert_eq!(
        ok("db.write.mode = \"ignore\"").db.tables[0].write_mode,
        WriteMode::Ignore
    );
    assert_contains(
        &err("db.write.mode = \"insert\""),
        "db.write.mode: unknown value `insert`; expected `append`, `upsert` or `ignore` (append is COPY",
    );
    assert_contains(
        &err("db.key.columns = \"id\""),
        "db.key.columns: is used only with db.write.mode = \"upsert\" or \"ignore\"",
    );
    assert_contains(
        &err("db.write.mode = \"upsert\"\ndb.key.columns = \"id,code\""),
        "db.key.columns: `code` is not one of db.columns",
    );
    assert_contains(
        &err("db.write.mode = \"upsert\"\ndb.key.columns = \"id,id\""),
        "db.key.columns",
    );
}
