//! The three delivery modes on both brokers: every produced message becomes exactly one correct
//! row; synchronized stores the next offsets in `pgsink.offsets`, the other modes store none.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::*;

/// Produces `n` standard messages (ids 1..=n) into a fresh `partitions`-partition topic, runs
/// one sink in `mode` until everything is loaded, stops it with SIGTERM and checks the table.
fn run_mode(name: &str, broker: Broker, mode: &str, n: u64, partitions: i32) {
    let ctx = Ctx::new(name);
    let pg = Pg::connect();
    let table = pg.std_table(&ctx.table_name());
    let topic = ctx.unique("t");
    broker.create_topic(&topic, partitions);
    // Batched production from offset 0 (tansu handles that; the sink reads from the start).
    let mut producer = broker.producer(false);
    producer.send_std_all(&topic, 1..=n);
    let delivered = producer.flush();
    let ends = end_offsets(&delivered);
    ctx.note(format!(
        "{n} messages in {} partitions of {topic} on {}: {ends:?}",
        ends.len(),
        broker.kind()
    ));
    let group = ctx.unique("g");
    let cfg = SinkToml::new(&table, &[&topic], &broker, &group)
        .delivery(mode)
        .flush_ms(250);
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    match mode {
        // The buffer (8 MB by default) is written only when full or at shutdown, so rows
        // cannot be watched: wait until the group has committed the end offsets instead.
        "fastest" => {
            wait_committed_at_end(&broker, &group, &topic, partitions, &ends, &mut sink);
        }
        _ => {
            pg.wait_all_rows(&table, &(1..=n).collect(), LONG, &mut [&mut sink]);
            if mode == "guaranteed" {
                wait_committed_at_end(&broker, &group, &topic, partitions, &ends, &mut sink);
            }
        }
    }
    sink.stop_ok();
    let ids: BTreeSet<u64> = (1..=n).collect();
    assert_exactly_once(&pg, &table, &ids);
    if mode == "synchronized" {
        assert_offsets_at_end(&pg, &table, &ends);
    } else {
        let stored = pg.stored_offsets(&table);
        assert!(
            stored.is_empty(),
            "{mode}: pgsink.offsets must hold nothing for this table, found {stored:?}"
        );
    }
    assert!(
        pg.dead_letters(&table).is_empty(),
        "no message should be a dead letter"
    );
}

#[test]
fn synchronized_mock() {
    run_mode(
        "synchronized_mock",
        Broker::mock(),
        "synchronized",
        20_000,
        8,
    );
}

#[test]
fn guaranteed_mock() {
    run_mode("guaranteed_mock", Broker::mock(), "guaranteed", 20_000, 8);
}

#[test]
fn fastest_mock() {
    run_mode("fastest_mock", Broker::mock(), "fastest", 20_000, 8);
}

#[test]
fn synchronized_tansu() {
    run_mode(
        "synchronized_tansu",
        Broker::tansu(),
        "synchronized",
        50_000,
        8,
    );
}

#[test]
fn guaranteed_tansu() {
    run_mode("guaranteed_tansu", Broker::tansu(), "guaranteed", 50_000, 8);
}

#[test]
fn fastest_tansu() {
    run_mode("fastest_tansu", Broker::tansu(), "fastest", 50_000, 8);
}

/// The default delivery (no `db.delivery`) is synchronized.
#[test]
fn synchronized_is_the_default_mock() {
    let (ctx, broker, pg, table, topic) =
        stage("synchronized_is_the_default_mock", Broker::mock(), 3);
    let mut producer = broker.producer(false);
    producer.send_std_all(&topic, 1..=3000);
    let ends = end_offsets(&producer.flush());
    let cfg = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g"));
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    pg.wait_all_rows(&table, &(1..=3000).collect(), LONG, &mut [&mut sink]);
    sink.stop_ok();
    assert_exactly_once(&pg, &table, &(1..=3000).collect());
    assert_offsets_at_end(&pg, &table, &ends);
}

/// fastest with a 4 KiB buffer and a 10-minute flush interval: rows must reach the table while
/// the sink runs (each time the buffer fills), and the rest at SIGTERM.
#[test]
fn fastest_flushes_when_buffer_full() {
    let (ctx, broker, pg, table, topic) =
        stage("fastest_flushes_when_buffer_full", Broker::mock(), 4);
    let n: u64 = 20_000;
    let mut producer = broker.producer(false);
    producer.send_std_all(&topic, 1..=n);
    producer.flush();
    let cfg = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g"))
        .delivery("fastest")
        .buffer_size(4096)
        .flush_ms(600_000);
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    // A row is about 50 bytes, so a 4096-byte buffer holds under 100 rows. Allow for a few
    // buffers in flight: at least n - 1000 rows must arrive without any shutdown.
    let seen = pg.wait_rows(&table, n as i64 - 1000, LONG, &mut [&mut sink]);
    ctx.note(format!("{seen} rows while running"));
    std::thread::sleep(Duration::from_secs(2));
    sink.assert_running("after the rows arrived");
    sink.stop_ok();
    assert_exactly_once(&pg, &table, &(1..=n).collect());
    assert!(pg.stored_offsets(&table).is_empty());
}

/// Two topics (3 and 5 partitions) into one table, topics given as a comma-separated string.
#[test]
fn two_topics_into_one_table_synchronized_mock() {
    let ctx = Ctx::new("two_topics_into_one_table");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let table = pg.std_table(&ctx.table_name());
    let a = ctx.unique("a");
    let b = ctx.unique("b");
    broker.create_topic(&a, 3);
    broker.create_topic(&b, 5);
    let mut producer = broker.producer(false);
    producer.send_std_all(&a, 1..=5000);
    producer.send_std_all(&b, 100_001..=107_000);
    let ends = end_offsets(&producer.flush());
    let cfg = SinkToml::new(&table, &[], &broker, &ctx.unique("g"))
        .line(&format!("topics = {}", toml_str(&format!(" {a}, {b} "))))
        .flush_ms(250);
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    let ids: BTreeSet<u64> = (1..=5000).chain(100_001..=107_000).collect();
    pg.wait_all_rows(&table, &ids, LONG, &mut [&mut sink]);
    sink.stop_ok();
    assert_exactly_once(&pg, &table, &ids);
    assert_offsets_at_end(&pg, &table, &ends);
}

/// `topics = "^<prefix>_.*"`: the sink consumes every topic the pattern matches, one created
/// while it runs included, and no other. A pattern's partitions are fenced like a named
/// topic's: after a kill -9, a sink in a *new* consumer group (so nothing comes from Kafka's
/// committed offsets) resumes each of them at the offset stored in PostgreSQL, exactly once.
#[test]
fn topic_pattern_synchronized_mock() {
    let ctx = Ctx::new("topic_pattern");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let table = pg.std_table(&ctx.table_name());
    let prefix = ctx.unique("p");
    let [a, b, c] = ["a", "b", "c"].map(|t| format!("{prefix}_{t}"));
    let outside = format!("{prefix}x_d");
    broker.create_topic(&a, 3);
    broker.create_topic(&b, 1);
    broker.create_topic(&outside, 1);
    let mut producer = broker.producer(false);
    producer.send_std_all(&a, 1..=3000);
    producer.send_std_all(&b, 10_001..=11_000);
    producer.send_std_all(&outside, 900_001..=900_100);
    let mut delivered = producer.flush();
    let cfg = |group: &str| {
        SinkToml::new(&table, &[], &broker, &ctx.unique(group))
            .line(&format!("topics = {}", toml_str(&format!("^{prefix}_.*"))))
            .kafka("topic.metadata.refresh.interval.ms", "500")
            .flush_ms(200)
            .render()
    };
    let mut sink = ctx.sink("sink").toml(&cfg("g1")).start();
    let mut ids: BTreeSet<u64> = (1..=3000).chain(10_001..=11_000).collect();
    pg.wait_all_rows(&table, &ids, LONG, &mut [&mut sink]);

    broker.create_topic(&c, 2);
    producer.send_std_all(&c, 20_001..=22_000);
    delivered.extend(producer.flush());
    ids.extend(20_001..=22_000);
    pg.wait_all_rows(&table, &ids, LONG, &mut [&mut sink]);
    sink.kill9();

    producer.send_std_all(&a, 3001..=4000);
    producer.send_std_all(&c, 22_001..=23_000);
    delivered.extend(producer.flush());
    ids.extend((3001..=4000).chain(22_001..=23_000));
    let mut sink = ctx.sink("again").toml(&cfg("g2")).start();
    pg.wait_all_rows(&table, &ids, LONG, &mut [&mut sink]);
    sink.stop_ok();
    assert_exactly_once(&pg, &table, &ids);
    let mut ends = end_offsets(&delivered);
    ends.retain(|(topic, _), _| *topic != outside);
    assert_offsets_at_end(&pg, &table, &ends);

    // Switched to guaranteed delivery, the sink drops the stored offsets of the topics its
    // pattern matches, an older pgsink's for its table included (a later synchronized start
    // would adopt them), and only those.
    pg.query(
        "INSERT INTO pgsink.offsets (sink, first_table, topic, partition, next_offset)
         VALUES ($1, pgsink.qualified('public', $2), $3, 0, 5),
                ('table ' || pgsink.qualified('public', $2), pgsink.qualified('public', $2), $4, 9, 40)",
        &[&table.sink(), &table.name, &outside, &a],
    );
    let guaranteed = cfg("g3").replace("[kafka]", "db.delivery = \"guaranteed\"\n[kafka]");
    let mut sink = ctx.sink("guaranteed").toml(&guaranteed).start();
    wait_log(
        &ctx,
        &mut sink,
        "dropped this sink's stored synchronized offsets",
        1,
        LONG,
    );
    sink.stop_ok();
    let left: Vec<(String, i32)> = pg
        .query(
            "SELECT topic, partition FROM pgsink.offsets WHERE first_table = pgsink.qualified('public', $1)",
            &[&table.name],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(left, vec![(outside.clone(), 0)]);
}

/// 12 partitions, `tasks = 2` (two pipelines).
#[test]
fn synchronized_multi_partition_tasks_2_mock() {
    let (ctx, broker, pg, table, topic) =
        stage("synchronized_multi_partition_tasks_2", Broker::mock(), 12);
    let n = 30_000;
    let mut producer = broker.producer(false);
    producer.send_std_all(&topic, 1..=n);
    let ends = end_offsets(&producer.flush());
    assert_eq!(ends.len(), 12, "every partition should get messages");
    let cfg = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g"))
        .line("tasks = 2")
        .flush_ms(250);
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    pg.wait_all_rows(&table, &(1..=n).collect(), LONG, &mut [&mut sink]);
    sink.stop_ok();
    assert_exactly_once(&pg, &table, &(1..=n).collect());
    assert_offsets_at_end(&pg, &table, &ends);
}
