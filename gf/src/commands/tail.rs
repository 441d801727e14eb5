//! `gf tail TOPIC`: follows a topic, decoded and filtered, without joining a consumer group.
//!
//! What a record is about (product, connection) is read where each topic keeps it: raw records
//! in their headers, events in their payload, dead letters in their source's headers or excerpt.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use gf_runtime::Config;
use gf_runtime::kafka::KafkaSettings;
use gf_runtime::topics::Topics;
use gf_schemas::raw::header;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::cli::{TailArgs, TailTopic};
use crate::output::Output;

/// A record as `gf tail` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TailRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<DateTime<Utc>>,
    pub key: Option<String>,
    pub headers: BTreeMap<String, String>,
    /// The payload as JSON when it is JSON, else as (lossily decoded) text.
    pub value: Value,
}

impl TailRecord {
    pub fn from_parts(
        topic: &str,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        headers: BTreeMap<String, String>,
        payload: &[u8],
    ) -> TailRecord {
        let value = serde_json::from_slice(payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()));
        TailRecord {
            topic: topic.to_owned(),
            partition,
            offset,
            timestamp: timestamp_ms.and_then(DateTime::from_timestamp_millis),
            key: key.map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            value,
        }
    }

    /// The product and connection the record is about, where the topic says.
    pub fn about(&self) -> (Option<Uuid>, Option<Uuid>) {
        let id = |v: Option<&str>| v.and_then(|s| Uuid::parse_str(s).ok());
        let from_headers = |h: &BTreeMap<String, String>| {
            (
                id(h.get(header::PRODUCT_ID).map(String::as_str)),
                id(h.get(header::CONNECTION_ID).map(String::as_str)),
            )
        };
        let from_value = |v: &Value| (id(v["productId"].as_str()), id(v["connectionId"].as_str()));
        let (product, connection) = from_headers(&self.headers);
        if product.is_some() {
            return (product, connection);
        }
        let (product, connection) = from_value(&self.value);
        if product.is_some() {
            return (product, connection);
        }
        // A dead letter: its source record's headers, else the failing event it quotes.
        let source_headers: BTreeMap<String, String> =
            serde_json::from_value(self.value["source"]["headers"].clone()).unwrap_or_default();
        let (product, connection) = from_headers(&source_headers);
        if product.is_some() {
            return (product, connection);
        }
        self.value["excerpt"]
            .as_str()
            .and_then(|e| serde_json::from_str::<Value>(e).ok())
            .map(|v| from_value(&v))
            .unwrap_or((None, None))
    }

    pub fn matches(&self, product: Option<Uuid>, connection: Option<Uuid>) -> bool {
        let (p, c) = self.about();
        product.is_none_or(|want| p == Some(want)) && connection.is_none_or(|want| c == Some(want))
    }

    /// One line for people: where it is, then what it says.
    pub fn text(&self) -> String {
        let at = self
            .timestamp
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| "-".into());
        let v = &self.value;
        let s = |field: &str| v[field].as_str().unwrap_or("-").to_owned();
        let summary = if self.headers.contains_key(header::CONNECTION_ID) {
            let body = match v {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            format!(
                "{} connection {} ({} bytes) {}",
                self.headers
                    .get(header::PROVIDER)
                    .map_or("-", String::as_str),
                self.headers
                    .get(header::CONNECTION_ID)
                    .map_or("-", String::as_str),
                body.len(),
                shorten(&body, 160)
            )
        } else if v.get("eventType").is_some() {
            let mut line = format!(
                "{} {} user {} value {} id {}",
                s("eventType"),
                s("influence"),
                s("externalUserId"),
                v["value"],
                s("id")
            );
            if v.get("resolution").is_some() {
                line.push_str(&format!(
                    " -> user {} org {} conversation {}",
                    s("userId"),
                    s("organizationId"),
                    s("conversationId")
                ));
            }
            line
        } else if v.get("verdict").is_some() {
            format!(
                "conversation {} ({}) {} revenue {} refunds {} events {}",
                s("conversationId"),
                s("externalConversationId"),
                s("verdict"),
                v["revenue"],
                v["refunds"],
                v["events"]["total"]
            )
        } else if v.get("reasonClass").is_some() {
            format!(
                "{} {}: {} (from {} {}@{})",
                s("stage"),
                s("reasonClass"),
                s("reason"),
                v["source"]["topic"].as_str().unwrap_or("-"),
                v["source"]["partition"],
                v["source"]["offset"]
            )
        } else {
            shorten(&v.to_string(), 200)
        };
        printable(&format!(
            "{} {}@{} {at} {summary}",
            self.topic, self.partition, self.offset
        ))
    }
}

/// Control characters escaped: a body is anyone's bytes, and an operator's terminal must not
/// take escape sequences from it.
fn printable(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

pub fn topic_name(topics: &Topics, topic: TailTopic) -> &str {
    match topic {
        TailTopic::Raw => &topics.raw,
        TailTopic::Events => &topics.events,
        TailTopic::Attributed => &topics.attributed,
        TailTopic::Conversations => &topics.conversations,
        TailTopic::Signals => &topics.signals,
        TailTopic::Deadletter => &topics.deadletter,
        TailTopic::Outcomes => &topics.outcomes,
    }
}

fn record_of(message: &BorrowedMessage<'_>) -> TailRecord {
    let headers = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned();
                    (h.key.to_owned(), value)
                })
                .collect()
        })
        .unwrap_or_default();
    TailRecord::from_parts(
        message.topic(),
        message.partition(),
        message.offset(),
        message.timestamp().to_millis(),
        message.key(),
        headers,
        message.payload().unwrap_or_default(),
    )
}

pub async fn run(args: TailArgs, config: &Config, out: &Output) -> anyhow::Result<()> {
    if args.connection.is_some()
        && matches!(
            args.topic,
            TailTopic::Signals | TailTopic::Conversations | TailTopic::Outcomes
        )
    {
        anyhow::bail!(
            "--connection does not apply: signals, conversations and outcomes belong to a product"
        );
    }
    let settings = KafkaSettings::from_config(config)?;
    let topics = Topics::new(&config.topic_prefix);
    let topic = topic_name(&topics, args.topic).to_owned();
    // Assigned, not subscribed: no group to join, nothing committed, no stage disturbed. The
    // group id is required by the client but never used.
    let consumer: StreamConsumer = settings
        .consumer_config("gf-tail", "gf-tail-unused")
        .set("enable.partition.eof", "false")
        .create()
        .context("cannot create a Kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .context("cannot read the topic's metadata")?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
        .unwrap_or_default();
    if partitions.is_empty() {
        anyhow::bail!("topic {topic} does not exist (run `gf topics ensure`)");
    }
    let start = if args.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    let mut assignment = TopicPartitionList::new();
    for p in &partitions {
        assignment.add_partition_offset(&topic, *p, start)?;
    }
    consumer.assign(&assignment)?;
    eprintln!(
        "Following {topic} ({} partitions) from its {}; Ctrl-C stops.",
        partitions.len(),
        if args.from_beginning {
            "beginning"
        } else {
            "end"
        }
    );
    let mut shown = 0u64;
    while args.limit.is_none_or(|limit| shown < limit) {
        let message = tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            m = consumer.recv() => m,
        };
        let record = match message {
            Ok(m) => record_of(&m),
            Err(e) => {
                eprintln!("warning: {e}");
                continue;
            }
        };
        if !record.matches(args.product, args.connection) {
            continue;
        }
        if !out.line(&record, || record.text())? {
            break;
        }
        shown += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(headers: &[(&str, &str)], value: Value) -> TailRecord {
        TailRecord::from_parts(
            "gf.x.v1",
            0,
            7,
            Some(1_700_000_000_000),
            Some(b"k"),
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value.to_string().as_bytes(),
        )
    }

    const P: &str = "11111111-1111-4111-8111-111111111111";
    const C: &str = "22222222-2222-4222-8222-222222222222";

    #[test]
    fn each_topic_says_what_it_is_about_where_it_keeps_it() {
        let (p, c) = (Uuid::parse_str(P).ok(), Uuid::parse_str(C).ok());
        let raw = record(
            &[(header::PRODUCT_ID, P), (header::CONNECTION_ID, C)],
            json!({"events": []}),
        );
        assert_eq!(raw.about(), (p, c));
        let event = record(
            &[],
            json!({"productId": P, "connectionId": C, "eventType": "x"}),
        );
        assert_eq!(event.about(), (p, c));
        let signal = record(
            &[],
            json!({"productId": P, "kind": "product_quality_index"}),
        );
        assert_eq!(signal.about(), (p, None));
        let from_raw = record(
            &[],
            json!({"stage": "normalizer", "reasonClass": "invalid_json", "source": {"headers": {
                header::PRODUCT_ID: P, header::CONNECTION_ID: C}}, "excerpt": "{"}),
        );
        assert_eq!(from_raw.about(), (p, c));
        let from_event = record(
            &[],
            json!({"stage": "attributor", "reasonClass": "x", "source": {"headers": {}},
                   "excerpt": json!({"productId": P, "connectionId": C}).to_string()}),
        );
        assert_eq!(from_event.about(), (p, c));
        let nothing = record(&[], json!("not an object"));
        assert_eq!(nothing.about(), (None, None));
    }

    #[test]
    fn filters_need_every_given_id_to_match() {
        let (p, c) = (Uuid::parse_str(P).ok(), Uuid::parse_str(C).ok());
        let other = Some(Uuid::new_v4());
        let event = record(&[], json!({"productId": P, "connectionId": C}));
        assert!(event.matches(None, None));
        assert!(event.matches(p, None));
        assert!(event.matches(p, c));
        assert!(!event.matches(other, None));
        assert!(!event.matches(p, other));
        let signal = record(&[], json!({"productId": P}));
        assert!(
            !signal.matches(None, c),
            "a filter on what a record lacks excludes it"
        );
    }

    #[test]
    fn payloads_that_are_not_json_are_shown_as_text() {
        let r = TailRecord::from_parts("t", 0, 0, None, None, BTreeMap::new(), b"\xffnot json");
        assert_eq!(r.value, Value::String("\u{fffd}not json".into()));
        assert!(r.text().starts_with("t 0@0 - "));
    }

    #[test]
    fn control_characters_from_a_body_never_reach_the_terminal() {
        let raw = TailRecord::from_parts(
            "t",
            0,
            0,
            None,
            None,
            [(header::CONNECTION_ID.to_owned(), "c".to_owned())].into(),
            b"\x1b]0;owned\x07\x1b[2J not json\r\n",
        );
        let event = record(&[], json!({"eventType": "\u{1b}[31mred", "id": "\u{9b}x"}));
        for line in [raw.text(), event.text()] {
            assert!(!line.chars().any(char::is_control), "{line:?}");
            assert!(line.contains("\\u{1b}"), "{line:?}");
        }
    }

    #[test]
    fn the_text_line_names_the_event_and_its_attribution() {
        let line = record(
            &[],
            json!({"eventType": "purchase", "influence": "positive", "externalUserId": "u1",
                   "value": 49.0, "id": "e1", "resolution": {}, "userId": "x",
                   "organizationId": null, "conversationId": null}),
        )
        .text();
        assert!(line.starts_with("gf.x.v1 0@7 2023-11-14T22:13:20.000Z purchase positive user u1 value 49.0 id e1 -> user x org - conversation -"), "{line}");
    }
}
