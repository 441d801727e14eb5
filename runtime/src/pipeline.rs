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

use crate::kafka::{KafkaSettings, StageConsumer};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("Kafka error: {0}")]
    Kafka(#[from] KafkaError),
    #[error("an output was not acknowledged: {0}")]
    Delivery(String),
}

/// One record to produce.
#[derive(Clone, Debug)]
pub struct Output {
    pub topic: String,
    pub key: String,
    pub value: Vec<u8>,
    pub traceparent: Option<String>,
}

/// A stage's producer: durable settings, and a long delivery timeout so a broker outage stalls
/// the loop instead of failing it (shutdown still ends it).
pub fn producer(settings: &KafkaSettings, client_id: &str) -> Result<FutureProducer, KafkaError> {
    settings
        .producer_config(client_id)
        .set("message.timeout.ms", "300000")
        .create()
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
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(OutputError::Delivery(e.to_string())),
            Err(_) => return Err(OutputError::Delivery("the producer was dropped".into())),
        }
    }
    Ok(())
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

/// A dead letter for a record `stage` could not process: the reason, where it came from, and
/// an excerpt of it, so an operator can find and replay it.
pub fn dead_letter(
    deadletter_topic: &str,
    stage: &str,
    message: &BorrowedMessage<'_>,
    reason: String,
) -> Output {
    let letter = DeadLetter {
        stage: stage.into(),
        reason,
        source: SourceRecord {
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
        },
        excerpt: DeadLetter::excerpt_of(message.payload().unwrap_or_default()),
        failed_at: Utc::now(),
    };
    tracing::warn!(stage, topic = message.topic(), partition = message.partition(), offset = message.offset(), reason = %letter.reason, "record dead-lettered");
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
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    while !stop.is_cancelled() {
        match run_once().await {
            Ok(()) => return,
            Err(e) => {
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

/// Waits for a record, then gathers more for up to `linger` or until `max`; `None` once stopped.
pub async fn next_batch<'c>(
    consumer: &'c StageConsumer,
    stop: &CancellationToken,
    max: usize,
    linger: Duration,
) -> Result<Option<Vec<BorrowedMessage<'c>>>, KafkaError> {
    let first = tokio::select! {
        _ = stop.cancelled() => return Ok(None),
        m = consumer.recv() => m?,
    };
    let mut messages = vec![first];
    let deadline = tokio::time::Instant::now() + linger;
    while messages.len() < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
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
