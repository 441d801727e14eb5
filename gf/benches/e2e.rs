//! End to end: `gf run all` (the release binary) under a sustained, paced load of Amplitude
//! batches for `GF_BENCH_E2E_SECONDS` (default 60). Reports events/s in, receive → attributed-row
//! latency (p50/p99, from `received_at` to the attributing transaction's `attributed_at`), the
//! consumer lag and resident memory sampled every 5 s, peak RSS, and whether every acknowledged
//! event is in PostgreSQL exactly once. With `scaling`, also 200,000 events sent as fast as they
//! are answered, timed to the last attributed row, over 1, 3 and 6 partitions and two batch sizes.
//! Needs the local infrastructure (`cargo xtask bench e2e`).
//! Each run also reports its cost per event (CPU microseconds and bytes written) for `gf run all`,
//! the broker and PostgreSQL, from the processes' own accounting.
//! Prints one `RESULT {json}` per run.

#[path = "e2e/cost.rs"]
mod cost;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gf_tests::{TestDb, infra, json_output, unique_topic_prefix};
use serde_json::{Value, json};

const EVENT_BYTES_HINT: &str = "~400";

struct Run {
    child: Child,
    base: String,
    ingest_url: String,
    product: String,
    db: TestDb,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn gf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gf"))
}

fn gf_json(env: &BTreeMap<String, String>, args: &[&str]) -> Value {
    json_output(gf().arg("--json").args(args).envs(env))
}

/// A fresh database and topics, a product with one Amplitude connection, `gf run all` started.
async fn start(partitions: u32) -> Run {
    let infra = infra();
    let db = TestDb::migrated().await;
    let addr = gf_tests::net::free_local_addr();
    let base = format!("http://{addr}");
    let mut env: BTreeMap<String, String> = infra.env.clone().into_iter().collect();
    for (k, v) in [
        ("DATABASE_URL", db.url.clone()),
        ("KAFKA_BROKERS", infra.kafka_brokers.clone()),
        ("GF_TOPIC_PREFIX", unique_topic_prefix()),
        ("GF_TOPIC_PARTITIONS", partitions.to_string()),
        ("GF_RECEIVER_ADDR", addr),
        ("GF_CONSOLE_ADDR", gf_tests::net::free_local_addr()),
        ("GF_PUBLIC_URL", base.clone()),
        ("GF_KAFKA_SESSION_TIMEOUT_MS", "6000".into()),
        ("RUST_LOG", "warn".into()),
    ] {
        env.insert(k.into(), v);
    }
    gf_json(&env, &["topics", "ensure"]);
    let product = gf_json(&env, &["product", "create", "--name", "e2e"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ingest_url = gf_json(
        &env,
        &[
            "connection",
            "create",
            "--product",
            &product,
            "--provider",
            "amplitude",
        ],
    )["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let child = gf()
        .args(["run", "all"])
        .envs(&env)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "gf run all never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Run {
        child,
        base,
        ingest_url,
        product,
        db,
    }
}

/// Stops `gf run all` and drops the run's database (hundreds of thousands of rows).
async fn finish(run: Run) {
    let name = run.db.name.clone();
    drop(run);
    let (client, connection) =
        tokio_postgres::connect(&infra().database_url, tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    let _ = client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}

/// One Amplitude batch of `events` ~400-byte events with insert ids unique to `sequence`.
fn batch(sequence: u64, events: usize) -> Vec<u8> {
    let list: Vec<Value> = (0..events)
        .map(|i| {
            json!({
                "user_id": format!("user-{}", (sequence as usize * events + i) % 20_000),
                "event_type": if i % 10 == 0 { "refund" } else { "purchase" },
                "time": chrono::Utc::now().timestamp_millis(),
                "insert_id": format!("{sequence}-{i}"),
                "platform": "Web",
                "revenue": 49.0,
                "event_properties": {"plan": "pro", "seats": 5, "page": "/checkout/confirm",
                    "experiment": "pricing-b", "coupon": null},
                "user_properties": {"email": format!("user{}@example.com", i % 997),
                    "company": "Example GmbH"}
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "events": list })).unwrap()
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Total consumer lag per client from `/metrics`.
async fn lag(http: &reqwest::Client, base: &str) -> BTreeMap<String, i64> {
    let text = match http.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => return BTreeMap::new(),
    };
    let mut total = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("gf_kafka_consumer_lag{"))
    {
        let client = line
            .split("client=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("?");
        let value: i64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        *total.entry(client.to_owned()).or_insert(0) += value;
    }
    total
}

/// When a load stops.
#[derive(Clone, Copy)]
enum Until {
    Elapsed(Duration),
    Batches(u64),
}

/// Sends batches of `events` from 16 connections until `until`, paced to `rate` events/s
/// (`None`: as fast as the answers come). Returns (requests answered 200, events acknowledged,
/// failures).
async fn load(run: &Run, events: usize, rate: Option<f64>, until: Until) -> (u64, u64, u64) {
    const CONNECTIONS: usize = 16;
    let (end, batches) = match until {
        Until::Elapsed(d) => (Instant::now() + d, u64::MAX),
        Until::Batches(n) => (Instant::now() + Duration::from_secs(24 * 3600), n),
    };
    let http = reqwest::Client::new();
    let sequence = Arc::new(AtomicU64::new(0));
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let interval = rate.map(|r| Duration::from_secs_f64(CONNECTIONS as f64 * events as f64 / r));
    let mut tasks = Vec::new();
    for task in 0..CONNECTIONS {
        let (http, url, sequence, counts) = (
            http.clone(),
            run.ingest_url.clone(),
            sequence.clone(),
            counts.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut next = Instant::now()
                + interval.map_or(Duration::ZERO, |i| {
                    i.mul_f64(task as f64 / CONNECTIONS as f64)
                });
            while Instant::now() < end {
                if let Some(interval) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += interval;
                }
                let n = sequence.fetch_add(1, Ordering::Relaxed);
                if n >= batches {
                    break;
                }
                match http.post(&url).body(batch(n, events)).send().await {
                    Ok(r) if r.status() == 200 => {
                        let answer: Value = r.json().await.unwrap_or_default();
                        let accepted = answer["accepted"].as_u64().unwrap_or(0);
                        counts[0].fetch_add(1, Ordering::Relaxed);
                        counts[1].fetch_add(accepted, Ordering::Relaxed);
                    }
                    _ => {
                        counts[2].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let [requests, acknowledged, failures] = &*counts;
    (
        requests.load(Ordering::Relaxed),
        acknowledged.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    )
}

/// Waits until PostgreSQL holds `expected` rows of the product (or 120 s pass); returns
/// (rows, distinct insert ids, seconds waited after the load).
async fn drained(run: &Run, expected: u64) -> (i64, i64, f64) {
    let client = run.db.client().await;
    let product: uuid::Uuid = run.product.parse().unwrap();
    let started = Instant::now();
    loop {
        let row = client
            .query_one(
                "SELECT count(*), count(DISTINCT insert_id) FROM business_events WHERE product_id = $1",
                &[&product],
            )
            .await
            .unwrap();
        let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
        if rows as u64 >= expected || started.elapsed() > Duration::from_secs(120) {
            return (rows, distinct, started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn sustained(seconds: u64, rate: f64, events: usize) {
    let run = start(3).await;
    let pid = run.child.id();
    let http = reqwest::Client::new();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (http, base, sampling) = (http.clone(), run.base.clone(), sampling.clone());
        async move {
            let started = Instant::now();
            let mut timeline = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                timeline.push(json!({
                    "t": started.elapsed().as_secs(),
                    "lag": lag(&http, &base).await,
                    "rss_mib": status_kib(pid, "VmRSS:") as f64 / 1024.0,
                }));
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            timeline
        }
    });
    let cost = cost::Processes::new(pid).start();
    let started = Instant::now();
    let (requests, acknowledged, failures) = load(
        &run,
        events,
        Some(rate),
        Until::Elapsed(Duration::from_secs(seconds)),
    )
    .await;
    let (rows, distinct, drain_seconds) = drained(&run, acknowledged).await;
    let cost = cost.per_event(rows as u64, started.elapsed().as_secs_f64());
    sampling.store(false, Ordering::Relaxed);
    let timeline = sampler.await.unwrap();
    let peak_rss_mib = status_kib(pid, "VmHWM:") as f64 / 1024.0;
    let latency = run
        .db
        .client()
        .await
        .query_one(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)
               FROM (SELECT extract(epoch FROM attributed_at - received_at) * 1000 AS ms FROM business_events) x",
            &[],
        )
        .await
        .unwrap();
    let (p50, p99): (Option<f64>, Option<f64>) = (latency.get(0), latency.get(1));
    println!(
        "RESULT {}",
        json!({
            "run": "sustained",
            "seconds": seconds,
            "offered_events_per_second": rate,
            "batch": events,
            "event_bytes": EVENT_BYTES_HINT,
            "requests": requests,
            "failures": failures,
            "events_per_second": acknowledged as f64 / seconds as f64,
            "acknowledged": acknowledged,
            "stored": rows,
            "distinct_stored": distinct,
            "exactly_once": rows as u64 == acknowledged && distinct == rows,
            "drain_seconds_after_load": drain_seconds,
            "latency_p50_ms": p50,
            "latency_p99_ms": p99,
            "peak_rss_mib": peak_rss_mib,
            "cost": cost,
            "timeline": timeline,
        })
    );
    finish(run).await;
}

/// `total` events sent as fast as the receiver answers, timed until the last one is attributed:
/// what the whole pipeline sustains with this layout.
async fn scaling(partitions: u32, events: usize, total: u64) {
    let run = start(partitions).await;
    let cost = cost::Processes::new(run.child.id()).start();
    let started = Instant::now();
    let (requests, acknowledged, failures) =
        load(&run, events, None, Until::Batches(total / events as u64)).await;
    let ingest_seconds = started.elapsed().as_secs_f64();
    let (rows, distinct, _) = drained(&run, acknowledged).await;
    let pipeline_seconds = started.elapsed().as_secs_f64();
    let cost = cost.per_event(rows as u64, pipeline_seconds);
    println!(
        "RESULT {}",
        json!({
            "run": "scaling",
            "partitions": partitions,
            "batch": events,
            "events": acknowledged,
            "requests": requests,
            "failures": failures,
            "ingest_events_per_second": acknowledged as f64 / ingest_seconds,
            "pipeline_events_per_second": rows as f64 / pipeline_seconds,
            "exactly_once": rows as u64 == acknowledged && distinct == rows,
            "cost": cost,
        })
    );
    finish(run).await;
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds = std::env::var("GF_BENCH_E2E_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let rate = std::env::var("GF_BENCH_E2E_RATE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000.0);
    if !args.iter().any(|a| a == "scaling-only") {
        sustained(seconds, rate, 100).await;
    }
    if args.iter().any(|a| a.starts_with("scaling")) {
        for partitions in [1, 3, 6] {
            for events in [100, 1000] {
                scaling(partitions, events, 200_000).await;
            }
        }
    }
}
