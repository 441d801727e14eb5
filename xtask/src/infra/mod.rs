//! `cargo xtask infra up|down|status`.
//!
//! Uses `DATABASE_URL` / `KAFKA_BROKERS` when they are set and answer; otherwise starts a private
//! PostgreSQL cluster and an Apache Kafka broker on free ports. What it started is recorded in
//! `target/infra/state.json` (with pids), so `down` stops exactly that and nothing else.
//! `target/infra/env` holds the variables the pipeline and the tests read.

mod broker;
pub mod containers;
mod postgres;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub postgres: Option<Service>,
    pub broker: Option<Service>,
}

/// One service: external (given by the environment) or started by us.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Service {
    /// `DATABASE_URL` or `KAFKA_BROKERS` value.
    pub address: String,
    /// Set when we started it; `down` stops only these.
    pub started: Option<Started>,
    /// Extra variables for target/infra/env.
    #[serde(default)]
    pub env: Vec<(String, String)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Started {
    pub pid: u32,
    pub port: u16,
    /// The Kafka node's controller listener (KRaft), to start it again where it was.
    #[serde(default)]
    pub controller_port: Option<u16>,
    pub data_dir: Option<PathBuf>,
    pub log: PathBuf,
}

/// Services the user already runs (`DATABASE_URL`, `KAFKA_BROKERS`), used when they answer.
#[derive(Clone, Debug, Default)]
pub struct External {
    pub database_url: Option<String>,
    pub kafka_brokers: Option<String>,
}

impl External {
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        External {
            database_url: var("DATABASE_URL"),
            kafka_brokers: var("KAFKA_BROKERS"),
        }
    }
}

pub struct InfraEnv {
    pub state: State,
    /// Whether this call started anything (so `xtask test` knows what to stop).
    pub started_now: bool,
}

impl InfraEnv {
    pub fn vars(&self) -> Vec<(String, String)> {
        env_vars(&self.state)
    }

    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (name, service) in [
            ("PostgreSQL", &self.state.postgres),
            ("Broker", &self.state.broker),
        ] {
            if let Some(s) = service {
                let how = match &s.started {
                    Some(st) => format!("started, pid {}, log {}", st.pid, st.log.display()),
                    None => "from the environment".into(),
                };
                let _ = writeln!(out, "{name:<11} {} ({how})", s.address);
            }
        }
        out.trim_end().to_owned()
    }
}

pub fn infra_dir(root: &Path) -> PathBuf {
    root.join("target/infra")
}

fn state_path(root: &Path) -> PathBuf {
    infra_dir(root).join("state.json")
}

fn env_path(root: &Path) -> PathBuf {
    infra_dir(root).join("env")
}

fn load(root: &Path) -> State {
    std::fs::read_to_string(state_path(root))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

fn save(root: &Path, state: &State) -> anyhow::Result<()> {
    std::fs::create_dir_all(infra_dir(root))?;
    std::fs::write(state_path(root), serde_json::to_string_pretty(state)?)?;
    let mut env = String::new();
    for (k, v) in env_vars(state) {
        let _ = writeln!(env, "{k}={v}");
    }
    std::fs::write(env_path(root), env).context("write target/infra/env")
}

fn env_vars(state: &State) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    if let Some(pg) = &state.postgres {
        vars.push(("DATABASE_URL".into(), pg.address.clone()));
        vars.extend(pg.env.iter().cloned());
    }
    if let Some(b) = &state.broker {
        vars.push(("KAFKA_BROKERS".into(), b.address.clone()));
        vars.extend(b.env.iter().cloned());
    }
    vars
}

/// Brings up what is not running yet. Idempotent: a second `up` reuses what the first started.
pub fn up(root: &Path, external: &External) -> anyhow::Result<InfraEnv> {
    let mut state = load(root);
    let mut started_now = false;
    std::fs::create_dir_all(infra_dir(root))?;

    if !state.postgres.as_ref().is_some_and(postgres::healthy) {
        let service = postgres::provide(root, external.database_url.as_deref())?;
        started_now |= service.started.is_some();
        state.postgres = Some(service);
        save(root, &state)?;
    }
    if !state.broker.as_ref().is_some_and(broker::healthy) {
        let old = state.broker.take();
        if let Some(old) = &old {
            broker::stop(old)?;
        }
        let service = broker::provide(root, external.kafka_brokers.as_deref(), old.as_ref())?;
        started_now |= service.started.is_some();
        state.broker = Some(service);
    }
    save(root, &state)?;
    Ok(InfraEnv { state, started_now })
}

/// Stops what `up` started, by pid, and removes the env file.
pub fn down(root: &Path) -> anyhow::Result<()> {
    stop_all(root)?;
    println!("Local infrastructure stopped.");
    Ok(())
}

fn stop_all(root: &Path) -> anyhow::Result<()> {
    let state = load(root);
    if let Some(b) = &state.broker {
        broker::stop(b)?;
    }
    if let Some(pg) = &state.postgres {
        postgres::stop(pg)?;
    }
    let _ = std::fs::remove_file(state_path(root));
    let _ = std::fs::remove_file(env_path(root));
    Ok(())
}

pub fn status(root: &Path) -> anyhow::Result<()> {
    let state = load(root);
    let line = |name: &str, s: &Option<Service>, healthy: fn(&Service) -> bool| match s {
        None => println!("{name:<11} not configured (run `cargo xtask infra up`)"),
        Some(s) => {
            let owner = match &s.started {
                Some(st) => format!("started by xtask, pid {}", st.pid),
                None => "external".into(),
            };
            let health = if healthy(s) {
                "answering"
            } else {
                "NOT answering"
            };
            println!("{name:<11} {} ({owner}): {health}", s.address);
        }
    };
    line("PostgreSQL", &state.postgres, postgres::healthy);
    line("Broker", &state.broker, broker::healthy);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{kafka_answers, pid_alive};

    /// A private stack in a scratch checkout: up, answering, then down with nothing left behind.
    #[test]
    fn up_then_down_leaves_nothing_running() {
        let root = std::env::temp_dir().join(format!("gf-xtask-infra-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let env = up(&root, &External::default()).expect("infra up");
        assert!(env.started_now);
        let vars = env.vars();
        let written = std::fs::read_to_string(env_path(&root)).unwrap();
        for (k, v) in &vars {
            assert!(written.contains(&format!("{k}={v}")), "{written}");
        }
        let pg = env.state.postgres.clone().unwrap();
        let broker = env.state.broker.clone().unwrap();
        let (pg_started, broker_started) =
            (pg.started.clone().unwrap(), broker.started.clone().unwrap());
        assert!(postgres::healthy(&pg) && broker::healthy(&broker));

        // A second `up` reuses what runs.
        let again = up(&root, &External::default()).unwrap();
        assert!(!again.started_now);
        assert_eq!(
            again.state.broker.unwrap().started.unwrap().pid,
            broker_started.pid
        );

        stop_all(&root).expect("infra down");
        for pid in [pg_started.pid, broker_started.pid] {
            assert!(!pid_alive(pid), "pid {pid} still runs");
        }
        for port in [pg_started.port, broker_started.port] {
            assert!(
                std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "port {port} still bound"
            );
        }
        assert!(!kafka_answers(&broker.address));
        assert!(!env_path(&root).exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}
