//! End to end: an HTTP post to the receiver comes out of the normalizer as canonical events.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use gf_normalizer::mapping::MapOptions;
use gf_receiver::{Receiver, ReceiverOptions};
use gf_schemas::Provider;
use gf_schemas::canonical::{CanonicalEvent, EventValue, Influence};
use gf_tests::{Stack, infra};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A receiver and a normalizer on `config`: the receiver's base URL, what stops both, and the
/// normalizer's task.
fn start(config: &gf_runtime::config::Config) -> (String, CancellationToken, JoinHandle<()>) {
    let stop = CancellationToken::new();
    let mut options = ReceiverOptions::from_config(config);
    options.workers = Some(2);
    let receiver =
        Receiver::new(config, options, prometheus::Registry::new(), stop.clone()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(receiver.serve(listener).unwrap());
    let normalizer_config = config.clone();
    let normalizer_stop = stop.clone();
    let normalizer = tokio::spawn(async move {
        gf_normalizer::consumer::run(&normalizer_config, MapOptions::default(), normalizer_stop)
            .await
            .unwrap();
    });
    (base, stop, normalizer)
}

/// Sends, retrying while the receiver is still starting.
async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match request
            .try_clone()
            .expect("a cloneable request")
            .send()
            .await
        {
            Ok(r) => return r,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("receiver unreachable: {e}"),
        }
    }
}

/// The canonical events in `topic` (both partitions) by insert id, with their traceparent;
/// reads until `n` arrived or 30 s passed.
fn read_events(
    brokers: &str,
    topic: &str,
    n: usize,
) -> BTreeMap<String, (CanonicalEvent, Option<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "e2e-reader")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut events = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while events.len() < n && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let event: CanonicalEvent = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let traceparent = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "traceparent"))
                .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()));
            events.insert(event.insert_id.clone(), (event, traceparent));
        }
    }
    events
}

// Multi-threaded: the reader below blocks while the receiver and normalizer run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_events_come_out_as_canonical_events() {
    let _ = gf_runtime::telemetry::init("test", "warn");
    let infra = infra();
    let stack = Stack::new(&[], 2).await;
    let (config, topics) = (&stack.config, &stack.topics);
    let amplitude = stack.connection(Provider::Amplitude).await;
    let segment = stack.connection(Provider::Segment).await;

    let (base, stop, normalizer) = start(config);
    let http = reqwest::Client::new();
    let posts = [
        (
            "amplitude",
            &amplitude,
            r#"{"events":[{"user_id":"user_test_123","event_type":"purchase","time":1747569600000,"insert_id":"amp_test_001","event_properties":{"plan":"pro"},"revenue":49.0},{"user_id":"user_test_123","event_type":"refund","time":1747569700000,"insert_id":"amp_test_002","revenue":-49.0,"revenueType":"Refund"}]}"#,
        ),
        (
            "segment",
            &segment,
            r#"{"type":"track","event":"Order Completed","userId":"user_test_123","messageId":"msg_test_001","timestamp":"2026-05-18T12:00:00Z","properties":{"revenue":49.0,"plan":"pro"}}"#,
        ),
        (
            "segment",
            &segment,
            r#"{"type":"identify","userId":"user_test_123","traits":{"email":"a@example.com"}}"#,
        ),
    ];
    for (provider, token, body) in posts {
        let url = format!("{base}/ingest/{provider}/{token}");
        let r = send(http.post(&url).body(body)).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    let events = read_events(&infra.kafka_brokers, &topics.events, 3);
    stop.cancel();
    normalizer.await.unwrap();

    assert_eq!(
        events.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "amplitude:amp_test_001",
            "amplitude:amp_test_002",
            "segment:msg_test_001"
        ]
    );
    let (purchase, traceparent) = &events["amplitude:amp_test_001"];
    assert_eq!(
        (purchase.influence, &purchase.value),
        (Influence::Positive, &Some(EventValue::Number(49.0)))
    );
    assert_eq!(purchase.product_id, stack.product);
    assert!(
        traceparent.is_some(),
        "trace context travels with the event"
    );
    let (refund, _) = &events["amplitude:amp_test_002"];
    assert_eq!(refund.influence, Influence::Negative);
    let (order, _) = &events["segment:msg_test_001"];
    assert_eq!(
        (order.event_type.as_str(), order.event_at.timestamp_millis()),
        ("Order Completed", 1779105600000)
    );
}

/// Each sender's own shape comes out as the canonical event its mapping table says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_senders_shape_comes_out_as_its_canonical_event() {
    let _ = gf_runtime::telemetry::init("test", "warn");
    let infra = infra();
    let stack = Stack::new(&[], 2).await;
    let amplitude = stack.connection(Provider::Amplitude).await;
    let segment = stack.connection(Provider::Segment).await;
    let posthog = stack.connection(Provider::Posthog).await;
    let api = stack.connection(Provider::Api).await;
    let (base, stop, normalizer) = start(&stack.config);
    let http = reqwest::Client::new();
    let ingest = |provider: &str, token: &str| format!("{base}/ingest/{provider}/{token}");
    let requests = [
        // Amplitude's Webhook destination: one Export-format event, then a user object.
        http.post(ingest("amplitude", &amplitude))
            .header("user-agent", "Amplitude/Webhook/1.0")
            .body(r#"{"$insert_id":"exp-1","event_type":"purchase","user_id":"u1","event_time":"2026-05-18 12:00:00.250000","event_properties":{"$revenue":49.0}}"#),
        http.post(ingest("amplitude", &amplitude))
            .body(r#"{"user_id":"u1","user_properties":{"email":"u1@example.com"}}"#),
        // Segment Actions: a top-level array, by PUT.
        http.put(ingest("segment", &segment))
            .body(r#"[{"type":"track","event":"Order Completed","userId":"u2","messageId":"arr-1","timestamp":"2026-05-18T12:00:00Z"},{"type":"identify","userId":"u2"}]"#),
        // PostHog: the CDP webhook and an SDK's capture batch on its own path.
        http.post(ingest("posthog", &posthog))
            .body(r#"{"event":{"uuid":"cdp-1","event":"subscription cancelled","distinct_id":"u3","properties":{"$groups":{"organization":"acme"}},"timestamp":"2026-05-18T12:00:00Z"},"person":{"id":"p","properties":{"email":"u3@example.com"}}}"#),
        http.post(format!("{}/batch/", ingest("posthog", &posthog)))
            .body(r#"{"api_key":"phc","batch":[{"event":"$pageview","distinct_id":"u3","uuid":"pv-1","properties":{"$current_url":"https://app.example.com/pricing?x=1"}},{"event":"$identify","distinct_id":"u3"}]}"#),
        // The public events API with a Bearer token.
        http.post(format!("{base}/v1/events"))
            .bearer_auth(&api)
            .body(r#"{"events":[{"eventType":"refund","externalUserId":"u4","insertId":"r-1","value":-20,"valueType":"currency","eventAt":1779105600000,"externalConversationId":"conv-1"}]}"#),
    ];
    for request in requests {
        let r = send(request).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let events = read_events(&infra.kafka_brokers, &stack.topics.events, 5);
    stop.cancel();
    normalizer.await.unwrap();

    assert_eq!(
        events.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "amplitude:exp-1",
            "api:r-1",
            "posthog:cdp-1",
            "posthog:pv-1",
            "segment:arr-1"
        ]
    );
    let (e, _) = &events["amplitude:exp-1"];
    assert_eq!(
        (
            e.event_type.as_str(),
            e.event_at.timestamp_millis(),
            &e.value,
            e.influence
        ),
        (
            "purchase",
            1779105600250,
            &Some(EventValue::Number(49.0)),
            Influence::Positive
        )
    );
    let (e, _) = &events["segment:arr-1"];
    assert_eq!(
        (e.event_type.as_str(), e.external_user_id.as_deref()),
        ("Order Completed", Some("u2"))
    );
    let (e, _) = &events["posthog:cdp-1"];
    assert_eq!(
        (
            e.influence,
            e.user_hints.email.as_deref(),
            e.external_organization_id.as_deref()
        ),
        (Influence::Negative, Some("u3@example.com"), Some("acme"))
    );
    let (e, _) = &events["posthog:pv-1"];
    assert_eq!(e.event_type, "/pricing");
    let (e, _) = &events["api:r-1"];
    assert_eq!(
        (e.source, e.influence, e.external_conversation_id.as_deref()),
        (Provider::Api, Influence::Negative, Some("conv-1"))
    );
}

/// The vendors' own Python libraries (code no one here wrote), pointed at ingest URLs, succeed
/// by their own account and their events come out as canonical events. `.ci/run` installs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vendors_python_libraries_post_straight_to_an_ingest_url() {
    let _ = gf_runtime::telemetry::init("test", "warn");
    let infra = infra();
    let stack = Stack::new(&[], 2).await;
    let (base, stop, normalizer) = start(&stack.config);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdks/post_with_sdks.py");
    // Wait for the receiver before handing its address to a library.
    send(reqwest::Client::new().get(format!("{base}/healthz"))).await;
    for provider in [Provider::Posthog, Provider::Segment, Provider::Amplitude] {
        let token = stack.connection(provider).await;
        let url = format!("{base}/ingest/{provider}/{token}");
        let output = tokio::process::Command::new("python3")
            .args([script, provider.as_str(), &url])
            .output()
            .await
            .expect("python3 (with `pip install posthog segment-analytics-python amplitude-analytics`; .ci/run installs them)");
        assert!(
            output.status.success(),
            "{provider}'s library failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let events = read_events(&infra.kafka_brokers, &stack.topics.events, 3);
    stop.cancel();
    normalizer.await.unwrap();
    assert_eq!(
        events.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "amplitude:sdk-insert-1",
            "posthog:0196e0a4-4a3c-7c2e-9d55-2b5f0f4a1bff",
            "segment:sdk-msg-1"
        ]
    );
    for (event, _) in events.values() {
        assert_eq!(event.external_user_id.as_deref(), Some("sdk-user"));
        assert_eq!(
            event.value,
            Some(EventValue::Number(49.0)),
            "{}",
            event.insert_id
        );
        assert_eq!(event.influence, Influence::Positive);
    }
    let (posthog, _) = &events["posthog:0196e0a4-4a3c-7c2e-9d55-2b5f0f4a1bff"];
    assert_eq!(posthog.user_hints.email.as_deref(), Some("sdk@example.com"));
}
