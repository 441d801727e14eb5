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
use gf_runtime::classify::{Class, ReasonClass};
use gf_runtime::kafka::KafkaSettings;
use gf_runtime::pipeline::{
    OffsetGate, Output, OutputError, Refusal, acknowledged_or_refused, commit_stored, dead_letter,
    dead_letter_from, enqueue, headers_of, produce_all, recv, source_of, store,
};
use gf_runtime::producer::{SharedProducer, supervise_leasing};
use gf_runtime::topics::{Topics, consumer_group};
use gf_schemas::deadletter::{EXCERPT_BYTES, SourceRecord};
use gf_schemas::raw::RawRecordMeta;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;
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

/// One output of a raw record: a canonical event, or a dead letter.
pub struct RecordOutput {
    pub output: Output,
    /// For an event: its index in the record, to dead-letter it alone if the broker refuses it.
    pub event_index: Option<usize>,
}

/// Maps one raw record into its outputs: its canonical events and a dead letter for each event
/// that cannot be mapped (or is larger than `GF_MAX_EVENT_BYTES` encoded), or one dead letter
/// for the whole record when its envelope cannot be read.
pub fn outputs_for(
    topics: &Topics,
    options: &MapOptions,
    message: &BorrowedMessage<'_>,
    counts: &mut Counts,
) -> Vec<RecordOutput> {
    counts.records += 1;
    let headers = headers_of(message);
    let body = message.payload().unwrap_or_default();
    let letter = |refusal: Refusal| RecordOutput {
        output: dead_letter(&topics.deadletter, STAGE, message, refusal),
        event_index: None,
    };
    let meta = match RawRecordMeta::from_headers(headers.iter().copied()) {
        Ok(meta) => meta,
        Err(e) => {
            counts.dead_letters += 1;
            return vec![letter(Refusal::new(ReasonClass::Invalid, e.to_string()))];
        }
    };
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
    let traceparent = gf_runtime::telemetry::continue_trace(&span, meta.traceparent.as_deref());
    let _entered = span.enter();
    let mapped = match map_record(&input, options) {
        Ok(mapped) => mapped,
        Err(e) => {
            counts.dead_letters += 1;
            return vec![letter(Refusal::new(ReasonClass::Invalid, e.to_string()))];
        }
    };
    counts.dropped += mapped.dropped as u64;
    let mut outputs = Vec::with_capacity(mapped.events.len() + mapped.refused.len());
    for event in &mapped.events {
        let index = event.origin.index as usize;
        let value = match serde_json::to_vec(event) {
            Ok(value) => value,
            Err(e) => {
                counts.dead_letters += 1;
                outputs.push(letter(
                    Refusal::new(
                        ReasonClass::Invalid,
                        format!("event {index} cannot be encoded: {e}"),
                    )
                    .of_event(index, Vec::new()),
                ));
                continue;
            }
        };
        if value.len() > options.max_event_bytes {
            counts.dead_letters += 1;
            outputs.push(letter(
                Refusal::new(
                    ReasonClass::OutOfBounds,
                    format!(
                        "event {index} is {} bytes encoded; at most {} (GF_MAX_EVENT_BYTES)",
                        value.len(),
                        options.max_event_bytes
                    ),
                )
                .of_event(index, value),
            ));
            continue;
        }
        counts.events += 1;
        outputs.push(RecordOutput {
            output: Output {
                topic: topics.events.clone(),
                key: event.kafka_key(),
                value,
                traceparent: traceparent.clone(),
            },
            event_index: Some(index),
        });
    }
    for refused in mapped.refused {
        counts.dead_letters += 1;
        outputs.push(letter(
            Refusal::new(refused.class, refused.reason).of_event(refused.index, refused.event),
        ));
    }
    outputs
}

/// Runs the normalizer until `stop`; restarts its consumer after a failure (resuming from the
/// committed offsets, so nothing is lost).
pub async fn run(
    config: &Config,
    options: MapOptions,
    stop: CancellationToken,
) -> Result<(), NormalizerError> {
    let settings = KafkaSettings::from_config(config)?;
    let producer = SharedProducer::for_stages(&settings, "gf-normalizer")?;
    run_with_producer(config, options, &producer, stop).await
}

/// [`run`], producing through the process's shared producer (`gf run all`).
pub async fn run_with_producer(
    config: &Config,
    options: MapOptions,
    producer: &SharedProducer,
    stop: CancellationToken,
) -> Result<(), NormalizerError> {
    let settings = KafkaSettings::from_config(config)?;
    let topics = Topics::new(&config.topic_prefix);
    let options = MapOptions {
        max_event_bytes: config.max_event_bytes,
        ..options
    };
    supervise_leasing(STAGE, &stop, producer, |producer| {
        run_once(
            &settings,
            producer,
            &topics,
            &config.topic_prefix,
            options,
            &stop,
        )
    })
    .await;
    Ok(())
}

type Pending =
    Pin<Box<dyn Future<Output = (String, i32, i64, Result<(), NormalizerError>)> + Send>>;

/// Enqueues a record's outputs; the returned future resolves once all are acknowledged. An
/// event the broker refuses on its own (too large for it, invalid) is dead-lettered instead, so
/// it costs only itself; an outage fails the run, which restarts from the committed offsets.
async fn send(
    producer: &FutureProducer,
    deadletter: &str,
    message: &BorrowedMessage<'_>,
    outputs: Vec<RecordOutput>,
) -> Result<Pending, NormalizerError> {
    let source = source_of(message);
    let payload_excerpt = message.payload().unwrap_or_default();
    let payload_excerpt = payload_excerpt[..payload_excerpt.len().min(EXCERPT_BYTES)].to_vec();
    let mut deliveries = Vec::with_capacity(outputs.len());
    // What a refused event is dead-lettered with: its index and the start of its encoding.
    let mut refusable = Vec::with_capacity(outputs.len());
    let mut letters = Vec::new();
    for out in &outputs {
        match enqueue(producer, &out.output).await {
            Ok(delivery) => {
                deliveries.push(delivery);
                refusable.push(out.event_index.map(|i| (i, excerpt(&out.output.value))));
            }
            Err(e) if e.class() == Class::Refused => {
                letters.push(refused_output(
                    deadletter,
                    &source,
                    &payload_excerpt,
                    out,
                    &e,
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    for letter in &letters {
        deliveries.push(enqueue(producer, letter).await?);
        refusable.push(None);
    }
    let producer = producer.clone();
    let deadletter = deadletter.to_owned();
    let (topic, partition, offset) = (
        message.topic().to_owned(),
        message.partition(),
        message.offset(),
    );
    Ok(Box::pin(async move {
        let result = async {
            let refused = acknowledged_or_refused(deliveries).await?;
            let mut letters = Vec::new();
            for (i, error) in refused {
                let Some(Some((index, value))) = refusable.get(i).cloned() else {
                    // A dead letter itself refused: nothing smaller is left to send.
                    return Err(OutputError::Rejected(error).into());
                };
                let refusal = Refusal::new(
                    ReasonClass::BrokerRefused,
                    format!("the broker refused event {index}: {error}"),
                )
                .of_event(index, value);
                letters.push(dead_letter_from(
                    &deadletter,
                    STAGE,
                    source.clone(),
                    &payload_excerpt,
                    refusal,
                ));
            }
            produce_all(&producer, &letters).await?;
            Ok(())
        }
        .await;
        (topic, partition, offset, result)
    }))
}

/// The start of an output's value, as much as a dead letter keeps.
fn excerpt(value: &[u8]) -> Vec<u8> {
    value[..value.len().min(EXCERPT_BYTES)].to_vec()
}

fn refused_output(
    deadletter: &str,
    source: &SourceRecord,
    payload: &[u8],
    out: &RecordOutput,
    error: &OutputError,
) -> Output {
    let mut refusal = Refusal::new(
        ReasonClass::BrokerRefused,
        format!("the broker refused an output: {error}"),
    );
    if let Some(index) = out.event_index {
        refusal = refusal.of_event(index, excerpt(&out.output.value));
    }
    dead_letter_from(deadletter, STAGE, source.clone(), payload, refusal)
}

async fn run_once(
    settings: &KafkaSettings,
    producer: FutureProducer,
    topics: &Topics,
    prefix: &str,
    options: MapOptions,
    stop: &CancellationToken,
) -> Result<(), NormalizerError> {
    let group = consumer_group(prefix, STAGE);
    let consumer = settings.stage_consumer("gf-normalizer", &group)?;
    consumer.subscribe(&[&topics.raw])?;
    let mut in_flight: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut commit = tokio::time::interval(COMMIT_EVERY);
    let mut counts = Counts::default();
    let mut gate = OffsetGate::default();
    tracing::info!(topic = %topics.raw, group, "normalizer consuming");

    let result: Result<(), NormalizerError> = async {
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                Some((topic, partition, offset, acked)) = in_flight.next(), if !in_flight.is_empty() => {
                    if gate.settle(&topic, partition, acked.is_ok()) {
                        store(&consumer, &topic, partition, offset);
                    }
                    acked?;
                }
                message = recv(&consumer), if in_flight.len() < MAX_IN_FLIGHT => {
                    let message = message?;
                    let outputs = outputs_for(topics, &options, &message, &mut counts);
                    let pending = send(&producer, &topics.deadletter, &message, outputs).await?;
                    in_flight.push_back(pending);
                }
                _ = commit.tick() => commit_stored(&consumer, CommitMode::Async),
            }
        }
    }
    .await;

    // Whatever happened, keep what was acknowledged: drain, store and commit it, never past a
    // record whose outputs failed.
    let drain = async {
        while let Some((topic, partition, offset, acked)) = in_flight.next().await {
            if gate.settle(&topic, partition, acked.is_ok()) {
                store(&consumer, &topic, partition, offset);
            }
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
