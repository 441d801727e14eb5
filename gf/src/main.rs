//! `gf`: the operator interface. Every command takes `--json` and then prints one
//! JSON document on stdout (an `{"error": ...}` document on failure); logs go to stderr.

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::output::Output;

#[global_allocator]
static ALLOCATOR: gf_runtime::alloc::Split = gf_runtime::alloc::Split;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = if matches!(cli.command, Command::Run(_)) {
        "info"
    } else {
        "warn"
    };
    let service = match &cli.command {
        Command::Run(stage) => stage.service_name(),
        _ => "gf",
    };
    let _telemetry = gf_runtime::telemetry::init(service, default_log);
    let out = Output::new(cli.json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return out.fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async {
        let config = gf_runtime::Config::from_env()?;
        match cli.command {
            Command::Migrate => commands::migrate::run(&config, &out).await,
            Command::Topics(cmd) => commands::topics::run(cmd, &config, &out).await,
            Command::Product(cmd) => commands::product::run(cmd, &config, &out).await,
            Command::Connection(cmd) => commands::connection::run(cmd, &config, &out).await,
            Command::Run(cmd) => commands::run::run(cmd, &config).await,
            Command::Replay(args) => commands::replay::run(args, &config, &out).await,
            Command::Import(args) => commands::import::run(args, &config, &out, cli.json).await,
            Command::Emit(cmd) => commands::emit::run(cmd, &config, &out).await,
            Command::Endpoint(cmd) => commands::endpoint::run(cmd, &config, &out).await,
            Command::Deliveries(cmd) => commands::deliveries::run(cmd, &config, &out).await,
            Command::Deadletters(cmd) => commands::deadletters::run(cmd, &config, &out).await,
            Command::Outcomes(cmd) => commands::outcomes::run(cmd, &config, &out).await,
            Command::Tail(args) => commands::tail::run(args, &config, &out).await,
            Command::AdminKey(cmd) => commands::admin_key::run(cmd, &config, &out).await,
            Command::Audit(cmd) => commands::audit::run(cmd, &config, &out).await,
            Command::DemoSink {
                listen,
                log,
                secret_file,
            } => commands::demo_sink::run(listen, log, secret_file).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => out.fail(&e),
    }
}
