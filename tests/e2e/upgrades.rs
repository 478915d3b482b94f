//! Who owns a stored position. Upgrading the SQL package: a sink of this version starts on a
//! database an older pgsink left (the old package installed from a fixture, its functions used
//! as the old binary used them), upgrades it in place and resumes exactly where the old one
//! stopped — every message once, none skipped. Renaming a sink: the new name must not load
//! the table's topic again.

use std::collections::BTreeSet;

use crate::harness::*;

/// Databases of the upgrade tests (each installs an old package; no other test may see it).
const UPGRADE_DB: &str = "pgsink_test_upgrade";
const UPGRADE_V2_DB: &str = "pgsink_test_upgrade_v2";
const OWNERSHIP_DB: &str = "pgsink_test_ownership";

/// What a pgsink of an older SQL package left behind: `pgsink_test_*` database `db` with
/// package `version` installed from its fixture, and 1000 standard messages on a 2-partition
/// topic, the first half of each partition loaded into the table with its offset stored by
/// that version's `pgsink.commit_offsets` (a flush's start, NULL: nothing stored before).
struct Old {
    ctx: Ctx,
    broker: Broker,
    pg: Pg,
    table: Table,
    topic: String,
    delivered: Vec<Delivered>,
}

impl Old {
    fn left_half_loaded(test: &str, db: &str, version: u32) -> Old {
        let ctx = Ctx::new(test);
        let broker = Broker::mock();
        let pg = Pg::connect_to(db);
        let table = pg.std_table(&ctx.table_name());
        pg.batch("DROP SCHEMA IF EXISTS pgsink CASCADE");
        pg.batch(match version {
            1 => include_str!("fixtures/install_v1.sql"),
            _ => include_str!("fixtures/install_v2.sql"),
        });
        let topic = ctx.unique("t");
        broker.create_topic(&topic, 2);
        let mut producer = broker.producer(false);
        producer.send_std_all(&topic, 1..=1000);
        let delivered = producer.flush();
        for partition in 0..2 {
            let mine: Vec<&Delivered> = delivered
                .iter()
                .filter(|d| d.partition == partition)
                .collect();
            let half = mine.len() / 2;
            copy_std_rows(&pg, &table, mine[..half].iter().map(|d| d.seq as u64 + 1));
            pg.query(
                "SELECT pgsink.commit_offsets($1, $2, ARRAY[$3], ARRAY[$4::int], ARRAY[NULL::bigint], ARRAY[$5::bigint], 'old')",
                &[&table.schema, &table.name, &topic, &partition, &(half as i64)],
            );
        }
        ctx.note(format!(
            "version {version} stored the first half of each partition"
        ));
        Old {
            ctx,
            broker,
            pg,
            table,
            topic,
            delivered,
        }
    }
}

/// A table loaded by a pgsink of SQL package version 1 (its `pgsink.commit_offsets` compared
/// with the offset a process believed stored): a sink of this version upgrades the package at
/// start — the schema comment says version 3 — and resumes exactly at the stored offsets,
/// which the upgrade keeps.
#[test]
fn synchronized_upgrade_from_sql_v1_mock() {
    let Old {
        ctx,
        broker,
        pg,
        table,
        topic,
        delivered,
    } = Old::left_half_loaded("synchronized_upgrade_from_sql_v1_mock", UPGRADE_DB, 1);
    let n = delivered.len() as u64;
    let version = |pg: &Pg| -> String {
        pg.query(
            "SELECT obj_description('pgsink'::regnamespace, 'pg_namespace')",
            &[],
        )[0]
        .get(0)
    };
    assert!(version(&pg).starts_with("pgsink 1:"), "{}", version(&pg));

    let mut cfg = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g"))
        .delivery("synchronized")
        .flush_ms(100);
    cfg.database = UPGRADE_DB.to_string();
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    let ids: BTreeSet<u64> = (1..=n).collect();
    pg.wait_all_rows(&table, &ids, LONG, &mut [&mut sink]);
    sink.stop_ok();
    assert!(version(&pg).starts_with("pgsink 3:"), "{}", version(&pg));
    assert!(
        sink.stderr().contains("upgrading the pgsink schema"),
        "the sink upgraded the package"
    );
    assert_synchronized_consistent(&pg, &table, &ids);
    assert_exactly_once(&pg, &table, &ids);
}

/// Version 2 keyed the offsets by table; version 3 by sink. A *named* sink starts on a database
/// where version 2 loaded half of its topic into its table, with another topic's position and a
/// dead letter stored for the same table. The upgrade keeps every position (marked as the
/// table's); the sink adopts its topic's, and only those, resumes from them (every message
/// once), and its offsets and dead letter are its own from then on.
#[test]
fn synchronized_upgrade_from_sql_v2_named_sink_mock() {
    let Old {
        ctx,
        broker,
        pg,
        table,
        topic,
        delivered,
    } = Old::left_half_loaded(
        "synchronized_upgrade_from_sql_v2_named_sink_mock",
        UPGRADE_V2_DB,
        2,
    );
    let n = delivered.len() as u64;
    let ends = end_offsets(&delivered);
    // Also another sink's topic at 7, and a dead letter of ours.
    let other = ctx.unique("other");
    pg.query(
        "SELECT pgsink.commit_offsets($1, $2, ARRAY[$3], ARRAY[0], ARRAY[NULL::bigint], ARRAY[7::bigint], 'v2')",
        &[&table.schema, &table.name, &other],
    );
    pg.query(
        "INSERT INTO pgsink.dead_letters (table_schema, table_name, topic, partition, \"offset\", reason)
         VALUES ($1, $2, $3, 0, 0, 'left by version 2')",
        &[&table.schema, &table.name, &topic],
    );
    let old: Vec<(String, i32, i64)> = pg
        .query(
            "SELECT topic, partition, next_offset FROM pgsink.offsets",
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    ctx.note(format!("version 2 stored {old:?}"));

    let sink_name = ctx.unique("orders");
    let mut cfg = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g"))
        .line(&format!("name = {}", toml_str(&sink_name)))
        .delivery("synchronized")
        .flush_ms(100);
    cfg.database = UPGRADE_V2_DB.to_string();
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    let ids: BTreeSet<u64> = (1..=n).collect();
    pg.wait_all_rows(&table, &ids, LONG, &mut [&mut sink]);
    wait_for(LONG, "the sink's offsets at the end", || {
        sink.assert_running("waiting for the stored offsets");
        pg.sink_offsets(&sink_name) == ends
    });
    sink.stop_ok();
    assert!(
        sink.stderr().contains("are now this sink's"),
        "the sink adopted the positions version 2 stored"
    );
    assert_exactly_once(&pg, &table, &ids);
    assert_sink_offsets_at_end(&pg, &sink_name, &ends);
    let marked: Vec<(String, String, i64)> = pg
        .query(
            "SELECT sink, topic, next_offset FROM pgsink.offsets WHERE sink <> $1",
            &[&sink_name],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let mark = format!("table \"public\".\"{}\"", table.name);
    assert_eq!(
        marked,
        vec![(mark, other.clone(), 7)],
        "another topic's position stays the table's, for the sink that loads that topic"
    );
    let letters: Vec<String> = pg
        .query(
            "SELECT sink FROM pgsink.dead_letters WHERE topic = $1",
            &[&topic],
        )
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        letters,
        vec![sink_name.clone()],
        "the dead letter is the sink's"
    );
}

/// A synchronized sink named `a` loads a topic; the same configuration renamed `b` (so also a
/// new consumer group, which would start at the beginning) must not load it again: its first
/// flush meets `a`'s positions of the same table and topic, rolls back and stops, naming the
/// owner and how to take the positions over. After the UPDATE it names, `b` resumes where `a`
/// stopped: every message exactly once.
#[test]
fn synchronized_renamed_sink_takes_positions_over_explicitly_mock() {
    let ctx = Ctx::new("synchronized_renamed_sink");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let table = pg.std_table(&ctx.table_name());
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 2);
    let mut producer = broker.producer(false);
    producer.send_std_all(&topic, 1..=1000);
    let mut delivered = producer.flush();
    let (a, b) = (ctx.unique("a"), ctx.unique("b"));
    let cfg = |name: &str| {
        SinkToml::new(&table, &[&topic], &broker, &format!("connect-{name}"))
            .line(&format!("name = {}", toml_str(name)))
            .flush_ms(100)
            .render()
    };
    let mut sink = ctx.sink("a").toml(&cfg(&a)).start();
    let mut ids: BTreeSet<u64> = (1..=1000).collect();
    pg.wait_all_rows(&table, &ids, LONG, &mut [&mut sink]);
    sink.stop_ok();

    producer.send_std_all(&topic, 1001..=1500);
    delivered.extend(producer.flush());
    // `pgsink check` says it first.
    let path = ctx.write("b.toml", cfg(&b));
    let check = ctx.run_pgsink(
        &["check", "--config", path.to_str().unwrap()],
        b"",
        std::time::Duration::from_secs(90),
    );
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{report}");
    assert!(
        report.contains(&format!("is loaded by sink {a}")),
        "{report}"
    );

    let mut renamed = ctx.sink("b").toml(&cfg(&b)).start();
    let status = renamed.wait(LONG);
    assert!(!status.success(), "the renamed sink must stop");
    let stderr = renamed.stderr();
    let refusal = format!("is loaded by sink {a}; sink {b} would load it again");
    let hint = format!(
        "UPDATE pgsink.offsets SET sink = '{b}' WHERE sink = '{a}' AND first_table = '\"public\".\"{}\"'",
        table.name
    );
    for needle in [&refusal, &hint] {
        assert!(
            stderr.contains(needle.as_str()),
            "{needle:?} not in:\n{stderr}"
        );
    }
    assert_exactly_once(&pg, &table, &ids);

    pg.batch(&hint);
    let mut sink = ctx.sink("b again").toml(&cfg(&b)).start();
    ids.extend(1001..=1500);
    pg.wait_all_rows(&table, &ids, LONG, &mut [&mut sink]);
    sink.stop_ok();
    assert_exactly_once(&pg, &table, &ids);
    assert_sink_offsets_at_end(&pg, &b, &end_offsets(&delivered));
    assert!(pg.sink_offsets(&a).is_empty());
}

/// `pgsink.commit_offsets` itself, the backstop behind the start-up check: one table's position
/// in a partition belongs to one sink, and one sink's position to one table — also when two
/// sinks race for a partition neither has stored yet (the unique index makes the second wait,
/// then it meets the owner).
#[test]
fn sql_commit_offsets_one_sink_per_table_position() {
    let pg = Pg::connect_to(OWNERSHIP_DB);
    pg.batch("DROP SCHEMA IF EXISTS pgsink CASCADE");
    pg.batch(include_str!("../../sql/install.sql"));
    let commit = |sink: &str, table: &str, from: &str, next: i64| {
        format!(
            "SELECT pgsink.commit_offsets('{sink}', 'public', '{table}', ARRAY['x'], ARRAY[0], \
             ARRAY[{from}::bigint], ARRAY[{next}::bigint], 'h')"
        )
    };
    pg.batch(&commit("a", "t", "NULL", 5));
    let refused = pg.try_batch(&commit("b", "t", "NULL", 7)).unwrap_err();
    assert_eq!(refused.0, "PSK02", "{refused:?}");
    assert!(
        refused.1.contains(
            r#"x[0] of table "public"."t" is loaded by sink a; sink b would load it again"#
        ),
        "{refused:?}"
    );
    let moved = pg.try_batch(&commit("a", "u", "5", 9)).unwrap_err();
    assert_eq!(moved.0, "PSK02", "{moved:?}");
    assert!(
        moved.1.contains(
            r#"sink a stored x[0] for table "public"."t", and this flush writes "public"."u""#
        ),
        "{moved:?}"
    );
    pg.batch(&commit("a", "t", "5", 9));
    let stored: Vec<(String, String, i64)> = pg
        .query(
            "SELECT sink, first_table, next_offset FROM pgsink.offsets",
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        stored,
        vec![("a".to_string(), r#""public"."t""#.to_string(), 9)]
    );

    // The race: c's first flush is in flight (uncommitted) when d's arrives.
    let first = Pg::connect_to(OWNERSHIP_DB);
    first.batch(&format!("BEGIN; {}", commit("c", "v", "NULL", 3)));
    let racing = std::thread::spawn(move || {
        let second = Pg::connect_to(OWNERSHIP_DB);
        second.try_batch(&commit("d", "v", "NULL", 4))
    });
    let waiting = Pg::connect_to(OWNERSHIP_DB);
    wait_for(LONG, "d's flush waiting on c's", || {
        !waiting
            .query(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                  AND query LIKE '%commit_offsets(''d''%'",
                &[],
            )
            .is_empty()
    });
    first.batch("COMMIT");
    let raced = racing.join().unwrap().unwrap_err();
    assert_eq!(
        raced.0, "PSK02",
        "the second flush meets the owner it waited for: {raced:?}"
    );
    pg.batch("DROP SCHEMA pgsink CASCADE");
}
