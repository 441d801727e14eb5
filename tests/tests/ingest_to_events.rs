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
use tokio_util::sync::CancellationToken;

// Multi-threaded: the reader below blocks while the receiver and normalizer run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_events_come_out_as_canonical_events() {
    let _ = gf_runtime::telemetry::init("test", "warn");
    let infra = infra();
    let stack = Stack::new(&[], 2).await;
    let (config, topics) = (&stack.config, &stack.topics);
    let amplitude = stack.connection(Provider::Amplitude).await;
    let segment = stack.connection(Provider::Segment).await;

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
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match http.post(&url).body(body).send().await {
                Ok(r) => {
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
                    break;
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("receiver unreachable: {e}"),
            }
        }
    }

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &infra.kafka_brokers)
        .set("group.id", "e2e-reader")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(&topics.events, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut events: BTreeMap<String, (CanonicalEvent, Option<String>)> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while events.len() < 3 && Instant::now() < deadline {
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
