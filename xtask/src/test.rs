//! `cargo xtask test`: the README's test command and what CI runs.
//!
//! Formatting, lints, infrastructure up, migrations, every test of the workspace, the secret-leak
//! check of the run's output and logs, and infrastructure down again (also when something failed)
//! if this run started it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::{infra, leaks};

/// Where the tests' PostgreSQL and Kafka come from.
#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub enum Backend {
    /// `DATABASE_URL` / `KAFKA_BROKERS` when set, else a private PostgreSQL cluster and an
    /// Apache Kafka broker started here (what CI uses).
    #[default]
    Local,
    /// PostgreSQL and Apache Kafka in Docker containers (testcontainers); needs a Docker engine.
    Containers,
}

pub fn run(root: &Path, backend: Backend, cargo_test_args: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    step(
        "cargo fmt --check",
        cargo(root).args(["fmt", "--all", "--check"]),
    )?;
    step(
        "cargo clippy",
        cargo(root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;

    if let Backend::Containers = backend {
        let containers = infra::containers::start()?;
        with_infra(root, &containers.vars, cargo_test_args)?;
        eprintln!("All checks passed in {:.0?}.", started.elapsed());
        return Ok(());
    }
    let env = infra::up(root, &infra::External::from_env())
        .context("starting the local infrastructure")?;
    eprintln!("{}", env.describe());
    let result = with_infra(root, &env.vars(), cargo_test_args);
    if env.started_now
        && let Err(e) = infra::down(root)
    {
        eprintln!("warning: stopping the local infrastructure failed: {e:#}");
    }
    result?;
    eprintln!("All checks passed in {:.0?}.", started.elapsed());
    Ok(())
}

fn with_infra(
    root: &Path,
    vars: &[(String, String)],
    cargo_test_args: &[String],
) -> anyhow::Result<()> {
    let with_env = |cmd: &mut Command| {
        for (k, v) in vars {
            cmd.env(k, v);
        }
    };
    let mut migrate = cargo(root);
    migrate.args(["run", "--quiet", "--package", "gf", "--", "migrate"]);
    with_env(&mut migrate);
    step("gf migrate", &mut migrate)?;

    let database_url = &vars
        .iter()
        .find(|(k, _)| k == "DATABASE_URL")
        .context("no DATABASE_URL")?
        .1;
    drop_test_databases(database_url)?;

    // Without capture, everything the tests print is in the output the leak check reads.
    let mut test = cargo(root);
    // Every failure in one run, not only the first test binary's.
    test.args(["test", "--workspace", "--no-fail-fast", "--", "--nocapture"])
        .args(cargo_test_args);
    with_env(&mut test);
    let output = root.join("target/test-output.log");
    let tested = step_teed("cargo test", &mut test, &output);
    let leaks = leaks::check(root, &output);
    tested.and(leaks)
}

/// Runs `cmd` with its stdout and stderr shown and also written to `log`.
fn step_teed(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<()> {
    eprintln!("==> {name} (output also in {})", log.display());
    let file = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {name}"))?;
    let copy = |from: Box<dyn Read + Send>, to: Box<dyn Write + Send>, file: std::fs::File| {
        std::thread::spawn(move || {
            let (mut from, mut to, mut file) = (BufReader::new(from), to, file);
            let mut line = Vec::new();
            while from.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let _ = to.write_all(&line);
                let _ = file.write_all(&line);
                line.clear();
            }
        })
    };
    let out = copy(
        Box::new(child.stdout.take().context("stdout")?),
        Box::new(std::io::stdout()),
        file.try_clone()?,
    );
    let err = copy(
        Box::new(child.stderr.take().context("stderr")?),
        Box::new(std::io::stderr()),
        file,
    );
    let status = child.wait()?;
    let _ = (out.join(), err.join());
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

/// Each integration test makes a database of its own; clear the ones earlier runs left.
fn drop_test_databases(database_url: &str) -> anyhow::Result<()> {
    let mut client = database_url
        .parse::<postgres::Config>()?
        .connect(postgres::NoTls)?;
    let names: Vec<String> = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'gf\\_test\\_%'",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in names {
        client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))?;
    }
    Ok(())
}

fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

fn step(name: &str, cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("==> {name}");
    let status = cmd.status().with_context(|| format!("cannot run {name}"))?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}
