//! The attributor's consumer loop against the real broker and PostgreSQL.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::{at, event, message, product, with_email, with_org};
use gf_attributor::consumer;
use gf_runtime::kafka::{KafkaSettings, ensure_topics};
use gf_runtime::topics::Topics;
use gf_schemas::attributed::{AttributedEvent, ConversationResolution, UserResolution};
use gf_schemas::canonical::CanonicalEvent;
use gf_schemas::conversation::ConversationKind;
use gf_schemas::deadletter::DeadLetter;
use gf_schemas::outcome::{ConversationOutcome, Verdict};
use gf_tests::net::TcpProxy;
use gf_tests::{TestDb, read_topic, schema_validator, test_config};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

struct Setup {
    db: TestDb,
    client: tokio_postgres::Client,
    config: gf_runtime::Config,
    topics: Topics,
    producer: FutureProducer,
    product: Uuid,
}

/// Topics of the test's own, a migrated database with one product, and the attributor's
/// configuration pointing at `database_url` (the database itself unless given).
async fn setup(database_url: impl FnOnce(&str) -> String) -> Setup {
    let _ = gf_runtime::telemetry::init("test", "warn");
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let product = product(&client).await;
    let url = database_url(&db.url);
    let config = test_config(&[("DATABASE_URL", &url)]);
    let settings = KafkaSettings::from_config(&config).unwrap();
    let topics = Topics::new(&config.topic_prefix);
    ensure_topics(
        &settings,
        &topics.specs(&gf_runtime::topics::TopicLayout::local(
            2,
            settings.max_record_bytes,
        )),
    )
    .await
    .unwrap();
    let producer = settings.producer_config("test-input").create().unwrap();
    Setup {
        db,
        client,
        config,
        topics,
        producer,
        product,
    }
}

impl Setup {
    async fn send(&self, topic: &str, key: &str, value: &[u8]) {
        let headers = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some(TRACEPARENT),
        });
        self.producer
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(value)
                    .headers(headers),
                Duration::from_secs(30),
            )
            .await
            .expect("input acknowledged");
    }

    async fn send_event(&self, e: &CanonicalEvent) {
        self.send(
            &self.topics.events,
            &e.kafka_key(),
            &serde_json::to_vec(e).unwrap(),
        )
        .await;
    }

    fn start(&self) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let stop = CancellationToken::new();
        let handle = tokio::spawn({
            let (config, stop) = (self.config.clone(), stop.clone());
            async move { consumer::run(&config, stop).await.expect("attributor ran") }
        });
        (stop, handle)
    }

    async fn stored(&self) -> i64 {
        self.client
            .query_one("SELECT count(*) FROM business_events", &[])
            .await
            .unwrap()
            .get(0)
    }

    async fn wait_for_rows(&self, n: i64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.stored().await < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} events stored",
                self.stored().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn read(&self, topic: &str) -> Vec<gf_tests::ReadRecord> {
        read_topic(self.config.kafka_brokers().unwrap(), topic)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_publishes_and_dead_letters_what_it_cannot_store() {
    let s = setup(str::to_owned).await;
    let p = s.product;
    let (stop, handle) = s.start();
    // The two topics are not ordered against each other: let the conversation land first.
    let started = message(p, "conv-1", ConversationKind::Started, Some("u1"), at(0, 0));
    s.send(
        &s.topics.conversations,
        &started.kafka_key(),
        &serde_json::to_vec(&started).unwrap(),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while s
        .client
        .query_one("SELECT count(*) FROM conversation_activity", &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the conversation message was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let in_window = with_email(
        event(p, "1", Some("u1"), at(10, 0)),
        "u1@example.com",
        Some("Ada"),
    );
    let anonymous = event(p, "2", None, at(10, 0));
    let unknown_product = event(Uuid::new_v4(), "3", Some("u1"), at(10, 0));
    let mut refused = event(p, "4", None, at(10, 0));
    refused
        .properties
        .insert("note".into(), serde_json::json!("nul \u{0} inside"));
    let mut forged = event(p, "6", None, at(10, 0));
    forged.id = Uuid::new_v4();
    for e in [
        &in_window,
        &anonymous,
        &unknown_product,
        &refused,
        &forged,
        &in_window,
    ] {
        s.send_event(e).await;
    }
    s.send(&s.topics.events, "garbage", b"{not json").await;
    s.wait_for_rows(2, Duration::from_secs(60)).await;

    // The attributed topic: each stored event once, schema-valid, with the trace context.
    let validator = schema_validator("attributed-event.v1.schema.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    let attributed = loop {
        let records = tokio::task::block_in_place(|| s.read(&s.topics.attributed));
        if records.len() >= 2 || Instant::now() > deadline {
            break records;
        }
    };
    assert_eq!(attributed.len(), 2, "one record per stored event");
    let mut by_id = std::collections::HashMap::new();
    for r in &attributed {
        let json: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
        if let Err(e) = validator.validate(&json) {
            panic!("attributed event does not match its schema: {e}\n{json:#}");
        }
        assert!(
            r.headers
                .contains(&("traceparent".to_owned(), TRACEPARENT.to_owned()))
        );
        let a: AttributedEvent = serde_json::from_value(json).unwrap();
        assert_eq!(r.key, a.event.kafka_key());
        by_id.insert(a.event.id, a);
    }
    let ada = &by_id[&in_window.id];
    // The SDK's identity in the start message created u1; the event finds it by id.
    assert_eq!(ada.resolution.user, UserResolution::ExternalId);
    assert_eq!(ada.resolution.conversation, ConversationResolution::Window);
    let conversation: Uuid = s
        .client
        .query_one(
            "SELECT id FROM conversations WHERE external_conversation_id = 'conv-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ada.conversation_id, Some(conversation));
    assert_eq!(by_id[&anonymous.id].user_id, None);

    // The outcomes topic: keyed by conversation id, schema-valid, the last record of the key is
    // the conversation's outcome now (opened by the message, then converted by the purchase).
    let validator = schema_validator("outcome.v1.schema.json");
    let outcomes = tokio::task::block_in_place(|| s.read(&s.topics.outcomes));
    let last = outcomes
        .iter()
        .rfind(|r| r.key == conversation.to_string())
        .expect("an outcome record for conv-1");
    let json: serde_json::Value = serde_json::from_slice(&last.value).unwrap();
    if let Err(e) = validator.validate(&json) {
        panic!("outcome does not match its schema: {e}\n{json:#}");
    }
    let outcome: ConversationOutcome = serde_json::from_value(json).unwrap();
    assert_eq!(outcome.verdict, Verdict::Converted);
    assert_eq!((outcome.revenue, outcome.counts.total), (49.0, 1));
    assert!(outcomes.iter().all(|r| r.key == conversation.to_string()));

    // Dead letters: the unknown product, the refused text, the forged id and the garbage, each
    // saying why.
    let letters: Vec<DeadLetter> = tokio::task::block_in_place(|| s.read(&s.topics.deadletter))
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect();
    let reasons: BTreeSet<String> = letters.iter().map(|l| l.reason.clone()).collect();
    assert_eq!(letters.len(), 4, "{reasons:?}");
    assert!(
        letters
            .iter()
            .all(|l| l.stage == consumer::STAGE && l.source.topic == s.topics.events)
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("unknown product")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not a canonical event")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("PostgreSQL refused it")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not derived from its product and insert id")),
        "{reasons:?}"
    );

    stop.cancel();
    handle.await.unwrap();

    // Restarted from its committed offsets, it processes nothing again.
    let (stop, handle) = s.start();
    let later = event(p, "5", Some("u1"), at(11, 0));
    s.send_event(&later).await;
    s.wait_for_rows(3, Duration::from_secs(60)).await;
    stop.cancel();
    handle.await.unwrap();
    let records = tokio::task::block_in_place(|| s.read(&s.topics.attributed));
    assert_eq!(records.len(), 3, "nothing republished after the restart");
    drop(s.db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_stream_loses_nothing() {
    let pg = gf_tests::postgres_addr();
    let proxy = TcpProxy::start(pg).await;
    let s = setup(|url| url.replacen(&pg.to_string(), &proxy.addr.to_string(), 1)).await;
    let p = s.product;
    let (stop, handle) = s.start();

    let total = 600;
    let mut sent = 0;
    for round in 0..3 {
        for i in 0..total / 3 {
            let n = round * 1000 + i;
            let e = with_email(
                event(
                    p,
                    &format!("e{n}"),
                    Some(&format!("user-{}", n % 50)),
                    at(0, n as i64 % 600),
                ),
                &format!("user-{}@example.com", n % 50),
                None,
            );
            s.send_event(&e).await;
            sent += 1;
        }
        match round {
            0 => {
                s.wait_for_rows(1, Duration::from_secs(60)).await;
                proxy.cut();
            }
            1 => {
                // Keep it down a while: the attributor retries and commits nothing.
                tokio::time::sleep(Duration::from_secs(3)).await;
                proxy.restore();
            }
            _ => {}
        }
    }
    s.wait_for_rows(sent, Duration::from_secs(120)).await;
    stop.cancel();
    handle.await.unwrap();
    assert_eq!(s.stored().await, sent, "every event stored exactly once");
    let users: i64 = s
        .client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 50);
    let letters = tokio::task::block_in_place(|| s.read(&s.topics.deadletter));
    assert!(letters.is_empty(), "nothing dead-lettered for an outage");
}

/// A stage that goes idle after a batch commits it anyway: otherwise its committed offsets, and
/// the lag operators watch, stay one batch behind until the next record comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_attributor_commits_its_last_batch() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let s = setup(str::to_owned).await;
    let (stop, handle) = s.start();
    s.send_event(&event(s.product, "1", Some("u1"), at(10, 0)))
        .await;
    s.wait_for_rows(1, Duration::from_secs(60)).await;
    let group = gf_runtime::topics::consumer_group(&s.config.topic_prefix, "attributor");
    let reader: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", s.config.kafka_brokers().unwrap())
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut partitions = rdkafka::TopicPartitionList::new();
    for p in 0..2 {
        partitions.add_partition(&s.topics.events, p);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let committed: i64 = reader
            .committed_offsets(partitions.clone(), Duration::from_secs(5))
            .unwrap()
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                rdkafka::Offset::Offset(n) => Some(n),
                _ => None,
            })
            .sum();
        if committed == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle attributor left its last batch uncommitted ({committed})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    handle.await.unwrap();
}

/// Each of these is one record any token holder can cause; each used to stop the attributor for
/// every product. Now each lands in the dead-letter topic on its own, with its reason, and the
/// other product's steady traffic around it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_cost_only_themselves() {
    let s = setup(str::to_owned).await;
    let poisoned = s.product;
    let healthy = product(&s.client).await;
    let (stop, handle) = s.start();

    // Random text, so PostgreSQL cannot compress it under its index row limit.
    let long: String = (0..256)
        .map(|_| Uuid::new_v4().simple().to_string())
        .collect();
    let long_org = with_org(
        event(poisoned, "long-org", Some("u1"), at(1, 0)),
        &long,
        None,
    );
    let mut long_conversation = event(poisoned, "long-conv", Some("u1"), at(1, 0));
    long_conversation.external_conversation_id = Some(long.clone());
    // With an e-mail, so the analytics event creates the user its id is indexed for.
    let long_user = with_email(
        event(poisoned, "long-user", Some(&long), at(1, 0)),
        "long@example.com",
        None,
    );
    let mut nul = event(poisoned, "nul", None, at(1, 0));
    nul.properties
        .insert("note".into(), serde_json::json!("nul \u{0} inside"));
    let poison = [&long_org, &long_conversation, &long_user, &nul];

    // Healthy events before, between and after the poison, in the same batches.
    let mut sent = 0;
    for (i, bad) in poison.iter().enumerate() {
        for j in 0..50 {
            let e = event(healthy, &format!("h{i}-{j}"), Some("h-user"), at(2, j));
            s.send_event(&e).await;
            sent += 1;
        }
        s.send_event(bad).await;
    }
    for j in 0..50 {
        s.send_event(&event(
            healthy,
            &format!("after-{j}"),
            Some("h-user"),
            at(3, j),
        ))
        .await;
        sent += 1;
    }
    s.wait_for_rows(sent, Duration::from_secs(60)).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let letters: Vec<DeadLetter> = loop {
        let letters: Vec<DeadLetter> = tokio::task::block_in_place(|| s.read(&s.topics.deadletter))
            .iter()
            .map(|r| serde_json::from_slice(&r.value).unwrap())
            .collect();
        if letters.len() >= poison.len() || Instant::now() > deadline {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(letters.len(), poison.len(), "{letters:#?}");
    let validator = schema_validator("deadletter.v1.schema.json");
    for letter in &letters {
        let json = serde_json::to_value(letter).unwrap();
        if let Err(e) = validator.validate(&json) {
            panic!("dead letter does not match its schema: {e}\n{json:#}");
        }
        assert_eq!(letter.stage, consumer::STAGE);
        assert_eq!(
            letter.reason_class,
            gf_schemas::deadletter::ReasonClass::DatabaseRefused,
            "{}",
            letter.reason
        );
        // The failing event itself is in the dead letter, whole.
        let excerpt: CanonicalEvent = serde_json::from_str(&letter.excerpt).unwrap();
        assert!(poison.iter().any(|p| p.id == excerpt.id));
    }
    assert_eq!(
        s.stored().await,
        sent,
        "nothing of the poisoned product stored"
    );
    stop.cancel();
    handle.await.unwrap();
}
