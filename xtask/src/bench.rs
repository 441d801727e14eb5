//! `cargo xtask bench NAME`: runs a stage's benchmarks against the local infrastructure, prints a
//! table and writes `target/bench/NAME.json` (every figure with its unit and, where the project has
//! one, its target).
//!
//! Pure-code benchmarks use criterion (`cargo bench`), whose estimates are read back from
//! `target/criterion/`; benchmarks that need the broker or PostgreSQL are criterion-less bench
//! binaries that print one `RESULT {json}` line each.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;

use crate::infra;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Bench {
    Receiver,
    Normalizer,
    Attributor,
    Notifier,
    /// `gf run all` under a sustained load for 60 s, then the scaling runs (partitions, batch size).
    E2e,
    /// `gf import` of a generated Amplitude Export API zip (200,000 events) into the broker.
    Import,
    /// Every benchmark above, one after the other.
    All,
}

/// One measured number.
#[derive(Debug, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    /// The figure the project promises, if any; `met` says whether this run reached it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
    /// The target is a ceiling (latency, memory) rather than a floor.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub target_is_maximum: bool,
    /// Lowest and highest of the rounds when the figure is their median.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<(f64, f64)>,
}

impl Figure {
    fn new(name: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Figure {
            name: name.into(),
            value,
            unit,
            target: None,
            met: None,
            target_is_maximum: false,
            spread: None,
        }
    }

    /// The median of `rounds`, with their range as the spread.
    fn median(name: impl Into<String>, rounds: &[f64], unit: &'static str) -> Self {
        let mut sorted = rounds.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mut figure = Figure::new(name, sorted[sorted.len() / 2], unit);
        figure.spread = Some((sorted[0], sorted[sorted.len() - 1]));
        figure
    }

    /// A latency that must be at most `target`.
    fn at_most(mut self, target: f64) -> Self {
        self.met = Some(self.value <= target);
        self.target = Some(target);
        self.target_is_maximum = true;
        self
    }

    /// A rate that must be at least `target`.
    fn at_least(mut self, target: f64) -> Self {
        self.met = Some(self.value >= target);
        self.target = Some(target);
        self
    }
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    bench: &'a str,
    machine: Machine,
    /// Where the broker and PostgreSQL ran.
    infrastructure: String,
    figures: Vec<Figure>,
    /// Raw results of the broker/database benches, as they printed them.
    details: Vec<Value>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    memory_gib: f64,
    os: String,
}

impl Machine {
    fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into());
        let memory_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let os = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|l| l.trim_matches('"').to_owned())
            .unwrap_or_else(|| std::env::consts::OS.into());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            os,
        }
    }
}

pub fn run(root: &Path, bench: Bench) -> anyhow::Result<()> {
    let benches = match bench {
        Bench::All => vec![
            Bench::Receiver,
            Bench::Normalizer,
            Bench::Attributor,
            Bench::Notifier,
            Bench::E2e,
            Bench::Import,
        ],
        one => vec![one],
    };
    let env = infra::up(root, &infra::External::from_env())
        .context("starting the local infrastructure")?;
    eprintln!("{}", env.describe());
    let vars = env.vars();
    let infrastructure = format!(
        "PostgreSQL and broker on this machine: {}",
        env.describe().replace('\n', "; ")
    );
    let result = (|| {
        migrate(root, &vars)?;
        for bench in &benches {
            let (name, (figures, details)) = match bench {
                Bench::Receiver => ("receiver", receiver(root, &vars)?),
                Bench::Normalizer => ("normalizer", (normalizer(root, &vars)?, Vec::new())),
                Bench::Attributor => ("attributor", attributor(root, &vars)?),
                Bench::Notifier => ("notifier", notifier(root, &vars)?),
                Bench::E2e => ("e2e", e2e(root, &vars)?),
                Bench::Import => ("import", import(root, &vars)?),
                Bench::All => unreachable!("expanded above"),
            };
            write_report(
                root,
                &Report {
                    bench: name,
                    machine: Machine::detect(),
                    infrastructure: infrastructure.clone(),
                    figures,
                    details,
                },
            )?;
        }
        Ok(())
    })();
    if env.started_now
        && let Err(e) = infra::down(root)
    {
        eprintln!("warning: stopping the local infrastructure failed: {e:#}");
    }
    result
}

/// A receiver run above this share of a ceiling means the ceiling is not one.
const CEILING_SLACK: f64 = 1.05;
const CEILING_A: &str = "receiver's sink alone (ceiling a)";
const CEILING_B: &str = "no-op actix handler (ceiling b)";

fn receiver(root: &Path, vars: &[(String, String)]) -> anyhow::Result<(Vec<Figure>, Vec<Value>)> {
    let mut figures = body_check(root, vars)?;
    let results = cargo_bench(root, vars, "gf-receiver", "ingest", &[])?;
    // Every round of a case, in round order.
    let rounds = |case: &str, batch: u64, key: &str| -> anyhow::Result<Vec<f64>> {
        results
            .iter()
            .filter(|r| r["case"] == case && r["batch"].as_u64() == Some(batch))
            .map(|r| number(r, key))
            .collect()
    };
    let mut cases: Vec<(String, u64)> = Vec::new();
    for r in &results {
        let key = (
            r["case"].as_str().unwrap_or("?").to_owned(),
            r["batch"].as_u64().unwrap_or(0),
        );
        if !cases.contains(&key) {
            cases.push(key);
        }
    }
    let mut wrong = Vec::new();
    for (case, batch) in &cases {
        let (case, batch) = (case.as_str(), *batch);
        let label = format!("{case}, {batch}-event batches");
        let events = Figure::median(
            format!("{label}: events"),
            &rounds(case, batch, "events_per_second")?,
            "events/s",
        );
        figures.push(if case == "receiver" && batch == 1000 {
            events.at_least(200_000.0)
        } else {
            events
        });
        let requests = Figure::median(
            format!("{label}: requests"),
            &rounds(case, batch, "requests_per_second")?,
            "requests/s",
        );
        figures.push(if case == "receiver" && batch == 1 {
            requests.at_least(10_000.0)
        } else {
            requests
        });
        figures.push(Figure::median(
            format!("{label}: p50"),
            &rounds(case, batch, "p50_ms")?,
            "ms",
        ));
        let p99 = Figure::median(
            format!("{label}: p99"),
            &rounds(case, batch, "p99_ms")?,
            "ms",
        );
        figures.push(if case.contains("paced") {
            p99.at_most(25.0)
        } else {
            p99
        });
        if case != "receiver" {
            continue;
        }
        let receiver = rounds(case, batch, "events_per_second")?;
        let a = rounds(CEILING_A, batch, "events_per_second")?;
        let b = rounds(CEILING_B, batch, "events_per_second")?;
        for (ceiling_rounds, short) in [(&a, "a"), (&b, "b")] {
            if ceiling_rounds.len() != receiver.len() {
                continue;
            }
            // Each round's receiver against the ceiling measured beside it.
            let ratios: Vec<f64> = receiver
                .iter()
                .zip(ceiling_rounds)
                .map(|(r, c)| r / c)
                .collect();
            let ratio = Figure::median(
                format!("receiver / ceiling ({short}), {batch}-event batches"),
                &ratios,
                "ratio",
            );
            if ratio.value > CEILING_SLACK {
                wrong.push(format!("{} = {:.2}", ratio.name, ratio.value));
            }
            figures.push(if short == "a" {
                ratio.at_least(0.8)
            } else {
                ratio
            });
        }
        // When both ceilings are CPU-bound on the same cores, the receiver pays for both: a
        // request costs the sink's time plus HTTP's, so it cannot pass 1 / (1/a + 1/b) whatever
        // the body check costs. Against that bound, what is left is the check and the copies.
        if a.len() == receiver.len() && b.len() == receiver.len() {
            let ratios: Vec<f64> = (0..receiver.len())
                .map(|i| receiver[i] * (1.0 / a[i] + 1.0 / b[i]))
                .collect();
            figures.push(Figure::median(
                format!("receiver / shared-cores bound 1/(1/a + 1/b), {batch}-event batches"),
                &ratios,
                "ratio",
            ));
        }
    }
    if !wrong.is_empty() {
        // Print what was measured before failing, so the run can be read.
        eprintln!(
            "{}",
            figures
                .iter()
                .map(|f| format!("{}: {:.2}", f.name, f.value))
                .collect::<Vec<_>>()
                .join("\n")
        );
        bail!(
            "the receiver measured above {CEILING_SLACK} of a ceiling, so that ceiling is not one and the method is wrong: {}",
            wrong.join("; ")
        );
    }
    Ok((figures, results))
}

/// The body check's speed per core beside its references (criterion, `receiver/benches/body_check.rs`).
fn body_check(root: &Path, vars: &[(String, String)]) -> anyhow::Result<Vec<Figure>> {
    cargo_bench(root, vars, "gf-receiver", "body_check", &["--noplot"])?;
    let mut figures = Vec::new();
    for events in [1usize, 10, 100, 1000] {
        // The bodies' sizes, as the bench makes them, from criterion's own record.
        let bytes = criterion_throughput_bytes(root, "body_check", &format!("inspect/{events}"))?;
        for (id, label) in [
            ("inspect", "body check (count + validate)"),
            (
                "serde_path",
                "body check by serde visitors alone (before the byte scanner)",
            ),
            ("serde_skip", "serde_json skipping the body (reference)"),
            ("utf8", "UTF-8 validation (reference)"),
        ] {
            let ns = criterion_mean_ns(root, "body_check", &format!("{id}/{events}"))?;
            let figure = Figure::new(
                format!("{label}, {events}-event batches, one core"),
                bytes / ns * 1e3,
                "MB/s",
            );
            figures.push(if id == "inspect" && events == 1000 {
                figure.at_least(2_000.0)
            } else {
                figure
            });
        }
    }
    Ok(figures)
}

fn normalizer(root: &Path, vars: &[(String, String)]) -> anyhow::Result<Vec<Figure>> {
    cargo_bench(root, vars, "gf-normalizer", "mapping", &["--noplot"])?;
    let mut figures = Vec::new();
    for (group, label) in [
        ("mapping", "mapping"),
        ("mapping_encoded", "mapping + JSON encoding"),
    ] {
        for events in [1u32, 100, 1000] {
            let ns = criterion_mean_ns(root, group, &format!("amplitude_{events}"))?;
            let rate = f64::from(events) / (ns / 1e9);
            let figure = Figure::new(
                format!("{label}, {events}-event batches, one core"),
                rate,
                "events/s",
            );
            // The consumer's real work is mapping and encoding.
            figures.push(match (group, events) {
                ("mapping", 1000) => figure.at_least(150_000.0),
                ("mapping_encoded", 1000) => figure.at_least(300_000.0),
                _ => figure,
            });
        }
    }
    let results = cargo_bench(root, vars, "gf-normalizer", "consumer_loop", &[])?;
    for r in &results {
        let partitions = &r["partitions"];
        figures.push(
            Figure::new(
                format!("consumer loop with the broker, {partitions} partitions"),
                number(r, "events_per_second")?,
                "events/s",
            )
            .at_least(100_000.0),
        );
        figures.push(Figure::new(
            "consumer loop: seconds measured (from the start, group join included)",
            number(r, "seconds")?,
            "s",
        ));
    }
    Ok(figures)
}

fn attributor(root: &Path, vars: &[(String, String)]) -> anyhow::Result<(Vec<Figure>, Vec<Value>)> {
    let results = cargo_bench(root, vars, "gf-attributor", "attribution", &[])?;
    let of = |mix: &str| -> Vec<&Value> { results.iter().filter(|r| r["mix"] == mix).collect() };
    let rounds =
        |runs: &[&Value], read: &dyn Fn(&Value) -> Option<f64>| -> anyhow::Result<Vec<f64>> {
            runs.iter()
                .map(|r| read(r).with_context(|| format!("incomplete attribution result: {r}")))
                .collect()
        };
    let rate = |r: &Value| r["events_per_second"].as_f64();
    let gf_cpu = |r: &Value| r["cost"]["gf"]["cpu_us_per_event"].as_f64();
    // PostgreSQL's CPU is known only when xtask started it (its pid is in the state file).
    let pg_cpu = |r: &Value| r["cost"]["postgresql"]["cpu_us_per_event"].as_f64();
    let wal = |r: &Value| r["wal_bytes_per_event"].as_f64();

    let mut figures = Vec::new();
    for r in results.iter().filter(|r| r["round"].is_null()) {
        let mix = r["mix"].as_str().unwrap_or("mix");
        figures.push(Figure::new(
            format!("attribution, {mix}"),
            number(r, "events_per_second")?,
            "events/s",
        ));
    }
    let (mixed, ceiling) = (of("mixed"), of("ceiling"));
    if mixed.is_empty() || mixed.len() != ceiling.len() {
        bail!("the attribution bench printed no paired rounds of the mixed load and its ceiling");
    }
    let mixed_rates = rounds(&mixed, &rate)?;
    let ceiling_rates = rounds(&ceiling, &rate)?;
    let ratios: Vec<f64> = mixed_rates
        .iter()
        .zip(&ceiling_rates)
        .map(|(m, c)| m / c)
        .collect();
    figures.push(
        Figure::median("attribution, mixed load", &mixed_rates, "events/s").at_least(30_000.0),
    );
    figures.push(Figure::median(
        "attribution ceiling: the same rows by binary COPY",
        &ceiling_rates,
        "events/s",
    ));
    figures
        .push(Figure::median("attribution, mixed load / ceiling", &ratios, "ratio").at_least(0.5));
    for (name, runs) in [("mixed load", &mixed), ("ceiling", &ceiling)] {
        figures.push(Figure::median(
            format!("attribution, {name}: gf CPU per event"),
            &rounds(runs, &gf_cpu)?,
            "µs",
        ));
        if let Ok(cpu) = rounds(runs, &pg_cpu) {
            figures.push(Figure::median(
                format!("attribution, {name}: PostgreSQL CPU per event"),
                &cpu,
                "µs",
            ));
        }
        figures.push(Figure::median(
            format!("attribution, {name}: WAL per event"),
            &rounds(runs, &wal)?,
            "bytes",
        ));
    }
    Ok((figures, results))
}

fn notifier(root: &Path, vars: &[(String, String)]) -> anyhow::Result<(Vec<Figure>, Vec<Value>)> {
    let results = cargo_bench(root, vars, "gf-notifier", "delivery", &[])?;
    let mut figures = Vec::new();
    for r in &results {
        let figure = Figure::new(
            format!(
                "deliveries to a local sink, {}",
                r["scenario"].as_str().unwrap_or("?")
            ),
            number(r, "deliveries_per_second")?,
            "deliveries/s",
        );
        figures.push(figure.at_least(2_000.0));
    }
    Ok((figures, results))
}

fn e2e(root: &Path, vars: &[(String, String)]) -> anyhow::Result<(Vec<Figure>, Vec<Value>)> {
    let results = cargo_bench(root, vars, "gf", "e2e", &["scaling"])?;
    let mut figures = Vec::new();
    for r in &results {
        if r["run"] == "sustained" {
            figures.push(Figure::new(
                "sustained load: events in",
                number(r, "events_per_second")?,
                "events/s",
            ));
            figures.push(Figure::new(
                "receive to attributed row: p50",
                number(r, "latency_p50_ms")?,
                "ms",
            ));
            figures.push(
                Figure::new(
                    "receive to attributed row: p99",
                    number(r, "latency_p99_ms")?,
                    "ms",
                )
                .at_most(500.0),
            );
            cost_figures(&mut figures, "sustained", &r["cost"])?;
            figures.push(
                Figure::new("peak RSS of gf run all", number(r, "peak_rss_mib")?, "MiB")
                    .at_most(300.0),
            );
            let exact = r["exactly_once"].as_bool() == Some(true);
            figures.push(
                Figure::new(
                    "acknowledged events stored exactly once",
                    f64::from(u8::from(exact)),
                    "bool",
                )
                .at_least(1.0),
            );
        } else if r["run"] == "scaling" || r["run"] == "scale-out" {
            let run = if r["run"] == "scaling" {
                format!(
                    "scaling: {} partitions, {}-event batches",
                    r["partitions"], r["batch"]
                )
            } else {
                format!(
                    "scale-out: {} normalizer and {} attributor processes, {} partitions",
                    r["normalizers"], r["attributors"], r["partitions"]
                )
            };
            figures.push(Figure::new(
                format!("{run}, whole pipeline"),
                number(r, "pipeline_events_per_second")?,
                "events/s",
            ));
            cost_figures(&mut figures, &run, &r["cost"])?;
        } else if r["run"] == "fairness" {
            let partitions = number(r, "partitions")?;
            let warm_up = number(r, "warm_up_seconds")?;
            for (key, name) in [
                (
                    "nine_p99_ms_alone_with_warm_up",
                    "fairness: nine connections' p99 receive to attributed row, alone, whole run"
                        .to_owned(),
                ),
                (
                    "nine_p99_ms_beside_the_big_one_with_warm_up",
                    "fairness: the same beside one connection at ten times their load, whole run"
                        .to_owned(),
                ),
                (
                    "nine_p99_ms_alone",
                    format!(
                        "fairness: nine connections' p99 receive to attributed row, alone, after the first {warm_up} s"
                    ),
                ),
                (
                    "nine_p99_ms_beside_the_big_one",
                    format!(
                        "fairness: the same beside one connection at ten times their load, after the first {warm_up} s"
                    ),
                ),
                (
                    "big_p99_ms",
                    format!(
                        "fairness: the big connection's own p99 in that run, after the first {warm_up} s"
                    ),
                ),
            ] {
                if let Some(ms) = r[key].as_f64() {
                    figures.push(Figure::new(name, ms, "ms"));
                }
            }
            if let Some(ratio) = r["p99_ratio"].as_f64() {
                figures.push(
                    Figure::new("fairness: p99 beside the big one / alone", ratio, "ratio")
                        .at_most(2.0),
                );
            }
            figures.push(
                Figure::new(
                    "fairness: raw partitions the big connection's events were on",
                    r["big_connection_partitions"].as_f64().unwrap_or(0.0),
                    "partitions",
                )
                .at_least(partitions),
            );
        } else if r["run"] == "highest" {
            let seconds = &r["seconds"];
            let held = r["highest_held_events_per_second"].as_f64();
            figures.push(Figure::new(
                format!("highest rate held for {seconds} s with the lag bounded (gf run all)"),
                // 0: no rate tried held.
                held.unwrap_or(0.0),
                "events/s",
            ));
            if let Some(p99) = r["latency_p99_ms_at_highest"].as_f64() {
                figures.push(Figure::new(
                    "receive to attributed row at that rate: p99",
                    p99,
                    "ms",
                ));
            }
            if let Some(failed) = r["lowest_failed_events_per_second"].as_f64() {
                figures.push(Figure::new(
                    "lowest rate tried that was not held",
                    failed,
                    "events/s",
                ));
            }
        }
        // "highest attempt" lines are each attempt's raw result, kept in the details.
    }
    Ok((figures, results))
}

/// Events in the generated export, and timed imports of it.
const IMPORT_EVENTS: usize = 200_000;
const IMPORT_ROUNDS: usize = 3;
/// A topic prefix of the bench's own, so its records stay out of the pipeline's topics.
const IMPORT_TOPIC_PREFIX: &str = "gfbench-import";

/// `gf import` (the release binary) of an Amplitude Export API zip made here, into a connection
/// of its own: events/s and MB/s as the command measures them, and the process's peak RSS.
fn import(root: &Path, vars: &[(String, String)]) -> anyhow::Result<(Vec<Figure>, Vec<Value>)> {
    eprintln!("==> gf import: {IMPORT_EVENTS} Amplitude export events, {IMPORT_ROUNDS} rounds");
    let status = cargo(root, vars)
        .args([
            "build",
            "--quiet",
            "--release",
            "--package",
            "gf",
            "--bin",
            "gf",
        ])
        .status()?;
    if !status.success() {
        bail!("building gf failed ({status})");
    }
    let gf = root.join("target/release/gf");
    let mut vars = vars.to_vec();
    vars.push(("GF_TOPIC_PREFIX".into(), IMPORT_TOPIC_PREFIX.into()));
    // The bench's raw records are of no use once measured.
    vars.push(("GF_RAW_RETENTION_HOURS".into(), "1".into()));
    let gf_json = |args: &[&str]| -> anyhow::Result<Value> {
        let out = Command::new(&gf)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .arg("--json")
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "gf {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    gf_json(&["topics", "ensure"])?;
    let product = gf_json(&["product", "create", "--name", "import bench"])?;
    let product = product["id"].as_str().context("no product id")?;
    let connection = gf_json(&[
        "connection",
        "create",
        "--product",
        product,
        "--provider",
        "amplitude",
    ])?;
    let connection = connection["id"]
        .as_str()
        .context("no connection id")?
        .to_owned();

    let dir = root.join("target/bench/import");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let file = export_zip(&dir, IMPORT_EVENTS)?;
    let file_bytes = std::fs::metadata(&file)?.len();
    let state_dir = dir.join("state");
    let (mut events, mut file_rate, mut body_rate, mut rss) = (vec![], vec![], vec![], vec![]);
    let mut details = Vec::new();
    for round in 1..=IMPORT_ROUNDS {
        let (summary, peak_kib) = measured(
            Command::new(&gf)
                .envs(vars.iter().map(|(k, v)| (k, v)))
                .args(["--json", "import", "--restart", "--connection", &connection])
                .arg("--state-dir")
                .arg(&state_dir)
                .arg(&file),
        )?;
        let seconds = number(&summary, "seconds")?;
        if number(&summary, "accepted")? as usize != IMPORT_EVENTS {
            bail!("round {round} accepted fewer events than the export holds: {summary}");
        }
        events.push(number(&summary, "events")? / seconds);
        file_rate.push(number(&summary, "bytes")? / seconds / 1e6);
        body_rate.push(number(&summary, "bodyBytes")? / seconds / 1e6);
        rss.push(peak_kib / 1024.0);
        eprintln!(
            "round {round}: {:.0} events/s, {:.1} s, peak RSS {:.0} MiB",
            events[events.len() - 1],
            seconds,
            peak_kib / 1024.0
        );
        details.push(serde_json::json!({
            "run": "import",
            "round": round,
            "file_bytes": file_bytes,
            "peak_rss_kib": peak_kib,
            "summary": {
                "events": summary["events"], "batches": summary["batches"],
                "bytes": summary["bytes"], "bodyBytes": summary["bodyBytes"],
                "seconds": summary["seconds"],
            },
        }));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let label = format!(
        "import of an Amplitude export zip ({IMPORT_EVENTS} events, {:.1} MB)",
        file_bytes as f64 / 1e6
    );
    let figures = vec![
        Figure::median(format!("{label}: events"), &events, "events/s"),
        Figure::median(format!("{label}: file read"), &file_rate, "MB/s"),
        Figure::median(
            format!("{label}: JSON lines appended to the raw topic"),
            &body_rate,
            "MB/s",
        ),
        Figure::median(format!("{label}: peak RSS of gf import"), &rss, "MiB"),
    ];
    Ok((figures, details))
}

/// Runs `command` to its end; its stdout as JSON and its peak RSS in KiB (from `wait4`, the
/// child's own, not cargo's or ours).
fn measured(command: &mut Command) -> anyhow::Result<(Value, f64)> {
    use std::io::Read;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run gf import")?;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let err_pipe = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = err_pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    });
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_string(&mut stdout)?;
    }
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in; the pid is our child's,
    // which nothing else waits for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    if waited < 0 {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    stderr.push_str(&err_reader.join().unwrap_or_default());
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("gf import failed: {}{}", stdout.trim(), stderr.trim());
    }
    let summary = serde_json::from_str(&stdout)
        .with_context(|| format!("gf import printed no JSON summary: {stdout}"))?;
    // ru_maxrss is in KiB on Linux.
    Ok((summary, usage.ru_maxrss as f64))
}

/// An Amplitude Export API archive of `events` events in `dir`: hourly `.json.gz` entries in a
/// zip, as the Export API answers. The system's `gzip` compresses (xtask has no compression
/// library); the zip container is written here, its entries stored, as they are gzip already.
fn export_zip(dir: &Path, events: usize) -> anyhow::Result<std::path::PathBuf> {
    const HOURS: usize = 24;
    let mut entries = Vec::new();
    for hour in 0..HOURS {
        let range = (hour * events / HOURS)..((hour + 1) * events / HOURS);
        let mut text = String::with_capacity(range.len() * 1200);
        for i in range {
            text.push_str(&export_line(i, hour, events));
            text.push('\n');
        }
        let name = format!("187520_2024-01-01_{hour}#0.json");
        let plain = dir.join(&name);
        std::fs::write(&plain, text)?;
        let status = Command::new("gzip")
            .arg("-6")
            .arg("-f")
            .arg(&plain)
            .status();
        match status {
            Ok(s) if s.success() => {}
            _ => bail!("`gzip` is needed to build the bench's export (apt-get install gzip)"),
        }
        let gz = dir.join(format!("{name}.gz"));
        entries.push((format!("187520/{name}.gz"), std::fs::read(&gz)?));
        std::fs::remove_file(&gz)?;
    }
    let path = dir.join("export.zip");
    std::fs::write(&path, stored_zip(&entries))?;
    Ok(path)
}

/// One line as the Export API writes it: every field it exports, most of them empty.
fn export_line(i: usize, hour: usize, events: usize) -> String {
    let second = i * 3600 / events.max(1) % 3600;
    let at = format!(
        "2024-01-01 {hour:02}:{:02}:{:02}.{:06}",
        second / 60,
        second % 60,
        i % 1_000_000
    );
    let user = i % 5000;
    let kinds = ["page_view", "feature_used", "signup", "purchase"];
    let mut properties = serde_json::json!({"path": "/pricing", "plan": "pro", "referrer": "https://www.example.com/blog/launch"});
    if i % 4 == 3 {
        properties["$revenue"] = serde_json::json!(49.0);
        properties["$price"] = serde_json::json!(49.0);
        properties["$quantity"] = serde_json::json!(1);
    }
    // Two halves: one json! of every field passes the macro's recursion limit.
    let mut line = serde_json::json!({
        "$insert_id": format!("bench-{i:08}"), "$schema": 12, "adid": null,
        "amplitude_attribution_ids": null, "amplitude_event_type": null,
        "amplitude_id": 500_000_000 + user, "app": 187520, "city": "Berlin",
        "client_event_time": at, "client_upload_time": at, "country": "Germany",
        "data": {"group_first_event": {}, "group_ids": {}, "path": "/2/httpapi"},
        "device_brand": null, "device_carrier": null, "device_family": "Mac OS",
        "device_id": format!("d{user:07}-2f6c-4b55-9d8e-0c5a1e9b7f31"), "device_manufacturer": null,
        "device_model": "Mac OS", "device_type": "Mac", "dma": null, "event_id": i,
        "event_properties": properties, "event_time": at, "event_type": kinds[i % kinds.len()],
    });
    let rest = serde_json::json!({
        "global_user_properties": {}, "group_properties": {},
        "groups": {"organization": format!("org-{}", user % 300)}, "idfa": null,
        "ip_address": "203.0.113.7", "is_attribution_event": false, "language": "English",
        "library": "amplitude-ts/2.11.0", "location_lat": null, "location_lng": null,
        "os_name": "Chrome", "os_version": "131", "partner_id": null, "paying": null,
        "platform": "Web", "processed_time": at, "region": "Land Berlin", "sample_rate": null,
        "server_received_time": at, "server_upload_time": at,
        "session_id": 1_704_067_200_000u64 + (user as u64) * 1000, "source_id": null,
        "start_version": null, "user_creation_time": "2023-06-01 08:00:00.000000",
        "user_id": format!("user-{user}"),
        "user_properties": {"email": format!("user-{user}@example.com"), "plan": "pro", "organization_name": format!("Org {}", user % 300)},
        "uuid": format!("{i:08x}-6b3f-11ec-90d6-0242ac120003"), "version_name": null,
    });
    if let (Some(line), Value::Object(rest)) = (line.as_object_mut(), rest) {
        line.extend(rest);
    }
    line.to_string()
}

/// A zip of `entries`, each stored (not compressed again): local headers, the central
/// directory, its end record. Sizes stay far below the 4 GiB that would need Zip64.
fn stored_zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    fn u16le(out: &mut Vec<u8>, v: usize) {
        out.extend_from_slice(&(v as u16).to_le_bytes());
    }
    fn u32le(out: &mut Vec<u8>, v: u64) {
        out.extend_from_slice(&(v as u32).to_le_bytes());
    }
    // 1980-01-01 00:00, the format's first day.
    const DOS_DATE: usize = 0x21;
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u64;
        let crc = u64::from(crc32(data));
        let size = data.len() as u64;
        out.extend_from_slice(b"PK\x03\x04");
        for v in [20, 0, 0, 0, DOS_DATE] {
            u16le(&mut out, v);
        }
        for v in [crc, size, size] {
            u32le(&mut out, v);
        }
        u16le(&mut out, name.len());
        u16le(&mut out, 0);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);

        central.extend_from_slice(b"PK\x01\x02");
        for v in [20, 20, 0, 0, 0, DOS_DATE] {
            u16le(&mut central, v);
        }
        for v in [crc, size, size] {
            u32le(&mut central, v);
        }
        for v in [name.len(), 0, 0, 0, 0] {
            u16le(&mut central, v);
        }
        u32le(&mut central, 0);
        u32le(&mut central, offset);
        central.extend_from_slice(name.as_bytes());
    }
    let (central_offset, central_size) = (out.len() as u64, central.len() as u64);
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    for v in [0, 0, entries.len(), entries.len()] {
        u16le(&mut out, v);
    }
    u32le(&mut out, central_size);
    u32le(&mut out, central_offset);
    u16le(&mut out, 0);
    out
}

/// CRC-32 (IEEE), as zip entries carry it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// CPU microseconds and bytes written to storage per event, per process measured (write
/// calls' bytes, sockets excluded, are in the raw results as `written_bytes_per_event`).
fn cost_figures(figures: &mut Vec<Figure>, run: &str, cost: &Value) -> anyhow::Result<()> {
    for (process, c) in cost.as_object().into_iter().flatten() {
        figures.push(Figure::new(
            format!("{run}: {process} CPU per event"),
            number(c, "cpu_us_per_event")?,
            "µs",
        ));
        figures.push(Figure::new(
            format!("{run}: {process} bytes written to storage per event"),
            number(c, "storage_bytes_per_event")?,
            "bytes",
        ));
    }
    Ok(())
}

fn number(v: &Value, key: &str) -> anyhow::Result<f64> {
    v[key]
        .as_f64()
        .with_context(|| format!("benchmark result without {key}: {v}"))
}

fn migrate(root: &Path, vars: &[(String, String)]) -> anyhow::Result<()> {
    let status = cargo(root, vars)
        .args([
            "run",
            "--quiet",
            "--release",
            "--package",
            "gf",
            "--",
            "migrate",
        ])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("gf migrate failed ({status})");
    }
    Ok(())
}

/// Runs one bench target; returns the `RESULT` lines it printed.
fn cargo_bench(
    root: &Path,
    vars: &[(String, String)],
    package: &str,
    bench: &str,
    args: &[&str],
) -> anyhow::Result<Vec<Value>> {
    eprintln!("==> cargo bench -p {package} --bench {bench}");
    let mut cmd = cargo(root, vars);
    cmd.args(["bench", "--package", package, "--bench", bench, "--"])
        .args(args)
        .stdout(Stdio::piped());
    let output = cmd
        .spawn()
        .context("cannot run cargo bench")?
        .wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    if !output.status.success() {
        bail!("cargo bench --bench {bench} failed ({})", output.status);
    }
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .map(|json| serde_json::from_str(json).context("unreadable RESULT line"))
        .collect()
}

/// A file criterion wrote for its last run of `group/id` (`estimates.json`, `benchmark.json`).
fn criterion_record(root: &Path, group: &str, id: &str, file: &str) -> anyhow::Result<Value> {
    let path = root
        .join("target/criterion")
        .join(group)
        .join(id)
        .join("new")
        .join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// Criterion's mean time per iteration, in nanoseconds, from its last run.
fn criterion_mean_ns(root: &Path, group: &str, id: &str) -> anyhow::Result<f64> {
    criterion_record(root, group, id, "estimates.json")?["mean"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("no mean for {group}/{id}"))
}

/// The bytes per iteration a criterion benchmark declared (`Throughput::Bytes`).
fn criterion_throughput_bytes(root: &Path, group: &str, id: &str) -> anyhow::Result<f64> {
    criterion_record(root, group, id, "benchmark.json")?["throughput"]["Bytes"]
        .as_f64()
        .with_context(|| format!("no byte throughput for {group}/{id}"))
}

fn cargo(root: &Path, vars: &[(String, String)]) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

fn write_report(root: &Path, report: &Report<'_>) -> anyhow::Result<()> {
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}.json", report.bench));
    std::fs::write(&path, serde_json::to_string_pretty(report)?)?;
    println!("{}", table(report));
    println!("Written to {}", path.display());
    Ok(())
}

fn table(report: &Report<'_>) -> String {
    let mut out = format!(
        "\n{} benchmark — {} ({} cores, {} GiB)\n{}\n",
        report.bench,
        report.machine.cpu,
        report.machine.cores,
        report.machine.memory_gib,
        report.infrastructure
    );
    let width = report
        .figures
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(0);
    for f in &report.figures {
        let target = match (f.target, f.met) {
            (Some(t), Some(met)) => {
                let bound = if f.target_is_maximum { "≤" } else { "≥" };
                format!(
                    "  target {bound} {t}: {}",
                    if met { "met" } else { "NOT MET" }
                )
            }
            _ => String::new(),
        };
        // Ratios and milliseconds need decimals; rates do not.
        let shown = if f.value.abs() < 100.0 {
            format!("{:.2}", f.value)
        } else {
            format!("{:.0}", f.value)
        };
        let spread = match f.spread {
            Some((low, high)) if f.value.abs() < 100.0 => format!("  ({low:.2}–{high:.2})"),
            Some((low, high)) => format!("  ({low:.0}–{high:.0})"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<width$}  {shown:>12} {}{spread}{target}",
            f.name, f.unit
        );
    }
    out
}
