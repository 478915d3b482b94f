//! `pgsink demo`: a broker inside the process, sample messages, a real table.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

/// Options of `pgsink demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// How many sample messages to produce.
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// PostgreSQL host.
    #[arg(long, env = "PGSINK_PGHOST", default_value = "127.0.0.1")]
    pub db_host: String,
    /// PostgreSQL port.
    #[arg(long, env = "PGSINK_PGPORT", default_value_t = 5432)]
    pub db_port: u16,
    /// PostgreSQL user.
    #[arg(long, env = "PGSINK_PGUSER", default_value = "postgres")]
    pub db_user: String,
    /// Database to create (if missing) and load.
    #[arg(long, default_value = "pgsink_demo")]
    pub database: String,
    /// Delivery mode.
    #[arg(long, default_value = "synchronized")]
    pub delivery: String,
}

/// The seed connector's example message, with a varying identity.
fn sample(id: u64) -> String {
    let lat = 51.0 + (id % 1000) as f64 / 1000.0;
    let lon = -2.0 - (id % 777) as f64 / 1000.0;
    format!(
        r#"{{"identity":{id},"location":{{"latitude":{lat},"longitude":{lon}}},"acceleration":[{},0.0,{}]}}"#,
        (id % 10) as f64 / 100.0,
        (id % 3) as f64 / 10.0
    )
}

pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    super::tokio_runtime()?.block_on(demo(args))?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the demo end to end and prints what to query.
async fn demo(args: Args) -> anyhow::Result<()> {
    let (host, port) = (&args.db_host, args.db_port);
    let admin_conn = format!(
        "host={host} port={port} user={} dbname=postgres",
        args.db_user
    );
    let (admin, connection) = tokio_postgres::connect(&admin_conn, tokio_postgres::NoTls)
        .await
        .with_context(|| {
            format!(
                "cannot connect to PostgreSQL at {host}:{port} (run tests/demo, which starts it)"
            )
        })?;
    tokio::spawn(connection);
    let exists = admin
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&args.database],
        )
        .await?
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {}",
                crate::postgres::quote_ident(&args.database)
            ))
            .await?;
    }
    let db_conn = format!(
        "host={host} port={port} user={} dbname={}",
        args.db_user, args.database
    );
    let (db, connection) = tokio_postgres::connect(&db_conn, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    db.batch_execute(
        "DROP TABLE IF EXISTS public.readings;
         CREATE TABLE public.readings (
             id bigint, latitude double precision, longitude double precision, acceleration jsonb);",
    )
    .await?;
    db.batch_execute(crate::postgres::INSTALL_SQL).await?;
    db.execute(
        "DELETE FROM pgsink.offsets WHERE first_table = '\"public\".\"readings\"'",
        &[],
    )
    .await?;
    db.execute(
        "DELETE FROM pgsink.dead_letters WHERE table_schema = 'public' AND table_name = 'readings'",
        &[],
    )
    .await?;

    let cluster = MockCluster::new(1).context("cannot start the embedded Kafka broker")?;
    let partitions = (args.messages / 50_000 + 4).min(256) as i32;
    cluster.create_topic("readings", partitions, 1)?;
    let bootstrap = cluster.bootstrap_servers();
    println!("demo: embedded Kafka broker (librdkafka mock cluster) at {bootstrap}, topic `readings` with {partitions} partitions");

    let started = Instant::now();
    produce(&bootstrap, args.messages)?;
    println!(
        "demo: produced {} messages shaped like the seed example (plus 2 broken ones) in {:.1}s",
        args.messages,
        started.elapsed().as_secs_f64()
    );

    let config_text = format!(
        r#"# pgsink configuration used by the demo
topics = "readings"
db.host = "{host}:{port}"
db.database = "{database}"
db.username = "{user}"
db.schema = "public"
db.table = "readings"
db.columns = "id,latitude,longitude,acceleration"
db.json.parse = "/@identity,/@location/@latitude,/@location/@longitude,/@acceleration"
db.delivery = "{delivery}"
kafka.bootstrap.servers = "{bootstrap}"
kafka.group.id = "pgsink-demo"
"#,
        database = args.database,
        user = args.db_user,
        delivery = args.delivery,
    );
    println!("demo: running the sink with this configuration:\n\n{config_text}");
    let config = crate::config::parse_toml(&config_text)?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let sink = tokio::spawn(crate::supervisor::run(config, shutdown.clone(), None));
    let started = Instant::now();
    let expected = args.messages as i64;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if sink.is_finished() {
            break;
        }
        let rows: i64 = db
            .query_one("SELECT count(*) FROM public.readings", &[])
            .await?
            .get(0);
        if rows >= expected {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("the demo sink loaded only {rows} of {expected} rows in 10 minutes");
        }
    }
    let elapsed = started.elapsed();
    shutdown.store(true, Ordering::SeqCst);
    sink.await??;
    let rows: i64 = db
        .query_one("SELECT count(*) FROM public.readings", &[])
        .await?
        .get(0);
    let dead: i64 = db
        .query_one(
            "SELECT count(*) FROM pgsink.dead_letters WHERE table_name = 'readings'",
            &[],
        )
        .await?
        .get(0);
    println!(
        "\ndemo: loaded {rows} rows into public.readings in {:.1}s (including the consumer group join); {dead} dead letters\n",
        elapsed.as_secs_f64()
    );
    println!("Query them:\n  psql -h {host} -p {port} -U {} {} -c 'SELECT * FROM readings ORDER BY id LIMIT 5'", args.db_user, args.database);
    println!("  psql -h {host} -p {port} -U {} {} -c 'SELECT topic, partition, \"offset\", reason FROM pgsink.dead_letters'", args.db_user, args.database);
    println!(
        "  psql -h {host} -p {port} -U {} {} -c 'SELECT * FROM pgsink.progress'",
        args.db_user, args.database
    );
    Ok(())
}

fn produce(bootstrap: &str, messages: u64) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let send = |key: String, value: String| loop {
        match producer.send(BaseRecord::to("readings").key(&key).payload(&value)) {
            Ok(()) => break Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                _,
            )) => {
                producer.poll(Duration::from_millis(10));
            }
            Err((error, _)) => break Err(error),
        }
    };
    for id in 0..messages {
        send(id.to_string(), sample(id))?;
    }
    send("broken-1".into(), "{\"identity\": 1,".into())?;
    send("broken-2".into(), "not json at all".into())?;
    producer.flush(Duration::from_secs(60))?;
    Ok(())
}
