//! Faults under a running sink: many kill -9s, PostgreSQL crashing and coming back, the disk
//! filling up, the table dropped, and the broker failing requests (librdkafka's mock cluster
//! error injection). Each test checks every message id, and in synchronized mode that the
//! stored offsets account for exactly the rows in the table after every fault.
//!
//! The kill moments are random: the seed is printed, and `PGSINK_TEST_SEED=N` replays it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::harness::*;
use crate::pg_cluster::{run_ok, Cluster, HBA_ANY};
use crate::restart::{Plan, Scene};

/// SplitMix64: enough randomness for kill moments, and replayable from the seed.
struct Rng(u64);

impl Rng {
    /// Seeded from `PGSINK_TEST_SEED`, else from the clock; the seed goes to the test log.
    fn from_env(ctx: &Ctx) -> Rng {
        let seed = std::env::var("PGSINK_TEST_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        ctx.note(format!(
            "random seed {seed} (replay with PGSINK_TEST_SEED={seed})"
        ));
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Rows for synchronized mode, distinct ids for guaranteed (duplicates allowed there).
fn progress(s: &Scene, mode: &str) -> i64 {
    if mode == "synchronized" {
        s.pg.count(&s.table)
    } else {
        s.pg.count_distinct_ids(&s.table)
    }
}

/// Kills the sink with SIGKILL `kills` times at random moments while messages keep arriving
/// (odd runs are killed a random 0.1–8 s after they start, possibly before they have their
/// partitions; even runs once they have loaded a random 1–6000 more rows), then lets a last
/// run finish.
/// Every kill must land mid-stream (messages still to load). synchronized: after each kill the
/// table and the stored offsets agree, and the end is exactly once; guaranteed: nothing
/// missing at the end.
///
/// `strategy` sets `partition.assignment.strategy` (e.g. `cooperative-sticky`: incremental
/// rebalances, where a restarted member takes partitions from a live one mid-stream).
fn kill9_many(name: &str, mode: &str, plan: Plan, kills: usize, strategy: Option<&str>) {
    let mut s = Scene::new(name, Broker::mock(), &plan);
    let total = plan.total() as i64;
    let ids = plan.ids();
    // The scene's group settings (a 6 s session, Kafka's minimum): a killed member holds its
    // partitions until then. A 2 s session stalled the first join on the mock broker in one run
    // of three (no assignment for 120 s), so the producer is paced to outlast the slower cycles.
    let mut cfg = s.config(mode);
    if let Some(strategy) = strategy {
        cfg = cfg.kafka("partition.assignment.strategy", strategy);
    }
    let cfg = cfg.render();
    let mut rng = Rng::from_env(&s.ctx);
    let t0 = Instant::now();
    let mut mid_stream = 0;
    let mut with_progress = 0;
    let mut run = 0;
    while mid_stream < kills {
        run += 1;
        let label = format!("run{run}");
        let base = progress(&s, mode);
        assert!(
            base < total,
            "every message was loaded after only {mid_stream} of {kills} mid-stream kills \
             ({:.0} s): the producer must outlast the kills",
            t0.elapsed().as_secs_f64()
        );
        let mut sink = s.ctx.sink(&label).toml(&cfg).start();
        // The two kinds alternate (their amounts are random): left to a coin, a seed with few
        // row kills leaves too few runs that loaded anything before the check below.
        let moment = if run % 2 == 1 {
            let after = Duration::from_millis(rng.between(100, 8000));
            sink.stays_up(after, "before the planned kill -9");
            format!("{} ms after the start", after.as_millis())
        } else {
            let more = rng.between(1, 6000) as i64;
            let target = (base + more).min(total);
            let pg = &s.pg;
            let table = &s.table;
            wait_for(LONG, &format!("{target} rows before kill {run}"), || {
                sink.assert_running("before the planned kill -9");
                progress_of(pg, table, mode) >= target
            });
            format!("after {more} more rows")
        };
        sink.kill9();
        let after = if mode == "synchronized" {
            assert_synchronized_consistent(&s.pg, &s.table, &ids) as i64
        } else {
            progress(&s, mode)
        };
        if after < total {
            mid_stream += 1;
        }
        if after > base {
            with_progress += 1;
        }
        s.ctx.note(format!(
            "{label}: kill -9 {moment}: {base} → {after} of {total}"
        ));
    }
    s.ctx.note(format!(
        "{mid_stream} kills mid-stream in {run} runs ({with_progress} after loading rows), {:.0} s",
        t0.elapsed().as_secs_f64()
    ));
    assert!(
        with_progress * 3 >= kills,
        "only {with_progress} of {run} runs loaded rows before their kill: the kills did not \
         interrupt real work"
    );
    let mut last = s.ctx.sink("final").toml(&cfg).start();
    if mode == "synchronized" {
        s.finish_exactly_once(&ids, &mut [&mut last]);
    } else {
        s.finish_at_least_once(&ids, &mut last);
    }
}

fn progress_of(pg: &Pg, table: &Table, mode: &str) -> i64 {
    if mode == "synchronized" {
        pg.count(table)
    } else {
        pg.count_distinct_ids(table)
    }
}

/// 200 000 messages on 8 partitions, most of them produced while the sink is killed.
const KILL_PLAN: Plan = Plan {
    partitions: 8,
    initial: 20_000,
    during: 180_000,
    rate: 700,
};

/// 20 kill -9s during a 200 000-message run: exactly once.
#[test]
fn synchronized_kill9_x20_200k_mock() {
    kill9_many(
        "synchronized_kill9_x20_200k_mock",
        "synchronized",
        KILL_PLAN,
        20,
        None,
    );
}

/// The same with incremental (cooperative-sticky) rebalances: exactly once.
#[test]
fn synchronized_kill9_x20_200k_cooperative_mock() {
    kill9_many(
        "synchronized_kill9_x20_200k_cooperative_mock",
        "synchronized",
        KILL_PLAN,
        20,
        Some("cooperative-sticky"),
    );
}

/// 20 kill -9s during a 200 000-message run: at least once (no id missing).
#[test]
fn guaranteed_kill9_x20_200k_mock() {
    kill9_many(
        "guaranteed_kill9_x20_200k_mock",
        "guaranteed",
        KILL_PLAN,
        20,
        None,
    );
}

// ------------------------------------------------------------------------------------------
// PostgreSQL faults on a server of the test's own
// ------------------------------------------------------------------------------------------

/// A throwaway server with a scene on it (the sinks reach it at its own port).
fn scene_on_own_server(name: &str, plan: &Plan) -> (Cluster, Scene) {
    let ctx = Ctx::new(name);
    let mut cluster = Cluster::init(&ctx);
    cluster.start(&ctx, None, HBA_ANY);
    let pg = Pg::connect_with(&cluster.conninfo());
    let host = cluster.host_port();
    let scene = Scene::new_on(ctx, Broker::mock(), plan, pg, &host, "postgres");
    (cluster, scene)
}

/// Starts the test's server again, reconnects the scene to it, and checks that the table and
/// the stored offsets agree; returns the rows.
fn bring_back(cluster: &mut Cluster, s: &mut Scene, ids: &BTreeSet<u64>) -> usize {
    cluster.start(&s.ctx, None, HBA_ANY);
    s.pg = Pg::connect_with(&cluster.conninfo());
    assert_synchronized_consistent(&s.pg, &s.table, ids)
}

/// PostgreSQL crashes (`pg_ctl stop -m immediate`: no shutdown checkpoint, crash recovery on
/// the next start) twice mid-stream and stays away 5 s each time: the sink keeps running,
/// reconnects with backoff, and ends with every message exactly once.
#[test]
fn synchronized_postgres_crash_restart_mock() {
    let plan = Plan {
        partitions: 4,
        initial: 20_000,
        during: 30_000,
        rate: 2_000,
    };
    let (mut cluster, mut s) =
        scene_on_own_server("synchronized_postgres_crash_restart_mock", &plan);
    let cfg = s.config("synchronized").render();
    let mut sink = s.ctx.sink("sink").toml(&cfg).start();
    for round in 1..=2 {
        let base = s.pg.count(&s.table);
        s.pg.wait_rows(&s.table, base + 1, LONG, &mut [&mut sink]);
        let before = s.pg.count(&s.table);
        cluster.stop();
        s.ctx.note(format!(
            "round {round}: PostgreSQL stopped (immediate) at ≥{before} rows"
        ));
        sink.stays_up(Duration::from_secs(5), "PostgreSQL is down");
        let rows = bring_back(&mut cluster, &mut s, &plan.ids());
        s.ctx.note(format!(
            "round {round}: PostgreSQL back after recovery with {rows} rows"
        ));
    }
    s.finish_exactly_once(&plan.ids(), &mut [&mut sink]);
    let retries = sink.stderr().matches("flush failed; reconnecting").count();
    s.ctx.note(format!("{retries} flush retries logged"));
}

/// SIGTERM while PostgreSQL is down: the sink keeps retrying its flush for 30 s, then exits
/// non-zero saying how many buffered rows were not loaded, with nothing committed past the
/// stored rows; a new run after PostgreSQL is back loads every message exactly once.
#[test]
fn synchronized_sigterm_while_postgres_down_mock() {
    let plan = Plan {
        partitions: 4,
        initial: 20_000,
        during: 10_000,
        rate: 2_000,
    };
    let (mut cluster, mut s) =
        scene_on_own_server("synchronized_sigterm_while_postgres_down_mock", &plan);
    let cfg = s.config("synchronized").render();
    let mut run1 = s.ctx.sink("run1").toml(&cfg).start();
    s.pg.wait_rows(&s.table, 1, LONG, &mut [&mut run1]);
    cluster.stop();
    // Let messages arrive for the sink to buffer, then ask it to stop.
    std::thread::sleep(Duration::from_secs(1));
    run1.sigterm();
    let t0 = Instant::now();
    let status = run1.wait(Duration::from_secs(90));
    let stderr = run1.stderr();
    s.ctx.note(format!(
        "run1 exited with {status} {:.1} s after SIGTERM",
        t0.elapsed().as_secs_f64()
    ));
    assert!(
        !status.success(),
        "the sink exited 0 with rows it could not load"
    );
    assert!(
        stderr.contains("stopped while PostgreSQL was unreachable"),
        "stderr should say the buffered rows were not loaded:\n{}",
        tail(&stderr, 20)
    );
    let rows = bring_back(&mut cluster, &mut s, &plan.ids());
    s.ctx.note(format!("PostgreSQL back with {rows} rows"));
    let mut run2 = s.ctx.sink("run2").toml(&cfg).start();
    s.finish_exactly_once(&plan.ids(), &mut [&mut run2]);
}

/// A tmpfs of a fixed size, mounted for the test and unmounted when dropped (after the server
/// that writes into it has stopped: declare it before the cluster).
struct Tmpfs {
    dir: Option<tempfile::TempDir>,
    mounted: bool,
}

impl Tmpfs {
    /// Mounts `megabytes` of tmpfs owned by `owner` (a user name).
    fn mount(megabytes: u32, owner: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("pgsink-diskfull-")
            .tempdir_in("/tmp")
            .expect("mount point");
        let uid = |flag: &str| {
            let mut id = Command::new("id");
            id.arg(flag).arg(owner);
            let out = run_ok(id, Duration::from_secs(10));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let mut mount = Command::new("mount");
        mount
            .args(["-t", "tmpfs", "-o"])
            .arg(format!(
                "size={megabytes}m,mode=0700,uid={},gid={}",
                uid("-u"),
                uid("-g")
            ))
            .arg("tmpfs")
            .arg(dir.path());
        let out = crate::pg_cluster::run(mount, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "the disk-full test mounts a small tmpfs and needs root for that: mount failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            dir: Some(dir),
            mounted: true,
        }
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().expect("mount point").path()
    }

    fn resize(&self, megabytes: u32) {
        let mut mount = Command::new("mount");
        mount
            .args(["-o"])
            .arg(format!("remount,size={megabytes}m"))
            .arg(self.path());
        run_ok(mount, Duration::from_secs(10));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted {
            let mut umount = Command::new("umount");
            umount.arg(self.path());
            if let Err(e) = crate::pg_cluster::run(umount, Duration::from_secs(10)) {
                eprintln!("faults: {e}");
            }
        }
        self.dir.take();
    }
}

/// The table's tablespace (a 3 MB tmpfs) fills up mid-stream: PostgreSQL fails the COPY with
/// "No space left on device" (SQLSTATE 53100). The sink must say so, keep running, retry with
/// backoff, and commit no offset past the rows stored; once the disk grows, it must go on to
/// every message exactly once.
#[test]
fn synchronized_disk_full_mock() {
    let plan = Plan {
        partitions: 4,
        initial: 10_000,
        during: 50_000,
        rate: 5_000,
    };
    let name = "synchronized_disk_full_mock";
    let ctx = Ctx::new(name);
    let tmpfs = Tmpfs::mount(3, "postgres");
    let mut cluster = Cluster::init(&ctx);
    cluster.start(&ctx, None, HBA_ANY);
    let pg = Pg::connect_with(&cluster.conninfo());
    let space = tmpfs.path().join("ts");
    std::fs::create_dir(&space).expect("tablespace folder");
    chown_postgres(&space, &cluster);
    pg.batch(&format!(
        "CREATE TABLESPACE small LOCATION '{}'",
        space.display()
    ));
    let host = cluster.host_port();
    let mut s = Scene::new_on(ctx, Broker::mock(), &plan, pg, &host, "postgres");
    s.pg.batch(&format!(
        "ALTER TABLE {} SET TABLESPACE small",
        s.table.qualified()
    ));
    let cfg = s.config("synchronized").render();
    let mut sink = s.ctx.sink("sink").toml(&cfg).start();
    wait_for(LONG, "the sink to report the full disk", || {
        sink.assert_running("the disk fills up");
        sink.stderr().contains("No space left on device")
    });
    let full_at = assert_synchronized_consistent(&s.pg, &s.table, &plan.ids());
    // Retries go on and change nothing while the disk stays full.
    sink.stays_up(Duration::from_secs(3), "the disk is full");
    let still = assert_synchronized_consistent(&s.pg, &s.table, &plan.ids());
    assert_eq!(
        full_at, still,
        "rows were added while the tablespace was full"
    );
    assert!(
        full_at > 0 && (full_at as u64) < plan.total(),
        "the disk should fill up mid-stream, but it did at {full_at} of {} rows",
        plan.total()
    );
    let error_line = sink
        .stderr()
        .lines()
        .find(|l| l.contains("No space left on device"))
        .unwrap_or_default()
        .to_string();
    s.ctx.note(format!(
        "disk full at {full_at} rows; the sink said: {error_line}"
    ));
    assert!(
        error_line.contains("53100") || error_line.to_lowercase().contains("disk"),
        "the disk-full error should name the cause (SQLSTATE 53100 / disk full): {error_line}"
    );
    tmpfs.resize(64);
    s.ctx.note("tablespace grown to 64 MB");
    s.finish_exactly_once(&plan.ids(), &mut [&mut sink]);
}

fn chown_postgres(path: &Path, cluster: &Cluster) {
    if cluster.as_postgres() {
        let mut chown = Command::new("chown");
        chown.arg("postgres:postgres").arg(path);
        run_ok(chown, Duration::from_secs(10));
    }
}

/// The target table is dropped while the sink runs: the sink stops (non-zero) with an error
/// naming the table, and commits no offset after the drop. Re-created, the table receives
/// exactly the messages after the stored offsets: nothing the sink acknowledged is skipped.
#[test]
fn synchronized_table_dropped_mock() {
    let plan = Plan {
        partitions: 4,
        initial: 20_000,
        during: 20_000,
        rate: 4_000,
    };
    let mut s = Scene::new("synchronized_table_dropped_mock", Broker::mock(), &plan);
    let cfg = s.config("synchronized").render();
    let mut sink = s.ctx.sink("run1").toml(&cfg).start();
    s.pg.wait_rows(&s.table, 1, LONG, &mut [&mut sink]);
    s.pg.batch(&format!("DROP TABLE {}", s.table.qualified()));
    // No flush can commit after the DROP (it takes the table's lock first).
    let at_drop = s.pg.stored_offsets(&s.table);
    s.ctx
        .note(format!("table dropped; stored offsets {at_drop:?}"));
    let status = sink.wait(EXIT);
    let stderr = sink.stderr();
    assert!(
        !status.success(),
        "the sink exited with {status} after its table was dropped"
    );
    assert!(
        stderr.contains(&s.table.name) && stderr.contains("does not exist"),
        "the error should name the missing table {}:\n{}",
        s.table.name,
        tail(&stderr, 20)
    );
    assert_eq!(
        s.pg.stored_offsets(&s.table),
        at_drop,
        "offsets were committed after the table was dropped"
    );
    // The same table again: the sink resumes at the stored offsets.
    let table = s.pg.std_table(&s.table.name);
    assert_eq!(table.qualified(), s.table.qualified());
    let mut run2 = s.ctx.sink("run2").toml(&cfg).start();
    s.finish_producing();
    let expected: BTreeSet<u64> = s
        .located
        .iter()
        .filter(|(_, d)| {
            d.offset
                >= at_drop
                    .get(&(d.topic.clone(), d.partition))
                    .copied()
                    .unwrap_or(0)
        })
        .map(|(id, _)| *id)
        .collect();
    s.ctx.note(format!(
        "{} of {} messages are past the stored offsets",
        expected.len(),
        plan.total()
    ));
    s.wait_all(&expected, &mut [&mut run2]);
    run2.stop_ok();
    assert_exactly_once(&s.pg, &s.table, &expected);
}

// ------------------------------------------------------------------------------------------
// Broker request errors (the mock cluster's error injection)
// ------------------------------------------------------------------------------------------

/// Errors for the next requests of one API.
type Injection = (RDKafkaApiKey, Vec<RDKafkaRespErr>);

/// While messages flow, the mock broker fails requests: fetches (dropped connections, "not
/// leader", "unknown partition"), heartbeats ("rebalance in progress": the group rebalances),
/// group joins and offset lookups. The sink must ride it all out and end with every message
/// exactly once; the test checks that the injected rebalances really happened.
#[test]
fn synchronized_broker_request_errors_mock() {
    use RDKafkaRespErr::*;
    let plan = Plan {
        partitions: 6,
        initial: 20_000,
        during: 40_000,
        rate: 3_000,
    };
    let mut s = Scene::new(
        "synchronized_broker_request_errors_mock",
        Broker::mock(),
        &plan,
    );
    let cfg = s.config("synchronized").render();
    let mut sink = s.ctx.sink("sink").toml(&cfg).start();
    s.pg.wait_rows(&s.table, 1, LONG, &mut [&mut sink]);
    let assigned_before = lines_with(&sink.stderr(), "assigned; starting from");
    let Broker::Mock(mock) = &s.broker else {
        unreachable!()
    };
    let rounds: [(&str, Vec<Injection>); 3] = [
        (
            "fetch",
            vec![(
                RDKafkaApiKey::Fetch,
                vec![
                    RD_KAFKA_RESP_ERR__TRANSPORT,
                    RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                    RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
                    RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                    RD_KAFKA_RESP_ERR__TRANSPORT,
                ],
            )],
        ),
        (
            "rebalance with failing join and sync",
            vec![
                (
                    RDKafkaApiKey::JoinGroup,
                    vec![
                        RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                        RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                    ],
                ),
                (
                    RDKafkaApiKey::SyncGroup,
                    vec![RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS],
                ),
                (
                    RDKafkaApiKey::Heartbeat,
                    vec![RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS],
                ),
            ],
        ),
        (
            "rebalance with a lost coordinator",
            vec![(
                RDKafkaApiKey::Heartbeat,
                vec![
                    RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                    RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
                ],
            )],
        ),
    ];
    let mut assigned = assigned_before;
    for (what, injections) in rounds {
        let base = s.pg.count(&s.table);
        for (api, errors) in &injections {
            mock.request_errors(*api, errors);
        }
        if what.starts_with("rebalance") {
            wait_for(LONG, &format!("{what}: a new assignment"), || {
                sink.assert_running(what);
                lines_with(&sink.stderr(), "assigned; starting from") > assigned
            });
            assigned = lines_with(&sink.stderr(), "assigned; starting from");
        }
        s.pg.wait_rows(
            &s.table,
            (base + 2_000).min(plan.total() as i64),
            LONG,
            &mut [&mut sink],
        );
        let rows = assert_synchronized_consistent(&s.pg, &s.table, &plan.ids());
        s.ctx.note(format!(
            "{what}: errors injected at {base} rows; {rows} rows later, {assigned} assignments"
        ));
    }
    s.finish_exactly_once(&plan.ids(), &mut [&mut sink]);
}

/// guaranteed mode commits offsets to Kafka after the rows are in PostgreSQL; here the broker
/// fails those commits (and a heartbeat, forcing a rebalance) for a while: no message may go
/// missing, including across a restart that resumes from whatever commit got through.
#[test]
fn guaranteed_offset_commit_errors_mock() {
    use RDKafkaRespErr::*;
    let plan = Plan {
        partitions: 4,
        initial: 20_000,
        during: 20_000,
        rate: 4_000,
    };
    let mut s = Scene::new(
        "guaranteed_offset_commit_errors_mock",
        Broker::mock(),
        &plan,
    );
    let total = plan.total() as i64;
    let cfg = s.config("guaranteed").render();
    let mut sink = s.ctx.sink("run1").toml(&cfg).start();
    s.pg.wait_rows(&s.table, 1, LONG, &mut [&mut sink]);
    let Broker::Mock(mock) = &s.broker else {
        unreachable!()
    };
    let commit_errors: Vec<RDKafkaRespErr> = [
        RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR__TRANSPORT,
    ]
    .into_iter()
    .cycle()
    .take(20)
    .collect();
    mock.request_errors(RDKafkaApiKey::OffsetCommit, &commit_errors);
    mock.request_errors(
        RDKafkaApiKey::Heartbeat,
        &[RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS],
    );
    let base = s.pg.count_distinct_ids(&s.table);
    let (pg, table) = (&s.pg, &s.table);
    wait_for(LONG, "progress after the commit errors", || {
        sink.assert_running("offset commits fail");
        pg.count_distinct_ids(table) >= (base + 5_000).min(total)
    });
    sink.kill9();
    s.ctx.note(format!(
        "run1 killed at {} distinct ids, after 20 failed commits",
        s.pg.count_distinct_ids(&s.table)
    ));
    let mut run2 = s.ctx.sink("run2").toml(&cfg).start();
    s.finish_at_least_once(&plan.ids(), &mut run2);
}
