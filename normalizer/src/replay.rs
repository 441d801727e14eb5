//! `gf replay`: re-normalize a time range of the raw topic with the current mapper, without
//! touching the live consumer group (its own throw-away group, nothing committed).
//!
//! Start and end offsets come from the broker's timestamp index, but some brokers answer that
//! lookup imprecisely, so every answer is checked against the records' own timestamps and, when
//! wrong, replaced by a binary search over the partition. Records are also filtered by timestamp
//! while reading, so the range is exact even where timestamps are not monotonic.

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
    let watermarks = true_watermarks(&consumer, topic, &partitions)?;
    let mut ranges = Vec::new();
    for (&partition, &(low, high)) in &watermarks {
        let finder = OffsetFinder {
            consumer: &consumer,
            topic,
            partition,
            low,
            high,
        };
        let start = finder.first_at_or_after(from_ms)?;
        let end = match to_ms {
            Some(t) => finder.first_at_or_after(t)?,
            None => high,
        };
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

/// Low and high watermarks per partition, the high one checked against the records: some brokers
/// report the base offset of the last batch instead of the end of the log. Reads the tail of
/// every partition until it stays quiet.
fn true_watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, (i64, i64)>, ReplayError> {
    let mut marks = BTreeMap::new();
    let mut tail = TopicPartitionList::new();
    for &partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, WAIT)?;
        marks.insert(partition, (low, high));
        if high > low {
            tail.add_partition_offset(topic, partition, Offset::Offset(high - 1))?;
        }
    }
    if tail.count() == 0 {
        return Ok(marks);
    }
    consumer.assign(&tail)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_millis(1500) && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message?;
            if let Some((_, high)) = marks.get_mut(&message.partition()) {
                *high = (*high).max(message.offset() + 1);
            }
            quiet_since = Instant::now();
        }
    }
    Ok(marks)
}

/// Finds offsets by record timestamp in one partition.
struct OffsetFinder<'a> {
    consumer: &'a BaseConsumer,
    topic: &'a str,
    partition: i32,
    low: i64,
    high: i64,
}

impl OffsetFinder<'_> {
    /// The first offset whose record's timestamp is at or after `ts` (`high` when none is).
    fn first_at_or_after(&self, ts: i64) -> Result<i64, ReplayError> {
        if self.low >= self.high {
            return Ok(self.high);
        }
        let mut query = TopicPartitionList::new();
        query.add_partition_offset(self.topic, self.partition, Offset::Offset(ts))?;
        let answer = self.consumer.offsets_for_times(query, WAIT)?;
        let guess = answer
            .elements()
            .first()
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                Offset::End => Some(self.high),
                _ => None,
            })
            .unwrap_or(self.low)
            .clamp(self.low, self.high);
        if self.is_first_at_or_after(guess, ts)? {
            return Ok(guess);
        }
        tracing::debug!(
            partition = self.partition,
            guess,
            "broker's timestamp lookup was off; searching"
        );
        // Binary search for the first offset with timestamp >= ts; `high` stands for +infinity.
        let (mut lo, mut hi) = (self.low, self.high);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.timestamp_at(mid)? >= ts {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }

    fn is_first_at_or_after(&self, offset: i64, ts: i64) -> Result<bool, ReplayError> {
        let here = offset == self.high || self.timestamp_at(offset)? >= ts;
        let before = offset == self.low || self.timestamp_at(offset - 1)? < ts;
        Ok(here && before)
    }

    /// Timestamp of the record at `offset` (or the next one that exists).
    fn timestamp_at(&self, offset: i64) -> Result<i64, ReplayError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(self.topic, self.partition, Offset::Offset(offset))?;
        self.consumer.assign(&tpl)?;
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(message) = self.consumer.poll(Duration::from_millis(200)) {
                let message = message?;
                if message.partition() == self.partition && message.offset() >= offset {
                    return Ok(message.timestamp().to_millis().unwrap_or(i64::MIN));
                }
            }
        }
        Err(ReplayError::Stalled {
            partition: self.partition,
            offset,
        })
    }
}
