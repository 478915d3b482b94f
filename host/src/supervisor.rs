//! One sink, supervised: checks the database, the table and the converter, installs or
//! upgrades the `pgsink` schema, then runs `tasks` pipelines (consume thread + writer task
//! each) and the converter reloader until shutdown or the first failure, which stops the
//! others after they flush. `cli/run.rs` starts one of these per `[[sink]]`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::Consumer;
use tokio::sync::watch;

use crate::config::{ConverterConfig, Delivery, SinkConfig};
use crate::conversion_stage::ConversionStage;
use crate::converter::{ConverterSpec, Table};
use crate::intake::{FlushPolicy, Intake};
use crate::kafka::{client_config, redact_secrets, SinkConsumer, SinkContext};
use crate::pending::ConverterId;
use crate::pipeline::ConsumeLoop;
use crate::postgres::{self, Target, Writer};
use crate::reload::{CanarySample, ReloadStats, Reloader};
use crate::stored_offsets::StoredOffsets;
use crate::writer::{Command, SinkWriter, Stats, WriterConfig};

/// Where a running sink re-reads its converter configuration for hot reload.
pub struct ReloadSource {
    /// Reads this sink's `plugin.*` configuration again.
    pub read_config: Box<dyn Fn() -> Result<ConverterConfig, String> + Send + Sync>,
    /// Files whose changes trigger a reload.
    pub watched: Vec<PathBuf>,
}

/// Checks the database, the table and the converter, then runs the sink
/// until `shutdown` is set. Returns when every pipeline has flushed. With a
/// `reload` source, the converter is hot-reloaded when it changes.
pub async fn run(
    config: SinkConfig,
    shutdown: Arc<AtomicBool>,
    reload: Option<ReloadSource>,
) -> anyhow::Result<()> {
    let spec = ConverterSpec::load(&config.converter)?;
    let db = &config.db;
    let client = postgres::connect(db)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", postgres::describe(db)))?;
    if !postgres::installed(&client).await? {
        tracing::info!("installing or upgrading the pgsink schema (sql/install.sql)");
        postgres::install(&client)
            .await
            .context("cannot install the pgsink schema")?;
    }
    let mut targets = Vec::with_capacity(db.tables.len());
    for table in &db.tables {
        targets.push(Target::resolve(&client, table).await?);
    }
    let tables: Vec<_> = targets.iter().map(Target::converter_table).collect();
    // Instantiating once here reports bad converter settings before consuming anything.
    let converter_id = Arc::new(ConverterId {
        label: spec.instantiate(&tables)?.label(),
        hash: spec.component.hash().to_string(),
        version: 0,
    });
    let sink_name = config.identity();
    // Each table acts for the positions of the topics it speaks for (postgres/offsets.rs).
    for (table, target) in db.tables.iter().zip(&targets) {
        let speaks_for =
            |topic: &str| config.consumes(topic) && std::ptr::eq(db.position_table(topic), table);
        if config.delivery == Delivery::Synchronized {
            let adopted = postgres::offsets::adopt(&client, &sink_name, table, speaks_for).await?;
            if adopted > 0 {
                tracing::info!(sink = %sink_name, table = %target.qualified(), adopted,
                    "the positions an older pgsink stored for this table and these topics are now this sink's");
            }
            let fills = |topic: &str| config.consumes(topic) && table.takes(topic);
            let conflicts =
                postgres::offsets::conflicts(&client, &sink_name, table, speaks_for, fills).await?;
            if let Some(conflict) = conflicts.first() {
                anyhow::bail!("{conflict}");
            }
        } else {
            let dropped = postgres::offsets::drop(&client, &sink_name, table, speaks_for).await?;
            if dropped > 0 {
                tracing::warn!(sink = %sink_name, dropped, delivery = %config.delivery,
                    "dropped this sink's stored synchronized offsets of these topics: positions now come from Kafka");
            }
        }
    }
    let names: Vec<String> = targets.iter().map(Target::qualified).collect();
    tracing::info!(
        sink = %sink_name, tables = %names.join(", "), topics = ?config.topics, delivery = %config.delivery,
        converter = %converter_id.label, converter_hash = %converter_id.hash, tasks = config.tasks, "starting"
    );

    let (publish, specs) = watch::channel(Arc::new(spec));
    let canary = Arc::new(CanarySample::default());
    let stats = Arc::new(Stats::default());
    let mut pipelines = Vec::new();
    for task in 0..config.tasks {
        let shared = Shared {
            sink: &sink_name,
            targets: &targets,
            tables: &tables,
            specs: specs.clone(),
            converter_id: converter_id.clone(),
            canary: canary.clone(),
            shutdown: &shutdown,
            stats: &stats,
        };
        let pipeline = start_pipeline(&config, task, shared)
            .await
            .with_context(|| format!("cannot start pipeline {task}"))?;
        pipelines.push(pipeline);
    }
    if let Some(source) = reload {
        let reloader = Reloader {
            read_config: source.read_config,
            watched: source.watched,
            tables: tables.clone(),
            publish,
            canary,
            stats: Arc::new(ReloadStats::default()),
            sink: sink_name.clone(),
        };
        tokio::spawn(reloader.run(shutdown.clone()));
    }
    let reporter = tokio::spawn(report_progress(stats.clone(), shutdown.clone()));
    let finished =
        futures_util::future::join_all(pipelines.into_iter().map(|p| p.finish(&shutdown))).await;
    let mut failure = None;
    let mut consumers = Vec::new();
    for (task, (result, consumer)) in finished.into_iter().enumerate() {
        if let Err(error) = result {
            tracing::error!(task, error = %format!("{error:#}"), "pipeline failed");
            failure.get_or_insert(error);
        }
        consumers.push(consumer);
    }
    close_consumers(consumers).await;
    reporter.abort();
    tracing::info!(
        messages = stats.messages.load(Ordering::Relaxed),
        rows = stats.rows.load(Ordering::Relaxed),
        dead_letters = stats.dead_letters.load(Ordering::Relaxed),
        "stopped"
    );
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// What the pipelines of one sink share.
struct Shared<'a> {
    sink: &'a str,
    targets: &'a [Target],
    tables: &'a [Table],
    specs: watch::Receiver<Arc<ConverterSpec>>,
    converter_id: Arc<ConverterId>,
    canary: Arc<CanarySample>,
    shutdown: &'a Arc<AtomicBool>,
    stats: &'a Arc<Stats>,
}

/// How long closing the Kafka consumers (leaving the group) may take at exit.
/// Everything is flushed and committed by then; a slow group leave only delays exit.
const CONSUMER_CLOSE_TIMEOUT: Duration = Duration::from_secs(20);

struct RunningPipeline {
    consume: tokio::sync::oneshot::Receiver<Result<(), crate::pipeline::ConsumeError>>,
    write: tokio::task::JoinHandle<Result<(), crate::writer::SinkError>>,
    stop: tokio::sync::mpsc::Sender<Command>,
    consumer: Arc<SinkConsumer>,
}

impl RunningPipeline {
    /// Waits for the pipeline to end (after shutdown or a failure, which
    /// stops the other pipelines too). Returns the consumer, still open.
    async fn finish(self, shutdown: &Arc<AtomicBool>) -> (anyhow::Result<()>, Arc<SinkConsumer>) {
        let RunningPipeline {
            mut consume,
            mut write,
            stop,
            consumer,
        } = self;
        let gone = || Err(anyhow::anyhow!("the consume thread panicked"));
        // Whichever side ends first, make the other one end too.
        let (consumed, written) = tokio::select! {
            c = &mut consume => {
                let c = c.map_or_else(|_| gone(), |r| r.map_err(anyhow::Error::from));
                if c.is_err() {
                    shutdown.store(true, Ordering::SeqCst);
                }
                let _ = stop.send(Command::Stop).await;
                (c, write.await)
            }
            w = &mut write => {
                shutdown.store(true, Ordering::SeqCst);
                let c = consume.await.map_or_else(|_| gone(), |r| r.map_err(anyhow::Error::from));
                (c, w)
            }
        };
        let result = match written {
            Ok(Ok(())) => consumed,
            Ok(Err(error)) => Err(error.into()),
            Err(error) => Err(error.into()),
        };
        if result.is_err() {
            shutdown.store(true, Ordering::SeqCst);
        }
        (result, consumer)
    }
}

/// Closes the consumers (leaving the group) in parallel, each on a plain
/// thread since librdkafka runs rebalance callbacks in the close, and gives
/// up waiting after [`CONSUMER_CLOSE_TIMEOUT`].
async fn close_consumers(consumers: Vec<Arc<SinkConsumer>>) {
    let (done, mut closed) = tokio::sync::mpsc::channel(consumers.len().max(1));
    let count = consumers.len();
    for consumer in consumers {
        let done = done.clone();
        let spawned = std::thread::Builder::new()
            .name("pgsink-close".into())
            .spawn(move || {
                drop(consumer);
                let _ = done.blocking_send(());
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot close a consumer");
        }
    }
    let all_closed = async {
        for _ in 0..count {
            closed.recv().await;
        }
    };
    if tokio::time::timeout(CONSUMER_CLOSE_TIMEOUT, all_closed)
        .await
        .is_err()
    {
        tracing::warn!("the Kafka consumer group did not confirm our leave in time; exiting anyway (everything is committed)");
    }
}

async fn start_pipeline(
    config: &SinkConfig,
    task: usize,
    shared: Shared<'_>,
) -> anyhow::Result<RunningPipeline> {
    let Shared {
        sink,
        targets,
        tables,
        specs,
        converter_id,
        canary,
        shutdown,
        stats,
    } = shared;
    let (commands, receiver) = tokio::sync::mpsc::channel(4);
    let (outcome_sender, outcomes) = std::sync::mpsc::channel();
    let stored = (config.delivery == Delivery::Synchronized).then(|| {
        StoredOffsets::new(
            config.db.clone(),
            sink.to_string(),
            tokio::runtime::Handle::current(),
        )
    });
    let converter = specs.borrow().clone().instantiate(tables)?;
    // A conversion thread of its own only where a core is free for it (conversion_stage.rs).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threaded = cores > config.tasks;
    let stage = ConversionStage::start(
        converter,
        converter_id.clone(),
        sink.to_string(),
        stats.clone(),
        threaded.then(|| format!("pgsink-convert-{task}")),
    )
    .context("cannot start the conversion thread")?;
    let intake = Intake::new(
        stage,
        config.delivery,
        commands.clone(),
        outcomes,
        stored,
        shutdown.clone(),
    );
    let context = SinkContext::new(intake, sink.to_string());
    let consumer: SinkConsumer = client_config(&config.kafka, config.delivery, config.tasks)
        .create_with_context(context)
        .map_err(|error| {
            anyhow::anyhow!(
                "cannot create the Kafka consumer: {}",
                redact_secrets(&error.to_string(), &config.kafka)
            )
        })?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .context("cannot subscribe to the topics")?;
    let consumer = Arc::new(consumer);
    let writer = Writer::connect(&config.db, sink, targets.to_vec(), config.buffer_size).await?;
    let sink_writer = SinkWriter::new(
        WriterConfig {
            db: config.db.clone(),
            buffer_size: config.buffer_size,
            delivery: config.delivery,
            errors_tolerance: config.errors_tolerance,
            max_dead_letters_per_minute: config.max_dead_letters_per_minute,
            sink: sink.to_string(),
        },
        writer,
        shutdown.clone(),
        stats.clone(),
    );
    let timed = config.delivery != Delivery::Fastest;
    let consume_loop = ConsumeLoop {
        consumer: consumer.clone(),
        converter_id,
        specs,
        tables: tables.to_vec(),
        canary,
        shutdown: shutdown.clone(),
        policy: FlushPolicy {
            buffer_size: config.buffer_size,
            interval: timed.then_some(config.flush_interval),
            when_idle: timed,
        },
    };
    let (consumed, consume) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("pgsink-consume-{task}"))
        .spawn(move || {
            let _ = consumed.send(consume_loop.run());
        })
        .context("cannot start the consume thread")?;
    Ok(RunningPipeline {
        consume,
        write: tokio::spawn(sink_writer.run(receiver, outcome_sender)),
        stop: commands,
        consumer,
    })
}

/// Logs throughput every 10 seconds while messages flow.
async fn report_progress(stats: Arc<Stats>, shutdown: Arc<AtomicBool>) {
    let mut last = (Instant::now(), 0u64);
    let mut ticker = tokio::time::interval(Duration::from_secs(10));
    ticker.tick().await;
    while !shutdown.load(Ordering::Relaxed) {
        ticker.tick().await;
        let messages = stats.messages.load(Ordering::Relaxed);
        let now = Instant::now();
        if messages != last.1 {
            let rate = (messages - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            tracing::info!(
                messages,
                rows = stats.rows.load(Ordering::Relaxed),
                dead_letters = stats.dead_letters.load(Ordering::Relaxed),
                flushes = stats.flushes.load(Ordering::Relaxed),
                rate = rate as u64,
                "progress"
            );
        }
        last = (now, messages);
    }
}
