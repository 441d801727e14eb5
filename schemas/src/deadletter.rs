//! `gf.deadletter.v1`: records a stage could not process, with why and where they came from.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strum::{AsRefStr, Display, EnumString};

/// Longest excerpt of the failing record (or event) kept in a dead letter.
pub const EXCERPT_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The stage that gave up (`normalizer`, `attributor`, `notifier`).
    pub stage: String,
    pub reason: String,
    pub reason_class: ReasonClass,
    pub source: SourceRecord,
    /// Which event of the source record failed, when the record is a batch whose other events
    /// went on; `None` when the whole record failed.
    #[serde(default)]
    pub event_index: Option<u32>,
    /// The failing event (or the whole record), lossily decoded as UTF-8, at most
    /// [`EXCERPT_BYTES`].
    pub excerpt: String,
    /// Whether [`DeadLetter::excerpt`] was cut short.
    #[serde(default)]
    pub truncated: bool,
    #[serde(with = "crate::time")]
    pub failed_at: DateTime<Utc>,
}

/// Why a record was dead-lettered, for operators, filters and the `gf_dead_letters_total` metric.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Display, EnumString, AsRefStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ReasonClass {
    /// Not readable as what the topic carries (bad JSON, wrong shape, bad headers).
    Invalid,
    /// Past a documented bound (an id too long, an event too large, a number out of range).
    OutOfBounds,
    /// Refers to something that does not exist (an unknown product).
    Unknown,
    /// PostgreSQL refused the record (its SQLSTATE is in the reason).
    DatabaseRefused,
    /// The broker refused the record's output (too large, invalid).
    BrokerRefused,
    /// Conflicted with concurrent writers every time it was tried.
    Conflict,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub headers: BTreeMap<String, String>,
}

impl DeadLetter {
    /// The product the failed record belongs to: from its raw headers, else from the event it
    /// quotes (a canonical event's `productId`); `None` when neither says.
    pub fn product_id(&self) -> Option<uuid::Uuid> {
        let parse = |v: Option<&str>| v.and_then(|s| uuid::Uuid::parse_str(s).ok());
        parse(
            self.source
                .headers
                .get(crate::raw::header::PRODUCT_ID)
                .map(String::as_str),
        )
        .or_else(|| {
            let quoted: serde_json::Value = serde_json::from_str(&self.excerpt).ok()?;
            parse(quoted["productId"].as_str())
        })
    }

    /// The excerpt of a value: at most [`EXCERPT_BYTES`], cut on a character boundary; and
    /// whether it was cut.
    pub fn excerpt_of(value: &[u8]) -> (String, bool) {
        let text = String::from_utf8_lossy(&value[..value.len().min(EXCERPT_BYTES)]);
        let mut end = text.len().min(EXCERPT_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let truncated = value.len() > EXCERPT_BYTES || end < text.len();
        (text[..end].to_owned(), truncated)
    }

    /// The Kafka key: where the record came from.
    pub fn kafka_key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.source.topic, self.source.partition, self.source.offset
        )
    }

    /// The record's JSON value. A dead letter cannot itself be dead-lettered, and it needs no
    /// way to fail: it holds only strings, integers, a timestamp and a map with string keys,
    /// which serde_json always encodes (the test below holds it to that).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a dead letter always encodes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever a sender put in the record, its dead letter encodes and reads back.
        #[test]
        fn every_dead_letter_encodes(
            text in ".*",
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
            header in ".*",
            offset in proptest::num::i64::ANY,
        ) {
            let (excerpt, truncated) = DeadLetter::excerpt_of(&bytes);
            let letter = DeadLetter {
                stage: "normalizer".into(),
                reason: text.clone(),
                reason_class: ReasonClass::Invalid,
                source: SourceRecord {
                    topic: text.clone(),
                    partition: 0,
                    offset,
                    key: Some(text.clone()),
                    headers: [(header.clone(), text.clone())].into_iter().collect(),
                },
                event_index: Some(1),
                excerpt,
                truncated,
                failed_at: chrono::Utc::now(),
            };
            let back: DeadLetter = serde_json::from_slice(&letter.encode()).unwrap();
            proptest::prop_assert_eq!(back.reason, text);
            proptest::prop_assert_eq!(back.source.offset, offset);
        }
    }

    #[test]
    fn excerpt_is_bounded_and_valid_utf8() {
        let long = "é".repeat(EXCERPT_BYTES);
        let (excerpt, truncated) = DeadLetter::excerpt_of(long.as_bytes());
        assert!(excerpt.len() <= EXCERPT_BYTES);
        assert!(truncated);
        assert!(excerpt.chars().all(|c| c == 'é' || c == '\u{fffd}'));
        assert_eq!(
            DeadLetter::excerpt_of(b"{\"a\":"),
            ("{\"a\":".to_owned(), false)
        );
    }

    #[test]
    fn reason_classes_have_stable_names() {
        assert_eq!(ReasonClass::DatabaseRefused.as_ref(), "database_refused");
        assert_eq!(
            serde_json::to_string(&ReasonClass::OutOfBounds).unwrap(),
            "\"out_of_bounds\""
        );
        assert_eq!(
            "broker_refused".parse::<ReasonClass>().unwrap(),
            ReasonClass::BrokerRefused
        );
    }
}
