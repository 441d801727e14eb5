//! `gf.deadletter.v1`: records a stage could not process, with where they came from.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Longest excerpt of the failing record kept in a dead letter.
pub const EXCERPT_BYTES: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The stage that gave up (`normalizer`, `attributor`, `notifier`).
    pub stage: String,
    pub reason: String,
    pub source: SourceRecord,
    /// The start of the record's value, lossily decoded as UTF-8.
    pub excerpt: String,
    #[serde(with = "crate::time")]
    pub failed_at: DateTime<Utc>,
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
    /// The excerpt of a record value: at most [`EXCERPT_BYTES`], cut on a character boundary.
    pub fn excerpt_of(value: &[u8]) -> String {
        let text = String::from_utf8_lossy(&value[..value.len().min(EXCERPT_BYTES)]);
        let mut end = text.len().min(EXCERPT_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_owned()
    }

    /// The Kafka key: where the record came from.
    pub fn kafka_key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.source.topic, self.source.partition, self.source.offset
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_is_bounded_and_valid_utf8() {
        let long = "é".repeat(2000);
        let excerpt = DeadLetter::excerpt_of(long.as_bytes());
        assert!(excerpt.len() <= EXCERPT_BYTES);
        assert!(excerpt.chars().all(|c| c == 'é' || c == '\u{fffd}'));
        assert_eq!(DeadLetter::excerpt_of(b"{\"a\":"), "{\"a\":");
    }
}
