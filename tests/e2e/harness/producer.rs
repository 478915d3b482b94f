//! A producer that records where every message landed ([`Delivered`]), so that the tests can
//! compare pgsink's stored offsets with the partitions' ends; it sends keys, headers and
//! messages up to 64 MiB ([`ProducerSpec::large_messages`]). [`BackgroundProducer`] paces the
//! standard messages on a thread while a test does other things.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use super::std_message;

/// Where one produced message landed.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub seq: usize,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Default)]
struct DeliveryLog {
    ok: Mutex<Vec<Delivered>>,
    failed: Mutex<Vec<String>>,
}

impl ClientContext for DeliveryLog {}

impl ProducerContext for DeliveryLog {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        match result {
            Ok(m) => self.ok.lock().unwrap().push(Delivered {
                seq,
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
            }),
            Err((e, m)) => self
                .failed
                .lock()
                .unwrap()
                .push(format!("message {seq} to {}: {e}", m.topic())),
        }
    }
}

/// Everything needed to create a producer on another thread.
#[derive(Clone, Debug)]
pub struct ProducerSpec {
    pub bootstrap: String,
    pub one_per_batch: bool,
    /// librdkafka's `message.max.bytes` (None: its default of 1 MB).
    pub max_message_bytes: Option<usize>,
}

impl ProducerSpec {
    /// Allows messages of up to 64 MiB (the corpus has a 10 MB message).
    pub fn large_messages(mut self) -> Self {
        self.max_message_bytes = Some(64 << 20);
        self
    }

    pub fn create(&self) -> Producer {
        let mut cfg = ClientConfig::new();
        // 50 ms of linger: a paced producer still makes batches of several messages. The mock
        // broker serves about one batch per partition per fetch, so one-message batches cap a
        // catching-up consumer near 500 msg/s.
        cfg.set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "50")
            .set("queue.buffering.max.messages", "1000000")
            .set("message.timeout.ms", "90000");
        if self.one_per_batch {
            cfg.set("batch.num.messages", "1");
        }
        if let Some(bytes) = self.max_message_bytes {
            cfg.set("message.max.bytes", bytes.to_string());
        }
        let inner: BaseProducer<DeliveryLog> = cfg
            .create_with_context(DeliveryLog::default())
            .expect("create producer");
        Producer { inner, sent: 0 }
    }
}

/// A Kafka header: name and value (None: null).
pub type HeaderPair<'a> = (&'a str, Option<&'a [u8]>);

/// A producer that records the partition and offset of every message.
pub struct Producer {
    inner: BaseProducer<DeliveryLog>,
    sent: usize,
}

impl Producer {
    /// Queues one message (waiting while the local queue is full); returns its sequence number.
    /// `partition` None leaves the choice to the partitioner; a None key or value is null.
    pub fn send(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> usize {
        self.send_with_headers(topic, partition, key, value, &[])
    }

    /// [`Producer::send`] with headers, in order.
    pub fn send_with_headers(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderPair<'_>],
    ) -> usize {
        let seq = self.sent;
        self.sent += 1;
        let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(topic, seq);
        record.partition = partition;
        record.key = key;
        record.payload = value;
        if !headers.is_empty() {
            let owned = headers.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
                h.insert(Header { key, value: *value })
            });
            record = record.headers(owned);
        }
        loop {
            match self.inner.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.inner.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("produce to {topic}: {e}"),
            }
        }
        self.inner.poll(Duration::ZERO);
        seq
    }

    /// Sends the standard message of `id`, keyed by the id.
    pub fn send_std(&mut self, topic: &str, id: u64) -> usize {
        let key = id.to_string();
        let value = std_message(id);
        self.send(topic, None, Some(key.as_bytes()), Some(value.as_bytes()))
    }

    /// Sends the standard messages of `ids`, keyed by id.
    pub fn send_std_all(&mut self, topic: &str, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            self.send_std(topic, id);
        }
    }

    /// Waits until every message is acknowledged; fails the test on any delivery error.
    /// Returns the deliveries so far, by sequence number.
    pub fn flush(&mut self) -> Vec<Delivered> {
        let t0 = Instant::now();
        self.inner
            .flush(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("producer flush: {e}"));
        let ctx = self.inner.context();
        let failed = ctx.failed.lock().unwrap();
        assert!(
            failed.is_empty(),
            "{} messages failed to deliver, e.g. {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
        let mut ok = ctx.ok.lock().unwrap().clone();
        assert_eq!(ok.len(), self.sent, "not every message was acknowledged");
        ok.sort_by_key(|d| d.seq);
        eprintln!(
            "producer: {} messages acknowledged (flush {:.1} s)",
            ok.len(),
            t0.elapsed().as_secs_f64()
        );
        ok
    }
}

/// The end offset (last offset + 1) of every partition that received messages.
pub fn end_offsets(delivered: &[Delivered]) -> BTreeMap<(String, i32), i64> {
    let mut ends = BTreeMap::new();
    for d in delivered {
        let e = ends.entry((d.topic.clone(), d.partition)).or_insert(0);
        if d.offset + 1 > *e {
            *e = d.offset + 1;
        }
    }
    ends
}

/// A partition (None: the partitioner's choice), a key and a value (None: null, a
/// tombstone), made by a [`BackgroundProducer`] for each message.
pub type Keyed = (Option<i32>, Option<Vec<u8>>, Option<Vec<u8>>);

/// Produces messages on a thread at about `rate` messages per second while the test does other
/// things. Dropping it abandons production (no flush, so a broker that is down does not hold
/// up the test's end).
pub struct BackgroundProducer {
    stop: Arc<AtomicBool>,
    abandon: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Delivered>>>,
}

impl BackgroundProducer {
    /// The standard messages of `ids`, keyed by id; [`BackgroundProducer::finish`] waits for
    /// all of them.
    pub fn start(spec: ProducerSpec, topic: &str, ids: Vec<u64>, rate: u64) -> BackgroundProducer {
        let mut ids = ids.into_iter();
        BackgroundProducer::paced(spec, topic, rate, move |_| {
            let id = ids.next()?;
            Some((
                None,
                Some(id.to_string().into_bytes()),
                Some(std_message(id).into_bytes()),
            ))
        })
    }

    /// Message `i` (0, 1, …) is `message(i)`, due at `i / rate` seconds, until `message`
    /// returns None or [`BackgroundProducer::stop`] is called.
    pub fn paced(
        spec: ProducerSpec,
        topic: &str,
        rate: u64,
        mut message: impl FnMut(u64) -> Option<Keyed> + Send + 'static,
    ) -> BackgroundProducer {
        let stop = Arc::new(AtomicBool::new(false));
        let abandon = Arc::new(AtomicBool::new(false));
        let (stop2, abandon2) = (stop.clone(), abandon.clone());
        let topic = topic.to_string();
        let handle = std::thread::spawn(move || {
            let mut p = spec.create();
            let t0 = Instant::now();
            for i in 0u64.. {
                if stop2.load(Ordering::Relaxed) || abandon2.load(Ordering::Relaxed) {
                    break;
                }
                let Some((partition, key, value)) = message(i) else {
                    break;
                };
                p.send(&topic, partition, key.as_deref(), value.as_deref());
                let due = Duration::from_secs_f64(i as f64 / rate as f64);
                let now = t0.elapsed();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            if abandon2.load(Ordering::Relaxed) {
                return Vec::new();
            }
            p.flush()
        });
        BackgroundProducer {
            stop,
            abandon,
            handle: Some(handle),
        }
    }

    /// Waits until every message is produced and acknowledged; returns where each landed.
    pub fn finish(mut self) -> Vec<Delivered> {
        self.handle
            .take()
            .expect("handle")
            .join()
            .expect("background producer panicked")
    }

    /// Stops producing, then [`BackgroundProducer::finish`]es.
    pub fn stop(self) -> Vec<Delivered> {
        self.stop.store(true, Ordering::Relaxed);
        self.finish()
    }
}

impl Drop for BackgroundProducer {
    fn drop(&mut self) {
        self.abandon.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
