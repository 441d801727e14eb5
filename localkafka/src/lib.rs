//! Apache Kafka brokers on this machine: the pinned classpath ([`Classpath`]), a node's
//! configuration ([`NodeConfig`], pure), and starting one ([`Node`]).
//!
//! Shared by `cargo xtask infra up` (one long-lived broker) and the fault tests (brokers of a
//! test's own, stopped, killed and restarted on the same data; a three-node cluster), so both run
//! the same broker the same way.

mod classpath;
mod node;
mod tools;

pub use classpath::{Classpath, KAFKA_VERSION, POM};
pub use node::{Node, NodeConfig, cluster, new_cluster_id};
pub use tools::{GroupLag, parse_group_lags};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the Kafka classpath in {0} is missing; run `cargo xtask infra up` (it runs `mvn dependency:copy-dependencies` once)"
    )]
    NotMaterialized(PathBuf),
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("cannot run {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("the Kafka broker {node} exited at start; see {log}")]
    Exited { node: u32, log: PathBuf },
    #[error(
        "the Kafka broker {node} did not log `Kafka Server started` within {seconds}s; see {log}"
    )]
    NotStarted {
        node: u32,
        seconds: u64,
        log: PathBuf,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A `127.0.0.1` port nothing listens on right now.
pub fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
