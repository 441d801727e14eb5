//! Writes finished attempts in batches (whatever arrived within 20 ms, up to 500). It goes
//! through the runner's [`write_isolating`], so an outage is waited out, and a log PostgreSQL
//! refuses is split off so every other attempt is recorded; the refused one is recorded again
//! without its response body and error text. A delivery is never sent again only because its
//! result could not be written.

use std::time::Duration;

use deadpool_postgres::Pool;
use gf_runtime::stage::{RetryPolicy, StageError, write_isolating};
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

use gf_webhooks::delivery::{AttemptLog, Claimed, DeliverySettings, finish_batch};

/// Finished attempts waiting to be recorded at most; workers wait when it is full.
pub const QUEUE: usize = 2_000;
const BATCH: usize = 500;

/// Records attempts until every sender is gone and the queue is empty, or `abandon`.
pub async fn run(
    pool: Pool,
    settings: DeliverySettings,
    mut results: Receiver<(Claimed, AttemptLog)>,
    abandon: CancellationToken,
) {
    while let Some(first) = results.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, results.recv()).await {
                Ok(Some(result)) => batch.push(result),
                _ => break,
            }
        }
        if !record(&pool, &settings, &batch, &abandon).await {
            return;
        }
    }
}

/// Records `batch`; `false` once abandoned.
pub async fn record(
    pool: &Pool,
    settings: &DeliverySettings,
    batch: &[(Claimed, AttemptLog)],
    abandon: &CancellationToken,
) -> bool {
    let chunk_of = |chunk: Vec<usize>| {
        let done: Vec<(Claimed, AttemptLog)> = chunk.iter().map(|&i| batch[i].clone()).collect();
        async move { write(pool, settings, &done).await }
    };
    let indices = (0..batch.len()).collect();
    let Some(refused) = write_isolating(
        "notifier",
        indices,
        chunk_of,
        abandon,
        RetryPolicy::default(),
    )
    .await
    else {
        return false;
    };
    for (i, refusal) in refused {
        let (claimed, log) = &batch[i];
        let stripped = AttemptLog {
            response_body: None,
            error: Some(format!("the attempt's log was refused: {}", refusal.reason)),
            ..log.clone()
        };
        let done = [(claimed.clone(), stripped)];
        if let Err(e) = write(pool, settings, &done).await {
            tracing::error!(delivery = %claimed.id, error = %e, "attempt not recorded; its lease will bring it back");
        }
    }
    true
}

async fn write(
    pool: &Pool,
    settings: &DeliverySettings,
    done: &[(Claimed, AttemptLog)],
) -> Result<Vec<(usize, gf_runtime::pipeline::Refusal)>, StageError> {
    finish_batch(pool, settings, done).await?;
    Ok(Vec::new())
}
