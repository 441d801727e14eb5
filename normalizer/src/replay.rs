//! `gf replay`: re-normalize a time range of the raw topic with the current mapper, without
//! touching the live consumer group (its own throw-away group, nothing committed).
//!
//! Start and end offsets come from the broker's timestamp index (`offsets_for_times`: the first
//! offset whose record's timestamp is at or after the time). Records are also filtered by
//! timestamp while reading, so clocks of several receivers that disagree a little cannot bring
//! a record from before `--from` in.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gf_runtime::Config;
use gf_runtime::kafka::KafkaSettings;
use gf_runtime::topics::Topics;
use gf_schemas::raw::header;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use uuid::Uuid;

use gf_runtime::pipeline::{OutputError, acknowledged, enqueue, producer};

use crate::consumer::{Counts, outputs_for};
use crate::mapping::MapOptions;

const WAIT: Duration = Duration::from_secs(10);
/// Deliveries awaited together while replaying.
const ACK_BATCH: usize = 5_000;

#[derive(Clone, Debug)]
pub struct ReplayRequest {
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
    pub connection: Option<Uuid>,
    pub dry_run: bool,
    pub mapper: MapOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Config(#[from] gf_runtime::config::ConfigError),
    #[error("Kafka error: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Produce(#[from] OutputError),
    #[error("the replay task failed: {0}")]
    Task(String),
    #[error("--to ({to}) must be after --from ({from})")]
    EmptyRange { from: String, to: String },
    #[error("the raw topic {0} does not exist (run `gf topics ensure`)")]
    NoTopic(String),
    #[error("partition {partition} stopped answering at offset {offset}")]
    Stalled { partition: i32, offset: i64 },
}

/// Reports progress, e.g. to a terminal progress bar.
pub trait Progress: Send + Sync {
    fn start(&self, total_records: u64);
    fn advance(&self, records: u64);
    fn finish(&self);
}

/// No progress reporting.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionRange {
    pub partition: i32,
    pub start_offset: i64,
    pub end_offset: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionCounts {
    pub records: u64,
    pub events: u64,
    pub dead_letters: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplaySummary {
    pub dry_run: bool,
    pub mapper_version: u32,
    pub partitions: Vec<PartitionRange>,
    pub records: u64,
    pub events: u64,
    pub dropped: u64,
    pub dead_letters: u64,
    /// Records in the offset range but outside the time range or of other connections.
    pub skipped: u64,
    pub connections: BTreeMap<String, ConnectionCounts>,
}

pub async fn replay(
    config: &Config,
    request: ReplayRequest,
    progress: Arc<dyn Progress>,
) -> Result<ReplaySummary, ReplayError> {
    if let Some(to) = request.to.filter(|to| *to <= request.from) {
        return Err(ReplayError::EmptyRange {
            from: request.from.to_rfc3339(),
            to: to.to_rfc3339(),
        });
    }
    let settings = KafkaSettings::from_config(config)?;
    let topics = Topics::new(&config.topic_prefix);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        replay_blocking(&settings, &topics, &request, progress.as_ref(), &runtime)
    })
    .await
    .map_err(|e| ReplayError::Task(e.to_string()))?
}

fn replay_blocking(
    settings: &KafkaSettings,
    topics: &Topics,
    request: &ReplayRequest,
    progress: &dyn Progress,
    runtime: &tokio::runtime::Handle,
) -> Result<ReplaySummary, ReplayError> {
    let group = format!("gf-replay-{}", Uuid::new_v4());
    let consumer: BaseConsumer = settings.consumer_config("gf-replay", &group).create()?;
    let topic = topics.raw.as_str();
    let metadata = consumer.fetch_metadata(Some(topic), WAIT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .filter(|p: &Vec<i32>| !p.is_empty())
        .ok_or_else(|| ReplayError::NoTopic(topic.to_owned()))?;

    let from_ms = request.from.timestamp_millis();
    let to_ms = request.to.map(|t| t.timestamp_millis());
    let starts = offsets_at(&consumer, topic, &partitions, from_ms)?;
    let ends = match to_ms {
        Some(t) => Some(offsets_at(&consumer, topic, &partitions, t)?),
        None => None,
    };
    let mut ranges = Vec::new();
    for &partition in &partitions {
        let (_, high) = consumer.fetch_watermarks(topic, partition, WAIT)?;
        // No record at or after the time: the range starts (or ends) at the log's end.
        let start = starts.get(&partition).copied().flatten().unwrap_or(high);
        let end = ends
            .as_ref()
            .and_then(|e| e.get(&partition).copied().flatten())
            .unwrap_or(high);
        ranges.push(PartitionRange {
            partition,
            start_offset: start,
            end_offset: end.max(start),
        });
    }
    let total: i64 = ranges.iter().map(|r| r.end_offset - r.start_offset).sum();
    progress.start(total as u64);

    let mut summary = ReplaySummary {
        dry_run: request.dry_run,
        mapper_version: request.mapper.mapper_version,
        partitions: ranges.clone(),
        ..ReplaySummary::default()
    };
    let producer = if request.dry_run {
        None
    } else {
        Some(producer(settings, "gf-replay")?)
    };
    let mut assignment = TopicPartitionList::new();
    let mut remaining: BTreeMap<i32, i64> = BTreeMap::new();
    for r in ranges.iter().filter(|r| r.end_offset > r.start_offset) {
        assignment.add_partition_offset(topic, r.partition, Offset::Offset(r.start_offset))?;
        remaining.insert(r.partition, r.end_offset);
    }
    consumer.assign(&assignment)?;

    let mut counts = Counts::default();
    let mut deliveries = Vec::new();
    let mut last_message = Instant::now();
    while !remaining.is_empty() {
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            if last_message.elapsed() > Duration::from_secs(30) {
                let (&partition, &offset) = remaining.iter().next().expect("not empty");
                return Err(ReplayError::Stalled { partition, offset });
            }
            continue;
        };
        let message = message?;
        last_message = Instant::now();
        let partition = message.partition();
        let Some(&end) = remaining.get(&partition) else {
            continue;
        };
        if message.offset() >= end {
            remaining.remove(&partition);
            continue;
        }
        progress.advance(1);
        if message.offset() + 1 >= end {
            remaining.remove(&partition);
        }
        let ts = message.timestamp().to_millis().unwrap_or(i64::MIN);
        let connection = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == header::CONNECTION_ID))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let in_time = ts >= from_ms && to_ms.is_none_or(|t| ts < t);
        let wanted = request
            .connection
            .is_none_or(|c| c.to_string() == connection);
        if !in_time || !wanted {
            summary.skipped += 1;
            continue;
        }
        let before = counts;
        let outputs = outputs_for(topics, &request.mapper, &message, &mut counts);
        let per = summary.connections.entry(connection).or_default();
        per.records += 1;
        per.events += counts.events - before.events;
        per.dead_letters += counts.dead_letters - before.dead_letters;
        if let Some(producer) = &producer {
            for output in &outputs {
                deliveries.push(runtime.block_on(enqueue(producer, &output.output))?);
            }
            if deliveries.len() >= ACK_BATCH {
                runtime.block_on(acknowledged(std::mem::take(&mut deliveries)))?;
            }
        }
    }
    runtime.block_on(acknowledged(deliveries))?;
    progress.finish();
    summary.records = counts.records;
    summary.events = counts.events;
    summary.dropped = counts.dropped;
    summary.dead_letters = counts.dead_letters;
    Ok(summary)
}

/// Per partition, the first offset whose record's timestamp is at or after `ts` (`None` when no
/// record is), from the broker's time index.
fn offsets_at(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    ts: i64,
) -> Result<BTreeMap<i32, Option<i64>>, ReplayError> {
    let mut query = TopicPartitionList::new();
    for &partition in partitions {
        query.add_partition_offset(topic, partition, Offset::Offset(ts))?;
    }
    let answer = consumer.offsets_for_times(query, WAIT)?;
    Ok(answer
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => (e.partition(), Some(o)),
            _ => (e.partition(), None),
        })
        .collect())
}
