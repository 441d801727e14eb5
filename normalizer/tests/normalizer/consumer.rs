//! The normalizer's consumer loop and replay against the real broker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use gf_normalizer::consumer::{self, STAGE};
use gf_normalizer::mapping::MapOptions;
use gf_normalizer::replay::{ReplayRequest, Silent, replay};
use gf_runtime::kafka::{KafkaSettings, ensure_topics};
use gf_runtime::topics::Topics;
use gf_runtime::topics::consumer_group;
use gf_schemas::Provider;
use gf_schemas::canonical::CanonicalEvent;
use gf_schemas::deadletter::{DeadLetter, ReasonClass};
use gf_schemas::raw::RawRecordMeta;
use gf_tests::test_config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Setup {
    config: gf_runtime::Config,
    topics: Topics,
    producer: FutureProducer,
    product: Uuid,
}

async fn setup(partitions: i32) -> Setup {
    setup_with(partitions, &[]).await
}

async fn setup_with(partitions: i32, vars: &[(&str, &str)]) -> Setup {
    let _ = gf_runtime::telemetry::init("test", "warn");
    let config = test_config(vars);
    let settings = KafkaSettings::from_config(&config).unwrap();
    let topics = Topics::new(&config.topic_prefix);
    ensure_topics(
        &settings,
        &topics.specs(&gf_runtime::topics::TopicLayout::local(
            partitions,
            settings.max_record_bytes,
        )),
    )
    .await
    .unwrap();
    let producer = settings
        .producer_config("test-raw-producer")
        .create()
        .unwrap();
    Setup {
        config,
        topics,
        producer,
        product: Uuid::new_v4(),
    }
}

impl Setup {
    /// Appends a raw record the way the receiver does, with an explicit timestamp.
    async fn raw(&self, connection: Uuid, provider: Provider, body: &str, at_ms: i64) {
        let meta = RawRecordMeta {
            connection_id: connection,
            product_id: self.product,
            provider,
            received_at_ms: at_ms,
            request_id: Uuid::new_v4().to_string(),
            content_type: Some("application/json".into()),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        self.raw_with_headers(connection, body, at_ms, meta.to_headers())
            .await;
    }

    async fn raw_with_headers(
        &self,
        connection: Uuid,
        body: &str,
        at_ms: i64,
        headers: Vec<(&str, String)>,
    ) {
        let headers = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            })
        });
        let key = connection.to_string();
        let record = FutureRecord::to(&self.topics.raw)
            .key(&key)
            .payload(body)
            .headers(headers)
            .timestamp(at_ms);
        self.producer
            .send(record, Timeout::After(Duration::from_secs(10)))
            .await
            .expect("produce raw");
    }

    /// Raw records `r{n}` of four Amplitude events each; their event ids go into `expected`.
    async fn batches(
        &self,
        connection: Uuid,
        records: std::ops::Range<u32>,
        now: i64,
        expected: &mut BTreeSet<Uuid>,
    ) {
        for r in records {
            let prefix = format!("r{r}");
            self.raw(
                connection,
                Provider::Amplitude,
                &amplitude_batch(&prefix, 4, now),
                now,
            )
            .await;
            expected
                .extend((0..4).map(|i| id_of(self.product, &format!("amplitude:{prefix}-{i}"))));
        }
    }

    fn start(&self, version: u32) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let stop = CancellationToken::new();
        let config = self.config.clone();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            consumer::run(
                &config,
                MapOptions {
                    mapper_version: version,
                    ..MapOptions::default()
                },
                token,
            )
            .await
            .unwrap();
        });
        (stop, task)
    }

    /// Everything in `topic`, as (key, value) pairs.
    fn read_all(&self, topic: &str) -> Vec<(String, Vec<u8>)> {
        gf_tests::read_topic(self.config.kafka_brokers().unwrap(), topic)
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect()
    }

    fn events(&self) -> Vec<CanonicalEvent> {
        self.read_all(&self.topics.events)
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).expect("a canonical event"))
            .collect()
    }

    /// The dead letters, once there are `n` (or after 20 s).
    async fn wait_for_letters(&self, n: usize) -> Vec<DeadLetter> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let letters: Vec<DeadLetter> = self
                .read_all(&self.topics.deadletter)
                .into_iter()
                .map(|(_, v)| serde_json::from_slice(&v).unwrap())
                .collect();
            if letters.len() >= n || Instant::now() > deadline {
                return letters;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn wait_for_events(&self, ids: &BTreeSet<Uuid>, within: Duration) -> Vec<CanonicalEvent> {
        let deadline = Instant::now() + within;
        loop {
            let events = self.events();
            let seen: BTreeSet<Uuid> = events.iter().map(|e| e.id).collect();
            if ids.is_subset(&seen) || Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

fn amplitude_batch(prefix: &str, n: usize, time: i64) -> String {
    let events: Vec<_> = (0..n)
        .map(|i| json!({"event_type": "purchase", "user_id": format!("u{i}"), "insert_id": format!("{prefix}-{i}"), "time": time, "revenue": 5}))
        .collect();
    json!({ "events": events }).to_string()
}

fn id_of(product: Uuid, insert_id: &str) -> Uuid {
    CanonicalEvent::derive_id(product, insert_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_records_become_events_and_unreadable_ones_dead_letters() {
    let s = setup(2).await;
    let connection = Uuid::new_v4();
    let now = Utc::now().timestamp_millis();
    s.raw(
        connection,
        Provider::Amplitude,
        &amplitude_batch("a", 3, now),
        now,
    )
    .await;
    s.raw(connection, Provider::Segment, r#"{"batch":[{"type":"track","event":"Signed Up","userId":"u9","messageId":"s1"},{"type":"identify"}]}"#, now).await;
    s.raw(connection, Provider::Segment, "{not json", now).await;
    s.raw_with_headers(
        connection,
        r#"{"events":[]}"#,
        now,
        vec![("gf-provider", "amplitude".into())],
    )
    .await;

    let (stop, task) = s.start(1);
    let expected: BTreeSet<Uuid> = [
        "amplitude:a-0",
        "amplitude:a-1",
        "amplitude:a-2",
        "segment:s1",
    ]
    .iter()
    .map(|i| id_of(s.product, i))
    .collect();
    let events = s.wait_for_events(&expected, Duration::from_secs(30)).await;
    let ids: BTreeSet<Uuid> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, expected);
    let signed_up = events.iter().find(|e| e.insert_id == "segment:s1").unwrap();
    assert_eq!(signed_up.external_user_id.as_deref(), Some("u9"));
    assert_eq!(signed_up.origin.topic, s.topics.raw);
    // Keys are product id + external user id.
    let keys: BTreeSet<String> = s
        .read_all(&s.topics.events)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(keys.contains(&format!("{}:u9", s.product)), "{keys:?}");

    let letters = s.wait_for_letters(2).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("not valid JSON")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("gf-connection-id")),
        "{reasons:?}"
    );
    assert!(
        letters
            .iter()
            .all(|l| l.stage == "normalizer" && l.source.topic == s.topics.raw)
    );
    assert!(letters.iter().any(|l| l.excerpt == "{not json"));

    stop.cancel();
    task.await.unwrap();
    // Everything processed was committed at shutdown.
    let committed = committed_total(&s);
    assert_eq!(committed, 4, "committed offsets");
}

fn committed_total(s: &Setup) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", s.config.kafka_brokers().unwrap())
        .set("group.id", consumer_group(&s.config.topic_prefix, STAGE))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition(&s.topics.raw, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normalizer_stopped_mid_stream_loses_nothing() {
    let s = setup(2).await;
    let connection = Uuid::new_v4();
    let now = Utc::now().timestamp_millis();
    let mut expected = BTreeSet::new();
    s.batches(connection, 0..150, now, &mut expected).await;
    let (_, first) = s.start(1);
    // Let it get part of the way, then kill it without a graceful shutdown.
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.events().len() < 40 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.abort();
    let _ = first.await;
    s.batches(connection, 150..200, now, &mut expected).await;
    let (stop, second) = s.start(1);
    let events = s.wait_for_events(&expected, Duration::from_secs(60)).await;
    stop.cancel();
    second.await.unwrap();
    let seen: BTreeSet<Uuid> = events.iter().map(|e| e.id).collect();
    let missing = expected.difference(&seen).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} events missing after the restart",
        expected.len()
    );
    assert!(
        events.len() >= expected.len(),
        "duplicates are allowed, losses are not"
    );
    // Duplicates carry the same ids.
    let mut by_id: BTreeMap<Uuid, usize> = BTreeMap::new();
    for e in &events {
        *by_id.entry(e.id).or_default() += 1;
    }
    assert_eq!(by_id.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_with_a_newer_mapper_corrects_a_time_range() {
    let s = setup(2).await;
    let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
    let base = Utc::now().timestamp_millis() - 3_600_000;
    // Before, inside and after the range, for two connections.
    for (i, offset_ms) in [0, 1_000, 2_000].into_iter().enumerate() {
        s.raw(
            one,
            Provider::Amplitude,
            &amplitude_batch(&format!("before{i}"), 1, base),
            base + offset_ms,
        )
        .await;
    }
    for i in 0..4 {
        let at = base + 60_000 + i * 1_000;
        s.raw(
            one,
            Provider::Amplitude,
            &amplitude_batch(&format!("in{i}"), 2, at),
            at,
        )
        .await;
        s.raw(
            two,
            Provider::Amplitude,
            &amplitude_batch(&format!("two{i}"), 1, at),
            at,
        )
        .await;
    }
    s.raw(one, Provider::Segment, "{broken", base + 61_500)
        .await;
    s.raw(
        one,
        Provider::Amplitude,
        &amplitude_batch("after", 1, base),
        base + 120_000,
    )
    .await;

    let from = Utc.timestamp_millis_opt(base + 60_000).unwrap();
    let to = Utc.timestamp_millis_opt(base + 120_000).unwrap();
    let request = |dry_run, connection| ReplayRequest {
        from,
        to: Some(to),
        connection,
        dry_run,
        mapper: MapOptions {
            mapper_version: gf_normalizer::mapping::MAPPER_VERSION + 1,
            ..MapOptions::default()
        },
    };

    let dry = replay(&s.config, request(true, None), Arc::new(Silent))
        .await
        .unwrap();
    assert_eq!(
        (dry.records, dry.events, dry.dead_letters),
        (9, 12, 1),
        "{dry:?}"
    );
    assert_eq!(dry.skipped, 0, "the offset range is exact: {dry:?}");
    assert_eq!(dry.connections[&one.to_string()].records, 5);
    assert_eq!(dry.connections[&two.to_string()].events, 4);
    assert!(s.events().is_empty(), "a dry run produces nothing");

    let summary = replay(&s.config, request(false, Some(one)), Arc::new(Silent))
        .await
        .unwrap();
    assert_eq!(
        (summary.records, summary.events, summary.dead_letters),
        (5, 8, 1),
        "{summary:?}"
    );
    assert_eq!(
        summary.skipped, 4,
        "the other connection's records are skipped"
    );
    let events = s.events();
    let replayed: BTreeSet<&str> = events.iter().map(|e| e.insert_id.as_str()).collect();
    let expected: BTreeSet<String> = (0..4)
        .flat_map(|i| (0..2).map(move |j| format!("amplitude:in{i}-{j}")))
        .collect();
    assert_eq!(replayed, expected.iter().map(String::as_str).collect());
    assert!(
        events
            .iter()
            .all(|e| e.mapper_version == gf_normalizer::mapping::MAPPER_VERSION + 1)
    );

    // The live group was not touched.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", s.config.kafka_brokers().unwrap())
        .set("group.id", consumer_group(&s.config.topic_prefix, STAGE))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&s.topics.raw, 0);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    assert!(
        committed
            .elements()
            .iter()
            .all(|e| !matches!(e.offset(), Offset::Offset(_)))
    );
}

/// One event that cannot be read or is past a bound costs only itself: its siblings in the same
/// request are mapped, and it is dead-lettered alone, with its index and its own bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_event_costs_only_itself() {
    let s = setup_with(2, &[("GF_MAX_EVENT_BYTES", "4096")]).await;
    let connection = Uuid::new_v4();
    let now = Utc::now().timestamp_millis();
    let event = |id: &str, extra: &str| {
        format!(
            r#"{{"event_type":"purchase","user_id":"u1","insert_id":"{id}","time":{now}{extra}}}"#
        )
    };
    let body = format!(
        r#"{{"events":[{},{},{},{},{}]}}"#,
        event("ok-0", ""),
        event("out-of-range", r#","event_properties":{"n":1e400}"#),
        event(
            "long-user",
            &format!(r#","device_id":"d","user_id":"{}""#, "u".repeat(2000))
        )
        .replacen(r#""user_id":"u1","#, "", 1),
        event(
            "too-big",
            &format!(r#","event_properties":{{"blob":"{}"}}"#, "b".repeat(5000))
        ),
        event("ok-1", ""),
    );
    s.raw(connection, Provider::Amplitude, &body, now).await;
    s.raw(
        connection,
        Provider::Amplitude,
        &amplitude_batch("next", 2, now),
        now,
    )
    .await;

    let (stop, task) = s.start(1);
    let expected: BTreeSet<Uuid> = [
        "amplitude:ok-0",
        "amplitude:ok-1",
        "amplitude:next-0",
        "amplitude:next-1",
    ]
    .iter()
    .map(|i| id_of(s.product, i))
    .collect();
    let events = s.wait_for_events(&expected, Duration::from_secs(30)).await;
    let ids: BTreeSet<Uuid> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, expected);

    let mut letters = s.wait_for_letters(3).await;
    letters.sort_by_key(|l| l.event_index);
    assert_eq!(letters.len(), 3, "{letters:#?}");
    let validator = gf_tests::schema_validator("deadletter.v1.schema.json");
    for (letter, (index, id, reason)) in letters.iter().zip([
        (1, "out-of-range", "number out of range"),
        (2, "long-user", "externalUserId is 2000 bytes long"),
        (3, "too-big", "GF_MAX_EVENT_BYTES"),
    ]) {
        assert!(
            validator
                .validate(&serde_json::to_value(letter).unwrap())
                .is_ok()
        );
        assert_eq!(letter.stage, "normalizer");
        assert_eq!(
            letter.reason_class,
            ReasonClass::OutOfBounds,
            "{}",
            letter.reason
        );
        assert_eq!(letter.event_index, Some(index));
        assert!(letter.reason.contains(reason), "{}", letter.reason);
        assert!(
            letter.excerpt.contains(id),
            "the failing event itself: {}",
            letter.excerpt
        );
        assert!(!letter.excerpt.contains("ok-0"), "not the whole body");
        assert_eq!(letter.source.topic, s.topics.raw);
    }
    // Operators see them counted by stage and class.
    let metrics = gf_runtime::metrics::render(gf_runtime::metrics::registry());
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("gf_dead_letters_total{")
                && l.contains("reason_class=\"out_of_bounds\"")
                && l.contains("stage=\"normalizer\"")
        })
        .unwrap_or_else(|| panic!("no dead-letter metric:\n{metrics}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{line}");
    stop.cancel();
    task.await.unwrap();
    assert_eq!(committed_total(&s), 2, "both records done");
}
