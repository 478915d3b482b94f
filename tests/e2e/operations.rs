//! Operating pgsink: the metrics endpoint, `pgsink check`, rows PostgreSQL rejects (dead
//! letters and `pgsink dlq redrive`), and several sinks in one process.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::harness::*;

/// The sum of the samples of `name` for sink `sink`.
fn metric_sum(body: &str, name: &str, sink: &str) -> Option<f64> {
    let s = samples(body, name, &[("sink", sink)]);
    if s.is_empty() {
        None
    } else {
        Some(s.iter().map(|(_, v)| v).sum())
    }
}

#[test]
fn operations_metrics_scraped_during_a_run() {
    let ctx = Ctx::new("operations_metrics_scraped_during_a_run");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let table = pg.std_table(&ctx.table_name());
    let topic = ctx.unique("t");
    let partitions = 3;
    broker.create_topic(&topic, partitions);
    let n: u64 = 1000;
    let mut producer = broker.producer(false);
    producer.send_std_all(&topic, 1..=n);
    let delivered = producer.flush();
    let ends = end_offsets(&delivered);

    let port = free_port();
    let name = ctx.unique("m");
    let cfg = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g"))
        .line(&format!("name = {}", toml_str(&name)))
        .line(&format!(
            "metrics.address = {}",
            toml_str(&format!("127.0.0.1:{port}"))
        ))
        .flush_ms(200);
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();

    // Scrape while it runs, until every row is counted.
    let t0 = Instant::now();
    let mut last_body = String::new();
    let mut scrapes_ok = 0;
    loop {
        sink.assert_running("scraping the metrics");
        if let Some(body) = http_get(port, "/metrics") {
            scrapes_ok += 1;
            let rows = metric_sum(&body, "pgsink_rows_total", &name).unwrap_or(0.0);
            last_body = body;
            if rows >= n as f64 {
                break;
            }
        }
        if t0.elapsed() > LONG {
            panic!(
                "pgsink_rows_total{{sink=\"{name}\"}} never reached {n} within {LONG:?} \
                 ({scrapes_ok} successful scrapes); last body:\n{}",
                tail(&last_body, 60)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    ctx.note(format!(
        "rows_total reached {n} after {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    let body = last_body.clone();
    let rows = metric_sum(&body, "pgsink_rows_total", &name).unwrap();
    assert_eq!(
        rows, n as f64,
        "pgsink_rows_total must be exactly {n} (no duplicates):\n{body}"
    );
    let messages = metric_sum(&body, "pgsink_messages_total", &name)
        .unwrap_or_else(|| panic!("pgsink_messages_total{{sink=\"{name}\"}} missing:\n{body}"));
    assert_eq!(
        messages, n as f64,
        "pgsink_messages_total should count the {n} messages:\n{body}"
    );
    let flushes = metric_sum(&body, "pgsink_flushes_total", &name)
        .unwrap_or_else(|| panic!("pgsink_flushes_total{{sink=\"{name}\"}} missing:\n{body}"));
    assert!(
        flushes >= 1.0 && flushes <= n as f64,
        "pgsink_flushes_total should be between 1 and {n}: {flushes}\n{body}"
    );
    let dead = metric_sum(&body, "pgsink_dead_letters_total", &name).unwrap_or(0.0);
    assert_eq!(dead, 0.0, "no dead letters expected:\n{body}");

    // The committed offsets follow (the Kafka commit comes after the database commit).
    let mut body = body;
    let t1 = Instant::now();
    let committed = loop {
        let committed = samples(&body, "pgsink_committed_offset", &[("sink", &name)])
            .into_iter()
            .collect::<BTreeMap<_, _>>();
        let sum: f64 = committed.values().sum();
        if sum >= n as f64 {
            break committed;
        }
        sink.assert_running("waiting for pgsink_committed_offset");
        if t1.elapsed() > LONG {
            panic!(
                "pgsink_committed_offset{{sink=\"{name}\"}} never summed to {n} within {LONG:?}: \
                 {committed:?}\n{body}"
            );
        }
        std::thread::sleep(Duration::from_millis(300));
        if let Some(b) = http_get(port, "/metrics") {
            body = b;
        }
    };
    for ((t, p), end) in &ends {
        let found = committed.iter().find(|(labels, _)| {
            labels.contains(&format!("topic=\"{t}\""))
                && labels.contains(&format!("partition=\"{p}\""))
        });
        match found {
            Some((_, v)) => assert_eq!(
                *v, *end as f64,
                "pgsink_committed_offset of {t}[{p}] should be its end offset: {committed:?}"
            ),
            None => panic!("no pgsink_committed_offset for {t}[{p}]: {committed:?}\n{body}"),
        }
    }
    sink.stop_ok();
    assert_exactly_once(&pg, &table, &(1..=n).collect());
    assert_sink_offsets_at_end(&pg, &name, &ends);
}

/// `pgsink check --config FILE [extra args]`: (exit code, stdout).
fn run_check(ctx: &Ctx, label: &str, config: &str, extra: &[&str]) -> (i32, String) {
    let path = ctx.write(&format!("{label}.toml"), config);
    let path = path.to_str().expect("utf-8 path").to_string();
    let mut args = vec!["check", "--config", &path];
    args.extend_from_slice(extra);
    let out = ctx.run_pgsink(&args, b"", Duration::from_secs(90));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ctx.note(format!(
        "check {label}: {}\n--- stdout\n{stdout}--- stderr\n{}",
        out.status,
        tail(&stderr, 20)
    ));
    (out.status.code().unwrap_or(-1), stdout)
}

/// The check lines (`ok`/`FAIL`, what) of `check`'s output.
fn check_lines(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace();
            (
                words.next().unwrap_or("").to_string(),
                words.next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn operations_check_reports_each_problem() {
    let (ctx, broker, pg, table, topic) =
        stage("operations_check_reports_each_problem", Broker::mock(), 2);
    let group = ctx.unique("g");

    // Everything in place.
    let good = SinkToml::new(&table, &[&topic], &broker, &group);
    let (code, out) = run_check(&ctx, "good", &good.render(), &[]);
    let lines = check_lines(&out);
    assert_eq!(code, 0, "check of a good configuration must exit 0:\n{out}");
    assert!(!lines.is_empty(), "check printed nothing");
    assert!(
        lines.iter().all(|(status, _)| status == "ok"),
        "every line must be ok:\n{out}"
    );
    for what in ["config", "database", "table", "kafka", "topic"] {
        assert!(
            lines.iter().any(|(_, w)| w == what),
            "an `ok {what}` line expected:\n{out}"
        );
    }

    let expect_fail = |label: &str, cfg: &SinkToml, extra: &[&str], what: &str| {
        let (code, out) = run_check(&ctx, label, &cfg.render(), extra);
        assert_eq!(code, 1, "{label}: check must exit 1:\n{out}");
        let lines = check_lines(&out);
        assert!(
            lines.iter().any(|(s, w)| s == "FAIL" && w == what),
            "{label}: a `FAIL {what}` line expected:\n{out}"
        );
        assert!(
            out.contains("fix:"),
            "{label}: a failure comes with a fix:\n{out}"
        );
        out
    };

    // A missing table.
    let mut missing_table = table.clone();
    missing_table.name = format!("{}_missing", table.name);
    pg.batch(&format!(
        "DROP TABLE IF EXISTS {}",
        missing_table.qualified()
    ));
    let cfg = SinkToml::new(&missing_table, &[&topic], &broker, &group);
    let out = expect_fail("missing_table", &cfg, &[], "table");
    assert!(
        out.contains(&missing_table.name),
        "the FAIL table line should name the table:\n{out}"
    );

    // A missing topic.
    let absent = ctx.unique("absent");
    let cfg = SinkToml::new(&table, &[&absent], &broker, &group);
    let out = expect_fail("missing_topic", &cfg, &[], "topic");
    assert!(
        out.contains(&absent),
        "the FAIL topic line should name the topic:\n{out}"
    );

    // An unreachable broker.
    let cfg =
        SinkToml::new(&table, &[&topic], &broker, &group).kafka("bootstrap.servers", "127.0.0.1:1");
    let t0 = Instant::now();
    expect_fail(
        "unreachable_broker",
        &cfg,
        &["--broker-timeout", "2"],
        "kafka",
    );
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "--broker-timeout 2 should bound the check: it took {:?}",
        t0.elapsed()
    );
}

const CHECK_NAME: &str = "e2e_ops_no_7";

/// A standard table whose `id` may not end in 07 (mod 100) and whose `lat` is NOT NULL.
fn constrained_table(pg: &Pg, ctx: &Ctx) -> Table {
    let table = pg.std_table(&ctx.table_name());
    pg.batch(&format!(
        "ALTER TABLE {q} ADD CONSTRAINT {c} CHECK (id % 100 <> 7); \
         ALTER TABLE {q} ALTER COLUMN lat SET NOT NULL",
        q = table.qualified(),
        c = ident(CHECK_NAME)
    ));
    table
}

/// A message of `id` without a location: lat and lon are NULL.
fn no_location_message(id: u64) -> String {
    format!("{{\"identity\":{id},\"acceleration\":[0.5,-1.25,9.75]}}")
}

#[test]
fn operations_db_rejected_rows_go_to_dead_letters() {
    let ctx = Ctx::new("operations_db_rejected_rows_go_to_dead_letters");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let table = constrained_table(&pg, &ctx);
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 3);
    let mut producer = broker.producer(false);
    // Standard messages 1..=600 (6 of them violate the CHECK), then 4 without a location (NOT
    // NULL), then more standard messages.
    let mut null_seqs = Vec::new();
    producer.send_std_all(&topic, 1..=600);
    for id in 5001..=5004u64 {
        let key = id.to_string();
        let value = no_location_message(id);
        null_seqs.push(producer.send(&topic, None, Some(key.as_bytes()), Some(value.as_bytes())));
    }
    producer.send_std_all(&topic, 601..=1000);
    let delivered = producer.flush();
    let total = delivered.len() as i64;
    let ends = end_offsets(&delivered);
    let check_ids: BTreeSet<u64> = (1..=1000).filter(|id| id % 100 == 7).collect();
    let good: BTreeSet<u64> = (1..=1000).filter(|id| id % 100 != 7).collect();
    // Sequence numbers of the CHECK violators: id i was sent as seq i-1 (i <= 600) or i+3.
    let check_seqs: Vec<usize> = check_ids
        .iter()
        .map(|&id| {
            if id <= 600 {
                id as usize - 1
            } else {
                id as usize + 3
            }
        })
        .collect();

    let cfg = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g")).flush_ms(200);
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    let expected_dead = check_seqs.len() + null_seqs.len();
    pg.wait_rows(&table, good.len() as i64, LONG, &mut [&mut sink]);
    wait_for(
        Duration::from_secs(60),
        &format!("{expected_dead} dead letters"),
        || pg.dead_letters(&table).len() >= expected_dead,
    );
    wait_for(Duration::from_secs(60), "stored offsets at the end", || {
        pg.stored_offsets(&table).values().sum::<i64>() >= total
    });
    sink.stop_ok();

    assert_exactly_once(&pg, &table, &good);
    let dls = pg.dead_letters(&table);
    assert_eq!(
        dls.len(),
        expected_dead,
        "one dead letter per rejected message: {dls:#?}"
    );
    let find = |seq: usize| {
        let d = &delivered[seq];
        dls.iter()
            .find(|dl| dl.topic == d.topic && dl.partition == d.partition && dl.offset == d.offset)
            .unwrap_or_else(|| {
                panic!(
                    "no dead letter for {}[{}]@{} (seq {seq}); dead letters: {dls:#?}",
                    d.topic, d.partition, d.offset
                )
            })
    };
    for (&seq, &id) in check_seqs.iter().zip(&check_ids) {
        let dl = find(seq);
        assert_eq!(dl.key.as_deref(), Some(id.to_string().as_bytes()), "{dl:?}");
        assert_eq!(
            dl.value.as_deref(),
            Some(std_message(id).as_bytes()),
            "{dl:?}"
        );
        assert!(
            dl.reason.contains(CHECK_NAME),
            "the reason of id {id} should name the check constraint {CHECK_NAME}: {:?}",
            dl.reason
        );
    }
    for (i, &seq) in null_seqs.iter().enumerate() {
        let id = 5001 + i as u64;
        let dl = find(seq);
        assert_eq!(
            dl.value.as_deref(),
            Some(no_location_message(id).as_bytes()),
            "{dl:?}"
        );
        let reason = dl.reason.to_lowercase();
        assert!(
            reason.contains("not-null") || reason.contains("null value"),
            "the reason of id {id} should mention the NOT NULL constraint: {:?}",
            dl.reason
        );
        assert!(
            reason.contains("lat"),
            "the reason of id {id} should name column lat: {:?}",
            dl.reason
        );
    }
    let stored = pg.stored_offsets(&table);
    assert_eq!(
        stored.values().sum::<i64>(),
        total,
        "the stored offsets must cover every message: {stored:?}"
    );
    assert_offsets_at_end(&pg, &table, &ends);
}

#[test]
fn operations_dlq_redrive_after_fix() {
    let ctx = Ctx::new("operations_dlq_redrive_after_fix");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let table = constrained_table(&pg, &ctx);
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 2);
    let n = 500u64;
    let mut producer = broker.producer(false);
    producer.send_std_all(&topic, 1..=n);
    let delivered = producer.flush();
    let ends = end_offsets(&delivered);
    let good: BTreeSet<u64> = (1..=n).filter(|id| id % 100 != 7).collect();
    let rejected = (n as usize) - good.len();

    let cfg = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g")).flush_ms(200);
    let path = ctx.write("sink.toml", cfg.render());
    let path_s = path.to_str().expect("utf-8 path").to_string();
    let mut sink = ctx.sink("sink").file(&path).start();
    pg.wait_rows(&table, good.len() as i64, LONG, &mut [&mut sink]);
    wait_for(
        Duration::from_secs(60),
        &format!("{rejected} dead letters"),
        || pg.dead_letters(&table).len() >= rejected,
    );
    sink.stop_ok();
    assert_exactly_once(&pg, &table, &good);
    assert_eq!(pg.dead_letters(&table).len(), rejected);
    assert_offsets_at_end(&pg, &table, &ends);

    let list = |label: &str| {
        let out = ctx.run_pgsink(
            &["dlq", "list", "--config", &path_s],
            b"",
            Duration::from_secs(60),
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "dlq list ({label}) failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        ctx.note(format!("dlq list ({label}):\n{stdout}"));
        stdout
    };
    let before = list("before");
    assert!(
        before.contains(&format!("{rejected} dead letter(s) shown")),
        "dlq list should show the {rejected} dead letters:\n{before}"
    );
    assert!(
        before.contains(CHECK_NAME),
        "dlq list should show the reason:\n{before}"
    );

    // The fix: drop the constraint; then re-drive.
    pg.batch(&format!(
        "ALTER TABLE {} DROP CONSTRAINT {}",
        table.qualified(),
        ident(CHECK_NAME)
    ));
    let out = ctx.run_pgsink(
        &["dlq", "redrive", "--config", &path_s],
        b"",
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ctx.note(format!("dlq redrive: {}\n{stdout}", out.status));
    assert!(
        out.status.success(),
        "dlq redrive failed: {}\n{stdout}\n{}",
        out.status,
        tail(&stderr, 30)
    );
    assert!(
        stdout.contains(&format!(
            "{rejected} dead letter(s) read: {rejected} loaded as {rejected} row(s), 0 still failing"
        )),
        "unexpected redrive summary:\n{stdout}"
    );
    assert_exactly_once(&pg, &table, &(1..=n).collect());
    let left = pg.dead_letters(&table);
    assert!(
        left.is_empty(),
        "dead letters left after redrive: {left:#?}"
    );
    let after = list("after");
    assert!(
        after.contains("0 dead letter(s) shown"),
        "dlq list should show no dead letter after the redrive:\n{after}"
    );
    assert_offsets_at_end(&pg, &table, &ends);
}

#[test]
fn operations_two_sinks_in_one_process() {
    let ctx = Ctx::new("operations_two_sinks_in_one_process");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let table_a = pg.std_table(&ctx.table_name());
    let table_b = pg.std_table(&ctx.table_name());
    let topic_a = ctx.unique("a");
    let topic_b = ctx.unique("b");
    broker.create_topic(&topic_a, 2);
    broker.create_topic(&topic_b, 3);
    let ids_a: BTreeSet<u64> = (1..=700).collect();
    let ids_b: BTreeSet<u64> = (10_001..=10_400).collect();
    let mut producer = broker.producer(false);
    producer.send_std_all(&topic_a, ids_a.iter().copied());
    producer.send_std_all(&topic_b, ids_b.iter().copied());
    let delivered = producer.flush();
    let ends_a: BTreeMap<_, _> = end_offsets(&delivered)
        .into_iter()
        .filter(|((t, _), _)| *t == topic_a)
        .collect();
    let ends_b: BTreeMap<_, _> = end_offsets(&delivered)
        .into_iter()
        .filter(|((t, _), _)| *t == topic_b)
        .collect();

    let name_a = ctx.unique("sink_a");
    let name_b = ctx.unique("sink_b");
    let mut cfg = String::new();
    cfg.push_str(&format!("db.host = {}\n", toml_str(&pg_host_port())));
    cfg.push_str(&format!("db.database = {}\n", toml_str(TEST_DB)));
    cfg.push_str(&format!("db.username = {}\n", toml_str(&pg_user())));
    cfg.push_str("db.schema = \"public\"\n");
    cfg.push_str(&format!("db.columns = {}\n", toml_list(&STD_COLUMNS)));
    cfg.push_str(&format!("db.json.parse = {}\n", toml_str(STD_PATHS)));
    cfg.push_str("flush.interval.ms = 200\n");
    cfg.push_str(&format!(
        "kafka.bootstrap.servers = {}\n",
        toml_str(&broker.bootstrap())
    ));
    for (name, topic, table) in [(&name_a, &topic_a, &table_a), (&name_b, &topic_b, &table_b)] {
        cfg.push_str("\n[[sink]]\n");
        cfg.push_str(&format!("name = {}\n", toml_str(name)));
        cfg.push_str(&format!("topics = {}\n", toml_list(&[topic])));
        cfg.push_str(&format!("db.table = {}\n", toml_str(&table.name)));
    }
    ctx.note(format!("config:\n{cfg}"));
    let mut sink = ctx.sink("sink").toml(&cfg).start();
    pg.wait_all_rows(&table_a, &ids_a, LONG, &mut [&mut sink]);
    pg.wait_all_rows(&table_b, &ids_b, LONG, &mut [&mut sink]);
    wait_for(Duration::from_secs(30), "stored offsets at the end", || {
        let nonzero = |t: &str| -> BTreeMap<(String, i32), i64> {
            pg.sink_offsets(t)
                .into_iter()
                .filter(|(_, v)| *v != 0)
                .collect()
        };
        nonzero(&name_a) == ends_a && nonzero(&name_b) == ends_b
    });
    // Each sink has its own consumer group, connect-<name>, at the end of its topic.
    wait_committed_at_end(
        &broker,
        &format!("connect-{name_a}"),
        &topic_a,
        2,
        &ends_a,
        &mut sink,
    );
    wait_committed_at_end(
        &broker,
        &format!("connect-{name_b}"),
        &topic_b,
        3,
        &ends_b,
        &mut sink,
    );
    sink.stop_ok();
    assert_exactly_once(&pg, &table_a, &ids_a);
    assert_exactly_once(&pg, &table_b, &ids_b);
    assert_sink_offsets_at_end(&pg, &name_a, &ends_a);
    assert_sink_offsets_at_end(&pg, &name_b, &ends_b);
    assert!(pg.dead_letters(&table_a).is_empty());
    assert!(pg.dead_letters(&table_b).is_empty());
}
