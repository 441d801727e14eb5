//! The consumer loop: `gf.raw.v1` in group `gf-normalizer` to `gf.events.v1`.
//!
//! Records are mapped in order; their outputs (events, or one dead letter) are produced without
//! waiting, and a record's offset is stored only once every output of it and of every record
//! before it was acknowledged. Stored offsets are committed every second and at shutdown, so a
//! crash replays at most the unacknowledged tail; duplicates are absorbed by deterministic ids.

use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::FuturesOrdered;
use futures_util::{Future, StreamExt};
use gf_runtime::Config;
use gf_runtime::kafka::KafkaSettings;
use gf_runtime::pipeline::{
    Output, OutputError, acknowledged, commit_stored, dead_letter, enqueue, headers_of, producer,
    recv, store, supervise,
};
use gf_runtime::topics::{Topics, consumer_group};
use gf_schemas::raw::RawRecordMeta;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use tokio_util::sync::CancellationToken;

use crate::mapping::{MapOptions, RawInput, map_record};

/// The stage's name, in its consumer group (`gf-normalizer`) and dead letters.
pub const STAGE: &str = "normalizer";
/// Records whose outputs may be unacknowledged at once.
const MAX_IN_FLIGHT: usize = 2_000;
const COMMIT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum NormalizerError {
    #[error(transparent)]
    Config(#[from] gf_runtime::config::ConfigError),
    #[error("Kafka error: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Output(#[from] OutputError),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub records: u64,
    pub events: u64,
    pub dropped: u64,
    pub dead_letters: u64,
}

/// Maps one raw record into its outputs: its canonical events, or one dead letter.
pub fn outputs_for(
    topics: &Topics,
    options: &MapOptions,
    message: &BorrowedMessage<'_>,
    counts: &mut Counts,
) -> Vec<Output> {
    counts.records += 1;
    let headers = headers_of(message);
    let body = message.payload().unwrap_or_default();
    let result = RawRecordMeta::from_headers(headers.iter().copied())
        .map_err(|e| e.to_string())
        .and_then(|meta| {
            let input = RawInput {
                body,
                meta: &meta,
                topic: message.topic(),
                partition: message.partition(),
                offset: message.offset(),
            };
            // One span per raw record, a child of the receiver's request span.
            let span = tracing::info_span!(
                "gf.normalizer.map",
                partition = input.partition,
                offset = input.offset,
            );
            let parent = meta.traceparent.as_deref();
            let next = gf_runtime::telemetry::continue_trace(&span, parent);
            let _entered = span.enter();
            map_record(&input, options)
                .map(|mapped| (next, mapped))
                .map_err(|e| e.to_string())
        });
    match result {
        Ok((traceparent, mapped)) => {
            counts.events += mapped.events.len() as u64;
            counts.dropped += mapped.dropped as u64;
            mapped
                .events
                .iter()
                .map(|event| Output {
                    topic: topics.events.clone(),
                    key: event.kafka_key(),
                    value: serde_json::to_vec(event).unwrap_or_default(),
                    traceparent: traceparent.clone(),
                })
                .collect()
        }
        Err(reason) => {
            counts.dead_letters += 1;
            vec![dead_letter(&topics.deadletter, STAGE, message, reason)]
        }
    }
}

/// Runs the normalizer until `stop`; restarts its consumer after a failure (resuming from the
/// committed offsets, so nothing is lost).
pub async fn run(
    config: &Config,
    options: MapOptions,
    stop: CancellationToken,
) -> Result<(), NormalizerError> {
    let settings = KafkaSettings::from_config(config)?;
    let topics = Topics::new(&config.topic_prefix);
    supervise(STAGE, &stop, || {
        run_once(&settings, &topics, &config.topic_prefix, options, &stop)
    })
    .await;
    Ok(())
}

type Pending =
    Pin<Box<dyn Future<Output = (String, i32, i64, Result<(), NormalizerError>)> + Send>>;

async fn run_once(
    settings: &KafkaSettings,
    topics: &Topics,
    prefix: &str,
    options: MapOptions,
    stop: &CancellationToken,
) -> Result<(), NormalizerError> {
    let group = consumer_group(prefix, STAGE);
    let consumer = settings.stage_consumer("gf-normalizer", &group)?;
    consumer.subscribe(&[&topics.raw])?;
    let producer = producer(settings, "gf-normalizer")?;
    let mut in_flight: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut commit = tokio::time::interval(COMMIT_EVERY);
    let mut counts = Counts::default();
    tracing::info!(topic = %topics.raw, group, "normalizer consuming");

    let result: Result<(), NormalizerError> = async {
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                Some((topic, partition, offset, acked)) = in_flight.next(), if !in_flight.is_empty() => {
                    acked?;
                    store(&consumer, &topic, partition, offset);
                }
                message = recv(&consumer), if in_flight.len() < MAX_IN_FLIGHT => {
                    let message = message?;
                    let outputs = outputs_for(topics, &options, &message, &mut counts);
                    let mut deliveries = Vec::with_capacity(outputs.len());
                    for output in &outputs {
                        deliveries.push(enqueue(&producer, output).await?);
                    }
                    let (topic, partition, offset) = (message.topic().to_owned(), message.partition(), message.offset());
                    in_flight.push_back(Box::pin(async move { (topic, partition, offset, acknowledged(deliveries).await.map_err(NormalizerError::from)) }));
                }
                _ = commit.tick() => commit_stored(&consumer, CommitMode::Async),
            }
        }
    }
    .await;

    // Whatever happened, keep what was acknowledged: drain, store and commit it.
    let drain = async {
        while let Some((topic, partition, offset, acked)) = in_flight.next().await {
            if acked.is_err() {
                break;
            }
            store(&consumer, &topic, partition, offset);
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        tracing::warn!(
            "outputs still unacknowledged at shutdown; their records will be processed again"
        );
    }
    commit_stored(&consumer, CommitMode::Sync);
    tracing::info!(
        records = counts.records,
        events = counts.events,
        dead_letters = counts.dead_letters,
        "normalizer stopped"
    );
    result
}
