//! `gf deadletters list|replay`: reading `gf.deadletter.v1` back, and re-driving dead-lettered
//! records through the current code after a fix.
//!
//! Replay copies each dead letter's source record (read back by topic, partition and offset
//! while the topic retains it) to its source topic, with its key and headers, so the stage that
//! refused it processes it again. A source no longer retained is rebuilt from the dead letter's
//! excerpt when that holds the whole record. Several dead letters of one record (one per
//! refused event) replay it once; its other events, already processed, are absorbed by their
//! deterministic ids.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gf_schemas::deadletter::{DeadLetter, SourceRecord};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use uuid::Uuid;

use crate::kafka::KafkaSettings;
use crate::pipeline::{OutputError, producer};
use crate::topics::Topics;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DeadLettersError {
    #[error("Kafka error: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("topic {0} does not exist; run `gf topics ensure`")]
    NoTopic(String),
    #[error("reading {topic} stalled at partition {partition}; is the broker up?")]
    Stalled { topic: String, partition: i32 },
}

/// Which dead letters. `since` and `newest` also bound what is read: reading starts at the
/// first record the broker's time index places at `since`, and no earlier than the `newest`
/// last records of each partition, so a listing costs what it shows, not the whole topic.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub stage: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// Read at most this many of the newest records of each partition.
    pub newest: Option<i64>,
}

impl Filter {
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        self.stage.as_deref().is_none_or(|s| s == letter.stage)
            && self.since.is_none_or(|t| letter.failed_at >= t)
    }
}

/// The dead letters that match, oldest first (by failure time), how many records of the topic
/// were not readable as dead letters, and whether older records were left unread (`newest`).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    pub letters: Vec<DeadLetter>,
    pub unreadable: u64,
    pub older_not_read: bool,
}

pub fn list(
    settings: &KafkaSettings,
    topics: &Topics,
    filter: &Filter,
) -> Result<Listing, DeadLettersError> {
    let mut listing = Listing::default();
    listing.older_not_read =
        read_all(
            settings,
            &topics.deadletter,
            filter,
            |payload| match serde_json::from_slice::<DeadLetter>(payload) {
                Ok(letter) if filter.matches(&letter) => listing.letters.push(letter),
                Ok(_) => {}
                Err(_) => listing.unreadable += 1,
            },
        )?;
    listing.letters.sort_by_key(|l| l.failed_at);
    Ok(listing)
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplaySummary {
    pub dry_run: bool,
    /// Dead letters that matched.
    pub dead_letters: u64,
    /// Distinct source records among them.
    pub records: u64,
    /// Records produced again (read back from their topic, or rebuilt from a whole excerpt).
    pub replayed: u64,
    pub rebuilt_from_excerpt: u64,
    /// Sources no longer retained whose excerpt was cut: they cannot be replayed.
    pub missing: Vec<SourceRef>,
    /// Replayed records per source topic.
    pub by_topic: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRef {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl SourceRef {
    fn of(source: &SourceRecord) -> Self {
        SourceRef {
            topic: source.topic.clone(),
            partition: source.partition,
            offset: source.offset,
        }
    }
}

/// A record to produce again.
struct Replayed {
    key: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    value: Vec<u8>,
}

pub async fn replay(
    settings: &KafkaSettings,
    topics: &Topics,
    filter: &Filter,
    dry_run: bool,
) -> Result<ReplaySummary, DeadLettersError> {
    let listing = {
        let (settings, topics, filter) = (settings.clone(), topics.clone(), filter.clone());
        tokio::task::spawn_blocking(move || list(&settings, &topics, &filter))
            .await
            .map_err(|e| DeadLettersError::NoTopic(format!("(task failed: {e})")))??
    };
    let mut summary = ReplaySummary {
        dry_run,
        dead_letters: listing.letters.len() as u64,
        ..ReplaySummary::default()
    };
    // One replay per source record, in source order.
    let mut sources: BTreeMap<SourceRef, DeadLetter> = BTreeMap::new();
    for letter in listing.letters {
        sources
            .entry(SourceRef::of(&letter.source))
            .or_insert(letter);
    }
    summary.records = sources.len() as u64;
    let wanted: BTreeSet<SourceRef> = sources.keys().cloned().collect();
    let found = {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || read_sources(&settings, &wanted))
            .await
            .map_err(|e| DeadLettersError::NoTopic(format!("(task failed: {e})")))??
    };
    let mut records = Vec::new();
    for (source, letter) in &sources {
        let record = match found.get(source) {
            Some(record) => record,
            // The whole record is in the excerpt only when the letter is of the whole record.
            None if !letter.truncated && letter.event_index.is_none() => {
                summary.rebuilt_from_excerpt += 1;
                records.push((
                    source.topic.clone(),
                    Replayed {
                        key: letter.source.key.clone().map(String::into_bytes),
                        headers: letter
                            .source
                            .headers
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                            .collect(),
                        value: letter.excerpt.clone().into_bytes(),
                    },
                ));
                continue;
            }
            None => {
                summary.missing.push(source.clone());
                continue;
            }
        };
        records.push((
            source.topic.clone(),
            Replayed {
                key: record.key.clone(),
                headers: record.headers.clone(),
                value: record.value.clone(),
            },
        ));
    }
    for (topic, _) in &records {
        *summary.by_topic.entry(topic.clone()).or_default() += 1;
    }
    summary.replayed = records.len() as u64;
    if dry_run || records.is_empty() {
        return Ok(summary);
    }
    let producer = producer(settings, "gf-deadletters-replay")?;
    let mut deliveries = Vec::with_capacity(records.len());
    for (topic, record) in &records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &record.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            });
        }
        let mut out = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(&record.value)
            .headers(headers);
        if let Some(key) = &record.key {
            out = out.key(key.as_slice());
        }
        let delivery = loop {
            match producer.send_result(out) {
                Ok(delivery) => break delivery,
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    out = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        };
        deliveries.push(delivery);
    }
    crate::pipeline::acknowledged(deliveries).await?;
    Ok(summary)
}

/// Calls `each` with the value of every record of `topic` within `filter`'s bounds, up to the
/// current end; `true` when `newest` left older records unread.
fn read_all(
    settings: &KafkaSettings,
    topic: &str,
    filter: &Filter,
    mut each: impl FnMut(&[u8]),
) -> Result<bool, DeadLettersError> {
    let consumer = reader(settings)?;
    let metadata = consumer.fetch_metadata(Some(topic), WAIT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .filter(|p: &Vec<i32>| !p.is_empty())
        .ok_or_else(|| DeadLettersError::NoTopic(topic.to_owned()))?;
    // Where `since` starts, by the broker's time index: a letter is produced after it failed, so
    // every letter that failed at or after `since` is at or after this offset.
    let mut from_time = BTreeMap::new();
    // Kafka reads negative times as "latest"/"earliest": a `since` before 1970 reads from the start.
    if let Some(since) = filter.since.filter(|t| t.timestamp_millis() > 0) {
        let mut query = TopicPartitionList::new();
        for &partition in &partitions {
            query.add_partition_offset(
                topic,
                partition,
                Offset::Offset(since.timestamp_millis()),
            )?;
        }
        for element in consumer.offsets_for_times(query, WAIT)?.elements() {
            from_time.insert(element.partition(), element.offset());
        }
    }
    let mut assignment = TopicPartitionList::new();
    let mut remaining = BTreeMap::new();
    let mut older_not_read = false;
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, WAIT)?;
        let mut start = low;
        match from_time.get(&partition) {
            Some(Offset::Offset(o)) => start = start.max(*o),
            Some(Offset::End) => start = high,
            _ => {}
        }
        if let Some(n) = filter.newest
            && high - n.max(0) > start
        {
            start = high - n.max(0);
            older_not_read = true;
        }
        if high > start {
            assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
            remaining.insert(partition, high);
        }
    }
    if remaining.is_empty() {
        return Ok(older_not_read);
    }
    consumer.assign(&assignment)?;
    let mut last = Instant::now();
    while !remaining.is_empty() {
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            if last.elapsed() > Duration::from_secs(30) {
                let partition = *remaining.keys().next().unwrap_or(&0);
                return Err(DeadLettersError::Stalled {
                    topic: topic.to_owned(),
                    partition,
                });
            }
            continue;
        };
        let message = message?;
        last = Instant::now();
        let Some(&end) = remaining.get(&message.partition()) else {
            continue;
        };
        if message.offset() < end {
            each(message.payload().unwrap_or_default());
        }
        if message.offset() + 1 >= end {
            remaining.remove(&message.partition());
        }
    }
    Ok(older_not_read)
}

/// Reads back each wanted source record that its topic still retains.
fn read_sources(
    settings: &KafkaSettings,
    wanted: &BTreeSet<SourceRef>,
) -> Result<BTreeMap<SourceRef, Replayed>, DeadLettersError> {
    let mut found = BTreeMap::new();
    if wanted.is_empty() {
        return Ok(found);
    }
    let consumer = reader(settings)?;
    for source in wanted {
        let (low, high) = consumer.fetch_watermarks(&source.topic, source.partition, WAIT)?;
        if source.offset < low || source.offset >= high {
            continue;
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(
            &source.topic,
            source.partition,
            Offset::Offset(source.offset),
        )?;
        consumer.assign(&assignment)?;
        let started = Instant::now();
        while started.elapsed() < WAIT {
            let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let message = message?;
            if message.partition() != source.partition || message.offset() < source.offset {
                continue;
            }
            if message.offset() == source.offset {
                let headers = message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                found.insert(
                    source.clone(),
                    Replayed {
                        key: message.key().map(<[u8]>::to_vec),
                        headers,
                        value: message.payload().unwrap_or_default().to_vec(),
                    },
                );
            }
            break;
        }
    }
    Ok(found)
}

fn reader(settings: &KafkaSettings) -> Result<BaseConsumer, KafkaError> {
    let group = format!("gf-deadletters-{}", Uuid::new_v4());
    settings
        .consumer_config("gf-deadletters", &group)
        .set("enable.auto.commit", "false")
        .create()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_schemas::deadletter::ReasonClass;

    fn letter(stage: &str, at: &str) -> DeadLetter {
        DeadLetter {
            stage: stage.into(),
            reason: "r".into(),
            reason_class: ReasonClass::Invalid,
            source: SourceRecord {
                topic: "gf.raw.v1".into(),
                partition: 0,
                offset: 1,
                key: None,
                headers: BTreeMap::new(),
            },
            event_index: None,
            excerpt: String::new(),
            truncated: false,
            failed_at: at.parse().unwrap(),
        }
    }

    #[test]
    fn the_filter_selects_by_stage_and_time() {
        let l = letter("attributor", "2026-05-18T12:00:00Z");
        assert!(Filter::default().matches(&l));
        let stage = |s: &str| Filter {
            stage: Some(s.into()),
            ..Filter::default()
        };
        assert!(stage("attributor").matches(&l));
        assert!(!stage("normalizer").matches(&l));
        let since = |t: &str| Filter {
            since: Some(t.parse().unwrap()),
            ..Filter::default()
        };
        assert!(since("2026-05-18T12:00:00Z").matches(&l));
        assert!(!since("2026-05-18T12:00:01Z").matches(&l));
    }
}
