//! Brokers (tansu, librdkafka's mock cluster), producing the bench topic, and
//! watching a consumer group's committed offsets.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, NoCustomPartitioner, Producer, ProducerContext,
};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;

use crate::data;

/// A running broker the bench talks to.
pub enum Broker {
    Tansu {
        bootstrap: String,
        /// The broker's pid (for its CPU time), when known.
        pid: Option<u32>,
        /// Set when this run started it: the port to stop.
        started: Option<(std::path::PathBuf, u16)>,
    },
    Mock {
        bootstrap: String,
        // Kept alive for as long as the broker is used; dropped to stop it.
        _cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    },
}

impl Broker {
    pub fn bootstrap(&self) -> &str {
        match self {
            Broker::Tansu { bootstrap, .. } | Broker::Mock { bootstrap, .. } => bootstrap,
        }
    }

    /// CPU seconds the broker has used so far: tansu's process, or the mock's
    /// thread inside this process.
    pub fn cpu_seconds(&self) -> Option<f64> {
        match self {
            Broker::Tansu { pid, .. } => pid.and_then(crate::procstat::cpu_seconds),
            Broker::Mock { .. } => Some(crate::procstat::own_threads_named("rdk:mock")),
        }
    }

    /// Starts tansu with `tests/tansu.sh` on a free port.
    pub fn start_tansu(repo: &Path) -> anyhow::Result<Broker> {
        let port = free_port()?;
        let script = repo.join("tests/tansu.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(port.to_string())
            .status()
            .with_context(|| format!("cannot run {}", script.display()))?;
        if !status.success() {
            bail!("{} start {port} failed ({status})", script.display());
        }
        let pid = tansu_pid(port);
        Ok(Broker::Tansu {
            bootstrap: format!("127.0.0.1:{port}"),
            pid,
            started: Some((script, port)),
        })
    }

    /// A tansu somebody else runs at `bootstrap` (host:port).
    pub fn existing_tansu(bootstrap: &str) -> Broker {
        let pid = bootstrap
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .and_then(tansu_pid);
        Broker::Tansu {
            bootstrap: bootstrap.to_string(),
            pid,
            started: None,
        }
    }

    pub fn start_mock() -> anyhow::Result<Broker> {
        let cluster = MockCluster::new(1).context("cannot create the librdkafka mock cluster")?;
        Ok(Broker::Mock {
            bootstrap: cluster.bootstrap_servers(),
            _cluster: cluster,
        })
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(
        &self,
        rt: &tokio::runtime::Runtime,
        topic: &str,
        partitions: i32,
    ) -> anyhow::Result<()> {
        match self {
            Broker::Mock { _cluster, .. } => {
                _cluster
                    .create_topic(topic, partitions, 1)
                    .with_context(|| format!("cannot create topic {topic} on the mock cluster"))?;
            }
            Broker::Tansu { bootstrap, .. } => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", bootstrap)
                    .create()
                    .context("cannot create a Kafka admin client")?;
                let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
                let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
                let results = rt
                    .block_on(admin.create_topics([&new], &opts))
                    .context("CreateTopics failed")?;
                for r in results {
                    if let Err((t, e)) = r {
                        bail!("cannot create topic {t}: {e}");
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Broker::Tansu {
            started: Some((script, port)),
            ..
        } = self
        {
            let _ = Command::new("bash")
                .arg(&*script)
                .arg("stop")
                .arg(port.to_string())
                .status();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

fn tansu_pid(port: u16) -> Option<u32> {
    let dir = std::env::var("PGSINK_RUN_DIR").unwrap_or_else(|_| "/tmp/pgsink-run".into());
    std::fs::read_to_string(format!("{dir}/tansu-{port}.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Delivery reports of the producer: per partition, the offset after its last message.
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    next_offsets: Mutex<Vec<i64>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext<NoCustomPartitioner> for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        use rdkafka::message::Message;
        match result {
            Ok(m) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let mut next = self.next_offsets.lock().unwrap();
                if let Some(slot) = next.get_mut(m.partition() as usize) {
                    *slot = (*slot).max(m.offset() + 1);
                }
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// The batching producer settings (also printed in the results).
pub const PRODUCER_SETTINGS: &[(&str, &str)] = &[
    ("linger.ms", "20"),
    ("batch.num.messages", "10000"),
    ("batch.size", "1000000"),
    ("queue.buffering.max.messages", "1000000"),
    ("queue.buffering.max.kbytes", "1048576"),
    ("compression.type", "none"),
    ("acks", "1"),
    ("enable.idempotence", "false"),
];

/// Produces messages 1..=n (keyed by id, message `id` to partition `(id-1) % partitions`).
/// Returns the per-partition end offsets and the produce rate.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: u64,
) -> anyhow::Result<(Vec<i64>, f64)> {
    produce_with(bootstrap, topic, partitions, n, |id, key, value| {
        data::message(id, value);
        let _ = write!(key, "{id}");
        (((id - 1) % partitions as u64) as i32, true)
    })
}

/// Produces messages 1..=n, message `id` made by `message(id, key, value)`, which writes its
/// key and value and returns its partition and whether it has a value (false: a tombstone).
/// Returns the per-partition end offsets and the produce rate.
pub fn produce_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: u64,
    mut message: impl FnMut(u64, &mut String, &mut String) -> (i32, bool),
) -> anyhow::Result<(Vec<i64>, f64)> {
    let context = Deliveries {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
        next_offsets: Mutex::new(vec![0; partitions as usize]),
    };
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (k, v) in PRODUCER_SETTINGS {
        config.set(*k, *v);
    }
    let producer: BaseProducer<Deliveries> = config
        .create_with_context(context)
        .context("cannot create the producer")?;
    let start = Instant::now();
    let mut value = String::with_capacity(160);
    let mut key = String::with_capacity(32);
    let mut last_report = Instant::now();
    for id in 1..=n {
        key.clear();
        value.clear();
        let (partition, has_value) = message(id, &mut key, &mut value);
        loop {
            let record = BaseRecord::<[u8], [u8]>::to(topic)
                .partition(partition)
                .key(key.as_bytes());
            let record = if has_value {
                record.payload(value.as_bytes())
            } else {
                record
            };
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => bail!("producing message {id}: {e}"),
            }
        }
        if id % 4096 == 0 {
            producer.poll(Duration::ZERO);
            if last_report.elapsed() > Duration::from_secs(5) {
                eprintln!("bench:   produced {id}/{n}");
                last_report = Instant::now();
            }
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .context("the producer could not deliver everything within 300 s")?;
    let elapsed = start.elapsed().as_secs_f64();
    let ctx = producer.context();
    let ok = ctx.ok.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    if failed > 0 || ok != n {
        bail!(
            "produced {ok} of {n} messages, {failed} failed (first error: {})",
            ctx.first_error.lock().unwrap().clone().unwrap_or_default()
        );
    }
    let next = ctx.next_offsets.lock().unwrap().clone();
    let total: i64 = next.iter().sum();
    if total != n as i64 {
        bail!("the broker's offsets add up to {total}, not {n}: offsets are not dense from 0");
    }
    Ok((next, n as f64 / elapsed))
}

/// Polls a consumer group's committed offsets of a topic and keeps their sum.
pub struct CommitWatcher {
    stop: Arc<AtomicBool>,
    sum: Arc<AtomicI64>,
    handle: Option<JoinHandle<()>>,
}

impl CommitWatcher {
    pub fn start(
        bootstrap: &str,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .context("cannot create the offset watcher")?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sum = Arc::new(AtomicI64::new(0));
        let (s, z) = (stop.clone(), sum.clone());
        let handle = std::thread::Builder::new()
            .name("commit-watch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if let Ok(committed) =
                        consumer.committed_offsets(tpl.clone(), Duration::from_secs(2))
                    {
                        let total: i64 = committed
                            .elements()
                            .iter()
                            .map(|e| match e.offset() {
                                Offset::Offset(o) => o,
                                _ => 0,
                            })
                            .sum();
                        z.store(total, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(40));
                }
            })?;
        Ok(CommitWatcher {
            stop,
            sum,
            handle: Some(handle),
        })
    }

    pub fn committed(&self) -> i64 {
        self.sum.load(Ordering::Relaxed)
    }
}

impl Drop for CommitWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
