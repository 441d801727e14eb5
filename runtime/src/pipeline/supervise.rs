//! A stage's consumer run again after a failure, from the committed offsets.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// Runs a stage's consumer until `stop`, starting it again with growing backoff after a failure
/// (it resumes from the committed offsets, so nothing is lost).
pub async fn supervise<E, F, Fut>(stage: &str, stop: &CancellationToken, mut run_once: F)
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    while !stop.is_cancelled() {
        let started = std::time::Instant::now();
        match run_once().await {
            Ok(()) => return,
            Err(e) => {
                backoff.after_run(started.elapsed());
                tracing::error!(stage, error = %e, retry_in = ?backoff.current(), "stage failed; restarting from committed offsets");
                if !backoff.wait(stop).await {
                    return;
                }
            }
        }
    }
}
