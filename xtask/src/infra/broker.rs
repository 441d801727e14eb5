//! A local Kafka-compatible broker: tansu 0.6.0, on 127.0.0.1 and a free port.
//!
//! `memory://` by default (fast, loses everything on restart); `--durable` uses tansu's sqlite
//! engine under `target/infra/broker/`, which never serves compressed batches back, so producer
//! compression is switched off for it through `GF_KAFKA_COMPRESSION=none`.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use super::{Service, Started, infra_dir};
use crate::process::{
    cmdline, find_executable, free_port, kafka_answers, pid_alive, run, terminate, wait_until,
};

const TANSU_VERSION: &str = "0.6.0";
const INSTALL: &[&str] = &[
    "install",
    "tansu",
    "--version",
    TANSU_VERSION,
    "--locked",
    "--features",
    "dynostore,libsql",
];

pub fn healthy(service: &Service) -> bool {
    service.started.as_ref().is_none_or(|s| pid_alive(s.pid))
        && service.address.split(',').any(kafka_answers)
}

pub fn is_durable(service: &Service) -> bool {
    service
        .env
        .iter()
        .any(|(k, v)| k == "GF_KAFKA_COMPRESSION" && v == "none")
}

/// `KAFKA_BROKERS` when one of them answers, else a tansu broker of our own.
pub fn provide(root: &Path, durable: bool, external: Option<&str>) -> anyhow::Result<Service> {
    if let Some(brokers) = external {
        if brokers.split(',').any(kafka_answers) {
            return Ok(Service {
                address: brokers.to_owned(),
                started: None,
                env: vec![],
            });
        }
        eprintln!(
            "KAFKA_BROKERS is set but no broker answers; starting a local tansu broker instead."
        );
    }
    start(root, durable)
}

fn start(root: &Path, durable: bool) -> anyhow::Result<Service> {
    let tansu = tansu_binary()?;
    let dir = infra_dir(root).join("broker");
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("tansu.log");
    let port = free_port()?;
    let address = format!("127.0.0.1:{port}");
    let storage = if durable {
        "sqlite://tansu.db"
    } else {
        "memory://tansu/"
    };
    let log_file = File::create(&log).context("create the broker log")?;
    let child = Command::new(&tansu)
        .args(["broker", "--listener-url"])
        .arg(format!("tcp://{address}"))
        .arg("--advertised-listener-url")
        .arg(format!("tcp://{address}"))
        .args(["--storage-engine", storage, "--cluster-id", "gf-local"])
        // Our own OTLP settings are for the pipeline, not the broker.
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("RUST_LOG", "warn")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        // Its own process group: a Ctrl-C meant for `cargo xtask test` does not kill it halfway.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", tansu.display()))?;
    let pid = child.id();
    // The broker outlives this process on purpose; `infra down` stops it by pid.
    drop(child);
    wait_until("the tansu broker", Duration::from_secs(30), || {
        !pid_alive(pid) || kafka_answers(&address)
    })?;
    if !pid_alive(pid) {
        bail!("the tansu broker exited at start; see {}", log.display());
    }
    let env = if durable {
        vec![("GF_KAFKA_COMPRESSION".into(), "none".into())]
    } else {
        vec![]
    };
    Ok(Service {
        address,
        started: Some(Started {
            pid,
            port,
            data_dir: durable.then_some(dir),
            log,
        }),
        env,
    })
}

pub fn stop(service: &Service) -> anyhow::Result<()> {
    let Some(started) = &service.started else {
        return Ok(());
    };
    // Only a process that is still our broker: pids are reused.
    if pid_alive(started.pid) && cmdline(started.pid).contains("tansu") {
        terminate(started.pid, Duration::from_secs(10))?;
    }
    Ok(())
}

/// The tansu binary; `cargo install`s it once when missing.
fn tansu_binary() -> anyhow::Result<PathBuf> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|h| h.join("bin"))
        .into_iter()
        .collect::<Vec<_>>();
    if let Some(found) = find_executable("tansu", &cargo_bin) {
        return Ok(found);
    }
    let Some(cargo) = find_executable("cargo", &cargo_bin) else {
        bail!(
            "the tansu broker is not installed and cargo was not found. Install Rust, then run: cargo {}",
            INSTALL.join(" ")
        );
    };
    eprintln!("Installing the tansu {TANSU_VERSION} broker (once; about 11 minutes on 2 cores)...");
    run(Command::new(cargo)
        .args(INSTALL)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit()))
    .with_context(|| {
        format!(
            "installing tansu failed; run it yourself: cargo {}",
            INSTALL.join(" ")
        )
    })?;
    find_executable("tansu", &cargo_bin)
        .context("tansu was installed but is not on PATH or in ~/.cargo/bin")
}
