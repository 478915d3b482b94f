//! The bundled converter's vocabulary beyond the seed, against real PostgreSQL: Debezium change
//! events through a running sink, every cast loaded into a column of its type, and `convert`
//! printing what each row asks of its table.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// A Debezium documentation event, compacted to one line.
fn debezium(name: &str) -> String {
    let path = repo_root()
        .join("plugins/path-parser/tests/fixtures/debezium")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str::<Value>(&text)
        .expect("fixture JSON")
        .to_string()
}

const HISTORY: [(&str, &str); 6] = [
    ("id", "int"),
    ("first_name", "text"),
    ("last_name", "text"),
    ("email", "text"),
    ("op", "text"),
    ("lsn", "bigint"),
];
const HISTORY_PATHS: &str =
    "#key/@id, /@first_name, /@last_name, /@email, #envelope/@op, #envelope/@source/@lsn";

/// Sends, keyed by Debezium's key of customer 1: its create, update, delete, the tombstone
/// after it, a snapshot read and a truncate. Returns the key and the end offsets.
fn send_debezium_history(broker: &Broker, topic: &str) -> (String, BTreeMap<(String, i32), i64>) {
    let key = debezium("key.json");
    let truncate = r#"{"before":null,"after":null,"op":"t","source":{"lsn":1}}"#.to_string();
    let events = [
        Some(debezium("create.json")),
        Some(debezium("update.payload.json")),
        Some(debezium("delete.json")),
        None,
        Some(debezium("read.payload.json")),
        Some(truncate),
    ];
    let mut producer = broker.producer(false);
    for value in &events {
        producer.send(
            topic,
            Some(0),
            Some(key.as_bytes()),
            value.as_deref().map(str::as_bytes),
        );
    }
    (key, end_offsets(&producer.flush()))
}

/// Create, update, delete + tombstone, snapshot read and truncate events, with and without
/// `schemas.enable`, into an append-only table: every change that carries a row is appended
/// with its op and LSN; the delete and the truncate are dead letters with their reason (the
/// sink appends: db.write.mode = "append"); the tombstone is skipped; the offsets move past everything.
#[test]
fn cdc_debezium_events_end_to_end_mock() {
    let ctx = Ctx::new("cdc_debezium_events_end_to_end_mock");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let table = pg.table_in("public", &ctx.table_name(), &HISTORY);
    let topic = ctx.unique("dbserver1.inventory.customers");
    broker.create_topic(&topic, 1);
    let (key, ends) = send_debezium_history(&broker, &topic);

    let mut cfg = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g"))
        .line("db.json.envelope = \"debezium\"")
        .flush_ms(200);
    cfg.parse = HISTORY_PATHS.to_string();
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    wait_for(
        Duration::from_secs(60),
        "the offsets past every event",
        || pg.stored_offsets(&table).get(&(topic.clone(), 0)) == ends.get(&(topic.clone(), 0)),
    );
    sink.stop_ok();

    let rows = pg.query(
        &format!(
            "SELECT id, first_name, email, op, lsn FROM {} ORDER BY lsn, op",
            table.qualified()
        ),
        &[],
    );
    let rows: Vec<(i32, String, String, String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let anne = |first: &str, op: &str, lsn: i64| {
        (
            1,
            first.to_string(),
            "annek@noanswer.org".to_string(),
            op.to_string(),
            lsn,
        )
    };
    assert_eq!(
        rows,
        [
            anne("Anne", "c", 24023128),
            anne("Anne", "r", 24023128),
            anne("Anne Marie", "u", 24023128)
        ]
    );
    let dead = pg.dead_letters(&table);
    let reasons: Vec<(i64, &str)> = dead.iter().map(|d| (d.offset, d.reason.as_str())).collect();
    assert_eq!(dead.len(), 2, "the delete and the truncate: {reasons:?}");
    assert_eq!(dead[0].offset, 2);
    assert!(
        dead[0]
            .reason
            .contains("is a delete, and db.write.mode = \"append\" only appends rows"),
        "{reasons:?}"
    );
    assert_eq!(
        dead[0].key.as_deref(),
        Some(key.as_bytes()),
        "the raw key is kept"
    );
    assert_eq!(dead[1].offset, 5);
    assert!(dead[1].reason.contains("truncate (op t)"), "{reasons:?}");
    assert_offsets_at_end(&pg, &table, &ends);
}

/// The same events mirrored into a copy of the source table (`db.write.mode = "upsert"`):
/// the create and the update land on one row, the delete removes it, the snapshot read
/// brings it back; only the truncate is a dead letter.
#[test]
fn cdc_debezium_mirror_upsert_mock() {
    let ctx = Ctx::new("cdc_debezium_mirror_upsert_mock");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let columns = [
        ("id", "int PRIMARY KEY"),
        ("first_name", "text"),
        ("last_name", "text"),
        ("email", "text"),
    ];
    let table = pg.table_in("public", &ctx.table_name(), &columns);
    let topic = ctx.unique("dbserver1.inventory.customers");
    broker.create_topic(&topic, 1);
    let (_, ends) = send_debezium_history(&broker, &topic);
    let mut cfg = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g"))
        .line("db.json.envelope = \"debezium\"")
        .line("db.write.mode = \"upsert\"")
        .flush_ms(200);
    cfg.parse = "#key/@id, /@first_name, /@last_name, /@email".to_string();
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    wait_for(
        Duration::from_secs(60),
        "the offsets past every event",
        || pg.stored_offsets(&table) == ends,
    );
    sink.stop_ok();
    let rows: Vec<(i32, String, String)> = pg
        .query(
            &format!("SELECT id, first_name, email FROM {}", table.qualified()),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [(1, "Anne".to_string(), "annek@noanswer.org".to_string())]
    );
    let dead = pg.dead_letters(&table);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].reason.contains("truncate (op t)"), "{dead:?}");
}

/// Every cast, through `convert`, COPY and PostgreSQL's own input functions, compared in SQL
/// with the value written as a PostgreSQL literal.
#[test]
fn cdc_casts_round_trip_postgres() {
    let ctx = Ctx::new("cdc_casts_round_trip_postgres");
    let pg = Pg::connect();
    let columns = [
        ("s", "timestamptz", "epoch-s"),
        ("ms", "timestamptz", "epoch-ms"),
        ("us", "timestamptz", "epoch-us"),
        ("ns", "timestamptz", "epoch-ns"),
        ("iso", "timestamptz", "epoch-ms"),
        ("before_1970", "timestamptz", "epoch-ms"),
        ("ints", "int[]", "array"),
        ("grid", "int[]", "array"),
        ("texts", "text[]", "array"),
        ("docs", "jsonb[]", "array"),
        ("blob", "bytea", "base64"),
        ("big", "numeric", "numeric"),
        ("at", "timestamptz", ""),
    ];
    let table = pg.table_in(
        "public",
        &ctx.table_name(),
        &columns.map(|(name, ty, _)| (name, ty)),
    );
    let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
    let paths: Vec<String> = names
        .iter()
        .map(|n| {
            if *n == "at" {
                "#timestamp".to_string()
            } else {
                format!("/@{n}")
            }
        })
        .collect();
    let casts: Vec<String> = columns
        .iter()
        .filter(|c| !c.2.is_empty())
        .map(|(name, _, cast)| format!("{name}:{cast}"))
        .collect();
    let cfg = ctx.write(
        "c.toml",
        format!(
            "topics = \"t\"\ndb.database = \"d\"\ndb.username = \"u\"\ndb.table = \"t\"\n\
             db.columns = {}\ndb.json.parse = {}\ndb.json.cast = {}\n",
            toml_list(&names),
            toml_str(&paths.join(",")),
            toml_str(&casts.join(","))
        ),
    );
    let message =
        r#"{"s":1700000000,"ms":1700000000123,"us":1700000000123456,"ns":1700000000123456789,
        "iso":"2023-11-14T22:13:20.5Z","before_1970":-1,
        "ints":[1,null,-3],"grid":[[1,2],[3,4]],
        "texts":["a,b",null,"q\"t","{x}","back\\slash","NULL",""," pad ","tab\there","é😀"],
        "docs":[{"a":[1,"x"]},{"b":null}],
        "blob":"AAEC/w==","big":"1234567890123456789012345678901234567890.5"}"#
            .replace('\n', "");
    let out = ctx.run_pgsink(
        &["convert", "--config", cfg.to_str().unwrap()],
        format!("{message}\n").as_bytes(),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "convert: {stderr}");
    let quoted: Vec<String> = names.iter().map(|n| ident(n)).collect();
    let copied = pg.copy_in(
        &format!(
            "COPY {} ({}) FROM STDIN",
            table.qualified(),
            quoted.join(", ")
        ),
        out.stdout.clone(),
    );
    assert_eq!(
        copied,
        1,
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let checks = [
        ("s", "s = to_timestamp(1700000000)"),
        ("ms", "ms = '2023-11-14 22:13:20.123+00'"),
        ("us", "us = '2023-11-14 22:13:20.123456+00'"),
        ("ns", "ns = '2023-11-14 22:13:20.123457+00'"),
        ("iso", "iso = '2023-11-14 22:13:20.5+00'"),
        ("before_1970", "before_1970 = '1969-12-31 23:59:59.999+00'"),
        ("ints", "ints = ARRAY[1, NULL, -3]"),
        ("grid", "grid = ARRAY[[1, 2], [3, 4]]"),
        (
            "texts",
            r#"texts = ARRAY['a,b', NULL, 'q"t', '{x}', E'back\\slash', 'NULL', '', ' pad ', E'tab\there', 'é😀']"#,
        ),
        (
            "docs",
            r#"docs = ARRAY['{"a":[1,"x"]}'::jsonb, '{"b":null}'::jsonb]"#,
        ),
        ("blob", r"blob = '\x000102ff'::bytea"),
        ("big", "big = 1234567890123456789012345678901234567890.5"),
        ("at", "at IS NULL"),
    ];
    let select: Vec<String> = checks
        .iter()
        .map(|(_, check)| format!("({check})"))
        .collect();
    let row = pg.query(
        &format!("SELECT {} FROM {}", select.join(", "), table.qualified()),
        &[],
    );
    let wrong: Vec<&str> = checks
        .iter()
        .enumerate()
        .filter(|(i, _)| !row[0].get::<_, Option<bool>>(*i).unwrap_or(false))
        .map(|(_, (name, _))| *name)
        .collect();
    assert!(
        wrong.is_empty(),
        "columns that did not round-trip: {wrong:?}; COPY text: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `convert` with keys (`--key-separator`) and tombstones (`--empty-is-null`) prints each row
/// with its operation and table when the rows are not plain inserts, and reports what the sink
/// would refuse.
#[test]
fn convert_prints_operations_and_tables() {
    let ctx = Ctx::new("convert_prints_operations_and_tables");
    let cfg = ctx.write(
        "c.toml",
        "topics = \"t\"\ndb.database = \"d\"\ndb.username = \"u\"\ndb.table = \"customers\"\n\
         db.columns = \"id,first_name\"\ndb.json.parse = \"#key/@id, /@first_name\"\n\
         db.json.envelope = \"debezium\"\n",
    );
    let key = debezium("key.jsonconverter.json");
    let input = [
        format!("{key}|{}", debezium("create.json")),
        format!("{key}|{}", debezium("update.payload.json")),
        format!("{key}|{}", debezium("delete.json")),
        format!("{key}|"),
    ]
    .join("\n");
    let out = ctx.run_pgsink(
        &[
            "convert",
            "--config",
            cfg.to_str().unwrap(),
            "--key-separator",
            "|",
            "--empty-is-null",
        ],
        input.as_bytes(),
        Duration::from_secs(60),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "upsert customers\t1\tAnne\nupsert customers\t1\tAnne Marie\n"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "line 3: row 1 is a delete, and db.write.mode = \"append\" only appends rows to \"public\".\"customers\""
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("line 4"),
        "the tombstone is skipped: {stderr}"
    );
    assert!(!out.status.success(), "a failed line fails convert");
}
