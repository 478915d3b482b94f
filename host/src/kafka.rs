//! The Kafka side: the consumer's context — rebalance callbacks and librdkafka's logs — and
//! the librdkafka configuration.
//!
//! In synchronized delivery the database, not Kafka, knows where each partition stands: on
//! every assignment the callback reads the stored offsets and starts each partition there; on
//! every revocation it has the writer commit what it holds first, so the next owner starts
//! where this one stopped. Both go through the pipeline's [`Intake`], whose ledger decides.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use crate::config::{is_secret_key, Delivery};
use crate::intake::Intake;
use crate::ledger::Partition;

/// The consumer type of a pipeline.
pub type SinkConsumer = BaseConsumer<SinkContext>;

/// Rebalance handling and librdkafka logging for one pipeline's consumer.
pub struct SinkContext {
    intake: Mutex<Intake>,
    /// The sink's name, for metrics.
    sink: String,
}

impl SinkContext {
    /// A context whose callbacks work on `intake`.
    pub fn new(intake: Intake, sink: String) -> Self {
        SinkContext {
            intake: Mutex::new(intake),
            sink,
        }
    }

    /// The pipeline's intake (uncontended: only the consume thread uses it).
    pub fn intake(&self) -> MutexGuard<'_, Intake> {
        self.intake
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{log_message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
        }
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        for (name, topic) in &statistics.topics {
            for (id, partition) in &topic.partitions {
                if *id >= 0 && partition.consumer_lag >= 0 {
                    crate::metrics::lag(&self.sink, name, *id, partition.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }
}

impl ConsumerContext for SinkContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result: KafkaResult<()> = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if !self.intake().assigned(tpl) {
                    return;
                }
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.intake().revoked(partitions_of(tpl), consumer);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; dropping the assignment");
                let assignment = consumer.assignment().unwrap_or_default();
                self.intake().revoked(partitions_of(&assignment), consumer);
                if cooperative {
                    consumer.incremental_unassign(&assignment)
                } else {
                    consumer.unassign()
                }
            }
        };
        if let Err(error) = result {
            tracing::error!(%error, "cannot apply the rebalance");
        }
    }
}

/// The topics and partitions of `tpl`.
fn partitions_of(tpl: &TopicPartitionList) -> Vec<Partition> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// `message` (a librdkafka error) with the values of secret `kafka.*`
/// properties masked: librdkafka quotes a value it rejects, password or not.
pub fn redact_secrets(message: &str, kafka: &BTreeMap<String, String>) -> String {
    let mut text = message.to_string();
    for (key, value) in kafka {
        if is_secret_key(key) && !value.is_empty() {
            text = text.replace(value.as_str(), "***");
        }
    }
    text
}

/// The prefetch budget of one sink, in KiB, shared by its tasks' consumers unless the user
/// sets `kafka.queued.max.messages.kbytes` (then it is each consumer's, as in librdkafka).
const PREFETCH_KBYTES: usize = 16384;

/// Builds the librdkafka configuration of one of a sink's `tasks` consumers: the user's
/// `kafka.*` keys plus what the delivery mode decides.
pub fn client_config(
    kafka: &BTreeMap<String, String>,
    delivery: Delivery,
    tasks: usize,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in kafka {
        config.set(key, value);
    }
    config.set(
        "enable.auto.commit",
        if delivery == Delivery::Fastest {
            "true"
        } else {
            "false"
        },
    );
    config.set("enable.auto.offset.store", "true");
    // Defaults that keep a fast sink fed in bounded memory, unless the user set
    // them (measured in BENCHMARKS.md): a 16 MiB prefetch queue per sink (each task's
    // consumer holds its share, for a share of the partitions), refilled as soon as it
    // has room. librdkafka's own defaults (64 MiB per consumer, and a 1000 ms pause
    // whenever the queue is full) cap the sink near 200k msg/s while it waits.
    let prefetch = (PREFETCH_KBYTES / tasks.max(1)).max(1024).to_string();
    for (key, default) in [
        ("statistics.interval.ms", "5000"),
        ("queued.max.messages.kbytes", prefetch.as_str()),
        ("fetch.queue.backoff.ms", "10"),
    ] {
        if !kafka.contains_key(key) {
            config.set(key, default);
        }
    }
    config.set_log_level(RDKafkaLogLevel::Warning);
    config
}

#[cfg(test)]
mod tests {
    use rdkafka::consumer::BaseConsumer;

    use super::*;
    use crate::config::{parse_toml, ConfigError};

    const SINK: &str = r#"
        topics = "t"
        db.database = "d"
        db.username = "u"
        db.table = "tab"
        db.columns = "a"
        db.json.parse = "/@a"
    "#;

    /// A password with characters that TOML, librdkafka and logs treat specially.
    const SASL_PASSWORD: &str = "p@ss w0rd;\"q\"=\\x,é";

    /// The TLS and SASL settings of a secured Kafka cluster.
    fn secured(protocol: &str, mechanism: &str) -> String {
        format!(
            "{SINK}
            kafka.security.protocol = \"{protocol}\"
            kafka.sasl.mechanisms = \"{mechanism}\"
            kafka.sasl.username = \"sink-user\"
            kafka.sasl.password = {password}
            kafka.ssl.ca.location = \"/etc/pgsink/kafka ca.pem\"
            kafka.ssl.endpoint.identification.algorithm = \"https\"
            kafka.ssl.certificate.location = \"/etc/pgsink/client.pem\"
            kafka.ssl.key.location = \"/etc/pgsink/client.key\"
            kafka.ssl.key.password = \"key-secret\"
            [kafka.statistics]
            \"interval.ms\" = 1000
            ",
            password = toml::Value::from(SASL_PASSWORD),
        )
    }

    /// `kafka.*` TLS and SASL settings reach librdkafka's configuration verbatim in every
    /// delivery mode, next to what the host sets itself; a setting the user gave wins over
    /// the host's defaults.
    /// The default prefetch queue is the sink's, split among its tasks; one the user sets is
    /// each consumer's.
    #[test]
    fn the_prefetch_budget_is_shared_by_the_tasks() {
        let prefetch = |kafka: &BTreeMap<String, String>, tasks| {
            client_config(kafka, Delivery::Synchronized, tasks)
                .get("queued.max.messages.kbytes")
                .map(str::to_string)
        };
        let none = BTreeMap::new();
        assert_eq!(prefetch(&none, 1).as_deref(), Some("16384"));
        assert_eq!(prefetch(&none, 2).as_deref(), Some("8192"));
        assert_eq!(prefetch(&none, 64).as_deref(), Some("1024"));
        let set = BTreeMap::from([("queued.max.messages.kbytes".to_string(), "4096".to_string())]);
        assert_eq!(prefetch(&set, 2).as_deref(), Some("4096"));
    }

    #[test]
    fn tls_and_sasl_settings_pass_through_verbatim() {
        let config = parse_toml(&secured("SASL_SSL", "SCRAM-SHA-512")).expect("valid");
        for delivery in [
            Delivery::Fastest,
            Delivery::Guaranteed,
            Delivery::Synchronized,
        ] {
            let client = client_config(&config.kafka, delivery, 1);
            for (key, value) in [
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.username", "sink-user"),
                ("sasl.password", SASL_PASSWORD),
                ("ssl.ca.location", "/etc/pgsink/kafka ca.pem"),
                ("ssl.endpoint.identification.algorithm", "https"),
                ("ssl.certificate.location", "/etc/pgsink/client.pem"),
                ("ssl.key.location", "/etc/pgsink/client.key"),
                ("ssl.key.password", "key-secret"),
                ("statistics.interval.ms", "1000"),
                ("bootstrap.servers", "localhost:9092"),
                ("group.id", "pgsink-public.tab"),
                ("enable.auto.offset.store", "true"),
            ] {
                assert_eq!(client.get(key), Some(value), "{key} ({delivery})");
            }
            let auto_commit = if delivery == Delivery::Fastest {
                "true"
            } else {
                "false"
            };
            assert_eq!(client.get("enable.auto.commit"), Some(auto_commit));
        }
    }

    /// The properties the host controls cannot be set, with an error naming the key and why.
    #[test]
    fn properties_the_host_controls_are_rejected() {
        for key in [
            "enable.auto.commit",
            "auto.commit.enable",
            "enable.auto.offset.store",
        ] {
            let error =
                parse_toml(&format!("{SINK}\n[kafka]\n\"{key}\" = \"false\"")).expect_err(key);
            assert!(
                matches!(&error, ConfigError::ForbiddenKafkaKey { key: k, .. } if k == key),
                "{error:?}"
            );
            let text = error.to_string();
            assert!(
                text.starts_with(&format!("kafka.{key} cannot be set: ")),
                "{text}"
            );
            assert!(text.contains("pgsink"), "the reason: {text}");
        }
    }

    /// librdkafka itself accepts the secured settings: pgsink's librdkafka is built with
    /// OpenSSL (rdkafka's `ssl-vendored`), so SASL_PLAINTEXT with PLAIN and SASL_SSL with
    /// SCRAM-SHA-512 make consumers (no broker is contacted). TLS files that do not exist are
    /// refused at creation, naming the setting, and the error shows no password once redacted.
    #[test]
    fn librdkafka_accepts_the_secured_settings() {
        let features = ClientConfig::new()
            .create_native_config()
            .and_then(|c| c.get("builtin.features"))
            .expect("builtin.features");
        for needed in ["ssl", "sasl_plain", "sasl_scram"] {
            assert!(
                features.split(',').any(|f| f == needed),
                "librdkafka lacks {needed}: {features}"
            );
        }
        for (protocol, mechanism) in [("SASL_PLAINTEXT", "PLAIN"), ("SASL_SSL", "SCRAM-SHA-512")] {
            let config = parse_toml(&secured(protocol, mechanism)).expect("valid");
            let mut kafka = config.kafka.clone();
            kafka.retain(|k, _| !k.starts_with("ssl."));
            let consumer: KafkaResult<BaseConsumer> =
                client_config(&kafka, Delivery::Synchronized, 1).create();
            if let Err(error) = &consumer {
                panic!("{protocol} with {mechanism}: {error}");
            }
        }
        let tls = parse_toml(&secured("SASL_SSL", "PLAIN")).expect("valid");
        let consumer: KafkaResult<BaseConsumer> =
            client_config(&tls.kafka, Delivery::Synchronized, 1).create();
        let Err(error) = consumer else {
            panic!("TLS files that do not exist were accepted");
        };
        let text = redact_secrets(&error.to_string(), &tls.kafka);
        assert!(
            text.contains("ssl.ca.location"),
            "names the setting: {text}"
        );
        assert!(
            !text.contains(SASL_PASSWORD) && !text.contains("key-secret"),
            "{text}"
        );
    }

    /// A librdkafka error that quotes a secret value shows `***` instead, and only secrets
    /// are masked.
    #[test]
    fn errors_are_redacted() {
        let kafka: BTreeMap<String, String> = [
            ("ssl.key.password", "KEYSECRET123"),
            ("sasl.password", "hunter2"),
            ("client.id", "sink-7"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let text = redact_secrets(
            "Invalid value \"KEYSECRET123\" for ssl.key.password; sasl hunter2; client sink-7",
            &kafka,
        );
        assert_eq!(
            text,
            "Invalid value \"***\" for ssl.key.password; sasl ***; client sink-7"
        );
    }
}
