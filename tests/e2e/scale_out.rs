//! Scale-out: several pgsink processes in one consumer group share the partitions through
//! Kafka's group protocol; every rebalance makes each process seek to the offsets stored in
//! PostgreSQL, and the offset fence keeps synchronized mode exactly once.

use crate::harness::*;
use crate::restart::{Plan, Scene};

/// The partitions a process holds, from its latest log line
/// `holding partitions=[("topic", 3), …]` (written after every assignment and revocation, so
/// it is right for incremental rebalances too).
fn latest_assignment(stderr: &str) -> Option<Vec<i32>> {
    let line = stderr.lines().rev().find(|l| l.contains(" holding "))?;
    let list = &line[line.find("partitions=[")? + "partitions=[".len()..];
    let list = &list[..list.find(']')?];
    let mut partitions = Vec::new();
    for entry in list.split("(\"").skip(1) {
        // `topic", 3), ` → the number after the topic.
        let number = entry.split("\", ").nth(1)?;
        let number = &number[..number.find(')')?];
        partitions.push(number.trim().parse().ok()?);
    }
    Some(partitions)
}

/// The number of assignments a process has logged.
fn assignments(sink: &Sink) -> usize {
    sink.stderr().matches("assigned; starting from").count()
}

/// Waits until the live processes' latest assignments split all partitions between them,
/// each process holding at least one, none held twice.
fn wait_split(s: &Scene, partitions: i32, sinks: &mut [(&str, &mut Sink)], why: &str) {
    let mut last = String::new();
    wait_for(
        LONG,
        &format!("{why}: the partitions split across the processes"),
        || {
            let mut seen = Vec::new();
            let mut report = Vec::new();
            let mut each_has_some = true;
            for (label, sink) in sinks.iter_mut() {
                sink.assert_running(why);
                let mine = latest_assignment(&sink.stderr()).unwrap_or_default();
                each_has_some &= !mine.is_empty();
                report.push(format!("{label}: {mine:?}"));
                seen.extend(mine);
            }
            last = report.join("; ");
            seen.sort_unstable();
            each_has_some && seen == (0..partitions).collect::<Vec<_>>()
        },
    );
    s.ctx.note(format!("{why}: {last}"));
}

/// Three synchronized processes with the same group; one stops mid-run (its partitions move to
/// the other two) and a fourth starts (taking a share): two rebalances under load, and every
/// message lands exactly once, with the stored offsets at the end of every partition.
#[test]
fn scale_out_three_processes_two_rebalances_mock() {
    scale_out(
        "scale_out_three_processes_two_rebalances_mock",
        "range,roundrobin",
    );
}

/// The same with incremental rebalances (cooperative-sticky): a leaving or joining member
/// moves only some partitions, the others keep loading through the rebalance.
#[test]
fn scale_out_three_processes_two_rebalances_cooperative_mock() {
    scale_out(
        "scale_out_three_processes_two_rebalances_cooperative_mock",
        "cooperative-sticky",
    );
}

fn scale_out(name: &str, strategy: &str) {
    let plan = Plan {
        partitions: 12,
        initial: 30_000,
        during: 60_000,
        rate: 2_000,
    };
    let mut s = Scene::new(name, Broker::mock(), &plan);
    let cfg = s
        .config("synchronized")
        .kafka("session.timeout.ms", "6000")
        .kafka("heartbeat.interval.ms", "500")
        .kafka("partition.assignment.strategy", strategy)
        .render();
    let mut a = s.ctx.sink("a").toml(&cfg).start();
    let mut b = s.ctx.sink("b").toml(&cfg).start();
    let mut c = s.ctx.sink("c").toml(&cfg).start();
    wait_split(
        &s,
        plan.partitions,
        &mut [("a", &mut a), ("b", &mut b), ("c", &mut c)],
        "three processes joined",
    );
    let rows = s.pg.count(&s.table);
    s.pg.wait_rows(&s.table, rows + 2_000, LONG, &mut [&mut a, &mut b, &mut c]);

    // Rebalance 1: b leaves.
    let before = (assignments(&a), assignments(&c));
    b.stop_ok();
    let rows = assert_synchronized_consistent(&s.pg, &s.table, &plan.ids());
    s.ctx.note(format!("b stopped at {rows} rows"));
    assert!(
        (rows as u64) < plan.total(),
        "b should leave mid-run, but all rows are loaded"
    );
    wait_split(
        &s,
        plan.partitions,
        &mut [("a", &mut a), ("c", &mut c)],
        "after b left",
    );
    assert!(
        assignments(&a) > before.0 && assignments(&c) > before.1,
        "a and c should both have been re-assigned after b left"
    );
    let rows = s.pg.count(&s.table);
    s.pg.wait_rows(&s.table, rows + 2_000, LONG, &mut [&mut a, &mut c]);

    // Rebalance 2: d joins.
    let mut d = s.ctx.sink("d").toml(&cfg).start();
    wait_split(
        &s,
        plan.partitions,
        &mut [("a", &mut a), ("c", &mut c), ("d", &mut d)],
        "after d joined",
    );
    let rows = assert_synchronized_consistent(&s.pg, &s.table, &plan.ids());
    s.ctx.note(format!("d holds partitions at {rows} rows"));
    assert!(
        (rows as u64) < plan.total(),
        "the second rebalance should happen mid-run, but all rows are loaded"
    );

    s.finish_exactly_once(&plan.ids(), &mut [&mut a, &mut c, &mut d]);
}

#[test]
fn scale_out_parses_assignment_lines() {
    let log = "2026-11-27T11:00:00Z  INFO pgsink::intake: holding partitions=[(\"t\", 3), (\"t\", 7)]\n\
               2026-11-27T11:00:01Z  INFO pgsink::intake: partitions revoked partitions=[(\"t\", 1)]\n";
    assert_eq!(latest_assignment(log), Some(vec![3, 7]));
    let empty = log.replace("(\"t\", 3), (\"t\", 7)", "");
    assert_eq!(latest_assignment(&empty), Some(vec![]));
    assert_eq!(latest_assignment("nothing here"), None);
}
