//! Converters in other languages: the example converters of `plugins/examples/python-explode`
//! (componentize-py) and `plugins/examples/js-keyed` (componentize-js through jco) are built with
//! their own `build.sh` (once per test run; a failed build fails the test with its log), checked
//! through `pgsink convert`, and run end to end through the mock broker into PostgreSQL.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::*;

// ------------------------------------------------------------------------------------------
// Building the components
// ------------------------------------------------------------------------------------------

/// Builds `plugins/examples/<name>` with its `build.sh` (once per test run) and returns the
/// component. A failed build fails the test with the build's output: the examples are part of
/// what CI proves, so they are never skipped.
fn example_component(name: &'static str) -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static JS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let cell = match name {
        "python-explode" => &PYTHON,
        "js-keyed" => &JS,
        other => panic!("no example converter {other}"),
    };
    let built = cell.get_or_init(|| {
        let dir = repo_root().join("plugins/examples").join(name);
        let mut cmd = Command::new("bash");
        cmd.arg(dir.join("build.sh")).current_dir(&dir);
        run_build(
            &format!("plugins/examples/{name}"),
            cmd,
            dir.join("target").join(format!("{name}.wasm")),
        )
    });
    built.clone().unwrap_or_else(|log| panic!("{log}"))
}

// ------------------------------------------------------------------------------------------
// Configuration, tables, producers
// ------------------------------------------------------------------------------------------

/// One message for [`produce_all`]: key, headers, value.
struct Msg {
    key: Option<Vec<u8>>,
    headers: Vec<(&'static str, Option<Vec<u8>>)>,
    value: Vec<u8>,
}

/// Produces `msgs` in order to partition 0 of `topic` and waits until all are acknowledged.
fn produce_all(broker: &Broker, topic: &str, msgs: &[Msg]) {
    let mut producer = broker.producer(false);
    for m in msgs {
        let headers: Vec<HeaderPair<'_>> =
            m.headers.iter().map(|(k, v)| (*k, v.as_deref())).collect();
        producer.send_with_headers(
            topic,
            Some(0),
            m.key.as_deref(),
            Some(&m.value[..]),
            &headers,
        );
    }
    producer.flush();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `line N: reason` lines `pgsink convert` wrote to stderr.
fn failed_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("line ")).collect()
}

const CONVERT_TIMEOUT: Duration = Duration::from_secs(300);

// ------------------------------------------------------------------------------------------
// python-explode
// ------------------------------------------------------------------------------------------

const EXPLODE_COLUMNS: [(&str, &str); 3] =
    [("order", "bigint"), ("sku", "text"), ("qty", "integer")];

#[test]
fn converters_python_convert() {
    let ctx = Ctx::new("converters_python_convert");
    let wasm = example_component("python-explode");
    let table = Table {
        schema: "public".into(),
        name: "order_lines".into(),
        columns: EXPLODE_COLUMNS.iter().map(|(c, _)| c.to_string()).collect(),
    };
    let cfg = ctx.write("c.toml", plugin_config(&table, "orders", &[], &wasm, &[]));
    let input = [
        r#"{"order":17,"items":[{"sku":"a","qty":2},{"sku":"b","qty":1}]}"#,
        r#"{"order":18}"#,
        r#"{"order":19,"items":[{"sku":"tab\there back\\slash\nnl\rcr","qty":1.50}]}"#,
        r#"{"order":20,"items":"#,
        r#"{"order":21,"items":[{"sku":"a\u0000b","qty":1}]}"#,
        r#"[1,2]"#,
        r#"{"order":22,"items":[{"qty":3},{"sku":null,"qty":null}]}"#,
        r#"{"order":"x\\y","items":[{"sku":"é✓","qty":-0}]}"#,
        r#"{"order":23,"items":[{"sku":"s"},7]}"#,
        r#"{"order":24,"items":[]}"#,
    ]
    .join("\n");
    let inp = ctx.write("in.jsonl", format!("{input}\n"));
    let out = ctx.run_pgsink(
        &[
            "convert",
            "--config",
            cfg.to_str().unwrap(),
            "--plugin",
            wasm.to_str().unwrap(),
            "--input",
            inp.to_str().unwrap(),
        ],
        b"",
        CONVERT_TIMEOUT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(
        text(&out.stdout),
        "17\ta\t2\n17\tb\t1\n\
         19\ttab\\there back\\\\slash\\nnl\\rcr\t1.50\n\
         22\t\\N\t3\n22\t\\N\t\\N\n\
         x\\\\y\té✓\t-0\n",
        "stdout of pgsink convert (stderr: {stderr})"
    );
    let failed = failed_lines(&stderr);
    assert_eq!(failed.len(), 4, "four lines fail; stderr: {stderr}");
    assert!(
        failed[0].starts_with("line 4: invalid JSON: Expecting value"),
        "{}",
        failed[0]
    );
    assert_eq!(
        failed[1],
        "line 5: a value contains a NUL character, which PostgreSQL text cannot store"
    );
    assert_eq!(failed[2], "line 6: the message is not a JSON object");
    assert_eq!(failed[3], "line 9: items[1] is not a JSON object");
    assert_eq!(out.status.code(), Some(1), "exit status with failed lines");

    // A bad setting stops `convert` with the converter's own message.
    let bad = ctx.write(
        "bad.toml",
        plugin_config(
            &table,
            "orders",
            &[],
            &wasm,
            &[("message.columns", "order,nope")],
        ),
    );
    let out = ctx.run_pgsink(
        &["convert", "--config", bad.to_str().unwrap()],
        b"{}\n",
        CONVERT_TIMEOUT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("message.columns names nope, which the table does not list"),
        "stderr: {stderr}"
    );
}

/// The rows of the explode test message `i`: orders with 0 to 3 items (0: no `items` field).
fn explode_message(i: u64) -> (String, Vec<(i64, String, i32)>) {
    let n = i % 4;
    if n == 0 {
        return (format!(r#"{{"order":{i},"note":"no items"}}"#), Vec::new());
    }
    let mut items = Vec::new();
    let mut rows = Vec::new();
    for j in 0..n {
        // The third item's sku needs COPY escaping.
        let sku = if j == 2 {
            format!("s{i}\t\\{j}")
        } else {
            format!("s{i}-{j}")
        };
        items.push(serde_json::json!({"sku": sku, "qty": j + 1}));
        rows.push((i as i64, sku, j as i32 + 1));
    }
    let value = serde_json::json!({"order": i, "items": items}).to_string();
    (value, rows)
}

#[test]
fn converters_python_end_to_end() {
    let ctx = Ctx::new("converters_python_end_to_end");
    let wasm = example_component("python-explode");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let table = pg.table_in("public", &ctx.table_name(), &EXPLODE_COLUMNS);
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 1);
    let n = 3000u64;
    let mut msgs = Vec::new();
    let mut expected = Vec::new();
    let mut bad = Vec::new();
    for i in 1..=n {
        if i % 500 == 0 {
            bad.push(msgs.len() as i64);
            msgs.push(Msg {
                key: None,
                headers: Vec::new(),
                value: format!(r#"{{"order":{i},"items":[{{"sku":"#).into_bytes(),
            });
            continue;
        }
        let (value, rows) = explode_message(i);
        expected.extend(rows);
        msgs.push(Msg {
            key: None,
            headers: Vec::new(),
            value: value.into_bytes(),
        });
    }
    produce_all(&broker, &topic, &msgs);
    let config = plugin_config(
        &table,
        &topic,
        &sink_kafka(&broker, &ctx.unique("g")),
        &wasm,
        &[("array", "items"), ("message.columns", "order")],
    );
    let mut sink = ctx.sink("sink").toml(&config).start();
    pg.wait_rows(&table, expected.len() as i64, LONG, &mut [&mut sink]);
    sink.stop_ok();

    let mut got: Vec<(i64, String, i32)> = pg
        .query(
            &format!("SELECT \"order\", sku, qty FROM {}", table.qualified()),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got.len(), expected.len(), "row count");
    let wrong: Vec<_> = got
        .iter()
        .zip(&expected)
        .filter(|(g, e)| g != e)
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "rows differ (got, expected): {wrong:?}");

    let dead = pg.dead_letters(&table);
    let offsets: Vec<i64> = dead.iter().map(|d| d.offset).collect();
    assert_eq!(offsets, bad, "the bad messages are the dead letters");
    assert!(
        dead.iter().all(|d| d.reason.contains("invalid JSON")),
        "dead-letter reasons: {:?}",
        dead.iter().map(|d| &d.reason).collect::<Vec<_>>()
    );
    let ends = BTreeMap::from([((topic.clone(), 0), msgs.len() as i64)]);
    assert_offsets_at_end(&pg, &table, &ends);
}

// ------------------------------------------------------------------------------------------
// js-keyed
// ------------------------------------------------------------------------------------------

const KEYED_COLUMNS: [(&str, &str); 3] = [
    ("key", "text"),
    ("source_header", "text"),
    ("amount_cents", "bigint"),
];

#[test]
fn converters_js_convert() {
    let ctx = Ctx::new("converters_js_convert");
    let wasm = example_component("js-keyed");
    let table = Table {
        schema: "public".into(),
        name: "payments".into(),
        columns: KEYED_COLUMNS.iter().map(|(c, _)| c.to_string()).collect(),
    };
    let cfg = ctx.write("c.toml", plugin_config(&table, "payments", &[], &wasm, &[]));
    // `pgsink convert` reads values only: every key and header is null.
    let input = [
        r#"{"amount":"12.34"}"#,
        r#"{"amount":7}"#,
        r#"{"amount":"1.001"}"#,
        r#"not json"#,
        r#"{"note":"no amount"}"#,
        r#"{"amount":"-0.05"}"#,
        r#"{"amount":"123456789012345678.91"}"#,
        r#"[]"#,
        r#"{"amount":"19.990","source":"ignored"}"#,
        r#"{"amount":"1e3"}"#,
    ]
    .join("\n");
    let out = ctx.run_pgsink(
        &[
            "convert",
            "--config",
            cfg.to_str().unwrap(),
            "--plugin",
            wasm.to_str().unwrap(),
        ],
        format!("{input}\n").as_bytes(),
        CONVERT_TIMEOUT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(
        text(&out.stdout),
        "\\N\t\\N\t1234\n\\N\t\\N\t700\n\\N\t\\N\t\\N\n\\N\t\\N\t-5\n\
         \\N\t\\N\t12345678901234567891\n\\N\t\\N\t1999\n",
        "stdout of pgsink convert (stderr: {stderr})"
    );
    let failed = failed_lines(&stderr);
    assert_eq!(failed.len(), 4, "four lines fail; stderr: {stderr}");
    assert_eq!(
        failed[0],
        "line 3: the amount 1.001 has a fraction of a cent"
    );
    assert!(
        failed[1].starts_with("line 4: invalid JSON: "),
        "{}",
        failed[1]
    );
    assert_eq!(failed[2], "line 8: the message value is not a JSON object");
    assert_eq!(
        failed[3],
        "line 10: the amount \"1e3\" is not a decimal number"
    );
    assert_eq!(out.status.code(), Some(1), "exit status with failed lines");
}

#[test]
fn converters_js_end_to_end() {
    let ctx = Ctx::new("converters_js_end_to_end");
    let wasm = example_component("js-keyed");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let table = pg.table_in("public", &ctx.table_name(), &KEYED_COLUMNS);
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 1);
    let n = 3000u64;
    let mut msgs = Vec::new();
    let mut expected: Vec<(Option<String>, Option<String>, Option<i64>)> = Vec::new();
    let mut bad = Vec::new();
    for i in 1..=n {
        let key = (i % 7 != 0).then(|| format!("k{i}"));
        let headers: Vec<(&'static str, Option<Vec<u8>>)> = match i % 4 {
            0 => Vec::new(),
            1 => vec![("origin", Some(b"web".to_vec()))],
            2 => vec![
                ("trace", Some(b"t".to_vec())),
                ("origin", Some(format!("pos\t{i}").into_bytes())),
            ],
            _ => vec![("origin", None)],
        };
        let header = match i % 4 {
            1 => Some("web".to_string()),
            2 => Some(format!("pos\t{i}")),
            _ => None,
        };
        let value = if i % 400 == 0 {
            bad.push(msgs.len() as i64);
            r#"{"total":"0.001"}"#.to_string()
        } else if i % 9 == 0 {
            expected.push((key.clone(), header, None));
            r#"{"note":"no total"}"#.to_string()
        } else if i % 5 == 0 {
            // A JSON number: exact too.
            expected.push((key.clone(), header, Some(i as i64)));
            format!(r#"{{"total":{}.{:02}}}"#, i / 100, i % 100)
        } else {
            expected.push((key.clone(), header, Some(i as i64)));
            format!(r#"{{"total":"{}.{:02}"}}"#, i / 100, i % 100)
        };
        msgs.push(Msg {
            key: key.map(String::into_bytes),
            headers,
            value: value.into_bytes(),
        });
    }
    produce_all(&broker, &topic, &msgs);
    let config = plugin_config(
        &table,
        &topic,
        &sink_kafka(&broker, &ctx.unique("g")),
        &wasm,
        &[("header", "origin"), ("amount.field", "total")],
    );
    let mut sink = ctx.sink("sink").toml(&config).start();
    pg.wait_rows(&table, expected.len() as i64, LONG, &mut [&mut sink]);
    sink.stop_ok();

    let mut got: Vec<(Option<String>, Option<String>, Option<i64>)> = pg
        .query(
            &format!(
                "SELECT key, source_header, amount_cents FROM {}",
                table.qualified()
            ),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got.len(), expected.len(), "row count");
    let wrong: Vec<_> = got
        .iter()
        .zip(&expected)
        .filter(|(g, e)| g != e)
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "rows differ (got, expected): {wrong:?}");
    let dead = pg.dead_letters(&table);
    assert_eq!(
        dead.iter().map(|d| d.offset).collect::<Vec<_>>(),
        bad,
        "the bad messages are the dead letters"
    );
    assert!(
        dead.iter().all(|d| d.reason.contains("fraction of a cent")),
        "dead-letter reasons: {:?}",
        dead.iter().map(|d| &d.reason).collect::<Vec<_>>()
    );
    let ends = BTreeMap::from([((topic.clone(), 0), msgs.len() as i64)]);
    assert_offsets_at_end(&pg, &table, &ends);
}

/// A converter built for `pgsink:converter@0.1.0` by the SDK of that time
/// (`tests/fixtures/wit-0.1`) runs unchanged: `check` names its WIT version, and a sink loads
/// its rows exactly once.
#[test]
fn converters_wit_0_1_component_runs_unchanged_mock() {
    let ctx = Ctx::new("converters_wit_0_1_component_runs_unchanged_mock");
    let wasm = repo_root().join("tests/fixtures/wit-0.1/versioned_plugin.wasm");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let columns = [
        ("id", "bigint"),
        ("version", "text"),
        ("kafka_partition", "int"),
        ("kafka_offset", "bigint"),
    ];
    let table = pg.table_in("public", &ctx.table_name(), &columns);
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 2);
    let mut producer = broker.producer(false);
    for id in 0..500 {
        let value = format!(r#"{{"id":{id}}}"#);
        producer.send(&topic, Some(id % 2), None, Some(value.as_bytes()));
    }
    let ends = end_offsets(&producer.flush());
    let config = plugin_config(
        &table,
        &topic,
        &sink_kafka(&broker, &ctx.unique("g")),
        &wasm,
        &[("version", "built-for-0.1")],
    );
    let file = ctx.write("sink.toml", &config);
    let out = ctx.run_pgsink(&["check", "--config", file.to_str().unwrap()], b"", LONG);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("versioned-plugin 0.1.0 (pgsink:converter@0.1.0) accepts its settings"),
        "{stdout}"
    );
    let mut sink = ctx.sink("sink").toml(&config).start();
    pg.wait_rows(&table, 500, LONG, &mut [&mut sink]);
    sink.stop_ok();
    let rows = pg.query(
        &format!(
            "SELECT count(DISTINCT id), count(*), min(version), max(version) FROM {}",
            table.qualified()
        ),
        &[],
    );
    let (distinct, all): (i64, i64) = (rows[0].get(0), rows[0].get(1));
    assert_eq!((distinct, all), (500, 500), "exactly once");
    assert_eq!(rows[0].get::<_, String>(2), "built-for-0.1");
    assert_offsets_at_end(&pg, &table, &ends);
}
