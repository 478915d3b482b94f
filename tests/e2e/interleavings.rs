//! Forced interleavings of synchronized delivery: each test drives pgsink into one precise
//! order of events with a table lock held in a transaction, a trigger armed through a sequence
//! (`nextval` is never rolled back, so "fail exactly once" survives the failed transaction),
//! `pg_terminate_backend`, or the mock broker's error injection — never with a sleep. Waits are
//! for conditions: a `COPY` of the sink blocked on the lock in `pg_stat_activity`, a log line,
//! a metric, the stored offsets.
//!
//! Every test states the outcome synchronized delivery promises (every message exactly once,
//! or a non-zero exit naming the failure, after which a restart ends exactly once).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::harness::*;

/// Bound for the outcome once the interleaving has happened (the sinks are idle otherwise).
const OUTCOME: Duration = Duration::from_secs(30);

/// Sends the standard message of `id` to one partition.
fn send_to(producer: &mut Producer, topic: &str, partition: i32, id: u64) {
    let key = id.to_string();
    let value = std_message(id);
    producer.send(
        topic,
        Some(partition),
        Some(key.as_bytes()),
        Some(value.as_bytes()),
    );
}

/// A transaction holding `LOCK TABLE … IN SHARE MODE` on `t`: it blocks every `COPY` into the
/// table (ROW EXCLUSIVE) but no `SELECT`. `COMMIT` through [`release`] (or drop the `Pg`:
/// the connection closes and the transaction rolls back).
fn hold_share_lock(t: &Table) -> Pg {
    let lock = Pg::connect();
    lock.batch(&format!(
        "BEGIN; LOCK TABLE {} IN SHARE MODE",
        t.qualified()
    ));
    lock
}

fn release(lock: Pg) {
    lock.batch("COMMIT");
}

/// pgsink backends whose `COPY` into `t` waits for a lock.
fn copies_waiting_for_lock(pg: &Pg, t: &Table) -> i64 {
    pg.query(
        "SELECT count(*) FROM pg_stat_activity \
          WHERE application_name = 'pgsink' AND wait_event_type = 'Lock' \
            AND query LIKE 'COPY%' AND position($1 in query) > 0",
        &[&ident(&t.name)],
    )[0]
    .get(0)
}

/// Waits until a `COPY` of the sink into `t` is blocked on a lock.
fn wait_copy_blocked(ctx: &Ctx, pg: &Pg, t: &Table, sink: &mut Sink) {
    let took = wait_for(LONG, "the sink's COPY blocked on the table lock", || {
        sink.assert_running("waiting for its COPY to block on the lock");
        copies_waiting_for_lock(pg, t) > 0
    });
    ctx.note(format!(
        "{}: COPY blocked on the lock after {:.1} s",
        sink.label,
        took.as_secs_f64()
    ));
}

/// True when every partition in `ends` has its stored offset at the end.
fn stored_at_end(pg: &Pg, t: &Table, ends: &BTreeMap<(String, i32), i64>) -> bool {
    let stored = pg.stored_offsets(t);
    ends.iter().all(|(tp, end)| stored.get(tp) == Some(end))
}

/// The sum of the samples of counter `name` in a Prometheus text body.
fn metric(body: &str, name: &str) -> f64 {
    samples(body, name, &[]).iter().map(|(_, v)| v).sum()
}

/// Waits until the sink (metrics on `port`), whose writer is stuck in its first COPY, has
/// converted 6 batches: the writer holds the first, the event channel (4 places) the next four,
/// so the consume thread is stuck sending the 6th — it polls Kafka no more (rebalance
/// callbacks included) and cannot send an idle event. Returns the messages converted.
fn wait_consume_blocked(ctx: &Ctx, sink: &mut Sink, port: u16) -> f64 {
    let mut batches = 0.0;
    let mut messages = 0.0;
    let what = format!("{}: 6 batches converted", sink.label);
    wait_for(LONG, &what, || {
        sink.assert_running("waiting for the consume thread to block");
        if let Some(body) = http_get(port, "/metrics") {
            batches = metric(&body, "pgsink_converter_batch_seconds_count");
            messages = metric(&body, "pgsink_messages_total");
        }
        batches >= 6.0
    });
    ctx.note(format!(
        "{}: {batches} batches ({messages} messages) converted, consume thread blocked",
        sink.label
    ));
    messages
}

// ------------------------------------------------------------------------------------------
// 1. A fence trip drops buffered messages of a partition that has no stored row
// ------------------------------------------------------------------------------------------

/// Two partitions. A warm-up message on partition 1 is loaded first (partition 1 has a stored
/// row, partition 0 none, and both partitions are being fetched). Then the table is locked
/// (SHARE) and N messages go to each partition at once: the sink buffers both partitions and
/// its COPY waits. Meanwhile "another process" loads partition 1's N messages and moves its
/// stored offset to the end (in the lock's transaction), so the sink's flush trips the fence on
/// partition 1 and everything it buffered is rolled back and dropped. Afterwards every
/// partition must be read again from where the database says — for partition 0, which has no
/// stored row, that is where the sink first started (auto.offset.reset = earliest), not where
/// its consumer had got to.
///
/// Today only partitions with a stored row are seeked back: partition 0 keeps its advanced
/// position and its N messages are never loaded. A message produced to partition 0 after the
/// trip makes the outcome observable without a timeout: once both stored offsets are at the
/// end, the table must hold every message.
#[test]
fn synchronized_interleaving_fence_trip_unstored_partition_mock() {
    let name = "synchronized_interleaving_fence_trip_unstored_partition_mock";
    let (ctx, broker, pg, table, topic) = stage(name, Broker::mock(), 2);
    let n: u64 = 2000;
    let warm_up: u64 = 1;
    let p0_ids = 2..=n + 1;
    let p1_ids = n + 2..=2 * n + 1;
    let sentinel = 2 * n + 2;
    let mut producer = broker.producer(false);
    send_to(&mut producer, &topic, 1, warm_up);
    producer.flush();

    // No flush-interval tick: flushes happen when the sink goes idle.
    let cfg = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g"))
        .delivery("synchronized")
        .flush_ms(600_000)
        .render();
    let mut sink = ctx.sink("sink").toml(&cfg).start();
    pg.wait_all_rows(&table, &[warm_up].into(), LONG, &mut [&mut sink]);
    ctx.note(format!("warm-up loaded: {:?}", pg.stored_offsets(&table)));

    let lock = hold_share_lock(&table);
    for id in p0_ids.clone() {
        send_to(&mut producer, &topic, 0, id);
    }
    for id in p1_ids.clone() {
        send_to(&mut producer, &topic, 1, id);
    }
    producer.flush();
    wait_copy_blocked(&ctx, &pg, &table, &mut sink);

    // Another process loads partition 1 (offsets 1..=N) and commits its offset.
    copy_std_rows(&lock, &table, p1_ids.clone());
    lock.query(
        "UPDATE pgsink.offsets SET next_offset = $4 \
          WHERE sink = $1 || '.' || $2 AND topic = $3 AND partition = 1",
        &[&table.schema, &table.name, &topic, &(n as i64 + 1)],
    );
    ctx.note("partition 1 loaded behind the sink's back; releasing the lock");
    release(lock);
    wait_log(&ctx, &mut sink, "offset fence tripped", 1, LONG);

    // One more message on partition 0: its stored offset reaches the end only through a flush.
    send_to(&mut producer, &topic, 0, sentinel);
    producer.flush();
    let ends: BTreeMap<(String, i32), i64> = [
        ((topic.clone(), 0), n as i64 + 1),
        ((topic.clone(), 1), n as i64 + 1),
    ]
    .into_iter()
    .collect();
    let took = wait_for(OUTCOME, "both stored offsets at the end", || {
        sink.assert_running("waiting for the stored offsets to reach the end");
        stored_at_end(&pg, &table, &ends)
    });
    ctx.note(format!(
        "stored offsets at the end {:.1} s after the trip: {:?}",
        took.as_secs_f64(),
        pg.stored_offsets(&table)
    ));
    sink.stop_ok();
    let ids: BTreeSet<u64> = (1..=sentinel).collect();
    assert_exactly_once(&pg, &table, &ids);
}

// ------------------------------------------------------------------------------------------
// 2. A refused flush at a cooperative revocation discards rows of the partitions kept
// ------------------------------------------------------------------------------------------

/// Sink A (cooperative-sticky) owns all 4 partitions of a 100 000-message backlog and has
/// streamed a first batch into its open COPY without committing (no tick, a huge buffer, and
/// never idle: its writer's COPY is held by a SHARE lock, so the consume thread stops on the
/// full event channel with the rest of the backlog prefetched behind it). A second process B
/// joins the group, so A must give up two partitions and flush before it does; that flush
/// is refused once (an AFTER STATEMENT trigger armed through a sequence just before B starts).
///
/// Promise: nothing is lost. Either A stops with a non-zero exit (then it is restarted), or it
/// re-reads what it could not commit. Today A logs "cannot commit before the revocation", throws
/// away its whole buffer — rows of the two partitions it KEEPS included — and goes on reading
/// those partitions after the discarded messages: they are never loaded.
#[test]
fn synchronized_interleaving_cooperative_revoke_flush_refused_mock() {
    let name = "synchronized_interleaving_cooperative_revoke_flush_refused_mock";
    let (ctx, broker, pg, table, topic) = stage(name, Broker::mock(), 4);
    let backlog: u64 = 100_000;
    let mut producer = broker.producer(false);
    producer.send_std_all(&topic, 1..=backlog);
    producer.flush();
    ctx.note(format!("{backlog} messages produced"));

    // Refuses the first COPY that completes after it is armed (setval(…, 1, false) makes the
    // next nextval return 1; it stays consumed when the transaction rolls back).
    let seq = ident(&format!("{}_refuse", table.name));
    let func = ident(&format!("{}_refuse_once", table.name));
    pg.batch(&format!(
        "DROP SEQUENCE IF EXISTS {seq}; CREATE SEQUENCE {seq}; SELECT setval('{seq_lit}', 100); \
         CREATE OR REPLACE FUNCTION {func}() RETURNS trigger LANGUAGE plpgsql AS $f$ \
         BEGIN \
           IF nextval('{seq_lit}') = 1 THEN \
             RAISE EXCEPTION 'e2e: this flush is refused once'; \
           END IF; \
           RETURN NULL; \
         END $f$; \
         CREATE TRIGGER refuse_once AFTER INSERT ON {t} FOR EACH STATEMENT EXECUTE FUNCTION {func}()",
        seq_lit = seq.replace('\'', "''"),
        t = table.qualified(),
    ));

    let port_a = free_port();
    let group = ctx.unique("g");
    let base = SinkToml::new(&table, &[&topic], &broker, &group)
        .delivery("synchronized")
        .flush_ms(600_000)
        .buffer_size(1 << 30)
        .kafka("partition.assignment.strategy", "cooperative-sticky")
        .kafka("session.timeout.ms", "6000")
        .kafka("heartbeat.interval.ms", "500");
    let cfg_a = base
        .clone()
        .line(&format!(
            "metrics.address = {}",
            toml_str(&format!("127.0.0.1:{port_a}"))
        ))
        .render();
    let cfg_b = base.render();

    let lock = hold_share_lock(&table);
    let mut a = ctx.sink("a").toml(&cfg_a).start();
    wait_copy_blocked(&ctx, &pg, &table, &mut a);
    // The writer holds batch 1 (its COPY waits), the event channel holds 4 more: once A has
    // converted 6 batches its consume thread is stuck sending the 6th, so it cannot go idle,
    // and the rebalance reaches it behind the backlog.
    let converted = wait_consume_blocked(&ctx, &mut a, port_a);
    ctx.note(format!(
        "A converted {converted} messages; nothing committed"
    ));

    pg.query(
        &format!("SELECT setval('{}', 1, false)", seq.replace('\'', "''")),
        &[],
    );
    let mut b = ctx.sink("b").toml(&cfg_b).start();
    // Cooperative: B's first assignment is empty while A is told to revoke two partitions.
    wait_log(&ctx, &mut b, "assigned; starting from", 1, LONG);
    ctx.note("B is in the group; releasing the lock");
    release(lock);
    wait_log(&ctx, &mut a, "partitions revoked", 1, LONG);

    // A few more messages on every partition: each stored offset reaches the end only through
    // a flush of a later message, whoever owns the partition.
    let more: u64 = 400;
    producer.send_std_all(&topic, backlog + 1..=backlog + more);
    let delivered = producer.flush();
    let ends = end_offsets(&delivered);
    let ids: BTreeSet<u64> = (1..=backlog + more).collect();

    let t0 = Instant::now();
    let mut restarted = false;
    loop {
        // Rows and offsets commit together: once every stored offset is at the end, nothing
        // more is coming.
        if stored_at_end(&pg, &table, &ends) {
            break;
        }
        if let Some(status) = a.try_status() {
            assert!(
                !status.success(),
                "A exited with status 0 after its revocation flush was refused, without being \
                 asked to stop"
            );
            assert!(!restarted, "the restarted A exited too ({status})");
            let rows = assert_synchronized_consistent(&pg, &table, &ids);
            ctx.note(format!("A exited ({status}) at {rows} rows; restarting it"));
            restarted = true;
            a = ctx.sink("a2").toml(&cfg_b).start();
        }
        b.assert_running("after the revocation");
        assert!(
            t0.elapsed() < LONG,
            "the stored offsets never reached the end: {:?}, ends {ends:?}",
            pg.stored_offsets(&table)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ctx.note(format!(
        "stored offsets at the end after {:.1} s; {} rows; A: {} refused-flush warnings",
        t0.elapsed().as_secs_f64(),
        pg.count(&table),
        lines_with(&a.stderr(), "cannot commit before the revocation")
    ));
    // A may have stopped on the refused flush while B was already loading the rest: the loop
    // above can see the offsets at the end before it sees A gone. Stopping is allowed; a clean
    // exit without being asked is not.
    match a.try_status() {
        Some(status) => assert!(
            !status.success(),
            "A exited with status 0 after its revocation flush was refused, without being asked to stop"
        ),
        None => a.stop_ok(),
    }
    b.stop_ok();
    assert_exactly_once(&pg, &table, &ids);
}

// ------------------------------------------------------------------------------------------
// 3. The stored-offset reader never reconnects
// ------------------------------------------------------------------------------------------

/// Database of the test that terminates every pgsink connection (no other test uses it).
const OWN_DB: &str = "pgsink_test_interleave";

/// A synchronized sink loads its messages; PostgreSQL then terminates every pgsink backend
/// (writer and stored-offset reader alike), and the mock broker forces a rebalance (a
/// heartbeat answered "rebalance in progress"). On the new assignment the sink must read the
/// stored offsets again — on a new connection — and go on loading.
///
/// Today the reader's connection is never replaced: the assignment callback retries
/// "cannot read stored offsets" forever, and the messages produced afterwards never arrive.
#[test]
fn synchronized_interleaving_offset_reader_reconnects_mock() {
    let name = "synchronized_interleaving_offset_reader_reconnects_mock";
    let ctx = Ctx::new(name);
    let broker = Broker::mock();
    let pg = Pg::connect_to(OWN_DB);
    let table = pg.std_table(&ctx.table_name());
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 4);
    let n: u64 = 2000;
    let mut producer = broker.producer(false);
    producer.send_std_all(&topic, 1..=n);
    producer.flush();

    let mut cfg = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g"))
        .delivery("synchronized")
        .flush_ms(100)
        .kafka("session.timeout.ms", "6000")
        .kafka("heartbeat.interval.ms", "500");
    cfg.database = OWN_DB.to_string();
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    let first: BTreeSet<u64> = (1..=n).collect();
    pg.wait_all_rows(&table, &first, LONG, &mut [&mut sink]);
    assert_synchronized_consistent(&pg, &table, &first);

    let killed = pg.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'pgsink' \
           AND pid <> pg_backend_pid()",
        &[],
    );
    ctx.note(format!("terminated {} pgsink connections", killed.len()));
    assert!(
        killed.len() >= 2,
        "expected the writer's and the offset reader's connections, terminated {}",
        killed.len()
    );
    wait_for(LONG, "the terminated backends gone", || {
        pg.query(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'pgsink'",
            &[],
        )[0]
        .get::<_, i64>(0)
            == 0
    });

    let Broker::Mock(mock) = &broker else {
        unreachable!()
    };
    let revoked = lines_with(&sink.stderr(), "partitions revoked");
    mock.request_errors(
        RDKafkaApiKey::Heartbeat,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS],
    );
    wait_log(&ctx, &mut sink, "partitions revoked", revoked + 1, LONG);

    producer.send_std_all(&topic, n + 1..=2 * n);
    producer.flush();
    let ids: BTreeSet<u64> = (1..=2 * n).collect();
    if let Err(e) = pg.try_wait_all_rows(&table, &ids, OUTCOME, &mut [&mut sink]) {
        panic!(
            "{e}\nthe sink logged \"cannot read stored offsets\" {} times",
            lines_with(&sink.stderr(), "cannot read stored offsets")
        );
    }
    sink.stop_ok();
    assert_exactly_once(&pg, &table, &ids);
}

// ------------------------------------------------------------------------------------------
// 4. A non-synchronized sink erases another topic's stored offsets
// ------------------------------------------------------------------------------------------

/// A synchronized sink loads topic X into table T and stops; its offsets are in
/// pgsink.offsets. A guaranteed sink of ANOTHER topic Y into the same table then starts. It
/// may forget stored offsets of its own topics, but X's belong to the synchronized sink: they
/// must stay, and a synchronized sink of X started again must not load X twice.
///
/// Today the guaranteed sink deletes every stored offset of the table at start.
#[test]
fn synchronized_interleaving_other_topic_guaranteed_keeps_offsets_mock() {
    let name = "synchronized_interleaving_other_topic_guaranteed_keeps_offsets_mock";
    let (ctx, broker, pg, table, topic_x) = stage(name, Broker::mock(), 2);
    let topic_y = ctx.unique("y");
    broker.create_topic(&topic_y, 2);
    let (nx, ny): (u64, u64) = (1000, 500);
    let mut producer = broker.producer(false);
    producer.send_std_all(&topic_x, 1..=nx);
    let delivered_x = producer.flush();
    let ends_x = end_offsets(&delivered_x);

    let group_x = ctx.unique("gx");
    let cfg_x = SinkToml::new(&table, &[&topic_x], &broker, &group_x)
        .delivery("synchronized")
        .flush_ms(100)
        .kafka("session.timeout.ms", "6000")
        .kafka("heartbeat.interval.ms", "500")
        .render();
    let mut sync = ctx.sink("sync_x").toml(&cfg_x).start();
    let ids_x: BTreeSet<u64> = (1..=nx).collect();
    pg.wait_all_rows(&table, &ids_x, LONG, &mut [&mut sync]);
    sync.stop_ok();
    assert_offsets_at_end(&pg, &table, &ends_x);
    let before = pg.stored_offsets(&table);
    ctx.note(format!("X loaded; stored offsets {before:?}"));

    producer.send_std_all(&topic_y, nx + 1..=nx + ny);
    producer.flush();
    let cfg_y = SinkToml::new(&table, &[&topic_y], &broker, &ctx.unique("gy"))
        .delivery("guaranteed")
        .flush_ms(100)
        .render();
    let mut guaranteed = ctx.sink("guaranteed_y").toml(&cfg_y).start();
    let ids_xy: BTreeSet<u64> = (1..=nx + ny).collect();
    pg.wait_all_rows(&table, &ids_xy, LONG, &mut [&mut guaranteed]);
    guaranteed.stop_ok();
    let after = pg.stored_offsets(&table);
    let kept_x: BTreeMap<_, _> = after
        .iter()
        .filter(|((t, _), _)| *t == topic_x)
        .map(|(k, v)| (k.clone(), *v))
        .collect();

    // X again, same group, with more messages: exactly once over X and Y.
    let nx2: u64 = 300;
    let first_new = nx + ny + 1;
    producer.send_std_all(&topic_x, first_new..=first_new + nx2 - 1);
    producer.flush();
    let mut sync2 = ctx.sink("sync_x_again").toml(&cfg_x).start();
    let ids: BTreeSet<u64> = (1..first_new + nx2).collect();
    pg.wait_all_rows(&table, &ids, LONG, &mut [&mut sync2]);
    sync2.stop_ok();
    let rows = check_std_rows(&pg.std_rows(&table), &ids);

    assert_eq!(
        kept_x,
        before,
        "a guaranteed sink of topic {topic_y} erased the stored offsets that the synchronized \
         sink of topic {topic_x} keeps for the same table ({}); its log: {:?}",
        table.qualified(),
        guaranteed
            .stderr()
            .lines()
            .find(|l| l.contains("dropped the stored synchronized offsets"))
    );
    assert!(
        rows.duplicated_ids == 0 && rows.missing_count == 0,
        "after the synchronized sink of {topic_x} started again: {}",
        rows.summary()
    );
}

// ------------------------------------------------------------------------------------------
// 5. A reload-triggered flush that trips the fence still buffers the batch that triggered it
// ------------------------------------------------------------------------------------------

/// Eight partitions with a 200 000-message backlog, no stored offsets. The sink's first COPY is
/// held by a SHARE lock until (a) its consume thread is stuck on the full channel to the writer
/// (6 batches converted), (b) a converter reload has been published (the configuration file's
/// `plugin.timeout.ms` changes: same output, new converter version), and (c) "another process"
/// has loaded the first message of every partition and stored offset 1 for it, in the lock's
/// own transaction. After the release, the first batch of the new converter makes the sink
/// commit everything of the old one; that commit starts at offset 0 where 1 is stored, so the
/// fence trips. The batch that triggered the commit was read before the trip, so it must be
/// dropped with the rest: every partition is read again from its stored offset 1.
///
/// Before the delivery ledger, the writer buffered that batch after the tripped flush anyway:
/// once the partitions had been re-read its messages were committed twice (duplicates; the
/// table held more rows than the stored offsets account for).
#[test]
fn synchronized_interleaving_reload_flush_fence_trip_mock() {
    let name = "synchronized_interleaving_reload_flush_fence_trip_mock";
    // Enough that the consume thread never runs dry (and sends no idle event) before it
    // notices the fence trip (it runs at most 5 batches ahead of the writer), spread so that
    // no partition outgrows the mock broker's log (it drops a partition's oldest messages past
    // about 35 000 of these, and the test re-reads from offset 0).
    let partitions = 8;
    let (ctx, broker, pg, table, topic) = stage(name, Broker::mock(), partitions);
    let backlog: u64 = 200_000;
    let mut producer = broker.producer(false);
    producer.send_std_all(&topic, 1..=backlog);
    let delivered = producer.flush();
    let ends = end_offsets(&delivered);

    let port = free_port();
    let group = ctx.unique("g");
    // Two renderings differing only in plugin.timeout.ms: a reload with the same output.
    let render = |timeout_ms: u64| {
        SinkToml::new(&table, &[&topic], &broker, &group)
            .delivery("synchronized")
            .flush_ms(600_000)
            .buffer_size(1 << 30)
            .line(&format!(
                "metrics.address = {}",
                toml_str(&format!("127.0.0.1:{port}"))
            ))
            .line(&format!("plugin.timeout.ms = {timeout_ms}"))
            .render()
    };

    let lock = hold_share_lock(&table);
    let mut sink = ctx.sink("sink").toml(&render(10_000)).start();
    wait_copy_blocked(&ctx, &pg, &table, &mut sink);
    let converted = wait_consume_blocked(&ctx, &mut sink, port);
    ctx.note(format!("{converted} messages converted; nothing committed"));

    // Replaced in one rename, so the reloader never reads a half-written file.
    let next = ctx.write("sink.toml.next", render(10_001));
    std::fs::rename(&next, ctx.dir().join("sink.toml")).expect("replace sink.toml");
    wait_log(&ctx, &mut sink, "converter reloaded", 1, LONG);
    let firsts: Vec<u64> = delivered
        .iter()
        .filter(|d| d.offset == 0)
        .map(|d| d.seq as u64 + 1)
        .collect();
    assert_eq!(
        firsts.len(),
        partitions as usize,
        "one message at offset 0 per partition"
    );
    copy_std_rows(&lock, &table, firsts);
    for partition in 0..partitions {
        lock.query(
            "INSERT INTO pgsink.offsets (sink, first_table, topic, partition, next_offset) \
             VALUES ($1 || '.' || $2, pgsink.qualified($1, $2), $3, $4, 1)",
            &[&table.schema, &table.name, &topic, &partition],
        );
    }
    ctx.note("reload published; offset 0 of every partition loaded behind the sink's back; releasing the lock");
    release(lock);
    wait_log(&ctx, &mut sink, "offset fence tripped", 1, LONG);

    let took = wait_for(LONG, "the stored offsets at the end", || {
        sink.assert_running("waiting for the stored offsets to reach the end");
        stored_at_end(&pg, &table, &ends)
    });
    ctx.note(format!(
        "stored offsets at the end {:.1} s after the trip; {} rows",
        took.as_secs_f64(),
        pg.count(&table)
    ));
    sink.stop_ok();
    let ids: BTreeSet<u64> = (1..=backlog).collect();
    assert_synchronized_consistent(&pg, &table, &ids);
    assert_exactly_once(&pg, &table, &ids);
}
