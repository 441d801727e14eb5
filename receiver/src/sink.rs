//! Appending raw records to `gf.raw.v1` and waiting for the broker's acknowledgement.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gf_runtime::kafka::KafkaSettings;
use gf_schemas::raw::RawRecordMeta;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("the broker did not acknowledge the record: {0}")]
    Unavailable(String),
    #[error("the broker refuses a record this large")]
    TooLarge,
    #[error("cannot create the Kafka producer: {0}")]
    Setup(#[from] KafkaError),
}

pub struct KafkaSink {
    /// Replaced when it is stuck (see [`KafkaSink::recover`]); cloning one is cheap.
    producer: RwLock<FutureProducer>,
    settings: KafkaSettings,
    delivery_timeout: Duration,
    topic: String,
    /// How long a full local queue may hold a request up before it is refused.
    queue_wait: Duration,
    last_rebuild: Mutex<Option<Instant>>,
}

/// A stuck producer is replaced at most this often.
const REBUILD_INTERVAL: Duration = Duration::from_secs(5);

fn producer(
    settings: &KafkaSettings,
    delivery_timeout: Duration,
) -> Result<FutureProducer, KafkaError> {
    settings
        .producer_config("gf-receiver")
        .set(
            "message.timeout.ms",
            delivery_timeout.as_millis().to_string(),
        )
        .create()
}

impl KafkaSink {
    /// `delivery_timeout` bounds the wait for an acknowledgement (librdkafka's
    /// `message.timeout.ms`); past it the request is answered 503.
    pub fn new(
        settings: &KafkaSettings,
        topic: &str,
        delivery_timeout: Duration,
    ) -> Result<Self, SinkError> {
        Ok(KafkaSink {
            producer: RwLock::new(producer(settings, delivery_timeout)?),
            settings: settings.clone(),
            delivery_timeout,
            topic: topic.to_owned(),
            queue_wait: Duration::from_millis(500),
            last_rebuild: Mutex::new(None),
        })
    }

    /// Resolves once the broker acknowledged the record (acks=all) or definitely failed.
    pub async fn append(&self, meta: &RawRecordMeta, body: &Bytes) -> Result<Duration, SinkError> {
        let key = meta.connection_id.to_string();
        let headers = meta
            .to_headers()
            .into_iter()
            .fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            });
        let record = FutureRecord::to(&self.topic)
            .key(&key)
            .payload(body.as_ref())
            .headers(headers);
        let started = Instant::now();
        let producer = self.current();
        // librdkafka keeps an idempotent producer's in-flight records past `message.timeout.ms`
        // while their fate is unknown (seen: 9 s with the broker gone); the caller gets its
        // answer on time regardless. A record acknowledged later was stored, not acknowledged.
        let limit = self.delivery_timeout + self.queue_wait;
        let Ok(sent) = tokio::time::timeout(
            limit,
            producer.send(record, Timeout::After(self.queue_wait)),
        )
        .await
        else {
            let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
            self.recover(&timed_out);
            return Err(SinkError::Unavailable(timed_out.to_string()));
        };
        match sent {
            Ok(_) => Ok(started.elapsed()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                Err(SinkError::TooLarge)
            }
            Err((e, _)) => {
                self.recover(&e);
                Err(SinkError::Unavailable(e.to_string()))
            }
        }
    }

    fn current(&self) -> FutureProducer {
        self.producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// After a failure the producer is replaced by a new one (a new idempotent producer id), at
    /// most every [`REBUILD_INTERVAL`]. Records that timed out locally leave a gap in the old
    /// producer's sequence numbers, which brokers without epoch bumps (KIP-360) refuse for good,
    /// and tansu's durable engine cannot even take the old id after its own restart. Records the
    /// old producer still held fail; their requests were not acknowledged, so nothing
    /// acknowledged is lost.
    fn recover(&self, error: &KafkaError) {
        let mut last = self.last_rebuild.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < REBUILD_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        match producer(&self.settings, self.delivery_timeout) {
            Ok(fresh) => {
                tracing::warn!(error = %error, "replacing the Kafka producer after a failed append");
                *self.producer.write().unwrap_or_else(|e| e.into_inner()) = fresh;
            }
            Err(e) => tracing::error!(error = %e, "cannot create a new Kafka producer"),
        }
    }

    /// Whether a broker answers a metadata request within `timeout`.
    pub fn broker_reachable(&self, timeout: Duration) -> bool {
        self.current()
            .client()
            .fetch_metadata(Some(&self.topic), timeout)
            .is_ok()
    }

    /// Waits for records still in flight (shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.current().flush(timeout) {
            tracing::warn!(error = %e, "records still unacknowledged at shutdown");
        }
    }
}
