//! Keyed write modes (`db.write.mode = upsert | ignore`) against real PostgreSQL: the table
//! must always equal a model that applies the topic's messages one by one in offset order —
//! after every kill -9 (up to the stored offsets) and at the end — with repeated keys inside
//! one flush, deletes of absent keys, a key of every column, a partitioned table, and rows the
//! merge refuses going to the dead letters.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::*;

/// One message of a keyed topic: `value` None is a tombstone (a delete).
#[derive(Clone, Debug)]
struct Change {
    partition: i32,
    offset: i64,
    id: i64,
    value: Option<String>,
}

/// The table a keyed sink must leave after applying `changes` below `stored` (per partition),
/// one by one: id → v. Upsert: the last value wins; ignore: the first value after the key's
/// last delete (or an existing row) stays; a tombstone removes the key.
fn model(
    changes: &[Change],
    stored: &BTreeMap<(String, i32), i64>,
    topic: &str,
    mode: &str,
) -> BTreeMap<i64, String> {
    let mut table = BTreeMap::new();
    for c in changes {
        let below = stored
            .get(&(topic.to_string(), c.partition))
            .is_some_and(|&next| c.offset < next);
        if !below {
            continue;
        }
        match (&c.value, mode) {
            (None, _) => {
                table.remove(&c.id);
            }
            (Some(v), "upsert") => {
                table.insert(c.id, v.clone());
            }
            (Some(v), _) => {
                table.entry(c.id).or_insert_with(|| v.clone());
            }
        }
    }
    table
}

/// The table's rows, id → v.
fn rows(pg: &Pg, table: &Table) -> BTreeMap<i64, String> {
    pg.query(&format!("SELECT id, v FROM {}", table.qualified()), &[])
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// `n` changes over `keys` keys, one in ten a tombstone, in a seeded order, each key on the
/// partition `id % partitions` (as a keyed producer places them), at the offsets they will
/// get in a new topic.
fn plan_changes(n: u64, keys: i64, partitions: i32, seed: u64) -> Vec<Change> {
    let mut state = seed;
    let mut next = vec![0i64; partitions as usize];
    (0..n)
        .map(|seq| {
            // xorshift: reproducible from the seed the test prints.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let id = (state % keys as u64) as i64;
            let partition = (id % i64::from(partitions)) as i32;
            let offset = next[partition as usize];
            next[partition as usize] += 1;
            Change {
                partition,
                offset,
                id,
                value: (state % 10 != 3).then(|| format!("v{seq}")),
            }
        })
        .collect()
}

/// A change as a Kafka message: key `{"id": N}`, value `{"v": …}` or null.
fn message(change: &Change) -> Keyed {
    let id = change.id;
    (
        Some(change.partition),
        Some(format!("{{\"id\": {id}}}").into_bytes()),
        change
            .value
            .as_ref()
            .map(|v| format!("{{\"v\": \"{v}\", \"id\": {id}}}").into_bytes()),
    )
}

/// A keyed sink of `{"id": N}` keys and `{"v": …}` values (tombstones delete) into `table`.
fn keyed_config(table: &Table, topic: &str, broker: &Broker, group: &str, mode: &str) -> SinkToml {
    let mut cfg = SinkToml::new(table, &[topic], broker, group)
        .line(&format!("db.write.mode = \"{mode}\""))
        .line("db.json.tombstone = \"delete\"");
    cfg.parse = "#key/@id, /@v".to_string();
    cfg
}

/// The stored offsets of `table` and its rows (id → v), read in one statement, so in one
/// snapshot: a COMMIT of a killed sink still in flight is in both or in neither.
fn snapshot(pg: &Pg, table: &Table) -> (BTreeMap<(String, i32), i64>, BTreeMap<i64, String>) {
    let (mut stored, mut rows) = (BTreeMap::new(), BTreeMap::new());
    let all = pg.query(
        &format!(
            "SELECT topic, partition, next_offset, NULL::text FROM pgsink.offsets
              WHERE sink = $1 || '.' || $2
             UNION ALL SELECT NULL, NULL, id, v FROM {}",
            table.qualified()
        ),
        &[&table.schema, &table.name],
    );
    for r in all {
        match r.get::<_, Option<String>>(0) {
            Some(topic) => {
                stored.insert((topic, r.get(1)), r.get(2));
            }
            None => {
                rows.insert(r.get(2), r.get(3));
            }
        }
    }
    (stored, rows)
}

/// Sends `history` to partition 0 of `topic`: keys `{"id": N}`, the values as given (None:
/// a tombstone). Returns the end offsets.
fn send_history<S: AsRef<str>>(
    broker: &Broker,
    topic: &str,
    history: &[(i64, Option<S>)],
) -> BTreeMap<(String, i32), i64> {
    let mut producer = broker.producer(false);
    for (id, value) in history {
        let key = format!("{{\"id\": {id}}}");
        producer.send(
            topic,
            Some(0),
            Some(key.as_bytes()),
            value.as_ref().map(|v| v.as_ref().as_bytes()),
        );
    }
    end_offsets(&producer.flush())
}

/// `public.<name>` made by `ddl` (which drops and creates it), with pgsink's state of it
/// forgotten, as a sink of its `id` and `v` columns sees it.
fn id_v_table(pg: &Pg, name: &str, ddl: &str) -> Table {
    pg.batch(ddl);
    pg.forget_state("public", name);
    Table {
        schema: "public".into(),
        name: name.to_string(),
        columns: vec!["id".into(), "v".into()],
    }
}

/// Runs a sink of `cfg` until its stored offsets are `ends`, then stops it.
fn run_to(ctx: &Ctx, pg: &Pg, label: &str, cfg: &SinkToml, ends: &BTreeMap<(String, i32), i64>) {
    let mut sink = ctx.sink(label).toml(&cfg.render()).start();
    wait_for(LONG, "the offsets past the history", || {
        &pg.stored_offsets(&cfg.table) == ends
    });
    sink.stop_ok();
}

/// id → v, for comparing with [`rows`].
fn live(rows: &[(i64, &str)]) -> BTreeMap<i64, String> {
    rows.iter().map(|(id, v)| (*id, v.to_string())).collect()
}

/// A table for `upsert` or `ignore` whose only key is `id`.
const KEYED: [(&str, &str); 2] = [("id", "bigint PRIMARY KEY"), ("v", "text")];

/// Kill -9s at seeded moments after progress while a keyed sink applies 16,000 changes over
/// 1,000 keys, produced at 150 a second, in small flushes: after each kill the table equals
/// the model of the messages below the stored offsets (a flush is all or nothing, with its
/// offsets), and at the end it equals the model of the whole topic, with no dead letter.
fn keyed_kill9(name: &str, mode: &str, kills: usize) {
    let ctx = Ctx::new(name);
    let broker = Broker::mock();
    let pg = Pg::connect();
    let table = pg.table_in("public", &ctx.table_name(), &KEYED);
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 4);
    let seed = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    ctx.note(format!("seed {seed}"));
    let planned = plan_changes(16_000, 1_000, 4, seed);
    let to_send = planned.clone();
    let producer = BackgroundProducer::paced(broker.producer_spec(false), &topic, 150, move |i| {
        to_send.get(i as usize).map(message)
    });
    let cfg = keyed_config(&table, &topic, &broker, &ctx.unique("g"), mode)
        .buffer_size(2048)
        .flush_ms(50)
        // A SIGKILLed member stays in the group until its session times out.
        .kafka("session.timeout.ms", "6000")
        .render();

    let mut moment = seed;
    for k in 0..kills {
        let label = format!("run{}", k + 1);
        let before = pg.stored_offsets(&table);
        let mut sink = ctx.sink(&label).toml(&cfg).start();
        // Some progress first (the group join takes seconds), then a seeded moment within
        // the next 400 ms: a flush open, committing, or between two.
        wait_for(LONG, "progress past the stored offsets", || {
            sink.assert_running("before the planned kill -9");
            pg.stored_offsets(&table) != before
        });
        moment = moment.wrapping_mul(6364136223846793005).wrapping_add(1);
        let after = Duration::from_millis(moment % 400);
        sink.stays_up(after, "before the planned kill -9");
        sink.kill9();
        let (stored, rows) = snapshot(&pg, &table);
        ctx.note(format!(
            "{label}: killed {after:?} after progress; stored {stored:?}"
        ));
        assert_eq!(
            rows,
            model(&planned, &stored, &topic, mode),
            "{label}: the table is not the model of the messages below the stored offsets"
        );
    }
    let delivered = producer.finish();
    for d in &delivered {
        let c = &planned[d.seq];
        assert_eq!(
            (d.partition, d.offset),
            (c.partition, c.offset),
            "message {} landed elsewhere than the model put it",
            d.seq
        );
    }
    let ends = end_offsets(&delivered);
    assert!(
        pg.stored_offsets(&table) != ends,
        "the kills all came before the end of the topic"
    );
    let mut last = ctx.sink("final").toml(&cfg).start();
    wait_for(LONG, "the stored offsets at the end of the topic", || {
        pg.stored_offsets(&table) == ends
    });
    last.stop_ok();
    assert_eq!(rows(&pg, &table), model(&planned, &ends, &topic, mode));
    assert!(pg.dead_letters(&table).is_empty());
}

#[test]
fn write_modes_upsert_kill9_exactly_once_mock() {
    keyed_kill9("write_modes_upsert_kill9_exactly_once_mock", "upsert", 10);
}

#[test]
fn write_modes_ignore_kill9_exactly_once_mock() {
    keyed_kill9("write_modes_ignore_kill9_exactly_once_mock", "ignore", 4);
}

/// A hand-written history in one partition, buffered into one flush (it is fetched as one
/// message set, and the flush interval is longer than the fetch): the same key written
/// several times, deleted and written again, a delete of a key that does not exist, rows that
/// existed before. Upsert keeps the columns the sink does not fill unless the key was deleted
/// on the way; ignore keeps the first row; a table whose columns are all key columns takes
/// upserts and deletes too.
#[test]
fn write_modes_repeated_keys_in_one_flush_mock() {
    let ctx = Ctx::new("write_modes_repeated_keys_in_one_flush_mock");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 1);
    let history: Vec<(i64, Option<String>)> = [
        (1, Some("a")),
        (1, Some("b")),
        (2, Some("c")),
        (2, None),
        (3, None), // never existed
        (4, Some("d")),
        (4, None),
        (4, Some("e")),
        (1, Some("f")),
        (5, Some("g")),
        (5, Some("h")),
    ]
    .iter()
    .map(|(id, v)| (*id, v.map(|v| format!("{{\"v\": \"{v}\"}}"))))
    .collect();
    let ends = send_history(&broker, &topic, &history);

    // Per mode, the rows (id, v, note) the table ends with.
    type Rows<'a> = &'a [(i64, &'a str, &'a str)];
    let expected: [(&str, Rows); 2] = [
        (
            "upsert",
            &[
                (1, "f", "mine"),
                (4, "e", "new"),
                (5, "h", "new"),
                (6, "old6", "mine"),
            ],
        ),
        (
            "ignore",
            &[
                (1, "old1", "mine"),
                (4, "e", "new"),
                (5, "g", "new"),
                (6, "old6", "mine"),
            ],
        ),
    ];
    for (mode, want) in expected {
        let name = format!("{}_{mode}", ctx.table_name());
        let table = id_v_table(
            &pg,
            &name,
            &format!(
                "DROP TABLE IF EXISTS public.{name}; \
                 CREATE TABLE public.{name} (id bigint PRIMARY KEY, v text, note text NOT NULL DEFAULT 'new'); \
                 INSERT INTO public.{name} VALUES (1, 'old1', 'mine'), (2, 'old2', 'mine'), (4, 'old4', 'mine'), (6, 'old6', 'mine')"
            ),
        );
        let cfg = keyed_config(&table, &topic, &broker, &ctx.unique(mode), mode).flush_ms(3000);
        run_to(&ctx, &pg, mode, &cfg, &ends);
        let got: Vec<(i64, String, String)> = pg
            .query(
                &format!("SELECT id, v, note FROM public.{name} ORDER BY id"),
                &[],
            )
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let want: Vec<(i64, String, String)> = want
            .iter()
            .map(|(id, v, note)| (*id, v.to_string(), note.to_string()))
            .collect();
        assert_eq!(got, want, "{mode}");
        assert!(pg.dead_letters(&table).is_empty(), "{mode}");
        // The new rows and the offsets were written by one transaction: the history was one
        // flush, so the repeats above were collapsed inside it.
        let flushes: i64 = pg.query(
            &format!(
                "SELECT count(DISTINCT xmin::text) FROM (SELECT xmin FROM public.{name} WHERE id IN (4, 5)
                  UNION ALL SELECT xmin FROM pgsink.offsets WHERE sink = 'public.' || $1) x"
            ),
            &[&name],
        )[0]
        .get(0);
        assert_eq!(
            flushes, 1,
            "{mode}: the history was loaded by {flushes} transactions"
        );
    }

    // Every column a key column: nothing to update, rows are there or not.
    let name = format!("{}_pairs", ctx.table_name());
    let table = id_v_table(
        &pg,
        &name,
        &format!(
            "DROP TABLE IF EXISTS public.{name}; CREATE TABLE public.{name} (id bigint, v text, PRIMARY KEY (v, id))"
        ),
    );
    let mut cfg = keyed_config(&table, &topic, &broker, &ctx.unique("pairs"), "upsert")
        .line("db.key.columns = \"v,id\"")
        .flush_ms(3000);
    cfg.parse = "#key/@id, #key/@id".to_string();
    run_to(&ctx, &pg, "pairs", &cfg, &ends);
    assert_eq!(rows(&pg, &table), live(&[(1, "1"), (4, "4"), (5, "5")]));
}

/// A partitioned table whose constraints refuse some rows, in both keyed modes: the merge's
/// NOT NULL and CHECK violations are isolated to their messages and dead-lettered with
/// PostgreSQL's reason; the other changes, a delete among them, apply in order across the
/// table's partitions.
#[test]
fn write_modes_partitioned_table_and_refused_rows_mock() {
    let ctx = Ctx::new("write_modes_partitioned_table_and_refused_rows_mock");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 1);
    let history: [(i64, Option<&str>); _] = [
        (1, Some(r#"{"v": "a"}"#)),
        (2, Some(r#"{"v": "bad"}"#)),
        (3, Some(r#"{"w": 1}"#)),
        (1, Some(r#"{"v": "b"}"#)),
        (4, Some(r#"{"v": "c"}"#)),
        (5, Some(r#"{"v": "d"}"#)),
        (4, None),
        (6, Some(r#"{"v": "good"}"#)),
    ];
    let ends = send_history(&broker, &topic, &history);
    // Bisection applies the accepted ranges left to right: 4 is written, then deleted, in
    // either mode; ignore keeps 1's first row.
    let expected: [(&str, &[(i64, &str)]); 2] = [
        ("upsert", &[(1, "b"), (5, "d"), (6, "good")]),
        ("ignore", &[(1, "a"), (5, "d"), (6, "good")]),
    ];
    for (mode, want) in expected {
        let name = format!("{}_{mode}", ctx.table_name());
        let table = id_v_table(
            &pg,
            &name,
            &format!(
                "DROP TABLE IF EXISTS public.{name}; \
                 CREATE TABLE public.{name} (id bigint PRIMARY KEY, v text NOT NULL CHECK (v <> 'bad')) PARTITION BY HASH (id); \
                 CREATE TABLE public.{name}_0 PARTITION OF public.{name} FOR VALUES WITH (MODULUS 2, REMAINDER 0); \
                 CREATE TABLE public.{name}_1 PARTITION OF public.{name} FOR VALUES WITH (MODULUS 2, REMAINDER 1)"
            ),
        );
        let cfg = keyed_config(&table, &topic, &broker, &ctx.unique(mode), mode).flush_ms(2000);
        run_to(&ctx, &pg, mode, &cfg, &ends);
        assert_eq!(rows(&pg, &table), live(want), "{mode}");
        let letters = pg.dead_letters(&table);
        let offsets: Vec<i64> = letters.iter().map(|l| l.offset).collect();
        assert_eq!(offsets, [1, 2], "{mode}: {letters:?}");
        assert!(
            letters[0].reason.contains("check constraint"),
            "{mode}: {}",
            letters[0].reason
        );
        assert!(
            letters[1].reason.contains("null value in column \"v\""),
            "{mode}: {}",
            letters[1].reason
        );
    }
}

/// The writer's connection is terminated while its merge waits on a table lock (the flush's
/// rows staged, nothing applied): the sink reconnects, stages the flush again in the staging
/// table of the new connection and applies it; the table ends as the model of the topic,
/// every message applied once.
#[test]
fn write_modes_connection_lost_mid_merge_mock() {
    let ctx = Ctx::new("write_modes_connection_lost_mid_merge_mock");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let table = pg.table_in("public", &ctx.table_name(), &KEYED);
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 1);
    let planned = plan_changes(400, 30, 1, 7);
    let history: Vec<(i64, Option<String>)> = planned
        .iter()
        .map(|c| {
            (
                c.id,
                c.value.as_ref().map(|v| format!("{{\"v\": \"{v}\"}}")),
            )
        })
        .collect();
    let ends = send_history(&broker, &topic, &history);

    let lock = Pg::connect();
    lock.batch(&format!(
        "BEGIN; LOCK TABLE {} IN SHARE MODE",
        table.qualified()
    ));
    let cfg = keyed_config(&table, &topic, &broker, &ctx.unique("g"), "upsert").flush_ms(200);
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    let merging = format!(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgsink' \
          AND wait_event_type = 'Lock' AND query LIKE '%pgsink_stage%' \
          AND position('{}' in query) > 0",
        ident(&table.name).replace('\'', "''")
    );
    wait_for(LONG, "the merge blocked on the table lock", || {
        sink.assert_running("waiting for its merge to block");
        !pg.query(&merging, &[]).is_empty()
    });
    let killed = pg.query(
        &format!("SELECT pg_terminate_backend(pid) FROM ({merging}) m"),
        &[],
    );
    assert_eq!(killed.len(), 1, "one merging connection to terminate");
    lock.batch("COMMIT");
    wait_for(LONG, "the end of the topic", || {
        sink.assert_running("after losing its connection: it must reconnect");
        pg.stored_offsets(&table) == ends
    });
    assert!(
        sink.stderr().contains("reconnecting"),
        "{}",
        tail(&sink.stderr(), 10)
    );
    sink.stop_ok();
    assert_eq!(rows(&pg, &table), model(&planned, &ends, &topic, "upsert"));
    assert!(pg.dead_letters(&table).is_empty());
}

/// A key that is `GENERATED ALWAYS AS IDENTITY` takes the messages' values, and a domain's
/// NOT NULL and CHECK are the table's: a delete (NULL in the domain column) is staged and
/// applied, and a value the domain refuses is a dead letter.
#[test]
fn write_modes_identity_key_and_domain_mock() {
    let ctx = Ctx::new("write_modes_identity_key_and_domain_mock");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 1);
    let name = ctx.table_name();
    let table = id_v_table(
        &pg,
        &name,
        &format!(
            "DROP TABLE IF EXISTS public.{name}; DROP DOMAIN IF EXISTS public.{name}_text; \
             CREATE DOMAIN public.{name}_text AS text NOT NULL CHECK (VALUE <> ''); \
             CREATE TABLE public.{name} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v public.{name}_text)"
        ),
    );
    let history: [(i64, Option<&str>); _] = [
        (1, Some(r#"{"v": "a"}"#)),
        (2, Some(r#"{"v": "b"}"#)),
        (1, None),
        (3, Some(r#"{"v": ""}"#)),
        (2, Some(r#"{"v": "c"}"#)),
    ];
    let ends = send_history(&broker, &topic, &history);
    let cfg = keyed_config(&table, &topic, &broker, &ctx.unique("g"), "upsert").flush_ms(2000);
    run_to(&ctx, &pg, "sink", &cfg, &ends);
    assert_eq!(rows(&pg, &table), live(&[(2, "c")]));
    let letters = pg.dead_letters(&table);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].offset, 3);
    assert!(
        letters[0].reason.contains("domain"),
        "{}",
        letters[0].reason
    );
}

/// A keyed mode needs a key with a unique index: a table without a primary key, key columns
/// without a unique index over exactly them, or only a deferrable one, stop the sink at start
/// with the fix; `check` reports the key, its index and the mode, and the privileges it needs
/// column by column; `dlq redrive` refuses to append.
#[test]
fn write_modes_need_a_unique_key_mock() {
    let ctx = Ctx::new("write_modes_need_a_unique_key_mock");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 1);
    let table = pg.table_in(
        "public",
        &ctx.table_name(),
        &[("id", "bigint"), ("v", "text")],
    );
    let base = keyed_config(&table, &topic, &broker, &ctx.unique("g"), "upsert");

    let mut sink = ctx.sink("no_key").toml(&base.render()).start();
    assert!(!sink.wait(EXIT).success());
    assert!(
        sink.stderr().contains("needs a key, and") && sink.stderr().contains("has no primary key"),
        "{}",
        tail(&sink.stderr(), 10)
    );

    let keyed = base.clone().line("db.key.columns = \"v\"").render();
    let mut sink = ctx.sink("no_index").toml(&keyed).start();
    assert!(!sink.wait(EXIT).success());
    assert!(
        sink.stderr()
            .contains("has no unique index over exactly (v)")
            && sink.stderr().contains("CREATE UNIQUE INDEX ON"),
        "{}",
        tail(&sink.stderr(), 10)
    );

    pg.batch(&format!(
        "ALTER TABLE {} ADD CONSTRAINT {}_v UNIQUE (v) DEFERRABLE",
        table.qualified(),
        table.name
    ));
    let mut sink = ctx.sink("deferrable").toml(&keyed).start();
    assert!(!sink.wait(EXIT).success());
    assert!(
        sink.stderr()
            .contains("is deferrable or not valid, and ON CONFLICT cannot use it"),
        "{}",
        tail(&sink.stderr(), 10)
    );
    pg.batch(&format!(
        "ALTER TABLE {} DROP CONSTRAINT {}_v; CREATE UNIQUE INDEX ON {} (v)",
        table.qualified(),
        table.name,
        table.qualified()
    ));
    let file = ctx.write("keyed.toml", &keyed);
    let path = file.to_str().unwrap();
    let out = ctx.run_pgsink(&["check", "--config", path], b"", LONG);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("key v (unique index") && text.contains("write mode upsert"),
        "{text}"
    );
    // A user with column privileges only: enough once it may SELECT and INSERT every sink
    // column, UPDATE the non-key one (id: the key is v here) and DELETE rows (TEMPORARY is
    // PUBLIC's by default).
    let user = "pgsink_e2e_limited";
    pg.batch(&format!(
        "DO $$ BEGIN CREATE ROLE {user} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
         REVOKE ALL ON {t} FROM {user}; GRANT INSERT ON {t} TO {user}",
        t = table.qualified()
    ));
    let limited = keyed.replace(
        &format!("db.username = {}", toml_str(&pg_user())),
        &format!("db.username = \"{user}\""),
    );
    let limited_file = ctx.write("limited.toml", &limited);
    let check = |what: &str| {
        let out = ctx.run_pgsink(
            &["check", "--config", limited_file.to_str().unwrap()],
            b"",
            LONG,
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.contains(what), "{text}");
    };
    check("may not SELECT, INSERT, UPDATE, DELETE on it");
    pg.batch(&format!(
        "GRANT SELECT (id, v), UPDATE (v), DELETE ON {t} TO {user}",
        t = table.qualified()
    ));
    check("may not SELECT, INSERT, UPDATE, DELETE on it");
    pg.batch(&format!(
        "GRANT UPDATE (id) ON {t} TO {user}",
        t = table.qualified()
    ));
    check("write mode upsert");

    let out = ctx.run_pgsink(&["dlq", "redrive", "--config", path], b"", EXIT);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dlq redrive appends rows"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
