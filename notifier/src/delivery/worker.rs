//! The delivery loop: claim what is due, send within the concurrency limits, record.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use gf_runtime::Config;
use gf_runtime::backoff::Backoff;
use gf_runtime::quota::KeyedQuota;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use gf_webhooks::delivery::{
    ATTEMPT_TIMEOUT, DeliverySettings, attempt, claim, prune, webhook_client,
};
use gf_webhooks::ssrf::AddressPolicy;

use super::recorder;
use crate::consumer::NotifierError;

/// How often the workers look for due deliveries while PostgreSQL answers.
const POLL_EVERY: Duration = Duration::from_millis(200);

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
    // Attempts in flight per endpoint; a slot comes back when its attempt ends, however it ends.
    let in_flight = KeyedQuota::new(usize::MAX, config.webhook_endpoint_concurrency);
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
    // Between claims: POLL_EVERY when PostgreSQL answers, growing while it does not.
    let mut backoff = Backoff::new(POLL_EVERY, Duration::from_secs(10));
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
            let slots: HashMap<Uuid, i32> = in_flight
                .holders()
                .into_iter()
                .map(|(e, n)| (e, per_endpoint - i32::try_from(n).unwrap_or(i32::MAX)))
                .collect();
            match claim(pool, &settings, free as i64, per_endpoint, &slots).await {
                Ok(claimed) => {
                    backoff.reset();
                    claimed
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff.current(), "cannot claim deliveries");
                    Vec::new()
                }
            }
        };
        let idle = claimed.is_empty();
        for delivery in claimed {
            let mut slot = in_flight.permit(delivery.endpoint_id);
            if !slot.grow(1) {
                // The claim gave no more than the free slots; should this ever not hold, the
                // attempt is still made rather than left to its lease.
                tracing::warn!(endpoint = %delivery.endpoint_id, "endpoint over its concurrency");
            }
            let (client, policy) = (client.clone(), policy.clone());
            let recorded = recorder.clone();
            tasks.spawn(async move {
                // Held until the task ends, however it ends: a panic gives the slot back too.
                let _slot = slot;
                let log = attempt(&client, &policy, &delivery).await;
                crate::metrics::attempt(delivery.endpoint_id, &log.outcome, log.latency);
                // The recorder logs it; if that never happens (a crash), the lease expires and
                // the attempt is made again under the same delivery id.
                let _ = recorded.send((delivery, log)).await;
            });
        }
        if idle || tasks.len() >= total {
            let wait = backoff.next_delay();
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(wait) => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => report(done),
            }
        }
        while let Some(done) = tasks.try_join_next() {
            report(done);
        }
    }
    // Attempts already sent are logged; each ends within the attempt timeout.
    let drain = async {
        while let Some(done) = tasks.join_next().await {
            report(done);
        }
    };
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

/// An attempt task that panicked: its slot came back (a dropped permit), and it is said.
fn report(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "a delivery attempt panicked; its lease brings it back");
    }
}
