//! Whole files: the metrics endpoint, inheritance, conflicts between sinks,
//! and the documented examples.

use super::super::test_support::{
    assert_contains, compose, err, ok, process, process_err, BASE, TWO_SINKS,
};
use super::super::{parse_toml, Delivery, SinkConfig, SslMode};

#[test]
fn metrics_address() {
    let at = |address: &str| {
        process(&compose(&format!("metrics.address = {address:?}"))).metrics_address
    };
    assert_eq!(process(BASE).metrics_address, None);
    assert_eq!(
        at("127.0.0.1:9187"),
        Some("127.0.0.1:9187".parse().unwrap())
    );
    assert_eq!(at(" 0.0.0.0:9187 "), Some("0.0.0.0:9187".parse().unwrap()));
    assert_eq!(at("[::1]:9187"), Some("[::1]:9187".parse().unwrap()));
    // Syntax only; the name is resolved when the endpoint starts (see values.rs).
    let resolved = at("localhost:9187").unwrap().resolve().unwrap();
    assert!(resolved.ip().is_loopback(), "{resolved}");
    assert_eq!(resolved.port(), 9187);
    // A single-sink file may set it; parse_toml checks it too.
    assert_eq!(
        ok("[metrics]\naddress = \"127.0.0.1:1\"").topics,
        ["orders"]
    );

    for (address, expected) in [
        (
            "9187",
            "metrics.address: `9187` lacks a port; write host:port, e.g. \"127.0.0.1:9187\"",
        ),
        (
            ":9187",
            "metrics.address: `:9187` has no host; write 0.0.0.0:9187 to listen on every \
             IPv4 address, or 127.0.0.1:9187 for this machine only",
        ),
        (
            "::1:9187",
            "metrics.address: `::1:9187` is not host:port; write an IPv6 address in brackets",
        ),
        (
            "127.0.0.1:0",
            "metrics.address: `127.0.0.1:0`: port 0 would pick a random port",
        ),
        (
            "127.0.0.1:99999",
            "metrics.address: `99999` in `127.0.0.1:99999` is not a port number (1-65535)",
        ),
        (
            "localhost:http",
            "`http` in `localhost:http` is not a port number",
        ),
    ] {
        assert_contains(
            &process_err(&compose(&format!("metrics.address = {address:?}"))),
            expected,
        );
    }
    assert_contains(
        &err("metrics.port = 1"),
        "unknown field `port`, expected `address`",
    );
}

#[test]
fn sinks_inherit_the_top_level() {
    let p = process(TWO_SINKS);
    assert_eq!(p.metrics_address, Some("127.0.0.1:9187".parse().unwrap()));
    let [orders, payments] = &p.sinks[..] else {
        panic!("{:?}", p.sinks);
    };
    assert_eq!(orders.name.as_deref(), Some("orders"));
    assert_eq!((orders.db.host.as_str(), orders.db.port), ("pg", 5433));
    assert_eq!(orders.db.database, "shop");
    assert_eq!(orders.db.password.as_deref(), Some("pw"));
    assert_eq!(orders.db.sslmode, SslMode::Require);
    assert_eq!(orders.db.tables[0].table, "orders");
    assert_eq!(orders.delivery, Delivery::Synchronized);
    assert_eq!(orders.max_dead_letters_per_minute, Some(100));
    assert_eq!(orders.tasks, 1);
    let kafka = |c: &SinkConfig| {
        c.kafka
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kafka(orders),
        [
            "auto.offset.reset=earliest",
            "bootstrap.servers=k1:9092",
            "fetch.wait.max.ms=10",
            "group.id=connect-orders",
        ]
    );
    let settings = |c: &SinkConfig| {
        c.converter
            .settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        settings(orders),
        ["db.json.parse=/@id,/@total", "level=1", "mode=strict"]
    );

    // The sink's own values win, key by key, also inside kafka and plugin.settings.
    assert_eq!(payments.topics, ["payments", "refunds"]);
    assert_eq!(payments.tasks, 2);
    assert_eq!(payments.db.host, "pg");
    assert_eq!(payments.db.tables[0].columns, ["id"]);
    assert_eq!(payments.delivery, Delivery::Guaranteed);
    assert_eq!(payments.db.sslmode, SslMode::VerifyFull);
    assert_eq!(
        payments.db.sslrootcert.as_deref(),
        Some(std::path::Path::new("ca.pem"))
    );
    assert_eq!(payments.max_dead_letters_per_minute, Some(5));
    assert_eq!(
        kafka(payments),
        [
            "auto.offset.reset=earliest",
            "bootstrap.servers=k2:9092",
            "fetch.wait.max.ms=10",
            "group.id=payments-group",
        ]
    );
    assert_eq!(
        settings(payments),
        ["db.json.parse=/@id", "extra=true", "level=1", "mode=lax"]
    );
}

#[test]
fn sink_sections_may_use_tables() {
    let text = r#"
db.database = "shop"
db.username = "sink"
[kafka]
"bootstrap.servers" = "k1:9092"

[[sink]]
topics = "orders"
[sink.db]
table = "orders"
columns = "id"
json.parse = "/@id"
[sink.kafka.bootstrap]
servers = "k9:9092"
[sink.plugin]
timeout.ms = 0
memory.mb = 64
"#;
    let p = process(text);
    let sink = &p.sinks[0];
    assert_eq!(sink.db.tables[0].table, "orders");
    assert_eq!(sink.kafka["bootstrap.servers"], "k9:9092");
    assert_eq!(sink.converter.timeout, None);
    assert_eq!(sink.converter.memory_limit, 64 << 20);
    // One [[sink]] section is one sink: parse_toml accepts it.
    assert_eq!(parse_toml(text).unwrap(), *sink);
}

#[test]
fn one_sink_section_equals_a_single_sink_file() {
    let single = compose("name = \"s\"\ndb.host = \"pg\"\nkafka.linger.ms = 5");
    let sectioned =
        "db.host = \"pg\"\nkafka.linger.ms = 5\n[[sink]]\nname = \"s\"\n".to_owned() + BASE;
    assert_eq!(
        parse_toml(&single).unwrap(),
        parse_toml(&sectioned).unwrap()
    );
    assert_eq!(process(&single).sinks, process(&sectioned).sinks);
}

#[test]
fn several_sinks_are_rejected_by_parse_toml() {
    assert_eq!(
        parse_toml(TWO_SINKS).unwrap_err().to_string(),
        "this file declares 2 sinks ([[sink]] sections); only a file with a single sink \
         can be used here"
    );
}

#[test]
fn sink_errors_name_the_sink() {
    let without_table = TWO_SINKS.replacen("db.table = \"payments\"\n", "", 1);
    assert_eq!(
        process_err(&without_table),
        "sink[2] (name \"payments\"): missing required key `db.table`"
    );
    let unnamed = TWO_SINKS.replacen("name = \"orders\"\n", "", 1);
    let unnamed = unnamed.replacen("db.columns = \"id,total\"", "db.columns = \"id\"", 1);
    assert_eq!(
        process_err(&unnamed),
        "sink[1]: db.json.parse has 2 parse paths but db.columns lists 1 column"
    );
    assert_eq!(
        process_err(&TWO_SINKS.replace("db.delivery = \"guaranteed\"", "db.delivery = \"x\"")),
        "sink[2] (name \"payments\"): db.delivery: unknown value `x`; expected `fastest`, \
         `guaranteed` or `synchronized`"
    );
    // A top-level value is checked in every sink, and said to be inherited.
    assert_eq!(
        process_err(&TWO_SINKS.replace("db.sslmode = \"require\"", "db.sslmode = \"tls\"")),
        "sink[1] (name \"orders\"): db.sslmode: unknown value `tls`; expected `disable`, \
         `prefer`, `require` or `verify-full` (inherited from the top level)"
    );
    assert_contains(
        &process_err(&format!("kafka.enable.auto.commit = false\n{TWO_SINKS}")),
        "sink[1] (name \"orders\"): kafka.enable.auto.commit cannot be set: pgsink commits \
         offsets itself, after each flush, as db.delivery requires (inherited from the top \
         level)",
    );
    // A top-level sslrootcert with a sink's sslmode = require.
    assert_eq!(
        process_err(&TWO_SINKS.replace(
            "db.sslmode = \"require\"",
            "db.sslmode = \"require\"\ndb.sslrootcert = \"ca.pem\""
        )),
        "sink[1] (name \"orders\"): db.sslrootcert: is used only with db.sslmode = \
         \"verify-full\"; with \"require\" the server's certificate is not checked \
         (inherited from the top level)"
    );
    // Errors in the top level alone are not blamed on a sink.
    assert_eq!(
        process_err(&format!("db.port = 5433\n{TWO_SINKS}")),
        "db.port: not a key: write the port in db.host, e.g. db.host = \"pg:5433\""
    );
    assert_eq!(
        process_err(&format!("kafka.acks = [1]\n{TWO_SINKS}")),
        "kafka.acks: arrays are not supported; write a comma-separated string"
    );
    assert_eq!(
        process_err(&format!(
            "kafka.linger.ms = 1\nkafka.\"linger.ms\" = 2\n{TWO_SINKS}"
        )),
        "kafka.linger.ms is given twice"
    );
    assert_eq!(
        process_err(&format!(
            "{TWO_SINKS}kafka.linger.ms = 1\nkafka.\"linger.ms\" = 2\n"
        )),
        "sink[2] (name \"payments\"): kafka.linger.ms is given twice"
    );
}

/// Every section is read before any is validated: a typo in a later sink is reported, with
/// its line, before a missing key in an earlier one.
#[test]
fn a_typo_anywhere_comes_before_validation_errors() {
    let text = TWO_SINKS
        .replacen("db.table = \"orders\"\n", "", 1)
        .replacen("tasks = 2", "taks = 2", 1);
    let error = process_err(&text);
    assert_contains(&error, "unknown field `taks`");
    assert!(!error.contains("db.table"), "{error}");
}

#[test]
fn sink_structure_errors() {
    assert_eq!(
        process_err(&format!("{TWO_SINKS}metrics.address = \"127.0.0.1:1\"\n")),
        "sink[2] (name \"payments\"): metrics.address: is process-wide: set it at the top \
         level of the file, outside the [[sink]] sections"
    );
    assert_eq!(
        process_err(&format!("{TWO_SINKS}[[sink.sink]]\nname = \"x\"\n")),
        "sink[2] (name \"payments\"): sink: [[sink]] sections cannot be nested"
    );
    assert_eq!(
        process_err(&format!("sink = []\n{BASE}")),
        "sink: declares no sinks; add [[sink]] sections, or remove `sink` to make the file \
         one sink"
    );
    let unknown = process_err(&TWO_SINKS.replace("tasks = 2", "taks = 2"));
    assert_contains(&unknown, "unknown field `taks`");
    assert_contains(&unknown, "line 24");
    assert_contains(
        &process_err("[sink]\nname = \"x\""),
        "invalid type: map, expected a sequence",
    );
}

#[test]
fn conflicting_sinks() {
    let sink = |extra: &str| format!("[[sink]]\n{}\n", compose(extra));
    let two = |a: &str, b: &str| format!("{}{}", sink(a), sink(b));

    assert_eq!(
        process_err(&two(
            "name = \"a\"",
            "name = \"b\"\nkafka.group.id = \"connect-a\""
        )),
        "sink[1] (name \"a\") and sink[2] (name \"b\") use the same Kafka consumer group \
         \"connect-a\", so each would miss messages; give each its own `name` or kafka.group.id"
    );
    // Inherited names (and the default group id from the table) collide too.
    assert_contains(
        &process_err(&format!("name = \"n\"\n{}", two("", "db.table = \"x\""))),
        "sink[1] (name \"n\") and sink[2] (name \"n\") use the same Kafka consumer group \
         \"connect-n\"",
    );
    assert_contains(
        &process_err(&two("", "db.schema = \"public\"")),
        "sink[1] and sink[2] use the same Kafka consumer group \"pgsink-public.orders\"",
    );

    // One table, topic and partition has one sink's position, named or not.
    assert_eq!(
        process_err(&two(
            "name = \"a\"",
            "name = \"b\"\ntopics = \"other,orders\""
        )),
        "sink[1] (name \"a\") and sink[2] (name \"b\") both load topic \"orders\" into \
         shop.public.orders on localhost:5432 with synchronized delivery: their offsets would \
         collide"
    );
    let three = format!(
        "{}{}",
        sink("name = \"x\"\ntopics = \"x\""),
        two("name = \"a\"", "name = \"b\"")
    );
    assert_contains(
        &process_err(&three),
        "sink[2] (name \"a\") and sink[3] (name \"b\")",
    );
    // Also where one writes the table after its first (its positions are the first's).
    let later = format!(
        "{}[[sink]]\nname = \"shop\"\ntopics = \"orders\"\ndb.database = \"shop\"\n\
         db.username = \"sink\"\ndb.tables = [\"head\", \"orders\"]\n\
         [sink.table.head]\ncolumns = \"id\"\njson.parse = \"/@id\"\n\
         [sink.table.orders]\ncolumns = \"id,total\"\njson.parse = \"/@id,/@total\"\n",
        sink("name = \"a\"")
    );
    assert_contains(
        &process_err(&later),
        "sink[1] (name \"a\") and sink[2] (name \"shop\") both load topic \"orders\" into \
         shop.public.orders",
    );
    // A sink's positions belong to one table: one name for two tables collides too.
    assert_eq!(
        process_err(&two(
            "kafka.group.id = \"a\"\nname = \"n\"",
            "kafka.group.id = \"b\"\nname = \"n\"\ndb.table = \"orders2\""
        )),
        "sink[1] (name \"n\") and sink[2] (name \"n\") both load topic \"orders\" as sink \
         \"n\" into shop on localhost:5432 with synchronized delivery: their offsets would \
         collide; give each its own `name`"
    );

    // Fine: not both synchronized, other topics, another table, another database.
    for b in [
        "db.delivery = \"guaranteed\"",
        "topics = \"other\"",
        "db.table = \"orders2\"",
        "db.schema = \"s2\"",
        "db.database = \"shop2\"",
        "db.host = \"pg2\"",
        "db.host = \"localhost:5433\"",
    ] {
        let p = process(&two("name = \"a\"", &format!("name = \"b\"\n{b}")));
        assert_eq!(p.sinks.len(), 2, "{b}");
    }
    // A pattern shares the topics it matches, and itself.
    for (a, b) in [
        ("topics = \"^ord.*\"", "topics = \"orders\""),
        ("topics = \"orders\"", "topics = \"x,^ord.*\""),
        ("topics = \"^ord.*\"", "topics = \"^ord.*\""),
    ] {
        let a = format!("kafka.group.id = \"a\"\n{a}");
        let b = format!("kafka.group.id = \"b\"\n{b}");
        assert_contains(&process_err(&two(&a, &b)), "their offsets would collide");
    }
    let apart = two(
        "kafka.group.id = \"a\"\ntopics = \"^pay.*\"",
        "kafka.group.id = \"b\"\ntopics = \"orders\"",
    );
    assert_eq!(process(&apart).sinks.len(), 2);
    let named = process(&two("name = \"a\"", "name = \"b\"\ntopics = \"other\""));
    assert_eq!(named.sinks[1].identity(), "b");
    assert_eq!(named.sinks[0].identity(), "a");
}

#[test]
fn documented_examples_are_valid() {
    let docs = include_str!("../../../../docs/configuration.md");
    let blocks = |lang: &str| -> Vec<&str> {
        let fence = format!("```{lang}\n");
        docs.split(fence.as_str())
            .skip(1)
            .map(|rest| rest.split("```").next().unwrap())
            .collect()
    };
    let toml = blocks("toml");
    let single = toml
        .iter()
        .find(|b| b.contains("accelerometer-sink"))
        .expect("the single-sink example");
    assert_eq!(parse_toml(single).unwrap().tasks, 2);
    let several = toml
        .iter()
        .find(|b| b.contains("[[sink]]"))
        .expect("the multi-sink example");
    let p = process(several);
    assert_eq!(p.sinks.len(), 2);
    assert_eq!(p.metrics_address, Some("127.0.0.1:9187".parse().unwrap()));
    assert_eq!(
        p.sinks[1].kafka["bootstrap.servers"],
        "kafka1:9092,kafka2:9092"
    );
    assert_eq!(p.sinks[1].kafka["fetch.wait.max.ms"], "10");
    let tls = toml
        .iter()
        .find(|b| b.contains("db.sslrootcert"))
        .expect("the TLS example");
    assert_eq!(ok(tls).db.sslmode, SslMode::VerifyFull);
    for properties in blocks("properties") {
        super::super::parse_properties(properties).unwrap();
    }
}
