//! Signals to signed webhooks against the real broker, PostgreSQL and a local HTTP sink.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use chrono::{TimeZone, Utc};
use gf_runtime::kafka::{KafkaSettings, ensure_topics};
use gf_runtime::topics::Topics;
use gf_schemas::conversation::{ConversationKind, ConversationMessage};
use gf_schemas::signal::{Signal, SignalKind};
use gf_tests::{TestDb, test_config};
use gf_webhooks::EventType;
use gf_webhooks::delivery::{DeliverySettings, attempt, claim_now, webhook_client};
use gf_webhooks::endpoints::Endpoints;
use gf_webhooks::events::{WebhookEvent, record};
use gf_webhooks::signing::{SigningSecret, verify};
use gf_webhooks::ssrf::AddressPolicy;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// An HTTP sink whose answer depends on the path: `/ok` 200, `/flaky` 500 then 200, `/gone`
/// 410, `/redirect` 302 to `/ok`, `/limited` 429 with Retry-After: 120, `/slow` answers after 8 s,
/// `/twice` 502 twice then 200, `/sluggish` 200 after 2 s, `/nul` 200 with NUL and invalid UTF-8
/// in its body.
#[derive(Clone, Default)]
struct Sink {
    received: Arc<Mutex<Vec<Received>>>,
}

async fn answer(request: HttpRequest, body: web::Bytes, sink: web::Data<Sink>) -> HttpResponse {
    let path = request.path().to_owned();
    let seen = {
        let mut received = sink.received.lock().unwrap();
        received.push(Received {
            path: path.clone(),
            headers: request
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        v.to_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
        });
        received.iter().filter(|r| r.path == path).count()
    };
    match path.as_str() {
        "/flaky" if seen == 1 => HttpResponse::InternalServerError().body("try later"),
        "/gone" => HttpResponse::Gone().finish(),
        "/redirect" => HttpResponse::Found()
            .insert_header(("Location", "/ok"))
            .finish(),
        "/limited" => HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", "120"))
            .finish(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(8)).await;
            HttpResponse::Ok().finish()
        }
        "/twice" if seen <= 2 => HttpResponse::BadGateway().finish(),
        "/nul" => HttpResponse::Ok().body(&b"ok\0 \xff\xfe binary \x1f\x8b\x08\0"[..]),
        "/sluggish" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            HttpResponse::Ok().finish()
        }
        _ => HttpResponse::Ok().body("thanks"),
    }
}

impl Sink {
    fn start() -> (Sink, String) {
        let sink = Sink::default();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let data = web::Data::new(sink.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(answer))
        })
        .workers(2)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        (sink, base)
    }

    fn on(&self, path: &str) -> Vec<Received> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

struct Setup {
    _db: TestDb,
    client: tokio_postgres::Client,
    pool: deadpool_postgres::Pool,
    config: gf_runtime::Config,
    topics: Topics,
    producer: FutureProducer,
    product: Uuid,
    endpoints: Endpoints,
    policy: AddressPolicy,
}

async fn setup() -> Setup {
    setup_with(&[]).await
}

async fn setup_with(extra: &[(&str, &str)]) -> Setup {
    let _ = gf_runtime::telemetry::init("test", "warn");
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let product = Uuid::new_v4();
    client
        .execute(
            "INSERT INTO products (id, name) VALUES ($1, 'webhooks')",
            &[&product],
        )
        .await
        .unwrap();
    let mut vars = vec![
        ("DATABASE_URL", db.url.as_str()),
        ("GF_WEBHOOK_ALLOWED_NETS", "127.0.0.0/8"),
    ];
    vars.extend_from_slice(extra);
    let config = test_config(&vars);
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
    let pool = gf_runtime::db::pool(&db.url, 8).unwrap();
    Setup {
        producer: settings.producer_config("test-input").create().unwrap(),
        endpoints: Endpoints::new(pool.clone()),
        policy: AddressPolicy::parse("127.0.0.0/8").unwrap(),
        _db: db,
        client,
        pool,
        config,
        topics,
        product,
    }
}

impl Setup {
    async fn endpoint(&self, url: String, events: &str) -> (Uuid, SigningSecret) {
        let (endpoint, secret) = self
            .endpoints
            .create(&self.policy, self.product, &url, &[events.to_owned()])
            .await
            .unwrap();
        (endpoint.id, secret)
    }

    async fn send(&self, topic: &str, key: &str, value: Vec<u8>) {
        self.producer
            .send(
                FutureRecord::to(topic).key(key).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .expect("acknowledged");
    }

    async fn signal(&self, id: Uuid, kind: SignalKind, score: f64) {
        let signal = Signal {
            id,
            product_id: self.product,
            kind,
            external_conversation_id: Some("conv-1".into()),
            score: Some(score),
            label: None,
            custom_analysis: None,
            occurred_at: Utc.with_ymd_and_hms(2026, 5, 18, 12, 0, 0).unwrap(),
            details: Default::default(),
        };
        self.send(
            &self.topics.signals,
            &signal.kafka_key(),
            serde_json::to_vec(&signal).unwrap(),
        )
        .await;
    }

    fn start(&self) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let stop = CancellationToken::new();
        let handle = tokio::spawn({
            let (config, pool, stop) = (self.config.clone(), self.pool.clone(), stop.clone());
            async move {
                gf_notifier::run_with_pool(&config, &pool, stop)
                    .await
                    .unwrap()
            }
        });
        (stop, handle)
    }

    async fn delivery_statuses(&self) -> Vec<(String, String, i32)> {
        self.client
            .query(
                "SELECT e.url, d.status, d.attempts FROM deliveries d
                   JOIN webhook_endpoints e ON e.id = d.endpoint_id ORDER BY e.url",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }
}

async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signals_become_signed_deliveries_exactly_once() {
    let s = setup().await;
    let (sink, base) = Sink::start();
    let (_, secret) = s.endpoint(format!("{base}/ok"), "conversation.*").await;
    let (stop, handle) = s.start();

    let started = ConversationMessage {
        id: Uuid::new_v4(),
        kind: ConversationKind::Started,
        product_id: s.product,
        external_conversation_id: "conv-1".into(),
        external_user_id: Some("u1".into()),
        email: None,
        name: None,
        occurred_at: Utc.with_ymd_and_hms(2026, 5, 18, 11, 59, 0).unwrap(),
        role: None,
        metadata: Default::default(),
    };
    let payload = serde_json::to_vec(&started).unwrap();
    s.send(
        &s.topics.conversations,
        &started.kafka_key(),
        payload.clone(),
    )
    .await;
    s.send(&s.topics.conversations, &started.kafka_key(), payload)
        .await; // redelivered
    let crossing = Uuid::new_v4();
    s.signal(Uuid::new_v4(), SignalKind::ConversationQualityIndex, 80.0)
        .await;
    s.signal(crossing, SignalKind::ConversationQualityIndex, 50.0)
        .await;
    s.signal(Uuid::new_v4(), SignalKind::ConversationQualityIndex, 40.0)
        .await;
    s.signal(crossing, SignalKind::ConversationQualityIndex, 50.0)
        .await; // replayed
    s.signal(Uuid::new_v4(), SignalKind::ConversationRating, 2.0)
        .await;
    // Subscribed to conversation.* only: a product signal is not delivered here.
    let product_signal = Signal {
        id: Uuid::new_v4(),
        product_id: s.product,
        kind: SignalKind::ProductQualityIndex,
        external_conversation_id: None,
        score: Some(10.0),
        label: None,
        custom_analysis: None,
        occurred_at: Utc::now(),
        details: Default::default(),
    };
    s.send(
        &s.topics.signals,
        &product_signal.kafka_key(),
        serde_json::to_vec(&product_signal).unwrap(),
    )
    .await;

    assert!(eventually(Duration::from_secs(30), async || sink.on("/ok").len() >= 3).await);
    tokio::time::sleep(Duration::from_secs(2)).await; // nothing more arrives
    let received = sink.on("/ok");
    let mut types: Vec<String> = received
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "conversation.quality_index",
            "conversation.rating",
            "conversation.started"
        ]
    );
    let now = Utc::now().timestamp();
    let mut deliveries = std::collections::HashSet::new();
    for r in &received {
        let h = &r.headers;
        let delivery = &h["x-greenflash-delivery"];
        let timestamp: i64 = h["x-greenflash-timestamp"].parse().unwrap();
        assert_eq!(h["webhook-id"], *delivery);
        assert_eq!(h["webhook-signature"], h["x-greenflash-signature"]);
        verify(
            &secret,
            delivery,
            timestamp,
            &r.body,
            &h["x-greenflash-signature"],
            now,
        )
        .expect("signature verifies");
        assert!(deliveries.insert(delivery.clone()));
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["productId"], json!(s.product));
        assert!(body["id"].is_string() && body["createdAt"].is_string());
    }
    let logged: i64 = s
        .client
        .query_one(
            "SELECT count(*) FROM delivery_attempts WHERE status_code = 200",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(logged, 3);

    // After a restart the rule state holds: still below 60 fires nothing; recovering and
    // dropping again fires once more.
    stop.cancel();
    handle.await.unwrap();
    let (stop, handle) = s.start();
    s.signal(Uuid::new_v4(), SignalKind::ConversationQualityIndex, 30.0)
        .await;
    s.signal(Uuid::new_v4(), SignalKind::ConversationQualityIndex, 75.0)
        .await;
    s.signal(Uuid::new_v4(), SignalKind::ConversationQualityIndex, 20.0)
        .await;
    assert!(eventually(Duration::from_secs(30), async || sink.on("/ok").len() >= 4).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.on("/ok").len(), 4);
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_are_retried_and_a_slow_endpoint_delays_no_other() {
    let s = setup().await;
    let (sink, base) = Sink::start();
    for path in ["/ok", "/flaky", "/gone", "/redirect", "/limited", "/slow"] {
        s.endpoint(format!("{base}{path}"), "conversation.rating")
            .await;
    }
    // The slow endpoint has been failing for 6 days: its next failure disables it.
    s.client
        .execute(
            "UPDATE webhook_endpoints SET failing_since = now() - interval '6 days'
              WHERE url LIKE '%/slow'",
            &[],
        )
        .await
        .unwrap();
    let (stop, handle) = s.start();
    let sent_at = Instant::now();
    s.signal(Uuid::new_v4(), SignalKind::ConversationRating, 5.0)
        .await;

    assert!(eventually(Duration::from_secs(20), async || !sink.on("/ok").is_empty()).await);
    assert!(
        sent_at.elapsed() < Duration::from_secs(5),
        "the fast endpoint waited for the slow one"
    );
    // The flaky endpoint's second attempt comes 5 s (±20 %) after its first.
    assert!(
        eventually(Duration::from_secs(20), async || sink.on("/flaky").len()
            >= 2)
        .await
    );
    assert!(
        eventually(Duration::from_secs(10), async || {
            s.delivery_statuses()
                .await
                .iter()
                .any(|(url, status, _)| url.ends_with("/flaky") && status == "delivered")
        })
        .await
    );
    // The slow endpoint's attempt ends at the 5-second limit.
    assert!(
        eventually(Duration::from_secs(15), async || {
            s.client
                .query_one(
                    "SELECT count(*) FROM delivery_attempts WHERE error_class = 'timeout'",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
                == 1
        })
        .await
    );
    let flaky = sink.on("/flaky");
    assert_eq!(
        flaky[0].headers["x-greenflash-delivery"],
        flaky[1].headers["x-greenflash-delivery"]
    );

    let statuses: HashMap<String, (String, i32)> = s
        .delivery_statuses()
        .await
        .into_iter()
        .map(|(url, status, attempts)| {
            (
                url.rsplit('/').next().unwrap().to_owned(),
                (status, attempts),
            )
        })
        .collect();
    assert_eq!(statuses["ok"], ("delivered".into(), 1));
    assert_eq!(statuses["flaky"], ("delivered".into(), 2));
    assert_eq!(statuses["gone"], ("failed".into(), 1));
    assert_eq!(statuses["limited"].0, "pending");
    assert_eq!(statuses["slow"].0, "pending", "timed out, to be retried");
    assert_eq!(
        statuses["redirect"].0, "pending",
        "a redirect is a failure, not followed"
    );
    assert_eq!(sink.on("/ok").len(), 1, "the redirect was not followed");
    let disabled: Vec<(String, Option<String>)> = s
        .client
        .query(
            "SELECT url, disabled_reason FROM webhook_endpoints WHERE NOT enabled ORDER BY url",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0).rsplit('/').next().unwrap().to_owned(),
                r.get(1),
            )
        })
        .collect();
    assert_eq!(
        disabled,
        [
            (
                "gone".to_owned(),
                Some("the endpoint answered 410 Gone".to_owned())
            ),
            (
                "slow".to_owned(),
                Some("failing for 5 days without a success".to_owned())
            ),
        ]
    );

    let limited_wait: f64 = s
        .client
        .query_one(
            "SELECT extract(epoch FROM d.next_attempt_at - a.started_at)::float8
               FROM deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
               JOIN delivery_attempts a ON a.delivery_id = d.id WHERE e.url LIKE '%/limited'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        (115.0..=125.0).contains(&limited_wait),
        "Retry-After honoured: {limited_wait}"
    );
    let slow: (Option<String>, Option<i32>) = s
        .client
        .query_one(
            "SELECT a.error_class, a.status_code FROM delivery_attempts a
               JOIN deliveries d ON d.id = a.delivery_id
               JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE e.url LIKE '%/slow'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(slow, (Some("timeout".into()), None));
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_addresses_are_refused_at_connect_time() {
    let s = setup().await;
    let (sink, base) = Sink::start();
    let port = base.rsplit(':').next().unwrap().to_owned();
    // Allowed when created (the demo allow-list), then the operator closes it.
    let closed = AddressPolicy::default();
    let client = webhook_client(&closed).unwrap();
    for url in [
        format!("http://127.0.0.1:{port}/ok"),
        format!("http://localhost:{port}/ok"),
        format!("https://localhost:{port}/ok"),
    ] {
        let (id, _) = s.endpoint(url.replace("localhost", "127.0.0.1"), "*").await;
        s.client
            .execute(
                "UPDATE webhook_endpoints SET url = $2 WHERE id = $1",
                &[&id, &url],
            )
            .await
            .unwrap();
        let event = WebhookEvent {
            id: Uuid::new_v4(),
            product_id: s.product,
            event_type: EventType::ConversationRating,
            created_at: Utc::now(),
            data: json!({}),
            traceparent: None,
        };
        let mut db = s.pool.get().await.unwrap();
        let txn = db.transaction().await.unwrap();
        let delivery = record(&txn, &event, Some(id)).await.unwrap()[0];
        txn.commit().await.unwrap();
        let settings = DeliverySettings::from_config(&s.config);
        let claimed = claim_now(&s.pool, &settings, delivery)
            .await
            .unwrap()
            .unwrap();
        let log = attempt(&client, &closed, &claimed).await;
        assert_eq!(
            log.error_class,
            Some("blocked_address"),
            "{url}: {:?}",
            log.error
        );
        assert_eq!(log.status_code, None);
    }
    assert!(
        sink.received.lock().unwrap().is_empty(),
        "nothing reached the sink"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sink_failing_twice_gets_three_attempts_on_schedule() {
    let s = setup_with(&[("GF_WEBHOOK_RETRY_DELAYS", "1,2")]).await;
    let (sink, base) = Sink::start();
    let (endpoint, _) = s
        .endpoint(format!("{base}/twice"), "conversation.rating")
        .await;
    let (stop, handle) = s.start();
    s.signal(Uuid::new_v4(), SignalKind::ConversationRating, 4.0)
        .await;
    assert!(
        eventually(Duration::from_secs(30), async || {
            s.delivery_statuses()
                .await
                .first()
                .is_some_and(|(_, status, _)| status == "delivered")
        })
        .await
    );
    stop.cancel();
    handle.await.unwrap();
    let attempts: Vec<(Option<i32>, f64)> = s
        .client
        .query(
            "SELECT status_code, extract(epoch FROM started_at)::float8 FROM delivery_attempts
              ORDER BY attempt",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let codes: Vec<Option<i32>> = attempts.iter().map(|a| a.0).collect();
    assert_eq!(codes, [Some(502), Some(502), Some(200)]);
    // 1 s then 2 s, each ±20 %, plus up to one 200 ms poll.
    let first = attempts[1].1 - attempts[0].1;
    let second = attempts[2].1 - attempts[1].1;
    assert!((0.75..=1.5).contains(&first), "first retry after {first}s");
    assert!(
        (1.55..=2.7).contains(&second),
        "second retry after {second}s"
    );
    let ids: std::collections::HashSet<String> = sink
        .on("/twice")
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(ids.len(), 1, "one delivery id across its attempts");
    // The operator sees the same on /metrics, by endpoint and outcome.
    let metrics = gf_runtime::metrics::render(gf_runtime::metrics::registry());
    for (outcome, n) in [("http_error", 2), ("delivered", 1)] {
        let line = format!(
            "gf_notifier_delivery_attempts_total{{endpoint=\"{endpoint}\",outcome=\"{outcome}\"}} {n}"
        );
        assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    }
    assert!(metrics.contains("gf_notifier_delivery_seconds_count{outcome=\"delivered\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notifier_killed_mid_delivery_delivers_everything_after_a_restart() {
    let s = setup_with(&[("GF_WEBHOOK_LEASE_SECS", "10")]).await;
    let (sink, base) = Sink::start();
    s.endpoint(format!("{base}/sluggish"), "conversation.rating")
        .await;
    let (_, handle) = s.start();
    for _ in 0..3 {
        s.signal(Uuid::new_v4(), SignalKind::ConversationRating, 3.0)
            .await;
    }
    // Killed while its attempts wait for the sink: nothing about them is recorded.
    assert!(
        eventually(Duration::from_secs(30), async || !sink
            .on("/sluggish")
            .is_empty())
        .await
    );
    handle.abort();
    let _ = handle.await;
    let delivered = async || {
        s.delivery_statuses()
            .await
            .iter()
            .filter(|(_, status, _)| status == "delivered")
            .count()
    };
    assert!(
        delivered().await < 3,
        "killed before every attempt was recorded"
    );

    let (stop, handle) = s.start();
    assert!(eventually(Duration::from_secs(40), async || delivered().await == 3).await);
    stop.cancel();
    handle.await.unwrap();
    let stored: std::collections::HashSet<String> = s
        .client
        .query("SELECT id::text FROM deliveries", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let seen: std::collections::HashSet<String> = sink
        .on("/sluggish")
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(stored.len(), 3);
    assert_eq!(
        seen, stored,
        "every delivery reached the sink, under its one id"
    );
}

/// The Python `standardwebhooks` package (what Standard Webhooks users verify with) accepts
/// our deliveries unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standard_webhooks_python_verifies_our_deliveries() {
    let s = setup().await;
    let (sink, base) = Sink::start();
    let (_, secret) = s.endpoint(format!("{base}/ok"), "*").await;
    let (stop, handle) = s.start();
    s.signal(Uuid::new_v4(), SignalKind::ConversationRating, 5.0)
        .await;
    assert!(eventually(Duration::from_secs(30), async || !sink.on("/ok").is_empty()).await);
    stop.cancel();
    handle.await.unwrap();
    let delivery = &sink.on("/ok")[0];
    let input = json!({
        "secret": secret.reveal(),
        "body": String::from_utf8(delivery.body.clone()).unwrap(),
        "headers": {
            "webhook-id": delivery.headers["webhook-id"],
            "webhook-timestamp": delivery.headers["webhook-timestamp"],
            "webhook-signature": delivery.headers["webhook-signature"],
        },
    });
    let script = "import json, sys\n\
from standardwebhooks.webhooks import Webhook\n\
d = json.load(sys.stdin)\n\
Webhook(d['secret']).verify(d['body'], d['headers'])\n\
tampered = d['body'].replace('5', '6')\n\
try:\n    Webhook(d['secret']).verify(tampered, d['headers'])\n    print('tampered accepted')\n\
except Exception:\n    print('verified')\n";
    let mut python = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (with `pip install standardwebhooks`; .ci/run installs it)");
    use std::io::Write;
    python
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "standardwebhooks refused the delivery: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "verified");
}

/// A sink that resets its first `resets` connections (RST after reading the request), then
/// answers 200; returns its URL and the `webhook-id` of every request it answered 200.
async fn resetting_sink(resets: usize) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/reset", listener.local_addr().unwrap());
    let answered = Arc::new(Mutex::new(Vec::new()));
    let seen = answered.clone();
    tokio::spawn(async move {
        let mut connections = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            connections += 1;
            let reset = connections <= resets;
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 16 * 1024];
                while !String::from_utf8_lossy(&request).contains("\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                if reset {
                    // Linger 0: closing sends RST instead of FIN.
                    let _ = stream.set_zero_linger();
                    return;
                }
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                let id = text
                    .lines()
                    .find_map(|l| l.strip_prefix("webhook-id:"))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default();
                seen.lock().unwrap().push(id);
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sink_resetting_connections_gets_every_delivery_once() {
    let s = setup_with(&[("GF_WEBHOOK_RETRY_DELAYS", "1,1,1")]).await;
    let (url, answered) = resetting_sink(3).await;
    s.endpoint(url, "conversation.rating").await;
    let (stop, handle) = s.start();
    for _ in 0..5 {
        s.signal(Uuid::new_v4(), SignalKind::ConversationRating, 4.0)
            .await;
    }
    assert!(
        eventually(Duration::from_secs(40), async || {
            let statuses = s.delivery_statuses().await;
            statuses.len() == 5 && statuses.iter().all(|(_, status, _)| status == "delivered")
        })
        .await,
        "{:?}",
        s.delivery_statuses().await
    );
    stop.cancel();
    handle.await.unwrap();
    let answered = answered.lock().unwrap().clone();
    let distinct: std::collections::HashSet<&String> = answered.iter().collect();
    assert_eq!(
        answered.len(),
        5,
        "each delivery answered once: {answered:?}"
    );
    assert_eq!(distinct.len(), 5);
    let failed: Vec<(String, Option<String>)> = s
        .client
        .query(
            "SELECT error_class, error FROM delivery_attempts WHERE error_class IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(failed.len(), 3, "one failed attempt per reset: {failed:?}");
    assert!(
        failed.iter().all(|(class, _)| class == "request"),
        "{failed:?}"
    );
}

/// An endpoint answering with bytes PostgreSQL cannot store as text (NUL, invalid UTF-8) used
/// to stop the notifier recording any attempt for anyone, so every pending delivery was sent
/// again after each lease. Its attempt is recorded, with a storable body, and sent once; the
/// other endpoint's deliveries are recorded too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endpoint_answering_nul_bytes_is_recorded_and_sent_once() {
    let s = setup_with(&[("GF_WEBHOOK_LEASE_SECS", "10")]).await;
    let (sink, base) = Sink::start();
    s.endpoint(format!("{base}/nul"), "conversation.rating")
        .await;
    s.endpoint(format!("{base}/ok"), "conversation.rating")
        .await;
    let (stop, handle) = s.start();
    for _ in 0..3 {
        s.signal(Uuid::new_v4(), SignalKind::ConversationRating, 4.0)
            .await;
    }
    assert!(
        eventually(Duration::from_secs(30), async || {
            let statuses = s.delivery_statuses().await;
            statuses.len() == 6 && statuses.iter().all(|(_, status, _)| status == "delivered")
        })
        .await,
        "{:?}",
        s.delivery_statuses().await
    );
    // Past a lease: nothing is sent again.
    tokio::time::sleep(Duration::from_secs(12)).await;
    stop.cancel();
    handle.await.unwrap();
    assert_eq!(sink.on("/nul").len(), 3, "each delivery sent once");
    assert_eq!(sink.on("/ok").len(), 3);
    let bodies: Vec<Option<String>> = s
        .client
        .query(
            "SELECT a.response_body FROM delivery_attempts a
               JOIN deliveries d ON d.id = a.delivery_id
               JOIN webhook_endpoints e ON e.id = d.endpoint_id
              WHERE e.url LIKE '%/nul'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(bodies.len(), 3);
    for body in bodies {
        let body = body.expect("the body is logged");
        assert!(
            body.starts_with("ok\u{fffd} \u{fffd}\u{fffd} binary"),
            "{body:?}"
        );
    }
}

/// A signal PostgreSQL refuses (its conversation id holds a NUL) is dead-lettered on its own;
/// the signals around it fire their webhooks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signal_postgresql_refuses_is_dead_lettered_alone() {
    let s = setup().await;
    let (sink, base) = Sink::start();
    s.endpoint(format!("{base}/ok"), "conversation.rating")
        .await;
    let (stop, handle) = s.start();
    s.signal(Uuid::new_v4(), SignalKind::ConversationRating, 4.0)
        .await;
    let bad = Signal {
        id: Uuid::new_v4(),
        product_id: s.product,
        kind: SignalKind::ConversationRating,
        external_conversation_id: Some("conv\u{0}nul".into()),
        score: Some(4.0),
        label: None,
        custom_analysis: None,
        occurred_at: Utc.with_ymd_and_hms(2026, 5, 18, 12, 0, 0).unwrap(),
        details: Default::default(),
    };
    s.send(
        &s.topics.signals,
        &bad.kafka_key(),
        serde_json::to_vec(&bad).unwrap(),
    )
    .await;
    let mut after = bad.clone();
    after.id = Uuid::new_v4();
    after.external_conversation_id = Some("conv-2".into());
    s.send(
        &s.topics.signals,
        &after.kafka_key(),
        serde_json::to_vec(&after).unwrap(),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(30), async || sink.on("/ok").len() >= 2).await,
        "the healthy signals were delivered"
    );
    let brokers = s.config.kafka_brokers().unwrap().to_owned();
    let topic = s.topics.deadletter.clone();
    let mut letters = Vec::new();
    assert!(
        eventually(Duration::from_secs(20), async || {
            letters = tokio::task::block_in_place(|| gf_tests::read_topic(&brokers, &topic));
            !letters.is_empty()
        })
        .await
    );
    stop.cancel();
    handle.await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter: gf_schemas::deadletter::DeadLetter =
        serde_json::from_slice(&letters[0].value).unwrap();
    assert_eq!(letter.stage, "notifier");
    assert_eq!(
        letter.reason_class,
        gf_schemas::deadletter::ReasonClass::DatabaseRefused,
        "{}",
        letter.reason
    );
    assert!(letter.excerpt.contains(&bad.id.to_string()));
}

/// Proxy variables in the environment used to route webhooks through whatever they named,
/// around the address check. The webhook client ignores them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_in_the_environment_are_ignored() {
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = proxy.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
    ] {
        // SAFETY: set before any thread of this test reads the environment; every client
        // in this binary ignores these variables anyway, which is what is tested.
        unsafe { std::env::set_var(var, &proxy_url) };
    }
    let (sink, base) = Sink::start();
    let client = webhook_client(&AddressPolicy::parse("127.0.0.0/8").unwrap()).unwrap();
    let answer = client
        .post(format!("{base}/ok"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        sink.on("/ok").len(),
        1,
        "delivered straight to the endpoint"
    );
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the proxy was used"
    );
}

/// The delivery listings the console and `gf deliveries list` show: scoped by product, endpoint
/// and status in the database, each endpoint's newest first, at most `per_endpoint` of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_listings_are_scoped_by_the_database() {
    use gf_runtime::paging::PageRequest;
    use gf_webhooks::delivery::{DeliveryScope, list};
    let s = setup().await;
    let (first, _) = s.endpoint("http://127.0.0.1:9/a".into(), "*").await;
    let (second, _) = s.endpoint("http://127.0.0.1:9/b".into(), "*").await;
    let other_product = Uuid::new_v4();
    s.client
        .execute(
            "INSERT INTO products (id, name) VALUES ($1, 'other')",
            &[&other_product],
        )
        .await
        .unwrap();
    let (elsewhere, _) = s
        .endpoints
        .create(
            &s.policy,
            other_product,
            "http://127.0.0.1:9/c",
            &["*".to_owned()],
        )
        .await
        .unwrap();
    for (product, n) in [(s.product, 5), (other_product, 2)] {
        for i in 0..n {
            let event = WebhookEvent {
                id: Uuid::new_v4(),
                product_id: product,
                event_type: EventType::ConversationRating,
                created_at: Utc::now(),
                data: json!({ "i": i }),
                traceparent: None,
            };
            let mut client = s.pool.get().await.unwrap();
            let txn = client.transaction().await.unwrap();
            record(&txn, &event, None).await.unwrap();
            txn.commit().await.unwrap();
        }
    }
    let product = |per_endpoint| DeliveryScope {
        product: Some(s.product),
        per_endpoint,
        ..DeliveryScope::default()
    };
    let all = list(&s.pool, product(None), &PageRequest::first(100))
        .await
        .unwrap()
        .items;
    assert_eq!(
        all.len(),
        10,
        "5 events to each of the product's 2 endpoints"
    );
    assert!(all.iter().all(|d| d.endpoint_id != elsewhere.id));
    assert!(all.windows(2).all(|w| w[0].created_at >= w[1].created_at));
    let capped = list(&s.pool, product(Some(2)), &PageRequest::first(100))
        .await
        .unwrap()
        .items;
    for endpoint in [first, second] {
        let mine: Vec<_> = all.iter().filter(|d| d.endpoint_id == endpoint).collect();
        let kept: Vec<_> = capped
            .iter()
            .filter(|d| d.endpoint_id == endpoint)
            .collect();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].id, mine[0].id, "the newest of each endpoint");
        assert_eq!(kept[1].id, mine[1].id);
    }
    let limited = list(&s.pool, product(None), &PageRequest::first(3))
        .await
        .unwrap()
        .items;
    assert_eq!(
        limited.iter().map(|d| d.id).collect::<Vec<_>>(),
        all[..3].iter().map(|d| d.id).collect::<Vec<_>>()
    );
    // Page after page by cursor, and by offset: the same rows in the same order, each once.
    let ids = |rows: &[gf_webhooks::delivery::DeliveryView]| {
        rows.iter().map(|d| d.id).collect::<Vec<_>>()
    };
    let (mut by_cursor, mut by_offset) = (Vec::new(), Vec::new());
    let mut request = PageRequest::first(3);
    loop {
        let page = list(&s.pool, product(None), &request).await.unwrap();
        by_cursor.extend(ids(&page.items));
        let Some(next) = page.next else { break };
        request.after = Some(next);
    }
    for offset in [0, 3, 6, 9] {
        let request = PageRequest {
            offset,
            ..PageRequest::first(3)
        };
        by_offset.extend(ids(&list(&s.pool, product(None), &request)
            .await
            .unwrap()
            .items));
    }
    assert_eq!(by_cursor, ids(&all));
    assert_eq!(by_offset, ids(&all));
    let one = DeliveryScope {
        endpoint: Some(second),
        status: Some("pending"),
        ..DeliveryScope::default()
    };
    let pending = list(&s.pool, one, &PageRequest::first(100))
        .await
        .unwrap()
        .items;
    assert_eq!(pending.len(), 5);
    assert!(pending.iter().all(|d| d.endpoint_id == second));
    let delivered = DeliveryScope {
        status: Some("delivered"),
        ..one
    };
    assert!(
        list(&s.pool, delivered, &PageRequest::first(100))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let everywhere = list(&s.pool, DeliveryScope::default(), &PageRequest::first(100))
        .await
        .unwrap()
        .items;
    assert_eq!(everywhere.len(), 12);
}
