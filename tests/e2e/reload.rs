//! Hot reload: the test converter `tests/plugins/versioned` (built for wasm32-wasip2 once per
//! test run) tags every row with the `version` setting, the Kafka partition and offset. The
//! tests rewrite the configuration while messages flow and check that swaps lose and double
//! nothing, that each transaction holds one version, and that broken candidates are rejected
//! while the old converter keeps serving.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::harness::*;

/// Builds `tests/plugins/versioned` for wasm32-wasip2 (once per test run).
fn versioned_component() -> PathBuf {
    build_plugin("versioned-plugin", "versioned_plugin.wasm")
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    hex::encode(Sha256::digest(&bytes))
}

/// Replaces a file in one step (write a temporary file, rename it), so that a watcher never
/// reads half of it.
fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write the temporary file");
    std::fs::rename(&tmp, path).expect("rename it into place");
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
        Some((
            None,
            None,
            Some(format!("{{\"id\":{}}}", i + 1).into_bytes()),
        ))
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
            "SELECT plugin_hash FROM pgsink.offsets WHERE sink = $1 || '.' || $2",
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
