//! What every consumer loop shares: producing outputs and waiting for their acknowledgements,
//! dead letters, and storing and committing offsets only for what is durable.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use gf_schemas::deadletter::{DeadLetter, SourceRecord};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use tokio_util::sync::CancellationToken;

use crate::classify::{self, Class, ReasonClass};
use crate::kafka::{KafkaSettings, StageConsumer};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("Kafka error: {0}")]
    Kafka(#[from] KafkaError),
    /// The broker (or librdkafka) answered the record with an error.
    #[error("an output was refused: {0}")]
    Rejected(KafkaError),
    #[error("an output was not acknowledged: {0}")]
    Delivery(String),
}

impl OutputError {
    /// Whether the broker refused the record itself (too large, invalid), or could not take it.
    pub fn class(&self) -> Class {
        match self {
            OutputError::Kafka(e) | OutputError::Rejected(e) => classify::kafka(e),
            OutputError::Delivery(_) => Class::Transient,
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
    acknowledged_within(deliveries, DELIVERY_TIMEOUT + DELIVERY_GRACE).await
}

/// [`acknowledged`], failing when the last acknowledgement has not come within `limit`.
pub async fn acknowledged_within(
    deliveries: Vec<DeliveryFuture>,
    limit: Duration,
) -> Result<(), OutputError> {
    let deadline = tokio::time::Instant::now() + limit;
    for delivery in deliveries {
        match tokio::time::timeout_at(deadline, delivery).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err((e, _)))) => return Err(OutputError::Rejected(e)),
            Ok(Err(_)) => return Err(OutputError::Delivery("the producer was dropped".into())),
            Err(_) => {
                return Err(OutputError::Delivery(format!(
                    "no acknowledgement within {limit:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Like [`acknowledged`], but a record the broker refuses on its own (too large, invalid) does
/// not fail the others: returns the positions of the refused ones with their errors. Only an
/// outage (or no acknowledgement in time) is an error.
pub async fn acknowledged_or_refused(
    deliveries: Vec<DeliveryFuture>,
) -> Result<Vec<(usize, KafkaError)>, OutputError> {
    let limit = DELIVERY_TIMEOUT + DELIVERY_GRACE;
    let deadline = tokio::time::Instant::now() + limit;
    let mut refused = Vec::new();
    for (i, delivery) in deliveries.into_iter().enumerate() {
        match tokio::time::timeout_at(deadline, delivery).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err((e, _)))) if classify::kafka(&e) == Class::Refused => refused.push((i, e)),
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

/// The record's headers as (name, value) pairs.
pub fn headers_of<'a>(message: &'a BorrowedMessage<'_>) -> Vec<(&'a str, Option<&'a [u8]>)> {
    message
        .headers()
        .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default()
}

/// The `traceparent` header of a record, if it has a readable one.
pub fn traceparent_of(message: &BorrowedMessage<'_>) -> Option<String> {
    headers_of(message)
        .into_iter()
        .find(|(k, _)| *k == "traceparent")
        .and_then(|(_, v)| std::str::from_utf8(v?).ok().map(str::to_owned))
}

/// Why one record (or one event of it) could not be processed.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub class: ReasonClass,
    pub reason: String,
    /// The failing event's index in the record, when its siblings went on.
    pub event_index: Option<u32>,
    /// The failing event's bytes, when it is not the whole record.
    pub event: Option<Vec<u8>>,
}

impl Refusal {
    pub fn new(class: ReasonClass, reason: impl Into<String>) -> Self {
        Refusal {
            class,
            reason: reason.into(),
            event_index: None,
            event: None,
        }
    }

    /// A refusal of one event of a batch record.
    pub fn of_event(mut self, index: usize, event: Vec<u8>) -> Self {
        self.event_index = Some(u32::try_from(index).unwrap_or(u32::MAX));
        self.event = Some(event);
        self
    }
}

/// A record's JSON value as `T`, or its refusal naming `what` it should have been.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    payload: &[u8],
    what: &str,
) -> Result<T, Refusal> {
    serde_json::from_slice(payload)
        .map_err(|e| Refusal::new(ReasonClass::Invalid, format!("not {what}: {e}")))
}

/// Where a record came from, owned, so a dead letter can be made after the record is gone.
pub fn source_of(message: &BorrowedMessage<'_>) -> SourceRecord {
    SourceRecord {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        headers: headers_of(message)
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    String::from_utf8_lossy(v.unwrap_or_default()).into_owned(),
                )
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

/// A dead letter for a record `stage` could not process: the reason and its class, where it
/// came from, and the failing event (or the record), bounded, so an operator can find, read and
/// replay it.
pub fn dead_letter(
    deadletter_topic: &str,
    stage: &str,
    message: &BorrowedMessage<'_>,
    refusal: Refusal,
) -> Output {
    let payload = message.payload().unwrap_or_default();
    dead_letter_from(
        deadletter_topic,
        stage,
        source_of(message),
        payload,
        refusal,
    )
}

/// [`dead_letter`] from an owned [`SourceRecord`] and the record's payload.
pub fn dead_letter_from(
    deadletter_topic: &str,
    stage: &str,
    source: SourceRecord,
    payload: &[u8],
    refusal: Refusal,
) -> Output {
    let (excerpt, truncated) = DeadLetter::excerpt_of(refusal.event.as_deref().unwrap_or(payload));
    let letter = DeadLetter {
        stage: stage.into(),
        reason: refusal.reason,
        reason_class: refusal.class,
        source,
        event_index: refusal.event_index,
        excerpt,
        truncated,
        failed_at: Utc::now(),
    };
    crate::metrics::dead_letter(stage, letter.reason_class);
    // Any token holder can send a dead letter per event: one line per stage and class per 10 s,
    // with how many were held back; every one is in the topic and the metric.
    static LIMIT: std::sync::LazyLock<crate::telemetry::LogLimiter> =
        std::sync::LazyLock::new(|| crate::telemetry::LogLimiter::new(Duration::from_secs(10)));
    if let Some(held_back) = LIMIT.admit(&format!("{stage}/{}", letter.reason_class)) {
        tracing::warn!(
            stage,
            topic = %letter.source.topic,
            partition = letter.source.partition,
            offset = letter.source.offset,
            event_index = letter.event_index,
            reason_class = %letter.reason_class,
            reason = %letter.reason,
            held_back,
            "record dead-lettered"
        );
    }
    Output {
        topic: deadletter_topic.to_owned(),
        key: letter.kafka_key(),
        value: serde_json::to_vec(&letter).unwrap_or_default(),
        traceparent: None,
    }
}

/// Runs a stage's consumer until `stop`, starting it again with growing backoff after a failure
/// (it resumes from the committed offsets, so nothing is lost).
pub async fn supervise<E, F, Fut>(stage: &str, stop: &CancellationToken, mut run_once: F)
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let new_backoff = || Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut backoff = new_backoff();
    while !stop.is_cancelled() {
        let started = std::time::Instant::now();
        match run_once().await {
            Ok(()) => return,
            Err(e) => {
                // A run that went well for a while starts the waits over: one failure an hour
                // must not inherit the backoff of the last outage.
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = new_backoff();
                }
                tracing::error!(stage, error = %e, retry_in = ?backoff.current(), "stage failed; restarting from committed offsets");
                if !backoff.wait(stop).await {
                    return;
                }
            }
        }
    }
}

/// Doubling waits between retries, up to a maximum, cut short by a stop.
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff { next: first, max }
    }

    /// The wait the next [`Backoff::wait`] will make.
    pub fn current(&self) -> Duration {
        self.next
    }

    /// Sleeps for the current wait, then doubles it; `false` when `stop` came first.
    pub async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let stopped = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(self.next) => false,
        };
        self.next = (self.next * 2).min(self.max);
        !stopped
    }
}

/// The next record. Connection trouble is reported and waited out with the same consumer:
/// librdkafka reconnects and rejoins the group by itself, while a new consumer for every
/// outage would leave members behind that the group waits for.
pub async fn recv(consumer: &StageConsumer) -> Result<BorrowedMessage<'_>, KafkaError> {
    loop {
        match consumer.recv().await {
            Err(KafkaError::MessageConsumption(code)) if is_transient(code) => {
                tracing::warn!(error = %code, "consumer waiting for the brokers");
            }
            other => return other,
        }
    }
}

/// How long a stage waits for records before committing what it stored.
const IDLE_COMMIT: Duration = Duration::from_secs(1);

/// [`recv`], but when nothing comes for [`IDLE_COMMIT`], commits the stored offsets first: a
/// stage that commits between batches would otherwise leave its last batch uncommitted (and its
/// lag showing) for as long as it stays idle.
async fn recv_committing_when_idle(
    consumer: &StageConsumer,
) -> Result<BorrowedMessage<'_>, KafkaError> {
    // recv is cancellation safe: a record is taken off the queue only when it is returned.
    match tokio::time::timeout(IDLE_COMMIT, recv(consumer)).await {
        Ok(message) => message,
        Err(_) => {
            commit_stored(consumer, CommitMode::Async);
            recv(consumer).await
        }
    }
}

/// Errors librdkafka recovers from on its own.
fn is_transient(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        AllBrokersDown
            | BrokerTransportFailure
            | Resolve
            | OperationTimedOut
            | RequestTimedOut
            | NetworkException
            | CoordinatorNotAvailable
            | NotCoordinator
    )
}

/// Waits for a record, then gathers more for up to `linger` or until `max`; `None` once stopped.
pub async fn next_batch<'c>(
    consumer: &'c StageConsumer,
    stop: &CancellationToken,
    max: usize,
    linger: Duration,
) -> Result<Option<Vec<BorrowedMessage<'c>>>, KafkaError> {
    let first = tokio::select! {
        _ = stop.cancelled() => return Ok(None),
        m = recv_committing_when_idle(consumer) => m?,
    };
    let mut messages = vec![first];
    let deadline = tokio::time::Instant::now() + linger;
    while messages.len() < max {
        match tokio::time::timeout_at(deadline, recv(consumer)).await {
            Ok(m) => messages.push(m?),
            Err(_) => break,
        }
    }
    Ok(Some(messages))
}

/// Marks a record as done; the next commit includes it.
pub fn store(consumer: &StageConsumer, topic: &str, partition: i32, offset: i64) {
    // Fails only for a partition revoked meanwhile; its new owner processes the record again.
    if let Err(e) = consumer.store_offset(topic, partition, offset) {
        tracing::debug!(error = %e, partition, offset, "offset not stored");
    }
}

/// Commits the stored offsets; a failure is retried by the next commit.
pub fn commit_stored(consumer: &StageConsumer, mode: CommitMode) {
    match consumer.commit_consumer_state(mode) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "offset commit failed; will retry"),
    }
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
            acknowledged_within(vec![delivery], Duration::from_secs(1)),
        )
        .await
        .expect("acknowledged_within did not give up at its limit");
        let error = waited.unwrap_err().to_string();
        assert!(error.contains("no acknowledgement within"), "{error}");
    }
}
