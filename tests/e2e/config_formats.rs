//! Configuration forms that reach the database unchanged: awkward identifiers and the original
//! connector's `.properties` file.

use std::collections::BTreeSet;

use crate::harness::*;

/// Schema, table and columns with capitals, spaces, double quotes and semicolons.
#[test]
fn quoted_identifiers_synchronized_mock() {
    let ctx = Ctx::new("quoted_identifiers");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let schema = "E2e \"Sch\"; ema";
    let name = format!("Tab \"le\"; DROP {}", ctx.table_name());
    let columns = ["Id", "La t\"i;tude", "Lon Gi", "AX", "a\"y", "aZ;"];
    let table = pg.std_table_in(schema, &name, &columns);
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 2);
    let mut producer = broker.producer(false);
    producer.send_std_all(&topic, 1..=2000);
    let ends = end_offsets(&producer.flush());
    let cfg = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g")).flush_ms(200);
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    pg.wait_all_rows(&table, &(1..=2000).collect(), LONG, &mut [&mut sink]);
    sink.stop_ok();
    assert_exactly_once(&pg, &table, &(1..=2000).collect::<BTreeSet<u64>>());
    // pgsink.offsets names the table exactly as configured.
    assert_offsets_at_end(&pg, &table, &ends);
    assert!(pg.dead_letters(&table).is_empty());
}

/// The JustOne connector's properties file, unchanged, plus `bootstrap.servers`.
#[test]
fn properties_file_synchronized_mock() {
    let (ctx, broker, pg, table, topic) = stage("properties_file", Broker::mock(), 4);
    let mut producer = broker.producer(false);
    producer.send_std_all(&topic, 1..=5000);
    let ends = end_offsets(&producer.flush());
    let password = "props-Secr3t-9";
    let name = ctx.unique("props");
    let props = format!(
        "name={name}\n\
         connector.class=com.justone.kafka.sink.pg.json.PostgreSQLSinkConnector\n\
         tasks.max=1\n\
         topics={topic}\n\
         db.host={host}\n\
         db.database={db}\n\
         db.username={user}\n\
         db.password={password}\n\
         db.schema=public\n\
         db.table={table}\n\
         db.columns={columns}\n\
         db.json.parse={paths}\n\
         db.delivery=synchronized\n\
         db.buffer.size=8000000\n\
         bootstrap.servers={bootstrap}\n",
        host = pg_host_port(),
        db = TEST_DB,
        user = pg_user(),
        table = table.name,
        columns = STD_COLUMNS.join(","),
        paths = STD_PATHS,
        bootstrap = broker.bootstrap(),
    );
    let path = ctx.write("justone-kafka-sink-pg-json.properties", props);
    let mut sink = ctx.sink("sink").file(&path).start();
    pg.wait_all_rows(&table, &(1..=5000).collect(), LONG, &mut [&mut sink]);
    sink.stop_ok();
    assert!(
        !sink.stderr().contains(password),
        "db.password appears in stderr"
    );
    assert_exactly_once(&pg, &table, &(1..=5000).collect::<BTreeSet<u64>>());
    // The offsets belong to the sink: its name.
    assert_sink_offsets_at_end(&pg, &name, &ends);
    assert!(pg.stored_offsets(&table).is_empty());
}

/// `pgsink sql install` (idempotent, keeps the state) and `pgsink sql uninstall`, in a database
/// of their own so that no running sink loses its schema.
#[test]
fn sql_install_uninstall() {
    let ctx = Ctx::new("sql_install_uninstall");
    let db = "pgsink_test_sql";
    let pg = Pg::connect_to(db);
    pg.batch("DROP SCHEMA IF EXISTS pgsink CASCADE");
    let table = Table {
        schema: "public".into(),
        name: "unused".into(),
        columns: STD_COLUMNS.iter().map(|s| s.to_string()).collect(),
    };
    let broker = Broker::Tansu("127.0.0.1:1".into()); // never contacted
    let mut cfg = SinkToml::new(&table, &["t"], &broker, "g");
    cfg.database = db.to_string();
    let path = ctx.write("sql.toml", cfg.render());
    let path = path.to_str().unwrap();
    let sql = |action: &str| {
        let out = ctx.run_pgsink(
            &["sql", action, "--config", path],
            b"",
            std::time::Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "pgsink sql {action} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let objects = |pg: &Pg| -> Vec<Option<String>> {
        let rows = pg.query(
            "SELECT to_regclass('pgsink.offsets')::text, to_regclass('pgsink.dead_letters')::text, \
             to_regclass('pgsink.progress')::text, \
             to_regprocedure('pgsink.commit_offsets(text,text,text,text[],integer[],bigint[],bigint[],text)')::text",
            &[],
        );
        (0..4)
            .map(|i| rows[0].get::<_, Option<String>>(i))
            .collect()
    };
    sql("install");
    let present = objects(&pg);
    assert!(
        present.iter().all(|o| o.is_some()),
        "after install: {present:?}"
    );
    pg.batch(
        "INSERT INTO pgsink.offsets (sink, first_table, topic, partition, next_offset) \
         VALUES ('public.unused', '\"public\".\"unused\"', 't', 0, 42)",
    );
    sql("install");
    let kept: i64 = pg.query(
        "SELECT next_offset FROM pgsink.offsets WHERE sink = 'public.unused' AND topic = 't'",
        &[],
    )[0]
    .get(0);
    assert_eq!(kept, 42, "a second install must keep the stored offsets");
    sql("uninstall");
    let gone = pg.query("SELECT to_regnamespace('pgsink') IS NULL", &[])[0].get::<_, bool>(0);
    assert!(gone, "after uninstall the pgsink schema must be gone");
    sql("install");
    assert!(objects(&pg).iter().all(|o| o.is_some()));
}
