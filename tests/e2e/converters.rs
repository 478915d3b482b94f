//! Converters in other languages, and hot reload.
//!
//! - `converters_python_*` / `converters_js_*`: the example converters of
//!   `plugins/examples/python-explode` (componentize-py) and `plugins/examples/js-keyed`
//!   (componentize-js through jco) are built with their own `build.sh` (once per test run; a
//!   failed build fails the test with its log), checked through `pgsink convert`, and run end to
//!   end through the mock broker into PostgreSQL.
//! - `reload_*`: the test converter `tests/plugins/versioned` (built for wasm32-wasip2 once per
//!   test run) tags every row with the `version` setting, the Kafka partition and offset. The
//!   tests rewrite the configuration while messages flow and check that swaps lose and double
//!   nothing, that each transaction holds one version, and that broken candidates are rejected
//!   while the old converter keeps serving.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

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

/// Builds `tests/plugins/versioned` for wasm32-wasip2 (once per test run).
fn versioned_component() -> PathBuf {
    build_plugin("versioned-plugin", "versioned_plugin.wasm")
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    hex::encode(Sha256::digest(&bytes))
}

// ------------------------------------------------------------------------------------------
// Configuration, tables, producers
// ------------------------------------------------------------------------------------------

/// Replaces a file in one step (write a temporary file, rename it), so that a watcher never
/// reads half of it.
fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write the temporary file");
    std::fs::rename(&tmp, path).expect("rename it into place");
}

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

// ------------------------------------------------------------------------------------------
// Hot reload with the versioned test converter
// ------------------------------------------------------------------------------------------

const VERSIONED_COLUMNS: [(&str, &str); 4] = [
    ("id", "bigint"),
    ("version", "text"),
    ("kafka_partition", "integer"),
    ("kafka_offset", "bigint"),
];

/// A row of a versioned table, with the transaction that inserted it.
#[derive(Debug, Clone)]
struct VRow {
    id: i64,
    version: String,
    partition: i32,
    offset: i64,
    xid: i64,
}

fn versioned_rows(pg: &Pg, t: &Table) -> Vec<VRow> {
    pg.query(
        &format!(
            "SELECT id, version, kafka_partition, kafka_offset, xmin::text::bigint FROM {} \
             ORDER BY kafka_partition, kafka_offset",
            t.qualified()
        ),
        &[],
    )
    .iter()
    .map(|r| VRow {
        id: r.get(0),
        version: r.get(1),
        partition: r.get(2),
        offset: r.get(3),
        xid: r.get(4),
    })
    .collect()
}

fn versions_present(pg: &Pg, t: &Table) -> BTreeSet<String> {
    pg.query(
        &format!("SELECT DISTINCT version FROM {}", t.qualified()),
        &[],
    )
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Waits until a row of `version` is in the table.
fn wait_version(pg: &Pg, t: &Table, version: &str, sink: &mut Sink) {
    let t0 = Instant::now();
    loop {
        if versions_present(pg, t).contains(version) {
            eprintln!(
                "{}: rows of {version} after {:.1} s",
                t.name,
                t0.elapsed().as_secs_f64()
            );
            return;
        }
        sink.assert_running(&format!("waiting for rows of {version}"));
        assert!(
            t0.elapsed() < LONG,
            "no row of {version} within {LONG:?}; versions so far: {:?}; last stderr:\n{}",
            versions_present(pg, t),
            tail(&sink.stderr(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Produces `{"id":N}` for N = 1, 2, … at about `rate` messages per second until stopped
/// (message `seq` has id `seq + 1`).
fn produce_ids(spec: ProducerSpec, topic: &str, rate: u64) -> BackgroundProducer {
    BackgroundProducer::paced(spec, topic, rate, |i| {
        Some((None, format!("{{\"id\":{}}}", i + 1).into_bytes()))
    })
}

/// The version number of `vN`.
fn version_number(v: &str) -> Option<u32> {
    v.strip_prefix('v')?.parse().ok()
}

/// Checks a finished versioned run: exactly the produced ids, each once, at the partition and
/// offset the producer saw; versions never go back within a partition; each transaction holds
/// one version; the stored offsets are at the end, with the plugin hash.
fn check_versioned_run(pg: &Pg, t: &Table, delivered: &[Delivered], plugin: &Path) -> Vec<VRow> {
    let rows = versioned_rows(pg, t);
    let n = delivered.len();
    let ids: BTreeSet<i64> = rows.iter().map(|r| r.id).collect();
    let missing: Vec<i64> = (1..=n as i64)
        .filter(|i| !ids.contains(i))
        .take(20)
        .collect();
    assert!(
        rows.len() == n
            && ids.len() == n
            && missing.is_empty()
            && ids.iter().all(|i| (1..=n as i64).contains(i)),
        "expected exactly ids 1..={n} once each: {} rows, {} distinct ids, missing (first 20) {missing:?}",
        rows.len(),
        ids.len()
    );
    let misplaced: Vec<String> = rows
        .iter()
        .filter(|r| {
            let d = &delivered[r.id as usize - 1];
            d.partition != r.partition || d.offset != r.offset
        })
        .take(10)
        .map(|r| format!("{r:?} was delivered at {:?}", delivered[r.id as usize - 1]))
        .collect();
    assert!(
        misplaced.is_empty(),
        "rows with the wrong Kafka position: {misplaced:?}"
    );

    // Within a partition (rows are ordered by partition, offset), versions never go back.
    let mut regressions = Vec::new();
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.partition == b.partition && version_number(&b.version) < version_number(&a.version) {
            regressions.push(format!("{a:?} then {b:?}"));
        }
    }
    assert!(
        regressions.is_empty(),
        "a partition went back to an older converter version: {:?}",
        &regressions[..regressions.len().min(5)]
    );

    // Each committed transaction was converted by one version only.
    let mut per_xid: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
    for r in &rows {
        per_xid.entry(r.xid).or_default().insert(&r.version);
    }
    let mixed: Vec<_> = per_xid
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .take(5)
        .collect();
    assert!(
        mixed.is_empty(),
        "transactions holding rows of several versions: {mixed:?}"
    );

    assert_offsets_at_end(pg, t, &end_offsets(delivered));
    let hash = sha256_hex(plugin);
    let hashes: Vec<Option<String>> = pg
        .query(
            "SELECT plugin_hash FROM pgsink.offsets WHERE table_schema = $1 AND table_name = $2",
            &[&t.schema, &t.name],
        )
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !hashes.is_empty() && hashes.iter().all(|h| h.as_deref() == Some(hash.as_str())),
        "pgsink.offsets.plugin_hash must be the component's SHA-256 {hash}: {hashes:?}"
    );
    assert!(
        pg.dead_letters(t).is_empty(),
        "no message may be a dead letter: {:?}",
        pg.dead_letters(t).iter().take(3).collect::<Vec<_>>()
    );
    eprintln!(
        "{}: {n} rows in {} transactions; rows per version: {:?}",
        t.name,
        per_xid.len(),
        rows.iter()
            .fold(BTreeMap::<&str, usize>::new(), |mut m, r| {
                *m.entry(&r.version).or_default() += 1;
                m
            })
    );
    rows
}

/// The log lines of rejected reloads.
fn rejections(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains("reload rejected"))
        .map(str::to_string)
        .collect()
}

#[test]
fn reload_swaps_without_loss_or_duplicates() {
    let ctx = Ctx::new("reload_swaps_without_loss_or_duplicates");
    let plugin = versioned_component();
    let broker = Broker::mock();
    let pg = Pg::connect();
    let table = pg.table_in("public", &ctx.table_name(), &VERSIONED_COLUMNS);
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 4);
    let kafka = sink_kafka(&broker, &ctx.unique("g"));
    let config =
        |version: &str| plugin_config(&table, &topic, &kafka, &plugin, &[("version", version)]);
    let path = ctx.write("sink.toml", config("v1"));
    let mut sink = ctx.sink("sink").file(&path).start();
    let producer = produce_ids(broker.producer_spec(false), &topic, 2000);
    wait_version(&pg, &table, "v1", &mut sink);
    const LAST: u32 = 5;
    for v in 2..=LAST {
        std::thread::sleep(Duration::from_millis(1000));
        let version = format!("v{v}");
        ctx.note(format!("settings: version = {version}"));
        replace_file(&path, &config(&version));
        wait_version(&pg, &table, &version, &mut sink);
    }
    std::thread::sleep(Duration::from_millis(1000));
    let delivered = producer.stop();
    ctx.note(format!("{} messages produced", delivered.len()));
    pg.wait_rows(&table, delivered.len() as i64, LONG, &mut [&mut sink]);
    sink.stop_ok();

    let rows = check_versioned_run(&pg, &table, &delivered, &plugin);
    let seen: BTreeSet<&str> = rows.iter().map(|r| r.version.as_str()).collect();
    let all: BTreeSet<String> = (1..=LAST).map(|v| format!("v{v}")).collect();
    assert_eq!(
        seen,
        all.iter().map(String::as_str).collect(),
        "every version loaded rows"
    );
    let stderr = sink.stderr();
    assert!(
        rejections(&stderr).is_empty(),
        "no reload may be rejected: {:?}",
        rejections(&stderr)
    );
}

/// A broken reload candidate: what it is, its plugin file and settings, and a word of the
/// rejection's reason.
struct Candidate {
    what: &'static str,
    plugin: PathBuf,
    settings: Vec<(&'static str, &'static str)>,
    reason: &'static str,
}

#[test]
fn reload_rejects_broken_candidates() {
    let ctx = Ctx::new("reload_rejects_broken_candidates");
    let plugin = versioned_component();
    let garbage = ctx.write(
        "garbage.wasm",
        b"\0asm\x0d\0\x01\0this is not a WebAssembly component".repeat(64),
    );
    let broker = Broker::mock();
    let pg = Pg::connect();
    let table = pg.table_in("public", &ctx.table_name(), &VERSIONED_COLUMNS);
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 2);
    let kafka = sink_kafka(&broker, &ctx.unique("g"));
    let config = |plugin: &Path, settings: &[(&str, &str)]| {
        plugin_config(&table, &topic, &kafka, plugin, settings)
    };
    let path = ctx.write("sink.toml", config(&plugin, &[("version", "v1")]));
    let mut sink = ctx.sink("sink").file(&path).start();
    let producer = produce_ids(broker.producer_spec(false), &topic, 2000);
    wait_version(&pg, &table, "v1", &mut sink);

    // Each broken candidate carries its own version, so rows would show if one got in.
    let broken = [
        Candidate {
            what: "a plugin file that is not a component",
            plugin: garbage.clone(),
            settings: vec![("version", "bad-a")],
            reason: "cannot compile",
        },
        Candidate {
            what: "settings its configure rejects",
            plugin: plugin.clone(),
            settings: vec![("version", "bad-b"), ("reject", "true")],
            reason: "reject = true",
        },
        Candidate {
            what: "a converter that traps on the canary batch",
            plugin: plugin.clone(),
            settings: vec![("version", "bad-c"), ("trap_on_canary", "true")],
            reason: "canary batch",
        },
    ];
    for Candidate {
        what,
        plugin: file,
        settings,
        reason,
    } in &broken
    {
        let before = rejections(&sink.stderr()).len();
        ctx.note(format!("candidate: {what}"));
        replace_file(&path, &config(file, settings));
        let t0 = Instant::now();
        let line = loop {
            let all = rejections(&sink.stderr());
            if let Some(line) = all[before.min(all.len())..]
                .iter()
                .find(|l| l.contains(reason))
            {
                break line.clone();
            }
            sink.assert_running(&format!("waiting for the rejection of {what}"));
            assert!(
                t0.elapsed() < LONG,
                "{what}: no \"reload rejected\" line mentioning {reason:?} within {LONG:?}; last stderr:\n{}",
                tail(&sink.stderr(), 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        ctx.note(format!(
            "rejected after {:.1} s: {line}",
            t0.elapsed().as_secs_f64()
        ));
        // New messages keep arriving, converted by v1.
        let count = pg.count(&table);
        pg.wait_rows(&table, count + 500, LONG, &mut [&mut sink]);
        let versions = versions_present(&pg, &table);
        assert_eq!(
            versions,
            BTreeSet::from(["v1".to_string()]),
            "after {what}: only v1 may have loaded rows"
        );
    }

    // A good change is applied.
    ctx.note("candidate: version v2");
    replace_file(&path, &config(&plugin, &[("version", "v2")]));
    wait_version(&pg, &table, "v2", &mut sink);
    std::thread::sleep(Duration::from_millis(500));
    let delivered = producer.stop();
    pg.wait_rows(&table, delivered.len() as i64, LONG, &mut [&mut sink]);
    sink.stop_ok();

    let rows = check_versioned_run(&pg, &table, &delivered, &plugin);
    let seen: BTreeSet<&str> = rows.iter().map(|r| r.version.as_str()).collect();
    assert_eq!(
        seen,
        BTreeSet::from(["v1", "v2"]),
        "only v1 and v2 loaded rows"
    );
    // Rows after the swap carry v2: the last row of every partition that got messages late.
    let last = rows.iter().max_by_key(|r| r.id).expect("rows");
    assert_eq!(
        last.version, "v2",
        "the last message produced was converted by v2"
    );
}
