//! Bad messages (dead letters, `errors.tolerance = "none"`) and bad starts.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::harness::*;

/// Good messages with bad ones among them: the good ones are loaded, each bad one lands in
/// `pgsink.dead_letters` with its coordinates and a reason, and the stored offsets move past
/// them (the last message of partition 0 is a bad one).
#[test]
fn dead_letters_synchronized_mock() {
    let (ctx, broker, pg, table, topic) =
        stage("dead_letters_synchronized_mock", Broker::mock(), 3);
    let mut producer = broker.producer(false);
    let send_good = |p: &mut Producer, ids: std::ops::RangeInclusive<u64>| {
        for id in ids {
            let key = id.to_string();
            let value = std_message(id);
            p.send(
                &topic,
                Some((id % 3) as i32),
                Some(key.as_bytes()),
                Some(value.as_bytes()),
            );
        }
    };
    // (partition, key, value, a word the reason must contain)
    type Bad = (i32, &'static [u8], Option<&'static [u8]>, &'static str);
    let bad_middle: [Bad; 4] = [
        (
            0,
            b"bad-json",
            Some(&b"{\"identity\": 5, \"location\": "[..]),
            "json",
        ),
        (
            1,
            b"bad-utf8",
            Some(&b"{\"identity\":7,\"name\":\"caf\xe9\"}"[..]),
            "utf-8",
        ),
        (2, b"empty", Some(&b""[..]), "empty"),
        (1, b"tombstone", None, "tombstone"),
    ];
    let bad_last: Bad = (0, b"trailing", Some(&b"{\"identity\":1}}"[..]), "json");
    let mut bad_seqs = Vec::new();
    send_good(&mut producer, 1..=1000);
    for (p, k, v, word) in bad_middle {
        bad_seqs.push((producer.send(&topic, Some(p), Some(k), v), k, v, word));
    }
    send_good(&mut producer, 1001..=3000);
    {
        let (p, k, v, word) = bad_last;
        bad_seqs.push((producer.send(&topic, Some(p), Some(k), v), k, v, word));
    }
    let delivered = producer.flush();
    let ends = end_offsets(&delivered);

    let cfg = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g")).flush_ms(200);
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    pg.wait_all_rows(&table, &(1..=3000).collect(), LONG, &mut [&mut sink]);
    wait_for(
        Duration::from_secs(30),
        "5 dead letters (they commit with the rows)",
        || pg.dead_letters(&table).len() >= bad_seqs.len(),
    );
    sink.stop_ok();

    assert_exactly_once(&pg, &table, &(1..=3000).collect());
    let dls = pg.dead_letters(&table);
    assert_eq!(
        dls.len(),
        bad_seqs.len(),
        "one dead letter per bad message expected: {dls:#?}"
    );
    for (seq, key, value, word) in &bad_seqs {
        let d = &delivered[*seq];
        let dl = dls
            .iter()
            .find(|dl| dl.topic == d.topic && dl.partition == d.partition && dl.offset == d.offset)
            .unwrap_or_else(|| {
                panic!(
                    "no dead letter for {}[{}]@{} (key {}); dead letters: {dls:#?}",
                    d.topic,
                    d.partition,
                    d.offset,
                    String::from_utf8_lossy(key)
                )
            });
        assert_eq!(dl.key.as_deref(), Some(*key), "key of {dl:?}");
        assert_eq!(dl.value.as_deref(), *value, "value of {dl:?}");
        assert!(
            dl.reason.to_lowercase().contains(word),
            "the reason for {} should mention {word:?}: {:?}",
            String::from_utf8_lossy(key),
            dl.reason
        );
    }
    assert_offsets_at_end(&pg, &table, &ends);
}

/// `errors.tolerance = "none"`: the sink stops (non-zero exit) at the first bad message, never
/// loads anything past it and writes no dead letter.
#[test]
fn errors_tolerance_none_stops_at_bad_message_mock() {
    let (ctx, broker, pg, table, topic) = stage("errors_tolerance_none_stops", Broker::mock(), 1);
    let mut producer = broker.producer(false);
    for id in 1..=100 {
        producer.send_std(&topic, id);
    }
    producer.send(&topic, None, Some(b"bad"), Some(b"{\"identity\":101,"));
    for id in 102..=200 {
        producer.send_std(&topic, id);
    }
    producer.flush();
    let cfg = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g"))
        .line("errors.tolerance = \"none\"")
        .flush_ms(200);
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    let status = sink.wait(LONG);
    let stderr = sink.stderr();
    assert!(
        !status.success(),
        "the sink must stop with an error at the bad message; it exited with {status}"
    );
    assert!(
        stderr.to_lowercase().contains("invalid json"),
        "stderr should give the reason (invalid JSON): {}",
        tail(&stderr, 30)
    );
    let r = check_std_rows(&pg.std_rows(&table), &(1..=100).collect::<BTreeSet<u64>>());
    assert!(
        r.unexpected_count == 0 && r.duplicated_ids == 0 && r.wrong_count == 0,
        "nothing past the bad message (offset 100) may be loaded: {}",
        r.summary()
    );
    let stored = pg.stored_offsets(&table);
    assert!(
        stored.values().all(|o| *o <= 100),
        "stored offsets must not move past the bad message: {stored:?}"
    );
    assert!(
        pg.dead_letters(&table).is_empty(),
        "errors.tolerance=none writes no dead letter"
    );
}

/// `errors.deadletter.max.per.minute`: a burst of bad messages beyond the cap stops the sink
/// (non-zero, naming the setting) before the flush that would exceed it commits; every message
/// before that point is accounted for as a row or a dead letter, and none after it.
#[test]
fn errors_dead_letter_cap_stops_the_sink_mock() {
    let (ctx, broker, pg, table, topic) = stage("errors_dead_letter_cap", Broker::mock(), 1);
    let mut producer = broker.producer(false);
    producer.send_std_all(&topic, 1..=500);
    producer.flush();
    let cfg = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g"))
        .line("errors.deadletter.max.per.minute = 20")
        .flush_ms(200);
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    pg.wait_rows(&table, 500, LONG, &mut [&mut sink]);
    for i in 0..30 {
        let key = format!("bad-{i}");
        producer.send(&topic, None, Some(key.as_bytes()), Some(b"{\"identity\":"));
    }
    producer.send_std_all(&topic, 501..=1000);
    producer.flush();
    let status = sink.wait(LONG);
    let stderr = sink.stderr();
    assert!(
        !status.success(),
        "30 dead letters against a cap of 20 must stop the sink; it exited with {status}"
    );
    assert!(
        stderr.contains("errors.deadletter.max.per.minute = 20"),
        "stderr should name the cap: {}",
        tail(&stderr, 20)
    );
    let rows = pg.count(&table);
    let dead = pg.dead_letters(&table).len() as i64;
    let stored = pg.stored_offsets(&table);
    let next = stored.values().copied().max().unwrap_or(0);
    ctx.note(format!(
        "{rows} rows, {dead} dead letters, stored next offset {next}"
    ));
    assert!(
        dead <= 20,
        "{dead} dead letters committed past the cap of 20"
    );
    assert_eq!(
        rows + dead,
        next,
        "rows and dead letters must account for every message below the stored offset"
    );
    assert!(
        next <= 520,
        "the stored offset {next} moved past the 21st bad message (offset 520)"
    );
}

// ------------------------------------------------------------------------------------------
// Startup errors
// ------------------------------------------------------------------------------------------

const FILE_PASSWORD: &str = "e2e-Secr3t-Passw0rd-4711";
const ENV_PASSWORD: &str = "e2e-Env-Secr3t-0815";

struct StartupCase {
    ctx: Ctx,
    broker: Broker,
    pg: Pg,
    topic: String,
    group: String,
}

impl StartupCase {
    /// A topic with 100 messages the sink must not consume.
    fn new(name: &str) -> StartupCase {
        let ctx = Ctx::new(name);
        let broker = Broker::mock();
        let pg = Pg::connect();
        let topic = ctx.unique("t");
        broker.create_topic(&topic, 2);
        let mut p = broker.producer(false);
        p.send_std_all(&topic, 1..=100);
        p.flush();
        let group = ctx.unique("g");
        StartupCase {
            ctx,
            broker,
            pg,
            topic,
            group,
        }
    }

    fn config(&self, table: &Table) -> SinkToml {
        let mut cfg = SinkToml::new(table, &[&self.topic], &self.broker, &self.group);
        cfg.password = Some(FILE_PASSWORD.to_string());
        cfg
    }

    /// Runs the sink; it must exit non-zero within 30 s. Returns its stderr.
    fn expect_failure(&self, cfg: &str) -> String {
        self.expect_failure_env(cfg, &[])
    }

    /// The same with extra environment variables for the sink.
    fn expect_failure_env(&self, cfg: &str, env: &[(&str, &str)]) -> String {
        let t0 = Instant::now();
        let mut run = self.ctx.sink("sink").toml(cfg);
        for (key, value) in env {
            run = run.env(key, value);
        }
        let mut sink = run.start();
        let status = sink.wait(Duration::from_secs(30));
        let stderr = sink.stderr();
        self.ctx.note(format!(
            "exited with {status} after {:.1} s; stderr:\n{}",
            t0.elapsed().as_secs_f64(),
            tail(&stderr, 20)
        ));
        assert!(
            !status.success(),
            "pgsink run must fail at startup, it exited with {status}"
        );
        assert!(!stderr.trim().is_empty(), "stderr must explain the failure");
        assert!(
            !stderr.contains(FILE_PASSWORD),
            "the password from the configuration file appears in stderr:\n{stderr}"
        );
        for (k, v) in env {
            assert!(
                !(k.contains("PASSWORD") && stderr.contains(v)),
                "the password from {k} appears in stderr:\n{stderr}"
            );
        }
        if let Some(pw) = pg_password() {
            assert!(
                !stderr.contains(&pw),
                "the PGSINK_DB_PASSWORD password appears in stderr"
            );
        }
        stderr
    }

    /// Nothing was consumed: the group committed no offset.
    fn assert_nothing_consumed(&self, table: &Table) {
        let committed = self.broker.committed(&self.group, &self.topic, 2);
        assert!(
            committed.values().all(|o| o.is_none()),
            "the group must have no committed offsets after a failed start: {committed:?}"
        );
        assert!(
            self.pg.stored_offsets(table).is_empty(),
            "pgsink.offsets must hold nothing for {}",
            table.qualified()
        );
    }
}

#[test]
fn startup_errors_missing_table() {
    let c = StartupCase::new("startup_errors_missing_table");
    let name = c.ctx.table_name();
    c.pg.batch(&format!("DROP TABLE IF EXISTS public.{}", ident(&name)));
    let table = Table {
        schema: "public".into(),
        name: name.clone(),
        columns: STD_COLUMNS.iter().map(|s| s.to_string()).collect(),
    };
    let stderr = c.expect_failure(&c.config(&table).render());
    assert!(
        stderr.contains(&name),
        "stderr should name the missing table {name}:\n{stderr}"
    );
    c.assert_nothing_consumed(&table);
}

#[test]
fn startup_errors_unknown_column() {
    let c = StartupCase::new("startup_errors_unknown_column");
    let mut table = c.pg.std_table(&c.ctx.table_name());
    table.columns[5] = "no_such_col".into();
    let stderr = c.expect_failure(&c.config(&table).render());
    assert!(
        stderr.contains("no_such_col"),
        "stderr should name the unknown column no_such_col:\n{stderr}"
    );
    table.columns[5] = "az".into();
    assert_eq!(c.pg.count(&table), 0, "the table must stay untouched");
    c.assert_nothing_consumed(&table);
}

#[test]
fn startup_errors_unreachable_db() {
    let c = StartupCase::new("startup_errors_unreachable_db");
    let table = c.pg.std_table(&c.ctx.table_name());
    let port = free_port();
    let mut cfg = c.config(&table);
    cfg.db_host = format!("127.0.0.1:{port}");
    // Nothing answers there, so the environment's password (which overrides the file's) is
    // harmless: it must not be printed either.
    let stderr = c.expect_failure_env(&cfg.render(), &[("PGSINK_DB_PASSWORD", ENV_PASSWORD)]);
    assert!(
        stderr.contains(&port.to_string()),
        "stderr should say which database server could not be reached (127.0.0.1:{port}):\n{stderr}"
    );
    assert_eq!(c.pg.count(&table), 0);
    c.assert_nothing_consumed(&table);
}

#[test]
fn startup_errors_unknown_key() {
    let c = StartupCase::new("startup_errors_unknown_key");
    let table = c.pg.std_table(&c.ctx.table_name());
    let cfg = c.config(&table).line("db.tabel = \"typo\"").render();
    let stderr = c.expect_failure(&cfg);
    assert!(
        stderr.contains("tabel"),
        "stderr should name the unknown key db.tabel:\n{stderr}"
    );
    c.assert_nothing_consumed(&table);
}

#[test]
fn startup_errors_forbidden_kafka_property() {
    let c = StartupCase::new("startup_errors_forbidden_kafka_property");
    let table = c.pg.std_table(&c.ctx.table_name());
    let cfg = c
        .config(&table)
        .kafka("enable.auto.commit", "true")
        .render();
    let stderr = c.expect_failure(&cfg);
    assert!(
        stderr.contains("enable.auto.commit"),
        "stderr should name kafka.enable.auto.commit:\n{stderr}"
    );
    c.assert_nothing_consumed(&table);
}
