//! Producing outputs and waiting for their acknowledgements.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::classify::{self, Class};
use crate::kafka::KafkaSettings;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("Kafka error: {0}")]
    Kafka(#[from] KafkaError),
    /// The broker (or librdkafka) answered the record with an error.
    #[error("an output was refused: {0}")]
    Rejected(KafkaError),
    #[error("an output was not acknowledged: {0}")]
    Delivery(String),
    /// The record could not be encoded: it is refused, never produced empty.
    #[error("an output could not be encoded: {0}")]
    Encode(String),
}

impl OutputError {
    /// Whether the broker refused the record itself (too large, invalid), or could not take it.
    pub fn class(&self) -> Class {
        match self {
            OutputError::Kafka(e) | OutputError::Rejected(e) => classify::kafka(e),
            OutputError::Delivery(_) => Class::Transient,
            OutputError::Encode(_) => Class::Refused,
        }
    }
}

/// One record to produce.
#[derive(Clone, Debug)]
pub struct Output {
    pub topic: String,
    pub key: String,
    pub value: Vec<u8>,
    pub traceparent: Option<String>,
}

/// A record's JSON value; an error refuses the record (an empty record is never produced).
pub fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, OutputError> {
    serde_json::to_vec(value).map_err(|e| OutputError::Encode(e.to_string()))
}

/// How long a stage waits for its outputs to be acknowledged. Past it the run fails and starts
/// again from the committed offsets with a fresh producer: an idempotent producer that hit a
/// fatal error never has its records acknowledged, and waiting on it would stall the stage for
/// good.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// librdkafka holds idempotent records whose fate is unknown past `message.timeout.ms`.
const DELIVERY_GRACE: Duration = Duration::from_secs(15);

/// A producer of its own for a one-off job (a replay): durable settings, [`DELIVERY_TIMEOUT`].
/// Stages share one: [`crate::producer::SharedProducer`].
pub fn producer(settings: &KafkaSettings, client_id: &str) -> Result<FutureProducer, KafkaError> {
    crate::producer::build(settings, client_id, DELIVERY_TIMEOUT)
}

/// Enqueues an output, waiting while the local queue is full; returns its delivery.
pub async fn enqueue(
    producer: &FutureProducer,
    output: &Output,
) -> Result<DeliveryFuture, OutputError> {
    loop {
        let mut record = FutureRecord::to(&output.topic)
            .key(&output.key)
            .payload(&output.value);
        if let Some(tp) = &output.traceparent {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: "traceparent",
                value: Some(tp.as_bytes()),
            }));
        }
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// Resolves once every delivery is acknowledged, or with the first failure.
pub async fn acknowledged(deliveries: Vec<DeliveryFuture>) -> Result<(), OutputError> {
    settle(deliveries, DELIVERY_TIMEOUT + DELIVERY_GRACE, false)
        .await
        .map(|_| ())
}

/// Like [`acknowledged`], but a record the broker refuses on its own (too large, invalid) does
/// not fail the others: returns the positions of the refused ones with their errors. Only an
/// outage (or no acknowledgement in time) is an error.
pub async fn acknowledged_or_refused(
    deliveries: Vec<DeliveryFuture>,
) -> Result<Vec<(usize, KafkaError)>, OutputError> {
    settle(deliveries, DELIVERY_TIMEOUT + DELIVERY_GRACE, true).await
}

/// Waits for every delivery, failing when the last acknowledgement has not come within `limit`;
/// with `keep_refused`, the records the broker refused on their own are returned, not failed.
async fn settle(
    deliveries: Vec<DeliveryFuture>,
    limit: Duration,
    keep_refused: bool,
) -> Result<Vec<(usize, KafkaError)>, OutputError> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut refused = Vec::new();
    for (i, delivery) in deliveries.into_iter().enumerate() {
        match tokio::time::timeout_at(deadline, delivery).await {
            Ok(Ok(Ok(delivery))) if crate::producer::stored(&delivery) => {}
            Ok(Ok(Ok(_))) => {
                return Err(OutputError::Delivery(
                    "acknowledged without an offset (inferred by librdkafka, not confirmed)".into(),
                ));
            }
            Ok(Ok(Err((e, _)))) if keep_refused && classify::kafka(&e) == Class::Refused => {
                refused.push((i, e))
            }
            Ok(Ok(Err((e, _)))) => return Err(OutputError::Rejected(e)),
            Ok(Err(_)) => return Err(OutputError::Delivery("the producer was dropped".into())),
            Err(_) => {
                return Err(OutputError::Delivery(format!(
                    "no acknowledgement within {limit:?}"
                )));
            }
        }
    }
    Ok(refused)
}

/// Produces every output and waits until all are acknowledged.
pub async fn produce_all(producer: &FutureProducer, outputs: &[Output]) -> Result<(), OutputError> {
    let mut deliveries = Vec::with_capacity(outputs.len());
    for output in outputs {
        deliveries.push(enqueue(producer, output).await?);
    }
    acknowledged(deliveries).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::Compression;

    /// A broker that never answers must fail the run in bounded time, not hold it for good.
    #[tokio::test]
    async fn unacknowledged_outputs_fail_the_run_in_bounded_time() {
        let settings = KafkaSettings {
            // Nothing listens on port 1.
            brokers: "127.0.0.1:1".into(),
            compression: Compression::None,
            max_record_bytes: 1024 * 1024,
            session_timeout_ms: 6000,
        };
        let producer = producer(&settings, "test").unwrap();
        let output = Output {
            topic: "t".into(),
            key: "k".into(),
            value: b"v".to_vec(),
            traceparent: None,
        };
        let delivery = enqueue(&producer, &output).await.unwrap();
        let waited = tokio::time::timeout(
            Duration::from_secs(10),
            settle(vec![delivery], Duration::from_secs(1), false),
        )
        .await
        .expect("settle did not give up at its limit");
        let error = waited.unwrap_err().to_string();
        assert!(error.contains("no acknowledgement within"), "{error}");
    }
}
