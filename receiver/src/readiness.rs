//! What `/readyz` answers, kept up to date in the background: the probe itself only reads two
//! flags, so a flood of requests (or of probes) never makes it query the broker or PostgreSQL,
//! and a load balancer never takes a receiver out because its pool is busy.
//!
//! Ready means the broker takes records: without PostgreSQL, connections already verified are
//! still served (and the answer says `postgres: false`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::sink::RawSink;

/// How often the background check runs.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct Readiness {
    broker: AtomicBool,
    postgres: AtomicBool,
}

impl Readiness {
    pub fn broker(&self) -> bool {
        self.broker.load(Ordering::Relaxed)
    }

    pub fn postgres(&self) -> bool {
        self.postgres.load(Ordering::Relaxed)
    }

    /// Whether honest traffic can be served.
    pub fn ready(&self) -> bool {
        self.broker()
    }

    /// Checks both now, then every [`CHECK_EVERY`] until `stop`.
    pub fn spawn(
        self: &Arc<Self>,
        sink: Arc<dyn RawSink>,
        pool: Pool,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let readiness = self.clone();
        tokio::spawn(async move {
            loop {
                let sink = sink.clone();
                let broker =
                    tokio::task::spawn_blocking(move || sink.reachable(Duration::from_secs(2)))
                        .await
                        .unwrap_or(false);
                let postgres = tokio::time::timeout(Duration::from_secs(2), async {
                    let client = pool.get().await.ok()?;
                    client.simple_query("SELECT 1").await.ok()
                })
                .await
                .ok()
                .flatten()
                .is_some();
                readiness.broker.store(broker, Ordering::Relaxed);
                readiness.postgres.store(postgres, Ordering::Relaxed);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(CHECK_EVERY) => {}
                }
            }
        })
    }
}
