//! The production sink: appends to `gf.raw.v1` and waits for the broker's acknowledgement.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use gf_runtime::kafka::KafkaSettings;
use gf_runtime::producer::SharedProducer;
use gf_schemas::raw::RawRecordMeta;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::util::Timeout;

use super::{Appended, RawSink, SinkError};

pub struct KafkaSink {
    /// Shared with the other stages of the process (`gf run all`); renewed when stuck.
    producer: SharedProducer,
    topic: String,
    /// How long a full local queue may hold a request up before it is refused.
    queue_wait: Duration,
}

impl KafkaSink {
    /// A sink with a producer of its own; `delivery_timeout` bounds the wait for an
    /// acknowledgement (librdkafka's `message.timeout.ms`); past it the request is answered 503.
    pub fn new(
        settings: &KafkaSettings,
        topic: &str,
        delivery_timeout: Duration,
    ) -> Result<Self, SinkError> {
        let producer = SharedProducer::new(settings, "gf-receiver", delivery_timeout)?;
        Ok(Self::with_producer(producer, topic))
    }

    /// A sink appending through `producer`; a request waits at most the producer's delivery
    /// timeout (plus the local queue's wait) for its answer.
    pub fn with_producer(producer: SharedProducer, topic: &str) -> Self {
        KafkaSink {
            producer,
            topic: topic.to_owned(),
            queue_wait: Duration::from_millis(500),
        }
    }

    /// Resolves once the broker acknowledged the record (acks=all) or definitely failed.
    async fn append_now(&self, meta: &RawRecordMeta, body: &Bytes) -> Result<Appended, SinkError> {
        // Keyed by request: one connection's requests spread over every partition, so a large
        // sender is normalized by every normalizer (attribution does not need their order).
        let key = meta.request_id.as_str();
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
            .key(key)
            .payload(body.as_ref())
            .headers(headers);
        let started = Instant::now();
        let lease = self.producer.lease();
        // librdkafka keeps an idempotent producer's in-flight records past `message.timeout.ms`
        // while their fate is unknown (seen: 9 s with the broker gone); the caller gets its
        // answer on time regardless. A record acknowledged later was stored, not acknowledged.
        let limit = self.producer.delivery_timeout() + self.queue_wait;
        let Ok(sent) = tokio::time::timeout(
            limit,
            lease.producer.send(record, Timeout::After(self.queue_wait)),
        )
        .await
        else {
            let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
            self.producer.renew(&lease, &timed_out);
            return Err(SinkError::Unavailable(timed_out.to_string()));
        };
        match sent {
            // Success without an offset is librdkafka's inference, not the broker's word: the
            // sender is asked to send again (see `gf_runtime::producer::stored`).
            Ok(delivery) if !gf_runtime::producer::stored(&delivery) => {
                Err(SinkError::Unavailable(
                    "the broker's acknowledgement named no offset; not confirmed".into(),
                ))
            }
            Ok(delivery) => Ok(Appended {
                took: started.elapsed(),
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                Err(SinkError::TooLarge)
            }
            Err((e, _)) => {
                self.producer.renew(&lease, &e);
                Err(SinkError::Unavailable(e.to_string()))
            }
        }
    }
}

impl RawSink for KafkaSink {
    fn append<'a>(
        &'a self,
        meta: &'a RawRecordMeta,
        body: &'a Bytes,
    ) -> BoxFuture<'a, Result<Appended, SinkError>> {
        Box::pin(self.append_now(meta, body))
    }

    /// Whether a broker answers a metadata request within `timeout`.
    fn reachable(&self, timeout: Duration) -> bool {
        self.producer
            .lease()
            .producer
            .client()
            .fetch_metadata(Some(&self.topic), timeout)
            .is_ok()
    }

    /// Waits for records still in flight (shutdown).
    fn flush(&self, timeout: Duration) {
        self.producer.flush(timeout);
    }
}
