//! The delivery loop: claim what is due, send within the concurrency limits, record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use gf_runtime::Config;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use gf_webhooks::delivery::{
    ATTEMPT_TIMEOUT, DeliverySettings, POLL_EVERY, attempt, claim, prune, webhook_client,
};
use gf_webhooks::ssrf::AddressPolicy;

use super::recorder;
use crate::consumer::NotifierError;

/// Works the outbox until `stop`; attempts in flight at the stop are finished and logged.
pub async fn run(
    config: &Config,
    pool: &Pool,
    stop: CancellationToken,
) -> Result<(), NotifierError> {
    let policy = AddressPolicy::parse(&config.webhook_allowed_nets)?;
    let client = webhook_client(&policy)?;
    let settings = DeliverySettings::from_config(config);
    let total = config.webhook_concurrency;
    let per_endpoint = i32::try_from(config.webhook_endpoint_concurrency).unwrap_or(i32::MAX);
    let in_flight: Arc<Mutex<HashMap<Uuid, i32>>> = Arc::default();
    let mut tasks: JoinSet<()> = JoinSet::new();
    // Bounded: when PostgreSQL is slow to take the logs, workers wait instead of memory growing.
    let (recorder, results) = tokio::sync::mpsc::channel(recorder::QUEUE);
    let abandon = CancellationToken::new();
    let recording = tokio::spawn(recorder::run(
        pool.clone(),
        settings.clone(),
        results,
        abandon.clone(),
    ));
    let mut last_prune: Option<Instant> = None;
    let mut backoff = POLL_EVERY;
    tracing::info!(total, per_endpoint, "delivery workers running");
    while !stop.is_cancelled() {
        if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            match prune(pool, config.webhook_log_retention_days).await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "old delivery logs pruned"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning delivery logs failed"),
            }
            last_prune = Some(Instant::now());
        }
        let free = total.saturating_sub(tasks.len());
        let claimed = if free == 0 {
            Vec::new()
        } else {
            let slots: HashMap<Uuid, i32> = lock(&in_flight)
                .iter()
                .map(|(e, n)| (*e, per_endpoint - n))
                .collect();
            match claim(pool, &settings, free as i64, per_endpoint, &slots).await {
                Ok(claimed) => {
                    backoff = POLL_EVERY;
                    claimed
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot claim deliveries");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    Vec::new()
                }
            }
        };
        let idle = claimed.is_empty();
        for delivery in claimed {
            *lock(&in_flight).entry(delivery.endpoint_id).or_default() += 1;
            let (client, policy, in_flight) = (client.clone(), policy.clone(), in_flight.clone());
            let recorded = recorder.clone();
            tasks.spawn(async move {
                let log = attempt(&client, &policy, &delivery).await;
                let endpoint = delivery.endpoint_id;
                crate::metrics::attempt(endpoint, &log.outcome, log.latency);
                // The recorder logs it; if that never happens (a crash), the lease expires and
                // the attempt is made again under the same delivery id.
                let _ = recorded.send((delivery, log)).await;
                let mut map = lock(&in_flight);
                if let Some(n) = map.get_mut(&endpoint) {
                    *n -= 1;
                    if *n <= 0 {
                        map.remove(&endpoint);
                    }
                }
            });
        }
        if idle || tasks.len() >= total {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(backoff) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    // Attempts already sent are logged; each ends within the attempt timeout.
    let drain = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(ATTEMPT_TIMEOUT + Duration::from_secs(5), drain).await;
    drop(recorder);
    if tokio::time::timeout(Duration::from_secs(10), recording)
        .await
        .is_err()
    {
        // Shutting down and PostgreSQL is gone: the leases bring these attempts back.
        abandon.cancel();
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
