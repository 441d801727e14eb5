//! Poison records amid steady traffic, each stage its own `gf run` process: for every stage, the
//! records it cannot process (a number out of range, an id past the bounds, an event too large
//! to produce, a row PostgreSQL refuses, a signal PostgreSQL refuses) are sent by one product
//! while another product's load flows. Each must land in the dead-letter topic with its reason,
//! its healthy siblings must flow on within seconds, nothing acknowledged may be missing, and no
//! stage may restart. Counts go to `target/reliability/poison_records.json` (RELIABILITY.md).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gf_schemas::canonical::CanonicalEvent;
use gf_schemas::deadletter::{DeadLetter, ReasonClass};
use gf_tests::{infra, read_topic, workspace_root};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use support::{Pipeline, one_at_a_time, pause};
use uuid::Uuid;

/// Random text, so PostgreSQL cannot compress it under its index row limit.
fn long_random_text() -> String {
    (0..256)
        .map(|_| Uuid::new_v4().simple().to_string())
        .collect()
}

/// A canonical event as the normalizer would write it (bounds are the caller's business).
fn canonical_event(
    product: Uuid,
    insert_id: &str,
    organization: Option<String>,
    topics: &gf_runtime::topics::Topics,
) -> CanonicalEvent {
    serde_json::from_value(json!({
        "id": CanonicalEvent::derive_id(product, insert_id), "productId": product,
        "connectionId": Uuid::new_v4(), "source": "amplitude", "eventType": "purchase",
        "externalUserId": "hostile-user", "eventAt": "2026-05-18T12:00:00.000Z",
        "insertId": insert_id, "value": null, "valueType": null, "properties": {},
        "userHints": {"email": null, "name": null},
        "externalOrganizationId": organization, "organizationHints": {"name": null},
        "influence": "neutral", "influenceRule": "default", "qualityImpactScore": null,
        "externalConversationId": null, "receivedAt": "2026-05-18T12:00:00.000Z",
        "mapperVersion": 1,
        "origin": {"topic": topics.raw, "partition": 0, "offset": 0, "index": 0},
        "warnings": []
    }))
    .unwrap()
}

/// Writes `event` to the canonical topic, as a producer that skipped the normalizer would.
async fn produce_event(brokers: &str, topics: &gf_runtime::topics::Topics, event: &CanonicalEvent) {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(&topics.events)
                .key(&event.kafka_key())
                .payload(&serde_json::to_vec(event).unwrap()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

fn event(insert_id: &str, extra: Value) -> Value {
    let mut e = json!({"event_type": "purchase", "user_id": "hostile-user", "insert_id": insert_id,
                       "time": 1_779_105_600_000u64});
    if let (Some(e), Some(extra)) = (e.as_object_mut(), extra.as_object()) {
        e.extend(extra.clone());
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_amid_steady_traffic() {
    let _alone = one_at_a_time().await;
    let brokers = infra().kafka_brokers;
    let mut pipeline = Pipeline::new("poison_records", None, &brokers).await;
    pipeline
        .env
        .push(("GF_MAX_EVENT_BYTES".into(), "65536".into()));
    let topics = pipeline.topics();
    let healthy = pipeline.product();
    let healthy_path = pipeline.connection(&healthy);
    let hostile = pipeline.product();
    let hostile_path = pipeline.connection(&hostile);
    pipeline.start("notifier");
    let (load, handles) = pipeline.start_under_load(&healthy_path).await;
    pause(3).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}{hostile_path}", pipeline.addr);
    let post = |events: Vec<Value>| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let body = serde_json::to_string(&json!({ "events": events }))
                .unwrap()
                .replace("\"__HUGE__\"", "1e400");
            let answer = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let json: Value = answer.json().await.unwrap();
            assert_eq!(status, 200, "{json}");
            json["accepted"].as_u64().unwrap()
        }
    };

    // The normalizer's: each request holds one bad event and a healthy sibling.
    let started = Instant::now();
    let accepted = [
        post(vec![
            event("sib-1", json!({})),
            event("range", json!({"event_properties": {"n": "__HUGE__"}})),
        ])
        .await,
        post(vec![
            event("long-user", json!({"user_id": "u".repeat(2000)})),
            event("sib-2", json!({})),
        ])
        .await,
        post(vec![
            event(
                "big",
                json!({"event_properties": {"blob": "b".repeat(100_000)}}),
            ),
            event("sib-3", json!({})),
        ])
        .await,
    ];
    assert_eq!(
        accepted,
        [2, 2, 2],
        "each bad event is acknowledged with its sibling"
    );

    // The attributor's: a canonical event whose organization id PostgreSQL cannot index, from a
    // producer that skipped the normalizer's bounds.
    let product: Uuid = hostile.parse().unwrap();
    let canonical = canonical_event(
        product,
        "amplitude:long-org",
        Some(long_random_text()),
        &topics,
    );
    produce_event(&brokers, &topics, &canonical).await;

    // The notifier's: a signal whose conversation id PostgreSQL cannot index; then a healthy one.
    let long_conversation = long_random_text();
    for (product, conversation) in [(&hostile, long_conversation.as_str()), (&healthy, "c-1")] {
        // A quality index below its threshold keeps rule state, indexed by conversation.
        pipeline.gf(&[
            "emit",
            "signal",
            "--product",
            product,
            "--kind",
            "conversation-quality-index",
            "--conversation",
            conversation,
            "--score",
            "10",
        ]);
    }
    // And a healthy request of the hostile product after all of it.
    assert_eq!(post(vec![event("sib-4", json!({}))]).await, 1);

    // The siblings and what came after flow on within seconds.
    let siblings: Vec<String> = (1..=4).map(|i| format!("sib-{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pipeline.stored(&siblings).await.0 < siblings.len() {
        assert!(
            Instant::now() < deadline,
            "the healthy siblings never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let siblings_after = started.elapsed();
    let client = pipeline.db.client().await;
    let healthy_id: Uuid = healthy.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM notifier_rule_state WHERE product_id = $1",
                &[&healthy_id],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the healthy signal was not evaluated"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    pause(3).await;
    load.finish(handles).await;
    let outcome = pipeline.outcome("poison_records", &load, &brokers).await;
    outcome.assert_exactly_once();

    let topic = topics.deadletter.clone();
    let letters: Vec<DeadLetter> =
        tokio::task::spawn_blocking(move || read_topic(&infra().kafka_brokers, &topic))
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(&r.value).expect("a dead letter"))
            .collect();
    let find = |stage: &str, needle: &str| {
        letters
            .iter()
            .find(|l| l.stage == stage && l.excerpt.contains(needle))
            .unwrap_or_else(|| panic!("no {stage} dead letter for {needle}: {letters:#?}"))
    };
    let expected = [
        ("normalizer", "\"range\"", ReasonClass::OutOfBounds, Some(1)),
        ("normalizer", "long-user", ReasonClass::OutOfBounds, Some(0)),
        (
            "normalizer",
            "amplitude:big",
            ReasonClass::OutOfBounds,
            Some(0),
        ),
        (
            "attributor",
            "amplitude:long-org",
            ReasonClass::DatabaseRefused,
            None,
        ),
        (
            "notifier",
            &long_conversation[..64],
            ReasonClass::DatabaseRefused,
            None,
        ),
    ];
    let mut by_stage: BTreeMap<String, u64> = BTreeMap::new();
    for (stage, needle, class, index) in expected {
        let letter = find(stage, needle);
        assert_eq!(letter.reason_class, class, "{}", letter.reason);
        assert_eq!(letter.event_index, index, "{}", letter.reason);
        *by_stage.entry(format!("{stage}/{class}")).or_default() += 1;
    }
    assert_eq!(letters.len(), expected.len(), "{letters:#?}");
    for stage in ["normalizer", "attributor", "notifier", "receiver"] {
        assert_eq!(
            pipeline.log_lines(stage, "stage failed"),
            0,
            "{stage} restarted on a poison record"
        );
    }
    let report = json!({
        "scenario": "poison_records",
        "healthy": outcome,
        "deadLetters": by_stage,
        "siblingsStoredWithinSeconds": siblings_after.as_secs_f64(),
    });
    std::fs::write(
        workspace_root().join("target/reliability/poison_records.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
}

/// An operator's loop: a record refused for a reason that is then fixed (its product did not
/// exist yet) is listed by `gf deadletters list`, and `gf deadletters replay` re-drives it
/// through the current state, so it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed_after_a_fix() {
    let _alone = one_at_a_time().await;
    let brokers = infra().kafka_brokers;
    let mut pipeline = Pipeline::new("deadletters_replay", None, &brokers).await;
    let topics = pipeline.topics();
    pipeline.start("attributor");
    let product = Uuid::new_v4();
    let event = canonical_event(product, "amplitude:early", None, &topics);
    produce_event(&brokers, &topics, &event).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let listed = pipeline.gf(&["deadletters", "list", "--stage", "attributor"]);
        if listed.as_array().is_some_and(|l| !l.is_empty()) {
            break listed;
        }
        assert!(Instant::now() < deadline, "nothing dead-lettered: {listed}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let letter = &listed[0];
    assert_eq!(letter["reasonClass"], "unknown", "{letter}");
    assert_eq!(letter["source"]["topic"], topics.events.as_str());
    assert!(
        letter["excerpt"]
            .as_str()
            .unwrap()
            .contains("amplitude:early")
    );
    let none = pipeline.gf(&["deadletters", "list", "--stage", "normalizer"]);
    assert_eq!(none, json!([]));

    let dry = pipeline.gf(&[
        "deadletters",
        "replay",
        "--stage",
        "attributor",
        "--dry-run",
    ]);
    assert_eq!(dry["replayed"], 1, "{dry}");
    assert_eq!(dry["dryRun"], true);

    // The fix: the product exists now.
    let client = pipeline.db.client().await;
    client
        .execute(
            "INSERT INTO products (id, name) VALUES ($1, 'late')",
            &[&product],
        )
        .await
        .unwrap();
    let replayed = pipeline.gf(&["deadletters", "replay", "--stage", "attributor"]);
    assert_eq!(replayed["replayed"], 1, "{replayed}");
    assert_eq!(replayed["byTopic"][topics.events.as_str()], 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    while pipeline.stored(&["early".to_owned()]).await.0 == 0 {
        assert!(
            Instant::now() < deadline,
            "the replayed event was not stored"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
