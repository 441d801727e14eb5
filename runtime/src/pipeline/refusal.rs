//! Why a record was refused, and the dead letter that says so.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use gf_schemas::deadletter::{DeadLetter, SourceRecord};
use rdkafka::message::{BorrowedMessage, Headers, Message};

use super::Output;
use crate::classify::ReasonClass;

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
        value: letter.encode(),
        traceparent: None,
    }
}
