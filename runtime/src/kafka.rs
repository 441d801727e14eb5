//! Kafka client settings in one place, so producers, consumers and topics agree on sizes.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::Serialize;

use crate::config::Config;
use crate::topics::TopicSpec;

/// The consumer every stage loop reads with.
pub type StageConsumer = rdkafka::consumer::StreamConsumer<crate::metrics::KafkaStats>;

/// See `consumer_config`.
const FETCH_WAIT_MAX_MS: u32 = 50;

/// Room above the body limit for record headers and batch framing.
const RECORD_OVERHEAD_BYTES: usize = 1024 * 1024;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, strum::Display, strum::EnumString, strum::IntoStaticStr,
)]
#[strum(serialize_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("cannot reach the Kafka brokers at {brokers}: {source}")]
    Unreachable { brokers: String, source: KafkaError },
    #[error("creating topic {topic} failed: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("Kafka client error: {0}")]
    Client(#[from] KafkaError),
    #[error("topic {0} did not appear in the broker's metadata after creation")]
    NotVisible(String),
    #[error(
        "topic {topic} is to have {replication} replicas but the cluster has {brokers} broker(s); \
         lower GF_TOPIC_REPLICATION or add brokers"
    )]
    CannotReplicate {
        topic: String,
        replication: i32,
        brokers: usize,
    },
}

/// Settings shared by every Kafka client of the pipeline.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    pub brokers: String,
    pub compression: Compression,
    /// The largest record value we produce or accept (the receiver's body limit plus framing).
    pub max_record_bytes: usize,
    pub session_timeout_ms: u64,
}

impl KafkaSettings {
    pub fn from_config(config: &Config) -> Result<Self, crate::config::ConfigError> {
        Ok(KafkaSettings {
            brokers: config.kafka_brokers()?.to_owned(),
            compression: config.kafka_compression,
            max_record_bytes: config.max_body_bytes + RECORD_OVERHEAD_BYTES,
            session_timeout_ms: config.kafka_session_timeout_ms,
        })
    }

    fn base(&self, client_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id)
            .set("socket.keepalive.enable", "true");
        c
    }

    /// Durable producer: every acknowledgement means all in-sync replicas have the record, and
    /// retries never duplicate or reorder (idempotence).
    pub fn producer_config(&self, client_id: &str) -> ClientConfig {
        let mut c = self.base(client_id);
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", self.compression.as_str())
            .set("message.max.bytes", self.max_record_bytes.to_string())
            .set("linger.ms", "5");
        c
    }

    /// Consumer in `group` that commits only what the caller stores explicitly.
    pub fn consumer_config(&self, client_id: &str, group: &str) -> ClientConfig {
        let fetch_max = self.max_record_bytes * 2;
        let mut c = self.base(client_id);
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            // How long an empty fetch may wait at the broker: each stage's idle latency. Kafka
            // answers early once `fetch.min.bytes` arrive, but with librdkafka's 500 ms default a
            // quiet partition adds up to half a second per stage to a trickle of events. 50 ms
            // costs a few idle requests a second.
            .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS.to_string())
            .set(
                "max.partition.fetch.bytes",
                self.max_record_bytes.to_string(),
            )
            .set("fetch.max.bytes", fetch_max.to_string())
            .set(
                "receive.message.max.bytes",
                (fetch_max + RECORD_OVERHEAD_BYTES).to_string(),
            );
        c
    }

    /// A stage's group consumer, reporting librdkafka's statistics (consumer lag among them) to
    /// the process's Prometheus registry.
    pub fn stage_consumer(
        &self,
        client_id: &str,
        group: &str,
    ) -> Result<StageConsumer, KafkaError> {
        let mut config = self.consumer_config(client_id, group);
        config.set(
            "statistics.interval.ms",
            crate::metrics::KAFKA_STATISTICS_INTERVAL_MS.to_string(),
        );
        config.create_with_context(crate::metrics::KafkaStats::new(client_id))
    }

    pub fn admin(&self) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
        self.base("gf-admin").create()
    }

    /// Fails fast when no broker answers.
    pub fn check_reachable(&self, timeout: Duration) -> Result<usize, KafkaSetupError> {
        let consumer: BaseConsumer = self.base("gf-probe").create()?;
        consumer
            .fetch_metadata(None, timeout)
            .map(|m| m.brokers().len())
            .map_err(|source| KafkaSetupError::Unreachable {
                brokers: self.brokers.clone(),
                source,
            })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicOutcome {
    pub topic: String,
    pub created: bool,
    pub partitions: usize,
}

/// Creates the topics that do not exist; leaves existing ones as they are.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    specs: &[TopicSpec],
) -> Result<Vec<TopicOutcome>, KafkaSetupError> {
    let brokers = settings.check_reachable(Duration::from_secs(10))?;
    // Kafka itself would refuse with INVALID_REPLICATION_FACTOR; saying why is kinder.
    if let Some(spec) = specs.iter().find(|s| s.replication as usize > brokers) {
        return Err(KafkaSetupError::CannotReplicate {
            topic: spec.name.clone(),
            replication: spec.replication,
            brokers,
        });
    }
    let admin = settings.admin()?;
    let new_topics: Vec<NewTopic> = specs
        .iter()
        .map(|s| {
            s.config.iter().fold(
                NewTopic::new(
                    &s.name,
                    s.partitions,
                    TopicReplication::Fixed(s.replication),
                ),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new_topics, &options).await?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(topic) => created.push(topic),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaSetupError::CreateTopic { topic, code }),
        }
    }

    // Creation is asynchronous on some brokers: wait until every topic is in the metadata.
    let probe: BaseConsumer = settings.base("gf-admin-probe").create()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut outcomes = Vec::with_capacity(specs.len());
    for spec in specs {
        let partitions = loop {
            let metadata = probe.fetch_metadata(Some(&spec.name), Duration::from_secs(5))?;
            let found = metadata
                .topics()
                .iter()
                .find(|t| t.name() == spec.name && t.error().is_none())
                .map(|t| t.partitions().len())
                .filter(|&n| n > 0);
            match found {
                Some(n) => break n,
                None if std::time::Instant::now() > deadline => {
                    return Err(KafkaSetupError::NotVisible(spec.name.clone()));
                }
                None => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        outcomes.push(TopicOutcome {
            topic: spec.name.clone(),
            created: created.contains(&spec.name),
            partitions,
        });
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> KafkaSettings {
        KafkaSettings {
            brokers: "127.0.0.1:1".into(),
            compression: Compression::None,
            max_record_bytes: 11 * 1024 * 1024,
            session_timeout_ms: 6000,
        }
    }

    #[test]
    fn sizes_agree_between_producer_and_consumer() {
        let s = settings();
        let p = s.producer_config("p");
        let c = s.consumer_config("c", "g");
        let max: usize = p.get("message.max.bytes").unwrap().parse().unwrap();
        assert_eq!(max, s.max_record_bytes);
        let partition_fetch: usize = c.get("max.partition.fetch.bytes").unwrap().parse().unwrap();
        let fetch: usize = c.get("fetch.max.bytes").unwrap().parse().unwrap();
        let receive: usize = c.get("receive.message.max.bytes").unwrap().parse().unwrap();
        assert!(partition_fetch >= max && fetch >= partition_fetch && receive > fetch);
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("compression.type"), Some("none"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
    }

    #[test]
    fn compression_names_round_trip() {
        for name in ["none", "gzip", "snappy", "lz4", "zstd"] {
            assert_eq!(name.parse::<Compression>().unwrap().as_str(), name);
        }
        assert!("brotli".parse::<Compression>().is_err());
    }
}
