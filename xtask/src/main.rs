//! `cargo xtask`: what a developer runs. `infra` starts and stops the local PostgreSQL and broker,
//! `test` is the whole check the CI runs, `demo` shows the pipeline end to end, `bench` measures,
//! `fuzz` runs the fuzz targets for a bounded time.

mod bench;
mod demo;
mod examples;
mod fuzz;
mod infra;
mod leaks;
mod process;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Project automation for the gf pipeline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Local PostgreSQL and Apache Kafka broker.
    #[command(subcommand)]
    Infra(InfraCommand),
    /// The whole pipeline on this machine, end to end, then running until Ctrl-C.
    Demo {
        /// Stop after the scripted part instead of waiting for Ctrl-C.
        #[arg(long)]
        no_wait: bool,
        /// Also run the downstream examples (examples/python/) against it: the webhook receiver
        /// gets every webhook too and must refuse a tampered one; the consumer must see every
        /// event, schema-valid.
        #[arg(long)]
        examples: bool,
    },
    /// Benchmarks against the local infrastructure; writes target/bench/NAME.json.
    Bench {
        #[arg(value_enum)]
        name: bench::Bench,
    },
    /// The cargo-fuzz targets, each for a bounded time after replaying its past failures.
    Fuzz {
        /// Seconds of fuzzing per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Targets to run (default: all).
        targets: Vec<String>,
    },
    /// Infrastructure up, formatting, lints, migrations, every test, infrastructure down.
    Test {
        /// Where PostgreSQL and Kafka come from: local processes, or Docker containers started
        /// with testcontainers (needs a Docker engine).
        #[arg(long, value_enum, env = "GF_TEST_BACKEND", default_value = "local")]
        backend: test::Backend,
        /// Arguments passed to `cargo test` after `--` (e.g. a test name filter).
        #[arg(last = true)]
        cargo_test_args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum InfraCommand {
    /// Start what is missing and write target/infra/env.
    Up,
    /// Stop exactly the processes `up` started.
    Down,
    /// Show what runs and whether it answers.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    let result = match cli.command {
        Command::Infra(InfraCommand::Up) => {
            infra::up(&root, &infra::External::from_env()).map(|env| {
                println!("{}", env.describe());
                println!("Use it with: set -a; . target/infra/env; set +a");
            })
        }
        Command::Infra(InfraCommand::Down) => infra::down(&root),
        Command::Infra(InfraCommand::Status) => infra::status(&root),
        Command::Bench { name } => bench::run(&root, name),
        Command::Fuzz { seconds, targets } => fuzz::run(&root, seconds, &targets),
        Command::Demo { no_wait, examples } => demo::run(
            &root,
            demo::Options {
                wait: !no_wait,
                examples,
                gf: None,
                topic_prefix: None,
            },
        ),
        Command::Test {
            backend,
            cargo_test_args,
        } => test::run(&root, backend, &cargo_test_args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}
