//! Receiver throughput and latency over 64 keep-alive connections, side by side with two
//! ceilings measured in the same run, round after round:
//!
//! - (a) the receiver minus HTTP and the body check: the same bodies appended by the receiver's
//!   own `KafkaSink` (its producer settings, key, headers and acknowledgement wait) from the
//!   same 64 concurrent tasks;
//! - (b) HTTP alone: an actix-web handler with the receiver's worker count that reads the body
//!   and answers 200.
//!
//! Needs the local infrastructure (`cargo xtask bench receiver` starts it). Prints one
//! `RESULT {json}` per case and round; `cargo xtask bench receiver` takes the median of the
//! rounds and fails when the receiver beats a ceiling, since then the method is wrong.
//!
//! The load generator is a Rust one (reqwest, one task per connection) so the whole run needs
//! nothing but cargo; it shares the machine's cores with the receiver and the broker.

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;
use common::Template;
use gf_receiver::sink::{KafkaSink, RawSink};
use gf_receiver::{Receiver, ReceiverOptions};
use gf_schemas::Provider;
use gf_schemas::raw::RawRecordMeta;
use gf_tests::Stack;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The binaries' allocator, so the figures are theirs.
#[global_allocator]
static ALLOCATOR: gf_runtime::alloc::Split = gf_runtime::alloc::Split;

const CONNECTIONS: usize = 64;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(6);
/// Rounds of every case, interleaved so each ratio compares runs made side by side.
const ROUNDS: usize = 3;
#[derive(Default)]
struct Tally {
    requests: u64,
    failures: u64,
    latencies_us: Vec<u32>,
}

/// Runs `send` (one request, true when answered as wanted) from `CONNECTIONS` tasks for
/// `MEASURE` after `WARM_UP`, counting what was sent in the measured window; with `rate`, the
/// tasks pace themselves to `rate` requests per second in all. `send` gets (task, request number).
async fn drive<F, Fut>(rate: Option<f64>, send: F) -> Tally
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let sequence = Arc::new(AtomicU64::new(0));
    let measure_from = Instant::now() + WARM_UP;
    let end = measure_from + MEASURE;
    let interval = rate.map(|r| Duration::from_secs_f64(CONNECTIONS as f64 / r));
    let mut tasks = Vec::new();
    for task in 0..CONNECTIONS {
        let (send, sequence) = (send.clone(), sequence.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let offset = interval.map_or(Duration::ZERO, |i| {
                i.mul_f64(task as f64 / CONNECTIONS as f64)
            });
            let mut next = Instant::now() + offset;
            while Instant::now() < end {
                if let Some(interval) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += interval;
                }
                let sent = Instant::now();
                let ok = send(task, sequence.fetch_add(1, Ordering::Relaxed)).await;
                if sent >= measure_from && sent < end {
                    tally.requests += 1;
                    tally.failures += u64::from(!ok);
                    let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                    tally.latencies_us.push(us);
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        let t = task.await.unwrap();
        total.requests += t.requests;
        total.failures += t.failures;
        total.latencies_us.extend(t.latencies_us);
    }
    total
}

/// Posts the template's bodies to `urls` (spread over them) over keep-alive connections.
async fn load(urls: Arc<Vec<String>>, template: Arc<Template>, rate: Option<f64>) -> Tally {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap();
    drive(rate, move |task, seq| {
        let (client, urls, template) = (client.clone(), urls.clone(), template.clone());
        async move {
            let url = &urls[(task + seq as usize) % urls.len()];
            match client.post(url).body(template.body(seq)).send().await {
                Ok(r) => {
                    let ok = r.status() == 200;
                    let _ = r.bytes().await;
                    ok
                }
                Err(_) => false,
            }
        }
    })
    .await
}

/// Ceiling (a): the receiver's own append, minus HTTP and the body check.
async fn append_directly(
    sink: Arc<KafkaSink>,
    meta: Arc<RawRecordMeta>,
    template: Arc<Template>,
) -> Tally {
    drive(None, move |_, seq| {
        let (sink, template) = (sink.clone(), template.clone());
        // A request id of its own, as the receiver gives each request: it is the record's key,
        // so the records spread over the partitions as the receiver's do.
        let meta = RawRecordMeta {
            request_id: uuid::Uuid::now_v7().to_string(),
            ..(*meta).clone()
        };
        async move { sink.append(&meta, &template.body(seq)).await.is_ok() }
    })
    .await
}

fn report(case: &str, batch: usize, round: usize, tally: &mut Tally, extra: serde_json::Value) {
    tally.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if tally.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((tally.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(tally.latencies_us[i]) / 1000.0
    };
    let seconds = MEASURE.as_secs_f64();
    let ok = tally.requests - tally.failures;
    let mut result = json!({
        "case": case,
        "batch": batch,
        "round": round,
        "connections": CONNECTIONS,
        "requests_per_second": ok as f64 / seconds,
        "events_per_second": (ok as usize * batch) as f64 / seconds,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "failures": tally.failures,
    });
    if let (Some(r), Some(e)) = (result.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    println!("RESULT {result}");
}

/// Ceiling (b): an actix-web handler that reads the body and answers 200, with actix's default
/// worker count (one per core), as the receiver has.
fn noop_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(|| {
        App::new()
            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
            .default_service(web::to(|_body: Bytes| async {
                HttpResponse::Ok().finish()
            }))
    })
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    base
}

#[tokio::main]
async fn main() {
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    // Cheaper scrypt for the 1,000-connection run's set-up; verification cost is not measured.
    let stack = Stack::new(&[("GF_SCRYPT_LOG_N", "12")], 3).await;
    let (config, settings, topics) = (&stack.config, &stack.settings, &stack.topics);
    let issued = stack
        .control
        .create_connection(stack.product, Provider::Amplitude, None)
        .await
        .unwrap();
    let token = issued.token.reveal();

    let stop = CancellationToken::new();
    let options = ReceiverOptions::from_config(config);
    let produce_timeout = options.produce_timeout;
    let receiver =
        Receiver::new(config, options, prometheus::Registry::new(), stop.clone()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(receiver.serve(listener).unwrap());
    let noop = noop_server();
    let sink = Arc::new(KafkaSink::new(settings, &topics.raw, produce_timeout).unwrap());
    // What the receiver writes for this connection: its headers (each append gets its own
    // request id, the key, below).
    let meta = Arc::new(RawRecordMeta {
        connection_id: issued.connection.id,
        product_id: stack.product,
        provider: Provider::Amplitude,
        received_at_ms: 1_747_569_600_000,
        request_id: "0192f7a0-0000-7000-8000-000000000000".into(),
        content_type: Some("application/json".into()),
        traceparent: None,
    });
    let one_url = Arc::new(vec![format!("{base}/ingest/amplitude/{token}")]);
    let wanted = |case: &str| only.as_deref().is_none_or(|o| case.contains(o));

    for batch in [1usize, 10, 100, 1000] {
        let template = Arc::new(Template::new(batch));
        let bytes = template.body.len() / template.events;
        for round in 0..ROUNDS {
            if wanted("receiver") {
                let mut t = load(one_url.clone(), template.clone(), None).await;
                report(
                    "receiver",
                    batch,
                    round,
                    &mut t,
                    json!({"bytes_per_event": bytes}),
                );
            }
            if wanted("sink") {
                let mut t = append_directly(sink.clone(), meta.clone(), template.clone()).await;
                report(
                    "receiver's sink alone (ceiling a)",
                    batch,
                    round,
                    &mut t,
                    json!({}),
                );
            }
            if wanted("noop") {
                let urls = Arc::new(vec![format!("{noop}/ingest")]);
                let mut t = load(urls, template.clone(), None).await;
                report(
                    "no-op actix handler (ceiling b)",
                    batch,
                    round,
                    &mut t,
                    json!({}),
                );
            }
        }
    }
    if wanted("paced") {
        // Single events at a fixed 5,000 requests/s: latency at half the target rate.
        let template = Arc::new(Template::new(1));
        let mut t = load(one_url.clone(), template, Some(5_000.0)).await;
        report(
            "receiver, paced 5000 req/s",
            1,
            0,
            &mut t,
            json!({"offered_rate": 5000}),
        );
    }
    if wanted("connections") {
        // 1,000 distinct connections: after one scrypt verification each, the cache answers.
        let mut urls = Vec::new();
        for _ in 0..1000 {
            let token = stack.connection(Provider::Amplitude).await;
            urls.push(format!("{base}/ingest/amplitude/{token}"));
        }
        let urls = Arc::new(urls);
        let template = Arc::new(Template::new(10));
        let warm = Instant::now();
        let client = reqwest::Client::new();
        for url in urls.iter() {
            let _ = client.post(url).body(template.body(0)).send().await;
        }
        let warm_s = warm.elapsed().as_secs_f64();
        let mut t = load(urls, template, None).await;
        report(
            "receiver, 1000 connections",
            10,
            0,
            &mut t,
            json!({"first_pass_seconds": warm_s}),
        );
    }
    stop.cancel();
}
