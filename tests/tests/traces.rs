//! One trace per event, across processes' worth of stages: the W3C trace context rides in Kafka
//! headers (and the webhook outbox), and every stage's span joins it. Spans are read from an
//! in-memory exporter installed as the OpenTelemetry pipeline of this test binary.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use chrono::Utc;
use gf_receiver::{Receiver, ReceiverOptions};
use gf_schemas::Provider;
use gf_schemas::signal::{Signal, SignalKind};
use gf_tests::{Stack, infra, read_topic};
use gf_webhooks::endpoints::Endpoints;
use gf_webhooks::ssrf::AddressPolicy;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use uuid::Uuid;

/// The exporter every test of this binary reads; spans of the tests are told apart by trace id.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info"))
            .with(gf_runtime::telemetry::layer(&provider))
            .init();
        // The provider must outlive every test; the exporter keeps what it was given.
        std::mem::forget(provider);
        exporter
    })
}

/// Waits until spans named `names` have been exported in `trace`; returns them by name.
async fn spans_in(trace: TraceId, names: &[&str]) -> HashMap<String, SpanData> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found: HashMap<String, SpanData> = exporter()
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .map(|s| (s.name.to_string(), s))
            .collect();
        if names.iter().all(|n| found.contains_key(*n)) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "spans of trace {trace}: {:?}, wanted {names:?}",
            found.keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn traceparent(trace: TraceId, span: SpanId) -> String {
    format!("00-{trace}-{span}-01")
}

fn parent_of(traceparent: &str) -> (TraceId, SpanId) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    (
        TraceId::from_hex(parts[1]).unwrap(),
        SpanId::from_hex(parts[2]).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_receiver_to_the_attributor() {
    exporter();
    let infra = infra();
    let stack = Stack::new(&[], 2).await;
    let (config, topics) = (&stack.config, &stack.topics);
    let token = stack.connection(Provider::Amplitude).await;

    let stop = CancellationToken::new();
    let mut options = ReceiverOptions::from_config(config);
    options.workers = Some(1);
    let receiver =
        Receiver::new(config, options, prometheus::Registry::new(), stop.clone()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/ingest/amplitude/{token}",
        listener.local_addr().unwrap()
    );
    tokio::spawn(receiver.serve(listener).unwrap());
    for stage in ["normalizer", "attributor"] {
        let (config, stop) = (config.clone(), stop.clone());
        tokio::spawn(async move {
            match stage {
                "normalizer" => gf_normalizer::consumer::run(&config, Default::default(), stop)
                    .await
                    .unwrap(),
                _ => gf_attributor::consumer::run(&config, stop).await.unwrap(),
            }
        });
    }

    // The caller (an SDK, a proxy) already has a trace; ours continues it.
    let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let caller = SpanId::from_hex("00f067aa0ba902b7").unwrap();
    let body = r#"{"events":[{"user_id":"user_trace","event_type":"purchase","time":1747569600000,"insert_id":"trace-1","revenue":49.0}]}"#;
    let answer = reqwest::Client::new()
        .post(&url)
        .header("traceparent", traceparent(trace, caller))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    let spans = spans_in(
        trace,
        &[
            "gf.receiver.ingest",
            "gf.normalizer.map",
            "gf.attributor.attribute",
        ],
    )
    .await;
    let receive = &spans["gf.receiver.ingest"];
    let map = &spans["gf.normalizer.map"];
    let attribute = &spans["gf.attributor.attribute"];
    assert_eq!(receive.parent_span_id, caller);
    assert_eq!(map.parent_span_id, receive.span_context.span_id());
    assert_eq!(attribute.parent_span_id, map.span_context.span_id());

    // Downstream consumers of the attributed topic continue the same trace.
    let attributed = tokio::task::spawn_blocking({
        let (brokers, topic) = (infra.kafka_brokers.clone(), topics.attributed.clone());
        move || read_topic(&brokers, &topic)
    })
    .await
    .unwrap();
    assert_eq!(attributed.len(), 1);
    let header = attributed[0]
        .headers
        .iter()
        .find(|(k, _)| k == "traceparent")
        .map(|(_, v)| v.clone())
        .expect("traceparent header");
    assert_eq!(
        parent_of(&header),
        (trace, attribute.span_context.span_id())
    );
    stop.cancel();
}

/// Records the `traceparent` of every webhook it receives.
fn start_sink() -> (Arc<Mutex<Vec<String>>>, String) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let data = web::Data::new(seen.clone());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).default_service(web::to(
            |request: HttpRequest, seen: web::Data<Arc<Mutex<Vec<String>>>>| async move {
                let header = request
                    .headers()
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_owned();
                seen.lock().unwrap().push(header);
                HttpResponse::Ok().finish()
            },
        ))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (seen, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_a_signal_to_its_webhook() {
    exporter();
    let stack = Stack::new(&[("GF_WEBHOOK_ALLOWED_NETS", "127.0.0.0/8")], 2).await;
    let (config, settings, topics, product) =
        (&stack.config, &stack.settings, &stack.topics, stack.product);
    let pool = gf_runtime::db::pool(&stack.db.url, 4).unwrap();
    let (seen, base) = start_sink();
    Endpoints::new(pool.clone())
        .create(
            &AddressPolicy::parse("127.0.0.0/8").unwrap(),
            product,
            &format!("{base}/hook"),
            &["*".to_owned()],
        )
        .await
        .unwrap();
    let stop = CancellationToken::new();
    tokio::spawn({
        let (config, pool, stop) = (config.clone(), pool.clone(), stop.clone());
        async move {
            gf_notifier::run_with_pool(&config, &pool, stop)
                .await
                .unwrap()
        }
    });

    // The analysis that produced the signal started the trace.
    let trace = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
    let analysis = SpanId::from_hex("b7ad6b7169203331").unwrap();
    let signal = Signal {
        id: Uuid::new_v4(),
        product_id: product,
        kind: SignalKind::ConversationQualityIndex,
        external_conversation_id: Some("conv-trace".into()),
        score: Some(20.0),
        label: None,
        custom_analysis: None,
        occurred_at: Utc::now(),
        details: Default::default(),
    };
    let producer: FutureProducer = settings.producer_config("test-signals").create().unwrap();
    let value = serde_json::to_vec(&signal).unwrap();
    let header = traceparent(trace, analysis);
    producer
        .send(
            FutureRecord::to(&topics.signals)
                .key(&signal.kafka_key())
                .payload(&value)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "traceparent",
                    value: Some(&header),
                })),
            Duration::from_secs(30),
        )
        .await
        .expect("acknowledged");

    let spans = spans_in(trace, &["gf.notifier.evaluate", "gf.notifier.deliver"]).await;
    let evaluate = &spans["gf.notifier.evaluate"];
    let deliver = &spans["gf.notifier.deliver"];
    assert_eq!(evaluate.parent_span_id, analysis);
    assert_eq!(deliver.parent_span_id, evaluate.span_context.span_id());
    // The customer's endpoint can join the trace too.
    let received = seen.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(
        parent_of(&received[0]),
        (trace, deliver.span_context.span_id())
    );
    stop.cancel();
}
