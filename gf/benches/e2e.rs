//! End to end: `gf run all` (the release binary) under a sustained, paced load of Amplitude
//! batches for `GF_BENCH_E2E_SECONDS` (default 60). Reports events/s in, receive → attributed-row
//! latency (p50/p99, from `received_at` to the attributing transaction's `attributed_at`), the
//! consumer lag and resident memory sampled every 5 s, peak RSS, and whether every acknowledged
//! event is in PostgreSQL exactly once. With `scaling`, also:
//! - 200,000 events sent as fast as they are answered, timed to the last attributed row, over 1, 3
//!   and 6 partitions and two batch sizes;
//! - the same load on 6 partitions with every stage in its own process, one normalizer and one
//!   attributor against two of each (the scale-out run, with each process's own cost);
//! - the highest paced rate `gf run all` holds for the same duration with its lag bounded, found
//!   by bisection between the rate the sustained run held and what the pipeline does saturated.
//!
//! Needs the local infrastructure (`cargo xtask bench e2e`). Each run also reports its cost per
//! event (CPU microseconds and bytes written) for every pipeline process, the broker and
//! PostgreSQL, from the processes' own accounting. Prints one `RESULT {json}` per run.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gf_tests::paced::{MAX_DRAIN_SECONDS, MIN_SHARE_OF_OFFERED, PacedRun};
use gf_tests::{TestDb, infra, json_output, unique_topic_prefix};
use serde_json::{Value, json};

const EVENT_BYTES_HINT: &str = "~400";

/// Connections (senders) in the scale-out runs, spread over the raw topic's partitions.
const SCALE_OUT_CONNECTIONS: usize = 12;

/// How the pipeline runs: one `gf run all`, or each stage in processes of its own.
#[derive(Clone, Copy, Debug)]
enum Layout {
    All,
    Stages {
        normalizers: usize,
        attributors: usize,
    },
}

/// One pipeline process and where its `/metrics` are.
struct Process {
    name: String,
    child: Child,
    metrics: String,
}

struct Run {
    processes: Vec<Process>,
    /// One URL per connection; the load's tasks take them in turn.
    ingest_urls: Vec<String>,
    product: String,
    db: TestDb,
}

impl Run {
    fn pids(&self) -> Vec<(String, u32)> {
        self.processes
            .iter()
            .map(|p| (p.name.clone(), p.child.id()))
            .collect()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        for p in &self.processes {
            let _ = Command::new("kill")
                .args(["-TERM", &p.child.id().to_string()])
                .status();
        }
        for p in &mut self.processes {
            let _ = p.child.wait();
        }
    }
}

fn gf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gf"))
}

fn gf_json(env: &BTreeMap<String, String>, args: &[&str]) -> Value {
    json_output(gf().arg("--json").args(args).envs(env))
}

/// A fresh database and topics, a product with `connections` Amplitude connections, the pipeline
/// started in `layout`; returns once the receiver is ready and every consumer process holds partitions.
async fn start(partitions: u32, layout: Layout, connections: usize) -> Run {
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
    let ingest_urls = (0..connections)
        .map(|_| {
            gf_json(
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
                .to_owned()
        })
        .collect();
    // (name, `gf run` argument); the receiver serves /metrics on its own address.
    let stages: Vec<(String, &str)> = match layout {
        Layout::All => vec![("gf run all".into(), "all")],
        Layout::Stages {
            normalizers,
            attributors,
        } => std::iter::once(("receiver".to_owned(), "receiver"))
            .chain((1..=normalizers).map(|i| (format!("normalizer {i}"), "normalizer")))
            .chain((1..=attributors).map(|i| (format!("attributor {i}"), "attributor")))
            .chain(std::iter::once(("notifier".to_owned(), "notifier")))
            .collect(),
    };
    let processes: Vec<Process> = stages
        .into_iter()
        .map(|(name, stage)| {
            let mut env = env.clone();
            let metrics = if matches!(stage, "all" | "receiver") {
                base.clone()
            } else {
                let addr = gf_tests::net::free_local_addr();
                env.insert("GF_METRICS_ADDR".into(), addr.clone());
                format!("http://{addr}")
            };
            let child = gf()
                .args(["run", stage])
                .envs(&env)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            Process {
                name,
                child,
                metrics,
            }
        })
        .collect();
    let run = Run {
        processes,
        ingest_urls,
        product,
        db,
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "the receiver never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if matches!(layout, Layout::Stages { .. }) {
        // A consumer reports a partition's high watermark once it fetches from it. When every
        // member of a group has one, the group has settled, so no rebalance falls in the timing.
        for p in run
            .processes
            .iter()
            .filter(|p| p.name.starts_with("normalizer") || p.name.starts_with("attributor"))
        {
            while !metrics_text(&http, &p.metrics)
                .await
                .contains("gf_kafka_high_watermark{")
            {
                assert!(
                    Instant::now() < deadline + Duration::from_secs(60),
                    "{} never got partitions",
                    p.name
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    run
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
            // 20,000 users, each with an e-mail of its own (when users share e-mails, their
            // events resolve to shared users, which attributors must take turns writing).
            let user = (sequence as usize * events + i) % 20_000;
            json!({
                "user_id": format!("user-{user}"),
                "event_type": if i % 10 == 0 { "refund" } else { "purchase" },
                "time": chrono::Utc::now().timestamp_millis(),
                "insert_id": format!("{sequence}-{i}"),
                "platform": "Web",
                "revenue": 49.0,
                "event_properties": {"plan": "pro", "seats": 5, "page": "/checkout/confirm",
                    "experiment": "pricing-b", "coupon": null},
                "user_properties": {"email": format!("user{user}@example.com"),
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

async fn metrics_text(http: &reqwest::Client, base: &str) -> String {
    match http.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Total consumer lag per client over the run's processes, from their `/metrics`.
async fn lag(http: &reqwest::Client, run_metrics: &[String]) -> BTreeMap<String, i64> {
    let mut text = String::new();
    for base in run_metrics {
        text.push_str(&metrics_text(http, base).await);
    }
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

/// One sending task: the ingest URL it posts to and its pace in events/s (`None`: as fast as the
/// answers come).
struct Sender {
    url: String,
    rate: Option<f64>,
}

/// 16 senders taking the run's connections in turn, sharing `rate` evenly.
fn evenly(run: &Run, rate: Option<f64>) -> Vec<Sender> {
    const SENDERS: usize = 16;
    (0..SENDERS)
        .map(|task| Sender {
            url: run.ingest_urls[task % run.ingest_urls.len()].clone(),
            rate: rate.map(|r| r / SENDERS as f64),
        })
        .collect()
}

/// Sends batches of `events` from every sender until `until`, each paced to its rate. Returns
/// (requests answered 200, events acknowledged, failures).
async fn load(senders: Vec<Sender>, events: usize, until: Until) -> (u64, u64, u64) {
    let (end, batches) = match until {
        Until::Elapsed(d) => (Instant::now() + d, u64::MAX),
        Until::Batches(n) => (Instant::now() + Duration::from_secs(24 * 3600), n),
    };
    let http = reqwest::Client::new();
    let sequence = Arc::new(AtomicU64::new(0));
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let count = senders.len();
    let mut tasks = Vec::new();
    for (task, sender) in senders.into_iter().enumerate() {
        let (http, sequence, counts) = (http.clone(), sequence.clone(), counts.clone());
        let interval = sender
            .rate
            .map(|r| Duration::from_secs_f64(events as f64 / r));
        tasks.push(tokio::spawn(async move {
            // Senders start staggered over one interval, not all at once.
            let mut next = Instant::now()
                + interval.map_or(Duration::ZERO, |i| i.mul_f64(task as f64 / count as f64));
            while Instant::now() < end {
                if let Some(interval) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += interval;
                }
                let n = sequence.fetch_add(1, Ordering::Relaxed);
                if n >= batches {
                    break;
                }
                match http.post(&sender.url).body(batch(n, events)).send().await {
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

/// A paced load for `seconds` at `rate` events/s against `gf run all` on 3 partitions; returns the
/// run's result (printed by the caller).
async fn sustained(seconds: u64, rate: f64, events: usize) -> Value {
    let run = start(3, Layout::All, 1).await;
    let pid = run.processes[0].child.id();
    let http = reqwest::Client::new();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (http, sampling) = (http.clone(), sampling.clone());
        let metrics: Vec<String> = run.processes.iter().map(|p| p.metrics.clone()).collect();
        async move {
            let started = Instant::now();
            let mut timeline = Vec::new();
            // (t, total lag) while the load runs, for the verdict.
            let mut samples = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                let t = started.elapsed().as_secs();
                let lag = lag(&http, &metrics).await;
                if t > 0 && t <= seconds {
                    samples.push((t as f64, lag.values().sum::<i64>() as f64));
                }
                timeline.push(json!({
                    "t": t,
                    "lag": lag,
                    "rss_mib": status_kib(pid, "VmRSS:") as f64 / 1024.0,
                }));
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            (timeline, samples)
        }
    });
    let cost = gf_tests::cost::Processes::new(run.pids()).start();
    let started = Instant::now();
    let (requests, acknowledged, failures) = load(
        evenly(&run, Some(rate)),
        events,
        Until::Elapsed(Duration::from_secs(seconds)),
    )
    .await;
    let (rows, distinct, drain_seconds) = drained(&run, acknowledged).await;
    let cost = cost.per_event(rows as u64, started.elapsed().as_secs_f64());
    sampling.store(false, Ordering::Relaxed);
    let (timeline, samples) = sampler.await.unwrap();
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
    finish(run).await;
    let exactly_once = rows as u64 == acknowledged && distinct == rows;
    let events_per_second = acknowledged as f64 / seconds as f64;
    let held = PacedRun {
        offered: rate,
        achieved: events_per_second,
        seconds: seconds as f64,
        exactly_once,
        drain_seconds,
        lag: &samples,
    }
    .held();
    json!({
        "run": "sustained",
        "seconds": seconds,
        "offered_events_per_second": rate,
        "batch": events,
        "event_bytes": EVENT_BYTES_HINT,
        "requests": requests,
        "failures": failures,
        "events_per_second": events_per_second,
        "acknowledged": acknowledged,
        "stored": rows,
        "distinct_stored": distinct,
        "exactly_once": exactly_once,
        "drain_seconds_after_load": drain_seconds,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "peak_rss_mib": peak_rss_mib,
        "held": held,
        "cost": cost,
        "timeline": timeline,
    })
}

/// `total` events sent as fast as the receiver answers, timed until the last one is attributed:
/// what the whole pipeline sustains in this layout.
async fn saturated(partitions: u32, events: usize, total: u64, layout: Layout) -> Value {
    // Several connections, as a real deployment has; each request lands on a partition by its
    // request id either way.
    let connections = match layout {
        Layout::All => 1,
        Layout::Stages { .. } => SCALE_OUT_CONNECTIONS,
    };
    let run = start(partitions, layout, connections).await;
    let cost = gf_tests::cost::Processes::new(run.pids()).start();
    let started = Instant::now();
    let (requests, acknowledged, failures) = load(
        evenly(&run, None),
        events,
        Until::Batches(total / events as u64),
    )
    .await;
    let ingest_seconds = started.elapsed().as_secs_f64();
    let (rows, distinct, _) = drained(&run, acknowledged).await;
    let pipeline_seconds = started.elapsed().as_secs_f64();
    let cost = cost.per_event(rows as u64, pipeline_seconds);
    finish(run).await;
    let (run, normalizers, attributors) = match layout {
        Layout::All => ("scaling", 1, 1),
        Layout::Stages {
            normalizers,
            attributors,
        } => ("scale-out", normalizers, attributors),
    };
    json!({
        "run": run,
        "partitions": partitions,
        "batch": events,
        "normalizers": normalizers,
        "attributors": attributors,
        "events": acknowledged,
        "requests": requests,
        "failures": failures,
        "ingest_events_per_second": acknowledged as f64 / ingest_seconds,
        "pipeline_events_per_second": rows as f64 / pipeline_seconds,
        "exactly_once": rows as u64 == acknowledged && distinct == rows,
        "cost": cost,
    })
}

/// Partitions of the raw topic in the fairness runs.
const FAIRNESS_PARTITIONS: u32 = 6;
/// Events/s each of the nine small connections sends; the big one sends ten times as much.
const FAIRNESS_SMALL_RATE: f64 = 250.0;

/// Seconds at the start of a fairness run left out of its p99s: the bench's 20,000 users are all
/// new in the first seconds, and creating them is a backlog every connection waits behind,
/// twice as long when the load is twice as high. The p99s with them are reported too.
const FAIRNESS_WARM_UP_SECONDS: i64 = 10;

/// p99 from receive to attributed row of the events of `connections` received since `since`.
async fn p99_of(
    client: &tokio_postgres::Client,
    connections: &[uuid::Uuid],
    since: chrono::DateTime<chrono::Utc>,
) -> Option<f64> {
    client
        .query_one(
            "SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY
                    extract(epoch FROM attributed_at - received_at) * 1000)
               FROM business_events WHERE connection_id = ANY($1) AND received_at >= $2",
            &[&connections, &since],
        )
        .await
        .unwrap()
        .get(0)
}

/// Nine connections at [`FAIRNESS_SMALL_RATE`] each for `seconds`, alone and then beside one
/// connection at ten times their rate: the nine's p99 from receive to attributed row in both runs,
/// and how the big connection's events spread over the raw topic's partitions.
async fn fairness(seconds: u64) -> Value {
    let mut runs = Vec::new();
    for with_big in [false, true] {
        let run = start(FAIRNESS_PARTITIONS, Layout::All, 10).await;
        let big = run.ingest_urls[9].clone();
        let mut senders: Vec<Sender> = run.ingest_urls[..9]
            .iter()
            .map(|url| Sender {
                url: url.clone(),
                rate: Some(FAIRNESS_SMALL_RATE),
            })
            .collect();
        if with_big {
            // Ten senders, as a big customer's many clients would be.
            senders.extend((0..10).map(|_| Sender {
                url: big.clone(),
                rate: Some(FAIRNESS_SMALL_RATE),
            }));
        }
        let load_started = chrono::Utc::now();
        let (_, acknowledged, failures) =
            load(senders, 100, Until::Elapsed(Duration::from_secs(seconds))).await;
        let (rows, _, drain_seconds) = drained(&run, acknowledged).await;
        let client = run.db.client().await;
        // With the big connection, it is the one with ten times the events of any other.
        let rows_by_connection = client
            .query(
                "SELECT connection_id, count(DISTINCT raw_partition)
                   FROM business_events GROUP BY connection_id ORDER BY count(*) DESC",
                &[],
            )
            .await
            .unwrap();
        let nine: Vec<uuid::Uuid> = if with_big {
            rows_by_connection
                .iter()
                .skip(1)
                .map(|r| r.get(0))
                .collect()
        } else {
            rows_by_connection.iter().map(|r| r.get(0)).collect()
        };
        let steady = load_started + chrono::Duration::seconds(FAIRNESS_WARM_UP_SECONDS);
        let nine_p99 = p99_of(&client, &nine, load_started).await;
        let nine_p99_steady = p99_of(&client, &nine, steady).await;
        let big_partitions: Option<i64> = with_big.then(|| rows_by_connection[0].get(1));
        // The big one's own p99: equal to the nine's when no connection waits behind another.
        let big: Vec<uuid::Uuid> = with_big
            .then(|| rows_by_connection[0].get(0))
            .into_iter()
            .collect();
        let big_p99_steady = if with_big {
            p99_of(&client, &big, steady).await
        } else {
            None
        };
        finish(run).await;
        runs.push(json!({
            "with_big_connection": with_big,
            "acknowledged": acknowledged,
            "stored": rows,
            "failures": failures,
            "drain_seconds_after_load": drain_seconds,
            "nine_latency_p99_ms_all": nine_p99,
            "nine_latency_p99_ms": nine_p99_steady,
            "big_connection_partitions": big_partitions,
            "big_latency_p99_ms": big_p99_steady,
        }));
    }
    let alone = runs[0]["nine_latency_p99_ms"].as_f64();
    let beside = runs[1]["nine_latency_p99_ms"].as_f64();
    json!({
        "run": "fairness",
        "seconds": seconds,
        "partitions": FAIRNESS_PARTITIONS,
        "small_events_per_second": FAIRNESS_SMALL_RATE,
        "big_events_per_second": FAIRNESS_SMALL_RATE * 10.0,
        "nine_p99_ms_alone": alone,
        "nine_p99_ms_beside_the_big_one": beside,
        "p99_ratio": alone.zip(beside).map(|(a, b)| b / a),
        "big_connection_partitions": runs[1]["big_connection_partitions"],
        "big_p99_ms": runs[1]["big_latency_p99_ms"],
        "warm_up_seconds": FAIRNESS_WARM_UP_SECONDS,
        "nine_p99_ms_alone_with_warm_up": runs[0]["nine_latency_p99_ms_all"],
        "nine_p99_ms_beside_the_big_one_with_warm_up": runs[1]["nine_latency_p99_ms_all"],
        "runs": runs,
    })
}

/// Bisects for `attempts` paced runs between `low` and `high` (above what the pipeline does
/// saturated). `held` is a rate already seen to hold (the sustained run's), if any; the result
/// names only rates that were run.
async fn highest(
    seconds: u64,
    mut low: f64,
    mut high: f64,
    mut held: Option<(f64, Option<f64>)>,
    attempts: usize,
) -> Value {
    let mut tried = Vec::new();
    let mut failed = None;
    for _ in 0..attempts {
        let rate = ((low + high) / 2.0 / 100.0).round() * 100.0;
        let mut result = sustained(seconds, rate, 100).await;
        let ok = result["held"].as_bool() == Some(true);
        if ok {
            low = rate;
            held = Some((rate, result["latency_p99_ms"].as_f64()));
        } else {
            high = rate;
            failed = Some(rate);
        }
        // The timeline and cost of each attempt stay in its own line.
        result["run"] = json!("highest attempt");
        println!("RESULT {result}");
        tried.push(json!({
            "rate": rate,
            "held": ok,
            "latency_p99_ms": result["latency_p99_ms"],
            "drain_seconds_after_load": result["drain_seconds_after_load"],
        }));
    }
    json!({
        "run": "highest",
        "seconds": seconds,
        "highest_held_events_per_second": held.map(|(rate, _)| rate),
        "latency_p99_ms_at_highest": held.and_then(|(_, p99)| p99),
        "lowest_failed_events_per_second": failed,
        "criteria": {
            "went_in_at_least_share_of_offered": MIN_SHARE_OF_OFFERED,
            "lag_growth_over_the_load_at_most": "one second of load (least-squares trend)",
            "max_drain_seconds_after_load": MAX_DRAIN_SECONDS,
            "exactly_once": true,
        },
        "attempts": tried,
    })
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
    let mut sustained_held = None;
    if args.iter().any(|a| a == "fairness-only") {
        println!("RESULT {}", fairness(seconds).await);
        return;
    }
    if !args.iter().any(|a| a == "scaling-only") {
        let result = sustained(seconds, rate, 100).await;
        if result["held"].as_bool() == Some(true) {
            sustained_held = Some((rate, result["latency_p99_ms"].as_f64()));
        }
        println!("RESULT {result}");
    }
    if !args.iter().any(|a| a == "scaling-only") {
        println!("RESULT {}", fairness(seconds).await);
    }
    if args.iter().any(|a| a.starts_with("scaling")) {
        let mut best_saturated: f64 = 0.0;
        for partitions in [1, 3, 6] {
            for events in [100, 1000] {
                let result = saturated(partitions, events, 200_000, Layout::All).await;
                best_saturated = best_saturated
                    .max(result["pipeline_events_per_second"].as_f64().unwrap_or(0.0));
                println!("RESULT {result}");
            }
        }
        for (normalizers, attributors) in [(1, 1), (2, 2)] {
            let layout = Layout::Stages {
                normalizers,
                attributors,
            };
            println!("RESULT {}", saturated(6, 100, 200_000, layout).await);
        }
        // A rate that held is the floor; the pipeline's saturated rate plus a margin is above
        // anything a paced run can hold.
        let low = if sustained_held.is_some() {
            rate
        } else {
            rate / 2.0
        };
        let high = (best_saturated * 1.1).max(low * 1.2);
        println!(
            "RESULT {}",
            highest(seconds, low, high, sustained_held, 3).await
        );
    }
}
