//! Checks of the harness itself, without pgsink: if these fail, the other failures say nothing
//! about pgsink.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::harness::*;

/// Produces 2000 standard messages and reads them back with a plain consumer; checks the
/// recorded offsets and that a fresh group has no committed offsets.
fn broker_roundtrip(name: &str, broker: Broker, one_per_batch: bool) {
    let ctx = Ctx::new(name);
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 4);
    let mut p = broker.producer(one_per_batch);
    p.send_std_all(&topic, 1..=2000);
    let delivered = p.flush();
    let ends = end_offsets(&delivered);
    assert_eq!(ends.values().sum::<i64>(), 2000, "{ends:?}");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", ctx.unique("g"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for part in 0..4 {
        tpl.add_partition_offset(&topic, part, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut ids = BTreeSet::new();
    let t0 = Instant::now();
    while ids.len() < 2000 && t0.elapsed() < Duration::from_secs(60) {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let id = v["identity"].as_u64().unwrap();
            assert_eq!(m.payload().unwrap(), std_message(id).as_bytes());
            assert_eq!(m.key().unwrap(), id.to_string().as_bytes());
            ids.insert(id);
        }
    }
    assert_eq!(ids.len(), 2000, "consumed ids");
    let committed = broker.committed(&ctx.unique("fresh"), &topic, 4);
    assert!(committed.values().all(|o| o.is_none()), "{committed:?}");
}

#[test]
fn harness_selftest_mock() {
    broker_roundtrip("harness_selftest_mock", Broker::mock(), false);
}

#[test]
fn harness_selftest_tansu() {
    broker_roundtrip("harness_selftest_tansu", Broker::tansu(), true);
}

/// The expected rows survive PostgreSQL's numeric and float8 input/output unchanged, and the
/// checks notice duplicates, gaps and wrong fields.
#[test]
fn harness_selftest_postgres() {
    let ctx = Ctx::new("harness_selftest_postgres");
    let pg = Pg::connect();
    let table = pg.std_table(&ctx.table_name());
    let mut copy = String::new();
    for id in (1..=5000).chain([17, 4000]) {
        let f = std_fields(id);
        copy.push_str(&format!(
            "{id}\t{}\t{}\t{}\t{}\t{}\n",
            f.lat, f.lon, f.ax, f.ay, f.az
        ));
    }
    copy.push_str("6000\t1\t2\t3\t4\t5\n");
    pg.copy_in(
        &format!("COPY {} FROM STDIN", table.qualified()),
        copy.into_bytes(),
    );
    let ids: BTreeSet<u64> = (1..=5000).chain([5001]).collect();
    let r = check_std_rows(&pg.std_rows(&table), &ids);
    assert_eq!(r.rows, 5003);
    assert_eq!(r.duplicated, vec![(17, 2), (4000, 2)]);
    assert_eq!(r.missing, vec![5001]);
    assert_eq!(r.unexpected, vec![Some(6000)]);
    assert_eq!(r.wrong_count, 0, "{}", r.summary());
    pg.batch(&format!(
        "UPDATE {} SET az = az + 1e-12 WHERE id = 3",
        table.qualified()
    ));
    let r = check_std_rows(&pg.std_rows(&table), &ids);
    assert_eq!(r.wrong_count, 1, "{}", r.summary());
    assert_eq!(pg.count_distinct_ids(&table), 5001);
}
