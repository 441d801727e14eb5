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
    let mut figures = Vec::new();
    for r in &results {
        let figure = Figure::new(
            format!("attribution, {}", r["mix"].as_str().unwrap_or("mix")),
            number(r, "events_per_second")?,
            "events/s",
        );
        figures.push(if r["mix"] == "mixed" {
            figure.at_least(30_000.0)
        } else {
            figure
        });
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
