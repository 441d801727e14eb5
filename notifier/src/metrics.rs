//! Prometheus metrics of the webhook deliveries, in the process's registry (so `gf run all` and
//! `gf run notifier` show them on their `/metrics`).

use std::sync::LazyLock;

use gf_runtime::metrics::process_wide;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use uuid::Uuid;

use gf_webhooks::schedule::Outcome;

struct DeliveryMetrics {
    attempts: IntCounterVec,
    seconds: HistogramVec,
}

static METRICS: LazyLock<DeliveryMetrics> = LazyLock::new(|| {
    let attempts = process_wide(IntCounterVec::new(
        Opts::new(
            "gf_notifier_delivery_attempts_total",
            "Webhook delivery attempts by endpoint and outcome (delivered, http_error, no_response)",
        ),
        &["endpoint", "outcome"],
    ));
    let seconds = process_wide(HistogramVec::new(
        HistogramOpts::new(
            "gf_notifier_delivery_seconds",
            "Time from sending a webhook to its answer (or giving up on it), by outcome",
        )
        .buckets(vec![
            0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]),
        &["outcome"],
    ));
    DeliveryMetrics { attempts, seconds }
});

/// The outcome label: a small fixed set, whatever the status code.
pub fn outcome_label(outcome: &Outcome) -> &'static str {
    outcome.into()
}

/// Counts one attempt. The endpoint label is its id: bounded by the endpoints that exist, and
/// never its URL, which may carry credentials.
pub fn attempt(endpoint: Uuid, outcome: &Outcome, latency: std::time::Duration) {
    let label = outcome_label(outcome);
    METRICS
        .attempts
        .with_label_values(&[endpoint.to_string().as_str(), label])
        .inc();
    METRICS
        .seconds
        .with_label_values(&[label])
        .observe(latency.as_secs_f64());
}
