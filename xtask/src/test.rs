//! `cargo xtask test`: the README's test command and what CI runs.
//!
//! Formatting, lints, infrastructure up, migrations, every test of the workspace, and
//! infrastructure down again (also when something failed) if this run started it.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::infra;

pub fn run(root: &Path, cargo_test_args: &[String]) -> anyhow::Result<()> {
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

    let env = infra::up(root, false, &infra::External::from_env())
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

    let mut test = cargo(root);
    test.args(["test", "--workspace"]);
    if !cargo_test_args.is_empty() {
        test.arg("--").args(cargo_test_args);
    }
    with_env(&mut test);
    step("cargo test", &mut test)
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
