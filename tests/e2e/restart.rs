//! Stopping and crashing sinks mid-stream, and two sinks racing on one table.
//!
//! On tansu, every message is produced as its own batch (`batch.num.messages=1`): tansu's memory
//! engine cannot fetch from the middle of a batch, and these tests resume from stored offsets.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::harness::*;

pub(crate) struct Plan {
    pub partitions: i32,
    /// Produced before the first sink starts.
    pub initial: u64,
    /// Produced while the sinks run, at `rate` messages per second.
    pub during: u64,
    pub rate: u64,
}

impl Plan {
    pub fn total(&self) -> u64 {
        self.initial + self.during
    }

    pub fn ids(&self) -> BTreeSet<u64> {
        (1..=self.total()).collect()
    }
}

/// Fields drop in this order: the producer thread stops before the broker goes away, and the
/// context (which prints the sinks' logs when the test fails) goes last.
pub(crate) struct Scene {
    background: Option<BackgroundProducer>,
    initial: Vec<Delivered>,
    /// Where each message id landed (filled by `finish_producing`).
    pub located: std::collections::BTreeMap<u64, Delivered>,
    pub table: Table,
    pub topic: String,
    pub group: String,
    pub database: String,
    /// `db.host` of the sinks.
    pub db_host: String,
    pub pg: Pg,
    pub broker: Broker,
    pub ctx: Ctx,
}

impl Scene {
    /// Topic, table, the initial messages, and the background producer started.
    pub fn new(name: &str, broker: Broker, plan: &Plan) -> Scene {
        Scene::new_in(name, broker, plan, TEST_DB)
    }

    /// The same in another database (tests that disturb every pgsink connection of it).
    pub fn new_in(name: &str, broker: Broker, plan: &Plan, database: &str) -> Scene {
        Scene::new_on(
            Ctx::new(name),
            broker,
            plan,
            Pg::connect_to(database),
            &pg_host_port(),
            database,
        )
    }

    /// The same on another server: `pg` is connected to it, the sinks reach it at `db_host`.
    pub fn new_on(
        ctx: Ctx,
        broker: Broker,
        plan: &Plan,
        pg: Pg,
        db_host: &str,
        database: &str,
    ) -> Scene {
        let table = pg.std_table(&ctx.table_name());
        let topic = ctx.unique("t");
        broker.create_topic(&topic, plan.partitions);
        let one_per_batch = matches!(broker, Broker::Tansu(_));
        let mut producer = broker.producer(one_per_batch);
        producer.send_std_all(&topic, 1..=plan.initial);
        let initial = producer.flush();
        ctx.note(format!(
            "{} messages produced before the start; {} more at {}/s while the sinks run",
            plan.initial, plan.during, plan.rate
        ));
        let background = BackgroundProducer::start(
            broker.producer_spec(one_per_batch),
            &topic,
            (plan.initial + 1..=plan.total()).collect(),
            plan.rate,
        );
        let group = ctx.unique("g");
        Scene {
            database: database.to_string(),
            db_host: db_host.to_string(),
            ctx,
            broker,
            pg,
            table,
            topic,
            group,
            initial,
            located: Default::default(),
            background: Some(background),
        }
    }

    pub fn config(&self, mode: &str) -> SinkToml {
        let mut cfg = SinkToml::new(&self.table, &[&self.topic], &self.broker, &self.group);
        cfg.database = self.database.clone();
        cfg.db_host = self.db_host.clone();
        cfg.delivery(mode)
            .flush_ms(100)
            // A SIGKILLed member stays in the group until its session times out; the
            // restarted sink must wait for that before it gets partitions.
            .kafka("session.timeout.ms", "6000")
    }

    /// Waits for the background producer; returns the end offsets of everything produced.
    pub fn finish_producing(&mut self) -> std::collections::BTreeMap<(String, i32), i64> {
        let background = self.background.take().expect("producer").finish();
        // Message ids: 1.. for the initial ones, then initial+1.. in the background.
        let first_background = self.initial.len() as u64 + 1;
        for d in &self.initial {
            self.located.insert(d.seq as u64 + 1, d.clone());
        }
        for d in &background {
            self.located
                .insert(first_background + d.seq as u64, d.clone());
        }
        end_offsets(&self.located.values().cloned().collect::<Vec<_>>())
    }

    /// Ends a synchronized run: waits for the producer and for a row of every id, lets the
    /// sinks run on for 2 s (none may add a row later, or exit), stops them cleanly, and checks
    /// every message exactly once with the stored offsets at the end of every partition.
    pub fn finish_exactly_once(&mut self, ids: &BTreeSet<u64>, sinks: &mut [&mut Sink]) {
        let ends = self.finish_producing();
        self.wait_all(ids, sinks);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(2) {
            for sink in sinks.iter_mut() {
                sink.assert_running("after all rows were loaded");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for sink in sinks.iter_mut() {
            sink.stop_ok();
        }
        assert_exactly_once(&self.pg, &self.table, ids);
        assert_offsets_at_end(&self.pg, &self.table, &ends);
    }

    /// Ends a guaranteed run: waits for the producer and for every id, stops the sink cleanly
    /// and checks that no id is missing (duplicates allowed; their count goes to the log).
    pub fn finish_at_least_once(&mut self, ids: &BTreeSet<u64>, sink: &mut Sink) {
        self.finish_producing();
        let total = ids.len() as i64;
        let (pg, table) = (&self.pg, &self.table);
        wait_for(
            LONG,
            &format!("{total} distinct ids in {}", table.name),
            || {
                sink.assert_running("waiting for every id");
                pg.count_distinct_ids(table) >= total
            },
        );
        sink.stop_ok();
        let dups = assert_at_least_once(&self.pg, &self.table, ids);
        self.ctx.note(format!(
            "{dups} duplicate rows (allowed in guaranteed mode)"
        ));
    }

    /// Waits for a row of every id; on timeout the failure also says, for each missing id,
    /// where the broker acknowledged it, what the log holds there and the stored offset.
    pub fn wait_all(&self, ids: &BTreeSet<u64>, sinks: &mut [&mut Sink]) {
        let Err(e) = self.pg.try_wait_all_rows(&self.table, ids, LONG, sinks) else {
            return;
        };
        let r = check_std_rows(&self.pg.std_rows(&self.table), ids);
        let stored = self.pg.stored_offsets(&self.table);
        let mut details = Vec::new();
        for id in &r.missing {
            let Some(d) = self.located.get(id) else {
                details.push(format!("id {id}: no delivery report"));
                continue;
            };
            let in_log = self
                .broker
                .read_at(&d.topic, d.partition, d.offset)
                .map(|(o, k, _)| format!("offset {o} holds key {}", String::from_utf8_lossy(&k)))
                .unwrap_or_else(|| "nothing readable there".into());
            details.push(format!(
                "id {id}: acknowledged at {}[{}]@{}; the log: {in_log}; stored next offset of that partition: {:?}",
                d.topic,
                d.partition,
                d.offset,
                stored.get(&(d.topic.clone(), d.partition))
            ));
        }
        panic!("{e}\nmissing ids:\n{}", details.join("\n"));
    }
}

fn sigterm_restart(name: &str, broker: Broker, plan: Plan) {
    let mut s = Scene::new(name, broker, &plan);
    let total = plan.total() as i64;
    let cfg = s.config("synchronized").render();

    let mut run1 = s.ctx.sink("run1").toml(&cfg).start();
    s.pg.wait_rows(&s.table, 1, LONG, &mut [&mut run1]);
    let before = s.pg.count(&s.table);
    run1.stop_ok();
    let after = assert_synchronized_consistent(&s.pg, &s.table, &plan.ids());
    s.ctx.note(format!(
        "run1 stopped by SIGTERM at {before} rows; {after} rows after its final flush"
    ));
    assert!(
        (after as i64) < total,
        "run1 should have been stopped mid-stream, but all {total} rows were loaded"
    );

    let mut run2 = s.ctx.sink("run2").toml(&cfg).start();
    s.finish_exactly_once(&plan.ids(), &mut [&mut run2]);
}

#[test]
fn synchronized_sigterm_restart_mock() {
    sigterm_restart(
        "synchronized_sigterm_restart_mock",
        Broker::mock(),
        Plan {
            partitions: 8,
            initial: 20_000,
            during: 20_000,
            rate: 5_000,
        },
    );
}

#[test]
fn synchronized_sigterm_restart_tansu() {
    sigterm_restart(
        "synchronized_sigterm_restart_tansu",
        Broker::tansu(),
        Plan {
            partitions: 8,
            initial: 20_000,
            during: 10_000,
            rate: 2_500,
        },
    );
}

#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// Once this run has loaded this many more rows (or everything is loaded).
    Rows(i64),
    /// This long after the start (possibly before any row: group join, seek).
    After(Duration),
}

fn kill9_restart(name: &str, broker: Broker, plan: Plan) {
    let mut s = Scene::new(name, broker, &plan);
    let total = plan.total() as i64;
    let cfg = s.config("synchronized").render();
    let moments = [
        KillAt::Rows(1),
        KillAt::After(Duration::from_millis(2500)),
        KillAt::Rows(3000),
        KillAt::After(Duration::from_millis(700)),
        KillAt::Rows(1),
    ];
    let mut mid_stream_kills = 0;
    for (i, at) in moments.iter().enumerate() {
        let label = format!("run{}", i + 1);
        let base = s.pg.count(&s.table);
        let mut sink = s.ctx.sink(&label).toml(&cfg).start();
        match *at {
            KillAt::Rows(k) => {
                s.pg.wait_rows(&s.table, (base + k).min(total), LONG, &mut [&mut sink]);
            }
            KillAt::After(d) => {
                sink.stays_up(d, "before the planned kill -9");
            }
        }
        sink.kill9();
        let rows = assert_synchronized_consistent(&s.pg, &s.table, &plan.ids()) as i64;
        s.ctx.note(format!(
            "{label}: kill -9 at {at:?}: {base} rows before the start, {rows} after the kill"
        ));
        if rows > base && rows < total {
            mid_stream_kills += 1;
        }
    }
    assert!(
        mid_stream_kills >= 2,
        "only {mid_stream_kills} kills happened mid-stream after progress; the test needs at least 2"
    );

    let mut last = s.ctx.sink("final").toml(&cfg).start();
    s.finish_exactly_once(&plan.ids(), &mut [&mut last]);
}

#[test]
fn synchronized_kill9_restart_mock() {
    kill9_restart(
        "synchronized_kill9_restart_mock",
        Broker::mock(),
        Plan {
            partitions: 8,
            initial: 30_000,
            during: 30_000,
            rate: 3_000,
        },
    );
}

#[test]
fn synchronized_kill9_restart_tansu() {
    kill9_restart(
        "synchronized_kill9_restart_tansu",
        Broker::tansu(),
        Plan {
            partitions: 8,
            initial: 20_000,
            during: 10_000,
            rate: 1_000,
        },
    );
}

/// Two synchronized sinks with different consumer groups (so both read every partition) on the
/// same table: the offset fence must keep every message to exactly one row.
#[test]
fn synchronized_fence_two_processes_mock() {
    let plan = Plan {
        partitions: 6,
        initial: 30_000,
        during: 10_000,
        rate: 2_000,
    };
    let mut s = Scene::new("synchronized_fence_two_processes", Broker::mock(), &plan);
    let cfg_a = s.config("synchronized").render();
    let cfg_b = s
        .config("synchronized")
        .kafka("group.id", &s.ctx.unique("other_group"))
        .render();
    let mut a = s.ctx.sink("a").toml(&cfg_a).start();
    let mut b = s.ctx.sink("b").toml(&cfg_b).start();
    s.finish_exactly_once(&plan.ids(), &mut [&mut a, &mut b]);
    let fenced = a.stderr().matches("fence").count() + b.stderr().matches("fence").count();
    s.ctx
        .note(format!("stderr lines mentioning the fence: {fenced}"));
}

/// guaranteed: kill -9 twice mid-stream, then a clean run: every id present (duplicates allowed).
#[test]
fn guaranteed_kill9_restart_mock() {
    let plan = Plan {
        partitions: 8,
        initial: 30_000,
        during: 20_000,
        rate: 4_000,
    };
    let mut s = Scene::new("guaranteed_kill9_restart", Broker::mock(), &plan);
    let cfg = s.config("guaranteed").render();
    for i in 1..=2 {
        let label = format!("run{i}");
        let base = s.pg.count(&s.table);
        let mut sink = s.ctx.sink(&label).toml(&cfg).start();
        s.pg.wait_rows(&s.table, base + 1, LONG, &mut [&mut sink]);
        sink.kill9();
        s.ctx.note(format!(
            "{label}: kill -9 after progress; {} rows, {} distinct ids",
            s.pg.count(&s.table),
            s.pg.count_distinct_ids(&s.table)
        ));
    }
    let mut last = s.ctx.sink("final").toml(&cfg).start();
    s.finish_at_least_once(&plan.ids(), &mut last);
    let stored = s.pg.stored_offsets(&s.table);
    assert!(
        stored.is_empty(),
        "guaranteed: pgsink.offsets must hold nothing for this table, found {stored:?}"
    );
}

/// The broker goes away for 6 s mid-stream and comes back: the sink rides it out (keeps
/// running) and ends with every message exactly once.
#[test]
fn synchronized_broker_down_mock() {
    broker_down("synchronized_broker_down_mock", &[]);
}

/// The same with a big prefetch queue (a million messages, 64 MiB, librdkafka's 1 s refill
/// pause): many fetched-but-unloaded messages are pending when the session times out and the
/// partitions are revoked and assigned again.
#[test]
fn synchronized_broker_down_big_prefetch_mock() {
    broker_down(
        "synchronized_broker_down_big_prefetch_mock",
        &[
            ("queued.min.messages", "1000000"),
            ("queued.max.messages.kbytes", "65536"),
            ("fetch.queue.backoff.ms", "1000"),
        ],
    );
}

/// The same with incremental rebalancing: the session timeout revokes the partitions as lost.
#[test]
fn synchronized_broker_down_cooperative_mock() {
    broker_down(
        "synchronized_broker_down_cooperative_mock",
        &[("partition.assignment.strategy", "cooperative-sticky")],
    );
}

fn broker_down(name: &str, kafka: &[(&str, &str)]) {
    let plan = Plan {
        partitions: 4,
        initial: 20_000,
        during: 20_000,
        rate: 2_000,
    };
    let mut s = Scene::new(name, Broker::mock(), &plan);
    let mut cfg = s.config("synchronized");
    for (k, v) in kafka {
        cfg = cfg.kafka(k, v);
    }
    let cfg = cfg.render();
    let mut sink = s.ctx.sink("sink").toml(&cfg).start();
    s.pg.wait_rows(&s.table, 1, LONG, &mut [&mut sink]);
    let Broker::Mock(mock) = &s.broker else {
        unreachable!()
    };
    mock.set_down(true);
    s.ctx
        .note(format!("broker down at {} rows", s.pg.count(&s.table)));
    sink.stays_up(Duration::from_secs(6), "the broker is down");
    let during = assert_synchronized_consistent(&s.pg, &s.table, &plan.ids());
    mock.set_down(false);
    s.ctx.note(format!("broker up again; {during} rows"));
    s.finish_exactly_once(&plan.ids(), &mut [&mut sink]);
}

/// PostgreSQL terminates the sink's connections mid-stream. The sink may reconnect by itself
/// or exit non-zero (then it is restarted once); either way the table stays consistent and
/// ends with every message exactly once. Runs in its own database so that terminating every
/// `pgsink` connection there disturbs no other test.
#[test]
fn synchronized_db_connection_lost_mock() {
    let plan = Plan {
        partitions: 4,
        initial: 20_000,
        during: 20_000,
        rate: 2_000,
    };
    let mut s = Scene::new_in(
        "synchronized_db_connection_lost_mock",
        Broker::mock(),
        &plan,
        "pgsink_test_conn",
    );
    let total = plan.total() as i64;
    let cfg = s.config("synchronized").render();
    let mut sink = s.ctx.sink("run1").toml(&cfg).start();
    s.pg.wait_rows(&s.table, 1, LONG, &mut [&mut sink]);
    let killed = s.pg.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'pgsink' AND pid <> pg_backend_pid()",
        &[],
    );
    s.ctx.note(format!(
        "terminated {} pgsink connections at {} rows",
        killed.len(),
        s.pg.count(&s.table)
    ));
    assert!(
        !killed.is_empty(),
        "no pgsink connection found to terminate"
    );
    let mut restarted = None;
    let t0 = Instant::now();
    loop {
        if s.pg.count(&s.table) >= total {
            break;
        }
        if let Some(status) = sink.try_status() {
            assert!(
                restarted.is_none(),
                "the restarted sink exited too ({status})"
            );
            assert!(
                !status.success(),
                "the sink exited with status 0 after losing its database connection, without being asked to stop"
            );
            let rows = assert_synchronized_consistent(&s.pg, &s.table, &plan.ids());
            s.ctx.note(format!(
                "run1 exited with {status} after losing its connection ({rows} rows); restarting"
            ));
            restarted = Some(status);
            sink = s.ctx.sink("run2").toml(&cfg).start();
        }
        assert!(
            t0.elapsed() < LONG,
            "timed out waiting for {total} rows: {} rows",
            s.pg.count(&s.table)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s.ctx.note(match restarted {
        Some(st) => format!("recovered by restart (run1 exited with {st})"),
        None => "recovered without a restart".to_string(),
    });
    s.finish_exactly_once(&plan.ids(), &mut [&mut sink]);
}

/// Two synchronized sinks in the SAME consumer group: the second one joining and the first one
/// leaving each rebalance the partitions between live processes; every message exactly once.
#[test]
fn synchronized_same_group_rebalance_mock() {
    same_group_rebalance("synchronized_same_group_rebalance_mock", "range,roundrobin");
}

/// The same with incremental rebalancing (cooperative-sticky): `a` keeps loading the
/// partitions it keeps while `b` joins.
#[test]
fn synchronized_same_group_rebalance_cooperative_mock() {
    same_group_rebalance(
        "synchronized_same_group_rebalance_cooperative_mock",
        "cooperative-sticky",
    );
}

fn same_group_rebalance(name: &str, strategy: &str) {
    let plan = Plan {
        partitions: 6,
        initial: 30_000,
        during: 30_000,
        rate: 1_000,
    };
    let mut s = Scene::new(name, Broker::mock(), &plan);
    let cfg = s
        .config("synchronized")
        .kafka("partition.assignment.strategy", strategy)
        .render();
    let mut a = s.ctx.sink("a").toml(&cfg).start();
    s.pg.wait_rows(&s.table, 1, LONG, &mut [&mut a]);
    let mut b = s.ctx.sink("b").toml(&cfg).start();
    s.ctx
        .note(format!("b joins at {} rows", s.pg.count(&s.table)));
    // Let the join rebalance happen while messages keep arriving (mock: 9–18 s).
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        a.assert_running("b joins the group");
        b.assert_running("b joins the group");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rows = assert_synchronized_consistent(&s.pg, &s.table, &plan.ids());
    s.ctx.note(format!("a leaves at {rows} rows"));
    assert!(
        (rows as u64) < plan.total(),
        "a should leave mid-stream, but all rows are loaded"
    );
    a.stop_ok();
    s.finish_exactly_once(&plan.ids(), &mut [&mut b]);
}
