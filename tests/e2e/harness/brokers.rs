//! The two Kafka brokers: librdkafka's in-process mock cluster (with its fault injection) and
//! the tansu broker `tests/run` starts; topics, reads for diagnostics, and consumer-group
//! offsets.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};

use super::{run_id, wait_for, Producer, ProducerSpec, Sink, LONG};

enum MockCmd {
    CreateTopic(String, i32, mpsc::Sender<Result<(), String>>),
    /// Broker 1 down (true) or up (false).
    Down(bool, mpsc::Sender<Result<(), String>>),
    /// Fail the next requests of one API with these errors, in order.
    RequestErrors(RDKafkaApiKey, Vec<RDKafkaRespErr>, mpsc::Sender<()>),
}

/// librdkafka's mock cluster, alive on its own thread (it is not `Send`) until dropped.
pub struct MockBroker {
    bootstrap: String,
    tx: Option<mpsc::Sender<MockCmd>>,
    thread: Option<JoinHandle<()>>,
}

impl MockBroker {
    pub fn start() -> MockBroker {
        let (tx, rx) = mpsc::channel::<MockCmd>();
        let (boot_tx, boot_rx) = mpsc::channel::<Result<String, String>>();
        let thread = std::thread::Builder::new()
            .name("mock-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = boot_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = boot_tx.send(Ok(cluster.bootstrap_servers()));
                for cmd in rx {
                    match cmd {
                        MockCmd::CreateTopic(name, partitions, reply) => {
                            let r = cluster
                                .create_topic(&name, partitions, 1)
                                .map_err(|e| e.to_string());
                            let _ = reply.send(r);
                        }
                        MockCmd::Down(down, reply) => {
                            let r = if down {
                                cluster.broker_down(1)
                            } else {
                                cluster.broker_up(1)
                            };
                            let _ = reply.send(r.map_err(|e| e.to_string()));
                        }
                        MockCmd::RequestErrors(api, errors, reply) => {
                            cluster.request_errors(api, &errors);
                            let _ = reply.send(());
                        }
                    }
                }
                drop(cluster);
            })
            .expect("spawn mock cluster thread");
        let bootstrap = boot_rx
            .recv()
            .expect("mock cluster thread died")
            .unwrap_or_else(|e| panic!("MockCluster::new: {e}"));
        MockBroker {
            bootstrap,
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    fn create_topic(&self, name: &str, partitions: i32) {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.tx
            .as_ref()
            .expect("mock running")
            .send(MockCmd::CreateTopic(name.to_string(), partitions, reply_tx))
            .expect("mock cluster thread gone");
        reply_rx
            .recv()
            .expect("mock cluster thread gone")
            .unwrap_or_else(|e| panic!("mock create_topic {name}: {e}"));
    }
}

impl MockBroker {
    /// Takes the (only) broker down, or brings it back up.
    pub fn set_down(&self, down: bool) {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.tx
            .as_ref()
            .expect("mock running")
            .send(MockCmd::Down(down, reply_tx))
            .expect("mock cluster thread gone");
        reply_rx
            .recv()
            .expect("mock cluster thread gone")
            .unwrap_or_else(|e| panic!("mock broker down={down}: {e}"));
    }
}

impl MockBroker {
    /// librdkafka's error injection: the next `errors.len()` requests of `api` (from any
    /// client of this cluster) fail with these errors, in order.
    pub fn request_errors(&self, api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.tx
            .as_ref()
            .expect("mock running")
            .send(MockCmd::RequestErrors(api, errors.to_vec(), reply_tx))
            .expect("mock cluster thread gone");
        reply_rx.recv().expect("mock cluster thread gone");
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A Kafka-protocol broker for one test.
pub enum Broker {
    Mock(MockBroker),
    Tansu(String),
}

impl Broker {
    pub fn mock() -> Broker {
        Broker::Mock(MockBroker::start())
    }

    /// The tansu broker of `tests/run`; fails the test when there is none.
    pub fn tansu() -> Broker {
        match std::env::var("PGSINK_TEST_TANSU") {
            Ok(addr) if !addr.trim().is_empty() => Broker::Tansu(addr.trim().to_string()),
            _ => panic!(
                "PGSINK_TEST_TANSU is not set: the tansu tests need a running tansu broker. \
                 Run the tests with tests/run (it starts one), or start one with \
                 `tests/tansu.sh start 19092` and set PGSINK_TEST_TANSU=127.0.0.1:19092"
            ),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Broker::Mock(_) => "mock",
            Broker::Tansu(_) => "tansu",
        }
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(m) => m.bootstrap.clone(),
            Broker::Tansu(a) => a.clone(),
        }
    }

    /// librdkafka properties the sink needs on this broker.
    pub fn sink_kafka_props(&self) -> Vec<(String, String)> {
        match self {
            Broker::Mock(_) => Vec::new(),
            // tansu always waits the full fetch.wait.max.ms.
            Broker::Tansu(_) => vec![("fetch.wait.max.ms".to_string(), "10".to_string())],
        }
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        match self {
            Broker::Mock(m) => m.create_topic(name, partitions),
            Broker::Tansu(addr) => tansu_create_topic(addr, name, partitions),
        }
        // Wait until the topic's metadata shows all partitions.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("metadata client");
        wait_for(
            Duration::from_secs(60),
            &format!("metadata of topic {name}"),
            || {
                consumer
                    .fetch_metadata(Some(name), Duration::from_secs(5))
                    .ok()
                    .and_then(|md| {
                        md.topics().iter().find(|t| t.name() == name).map(|t| {
                            t.error().is_none() && t.partitions().len() == partitions as usize
                        })
                    })
                    .unwrap_or(false)
            },
        );
    }

    /// A producer; `one_per_batch` sets `batch.num.messages=1` (tansu tests that resume from a
    /// stored offset need it: tansu cannot fetch from the middle of a batch).
    pub fn producer(&self, one_per_batch: bool) -> Producer {
        self.producer_spec(one_per_batch).create()
    }

    pub fn producer_spec(&self, one_per_batch: bool) -> ProducerSpec {
        ProducerSpec {
            bootstrap: self.bootstrap(),
            one_per_batch,
            max_message_bytes: None,
        }
    }

    /// The message at `offset` of a partition, as (offset, key, value), read with a plain
    /// consumer (diagnostics: is a message the sink lacks really in the log?).
    pub fn read_at(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Option<(i64, Vec<u8>, Vec<u8>)> {
        use rdkafka::Message as _;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", format!("e2e-diagnostics-{}", run_id()))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .ok()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .ok()?;
        consumer.assign(&tpl).ok()?;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                return Some((
                    m.offset(),
                    m.key().unwrap_or_default().to_vec(),
                    m.payload().unwrap_or_default().to_vec(),
                ));
            }
        }
        None
    }

    /// The committed offsets of `group` for the partitions of `topic` (None: no commit).
    pub fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> BTreeMap<i32, Option<i64>> {
        committed_offsets(&self.bootstrap(), group, topic, partitions)
    }
}

fn tansu_create_topic(addr: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(30)));
    let results = rt
        .block_on(admin.create_topics([&topic], &opts))
        .unwrap_or_else(|e| {
            panic!("tansu at {addr}: CreateTopics {name}: {e} (is tansu running? use tests/run)")
        });
    for r in results {
        match r {
            Ok(_) => {}
            Err((t, RDKafkaErrorCode::TopicAlreadyExists)) => {
                panic!("topic {t} already exists on tansu (names should be unique per run)")
            }
            Err((t, code)) => panic!("tansu: CreateTopics {t}: {code}"),
        }
    }
}

/// Reads the committed offsets of a consumer group without joining it.
pub fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer for committed offsets");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("committed offsets of group {group}: {e}"));
    got.elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| {
            let off = match e.offset() {
                Offset::Offset(n) => Some(n),
                _ => None,
            };
            (e.partition(), off)
        })
        .collect()
}

/// Waits until the committed offsets of `group` equal the end offsets of `topic`.
pub fn wait_committed_at_end(
    broker: &Broker,
    group: &str,
    topic: &str,
    partitions: i32,
    ends: &BTreeMap<(String, i32), i64>,
    sink: &mut Sink,
) {
    let mut last = BTreeMap::new();
    let t0 = Instant::now();
    loop {
        let got = broker.committed(group, topic, partitions);
        let done = (0..partitions).all(|p| {
            let want = ends.get(&(topic.to_string(), p)).copied();
            let have = got.get(&p).copied().flatten();
            match want {
                Some(w) => have == Some(w),
                None => have.is_none() || have == Some(0),
            }
        });
        if done {
            eprintln!(
                "group {group}: committed offsets at the end after {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            return;
        }
        sink.assert_running("waiting for the Kafka offset commit");
        if t0.elapsed() > LONG {
            panic!(
                "group {group}: committed offsets {got:?} never reached the end offsets {ends:?} \
                 within {LONG:?} (previous poll {last:?})"
            );
        }
        last = got;
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The `kafka.*` settings of a sink on `broker` in consumer group `group`.
pub fn sink_kafka(broker: &Broker, group: &str) -> Vec<(String, String)> {
    let mut kafka = vec![
        ("bootstrap.servers".to_string(), broker.bootstrap()),
        ("group.id".to_string(), group.to_string()),
    ];
    kafka.extend(broker.sink_kafka_props());
    kafka
}
