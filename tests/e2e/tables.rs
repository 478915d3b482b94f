//! A sink of several tables: an order and its line go to two tables in one transaction, so no
//! committed state ever has one without the other — checked at a moment forced with a table
//! lock (the order applied, its line waiting) and after kill -9s at seeded moments; and a table
//! per topic (`db.table` with `${topic}`), each topic's positions owned by its own table.

use std::time::Duration;

use crate::harness::*;

/// A named sink's configuration: `name`, `topics`, the test database, then `body` (its tables),
/// then the `[kafka]` section for `broker` and `group`, with `extra` properties.
fn named_sink(
    name: &str,
    topics: &[&str],
    body: &str,
    broker: &Broker,
    group: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut kafka = sink_kafka(broker, group);
    kafka.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let kafka: Vec<String> = kafka
        .iter()
        .map(|(k, v)| format!("{} = {}", toml_str(k), toml_str(v)))
        .collect();
    format!(
        "name = {}\ntopics = {}\ndb.host = {}\ndb.database = {}\ndb.username = {}\n{body}\n\n[kafka]\n{}\n",
        toml_str(name),
        toml_list(topics),
        toml_str(&pg_host_port()),
        toml_str(TEST_DB),
        toml_str(&pg_user()),
        kafka.join("\n")
    )
}

/// Sends `{"id": N}` for N in `ids` to partition 0 of `topic`.
fn send_ids(broker: &Broker, topic: &str, ids: std::ops::Range<u64>) {
    let mut producer = broker.producer(false);
    for id in ids {
        let value = format!(r#"{{"id": {id}}}"#);
        producer.send(topic, Some(0), None, Some(value.as_bytes()));
    }
    producer.flush();
}

/// The orders and lines tables of a test, and the sink that writes them.
struct Shop {
    sink: String,
    orders: String,
    lines: String,
}

impl Shop {
    /// (Re)creates both tables: orders keyed by id (written by upsert), lines referencing
    /// them (appended); a line whose order is not there yet fails its foreign key.
    fn create(pg: &Pg, ctx: &Ctx) -> Shop {
        let base = ctx.table_name();
        let shop = Shop {
            sink: ctx.unique("shop"),
            orders: format!("{base}_orders"),
            lines: format!("{base}_lines"),
        };
        pg.batch(&format!(
            "DROP TABLE IF EXISTS public.{lines}; DROP TABLE IF EXISTS public.{orders};
             CREATE TABLE public.{orders} (id bigint PRIMARY KEY, total numeric NOT NULL);
             CREATE TABLE public.{lines} (order_id bigint NOT NULL REFERENCES public.{orders} (id), sku text)",
            orders = shop.orders,
            lines = shop.lines
        ));
        shop
    }

    fn config(&self, topic: &str, broker: &Broker, group: &str) -> String {
        let body = format!(
            r#"db.tables = [{orders}, {lines}]
db.buffer.size = 2048
flush.interval.ms = 50

[table.{orders}]
columns = ["id", "total"]
json.parse = "/@id, /@total"
write.mode = "upsert"

[table.{lines}]
columns = ["order_id", "sku"]
json.parse = "/@id, /@sku""#,
            orders = toml_str(&self.orders),
            lines = toml_str(&self.lines),
        );
        // A SIGKILLed member stays in the group until its session times out.
        let session = [("session.timeout.ms", "6000")];
        named_sink(&self.sink, &[topic], &body, broker, group, &session)
    }

    /// In one snapshot: orders, lines, orders without their line, lines of another total than
    /// their order's id says, and the messages below the sink's stored offsets.
    fn state(&self, pg: &Pg) -> [i64; 4] {
        let row = &pg.query(
            &format!(
                "SELECT (SELECT count(*) FROM public.{orders}),
                        (SELECT count(*) FROM public.{lines}),
                        (SELECT count(*) FROM public.{orders} o
                          WHERE NOT EXISTS (SELECT FROM public.{lines} l WHERE l.order_id = o.id
                                              AND l.sku = 'sku-' || o.id)),
                        (SELECT coalesce(sum(next_offset), 0)::bigint FROM pgsink.offsets
                          WHERE sink = $1)",
                orders = self.orders,
                lines = self.lines
            ),
            &[&self.sink],
        )[0];
        [row.get(0), row.get(1), row.get(2), row.get(3)]
    }

    /// Both tables hold exactly the messages below the stored offsets, each order with its line.
    fn assert_consistent(&self, pg: &Pg, when: &str) -> i64 {
        let [orders, lines, orphans, stored] = self.state(pg);
        assert_eq!(
            (orders, lines, orphans),
            (stored, stored, 0),
            "{when}: orders, lines and orders without their line, against the {stored} messages below the stored offsets"
        );
        stored
    }
}

/// Order `id` as a message: one order row and one line row.
fn order(id: u64) -> Vec<u8> {
    format!(
        r#"{{"id": {id}, "total": {}.5, "sku": "sku-{id}"}}"#,
        id % 97
    )
    .into_bytes()
}

#[test]
fn tables_order_and_line_commit_together_mock() {
    let ctx = Ctx::new("tables_order_and_line_commit_together_mock");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let shop = Shop::create(&pg, &ctx);
    let topic = ctx.unique("orders");
    broker.create_topic(&topic, 2);
    let cfg = shop.config(&topic, &broker, &ctx.unique("g"));

    // The moment forced: a flush has applied its orders and waits to COPY their lines (an
    // EXCLUSIVE lock stops writers, not readers).
    let mut producer = broker.producer(false);
    for id in 0..200 {
        producer.send(&topic, None, None, Some(&order(id)));
    }
    producer.flush();
    let mut sink = ctx.sink("locked").toml(&cfg).start();
    wait_for(LONG, "the first 200 orders", || {
        sink.assert_running("loading the first orders");
        pg.pgsink_installed() && shop.state(&pg)[3] == 200
    });
    let locker = Pg::connect();
    locker.batch(&format!(
        "BEGIN; LOCK TABLE public.{} IN EXCLUSIVE MODE",
        shop.lines
    ));
    for id in 200..300 {
        producer.send(&topic, None, None, Some(&order(id)));
    }
    producer.flush();
    let watcher = Pg::connect();
    wait_for(
        LONG,
        "the flush's COPY of lines waiting on the lock",
        || {
            sink.assert_running("waiting on the lock");
            !watcher
            .query(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'COPY %' || $1 || '%'",
                &[&shop.lines],
            )
            .is_empty()
        },
    );
    sink.kill9();
    assert_eq!(
        shop.assert_consistent(&pg, "killed while the lines waited"),
        200
    );
    locker.batch("COMMIT");
    assert_eq!(shop.assert_consistent(&pg, "the lock released"), 200);

    // Kill -9s at seeded moments while orders arrive at 250 a second (for about 50 s: each
    // run joins the group, makes progress and is killed within about 10 s).
    let seed = 0x2545_f491_4f6c_dd1d ^ u64::from(std::process::id());
    ctx.note(format!("seed {seed}"));
    let background = BackgroundProducer::paced(broker.producer_spec(false), &topic, 250, |i| {
        (i < 12_000).then(|| (None, None, Some(order(300 + i))))
    });
    let mut moment = seed;
    for k in 0..4 {
        let label = format!("run{}", k + 1);
        let before = shop.state(&pg)[3];
        let mut sink = ctx.sink(&label).toml(&cfg).start();
        wait_for(LONG, "progress past the stored offsets", || {
            sink.assert_running("before the planned kill -9");
            shop.state(&pg)[3] != before
        });
        moment = moment.wrapping_mul(6364136223846793005).wrapping_add(1);
        let after = Duration::from_millis(moment % 400);
        sink.stays_up(after, "before the planned kill -9");
        sink.kill9();
        let stored = shop.assert_consistent(&pg, &label);
        ctx.note(format!(
            "{label}: killed {after:?} after progress at {stored} messages"
        ));
    }
    let delivered = background.finish();
    let total = 300 + delivered.len() as i64;
    let mut last = ctx.sink("final").toml(&cfg).start();
    wait_for(LONG, "every order", || {
        last.assert_running("loading the rest");
        shop.state(&pg)[3] == total
    });
    last.stop_ok();
    assert_eq!(shop.assert_consistent(&pg, "at the end"), total);
    let distinct: i64 = pg.query(
        &format!("SELECT count(DISTINCT order_id) FROM public.{}", shop.lines),
        &[],
    )[0]
    .get(0);
    assert_eq!(distinct, total, "each line once");
}

#[test]
fn tables_one_per_topic_mock() {
    let ctx = Ctx::new("tables_one_per_topic_mock");
    let broker = Broker::mock();
    let pg = Pg::connect();
    // Each table is named as its topic; topic t has ids from 1000 t, 50 + 10 t of them.
    let topics = [ctx.unique("clicks"), ctx.unique("views")];
    let ranges = [0..50, 1000..1060];
    for (topic, ids) in topics.iter().zip(&ranges) {
        broker.create_topic(topic, 1);
        pg.table_in("public", topic, &[("id", "bigint"), ("body", "jsonb")]);
        send_ids(&broker, topic, ids.clone());
    }
    let sink_name = ctx.unique("events");
    let body =
        "db.table = \"${topic}\"\ndb.columns = [\"id\", \"body\"]\ndb.json.parse = \"/@id, /\"";
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let cfg = named_sink(&sink_name, &names, body, &broker, &ctx.unique("g"), &[]);
    let mut sink = ctx.sink("run").toml(&cfg).start();
    wait_for(LONG, "both topics loaded", || {
        sink.assert_running("loading");
        pg.sink_offsets(&sink_name).values().sum::<i64>() == 110
    });
    sink.stop_ok();
    for (table, ids) in topics.iter().zip(ranges) {
        let (count, least, most): (i64, i64, i64) = {
            let sql = format!(
                "SELECT count(DISTINCT id), min(id), max(id) FROM public.{}",
                ident(table)
            );
            let row = &pg.query(&sql, &[])[0];
            (row.get(0), row.get(1), row.get(2))
        };
        let expected = (ids.end - ids.start) as i64;
        assert_eq!(
            (count, least, most),
            (expected, ids.start as i64, ids.end as i64 - 1),
            "{table} holds its topic's messages, once"
        );
        let owner: String = pg.query(
            "SELECT first_table FROM pgsink.offsets WHERE sink = $1 AND topic = $2",
            &[&sink_name, table],
        )[0]
        .get(0);
        assert_eq!(
            owner,
            format!("\"public\".\"{table}\""),
            "the topic's table owns its positions"
        );
    }
}

/// Two tables of `id bigint` columns (`first_ddl` and `second_ddl` for the column's type),
/// named after the test.
fn two_tables(pg: &Pg, ctx: &Ctx, first_ddl: &str, second_ddl: &str) -> (Table, Table) {
    let base = ctx.table_name();
    let first = pg.table_in("public", &format!("{base}_a"), &[("id", first_ddl)]);
    let second = pg.table_in("public", &format!("{base}_b"), &[("id", second_ddl)]);
    (first, second)
}

/// `db.tables` of two tables of one column `id`, `first_mode` the first's write mode.
fn two_tables_body(first: &Table, second: &Table, first_mode: &str) -> String {
    format!(
        "db.json.parse = \"/@id\"\ndb.tables = [{a}, {b}]\n\n[table.{a}]\ncolumns = \"id\"\n\
         write.mode = \"{first_mode}\"\n\n[table.{b}]\ncolumns = \"id\"",
        a = toml_str(&first.name),
        b = toml_str(&second.name),
    )
}

/// The ids of a table, in order.
fn ids(pg: &Pg, table: &Table) -> Vec<i64> {
    let sql = format!("SELECT id FROM {} ORDER BY id", table.qualified());
    pg.query(&sql, &[]).iter().map(|r| r.get(0)).collect()
}

/// A sink whose later table another sink already loads from the same topic is refused at
/// start, naming the owner: its positions are recorded with its first table, so the database's
/// own rule (one sink per table position) would not see the second load.
#[test]
fn tables_a_later_table_loaded_by_another_sink_is_refused_mock() {
    let ctx = Ctx::new("tables_a_later_table_loaded_by_another_sink_is_refused_mock");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let (first, shared) = two_tables(&pg, &ctx, "bigint", "bigint");
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 1);
    send_ids(&broker, &topic, 0..10);
    let owner = ctx.unique("owner");
    let body = format!(
        "db.table = {}\ndb.columns = \"id\"\ndb.json.parse = \"/@id\"",
        toml_str(&shared.name)
    );
    let one = named_sink(&owner, &[&topic], &body, &broker, &ctx.unique("g1"), &[]);
    let mut sink = ctx.sink("owner").toml(&one).start();
    wait_for(LONG, "the owner's positions", || {
        sink.assert_running("loading");
        pg.sink_offsets(&owner).values().sum::<i64>() == 10
    });
    sink.stop_ok();

    let body = two_tables_body(&first, &shared, "append");
    let two = named_sink(
        &ctx.unique("second"),
        &[&topic],
        &body,
        &broker,
        &ctx.unique("g2"),
        &[],
    );
    let mut second = ctx.sink("second").toml(&two).start();
    let status = second.wait(LONG);
    assert!(!status.success(), "the second sink must not start");
    let stderr = second.stderr();
    assert!(
        stderr.contains(&format!("is loaded by sink {owner}")),
        "{}",
        tail(&stderr, 10)
    );
    assert_eq!((pg.count(&shared), pg.count(&first)), (10, 0));
}

/// A row the second table refuses sends its message to the dead letters whole: its row in the
/// first (keyed) table is not applied either, and every other message is loaded in both.
#[test]
fn tables_a_refused_row_dead_letters_its_whole_message_mock() {
    let ctx = Ctx::new("tables_a_refused_row_dead_letters_its_whole_message_mock");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let (first, second) = two_tables(&pg, &ctx, "bigint PRIMARY KEY", "bigint CHECK (id <> 5)");
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 1);
    send_ids(&broker, &topic, 0..10);
    let sink_name = ctx.unique("sink");
    let body = two_tables_body(&first, &second, "upsert");
    let cfg = named_sink(&sink_name, &[&topic], &body, &broker, &ctx.unique("g"), &[]);
    let mut sink = ctx.sink("run").toml(&cfg).start();
    wait_for(LONG, "every message", || {
        sink.assert_running("loading");
        pg.sink_offsets(&sink_name).values().sum::<i64>() == 10
    });
    sink.stop_ok();
    let loaded = vec![0, 1, 2, 3, 4, 6, 7, 8, 9];
    assert_eq!(
        ids(&pg, &first),
        loaded,
        "the refused message's keyed row is not applied"
    );
    assert_eq!(ids(&pg, &second), loaded);
    let letters = pg.dead_letters(&first);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].offset, 5);
    assert!(
        letters[0].reason.contains("check constraint"),
        "{}",
        letters[0].reason
    );
}
