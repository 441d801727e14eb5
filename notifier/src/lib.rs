//! The notifier stage: quality signals (`gf.signals.v1`) and conversation starts
//! (`gf.conversations.v1`) to signed, retried, logged webhooks.
//!
//! - [`rules`]: which signals fire which event types, thresholds on the crossing (pure);
//! - [`outbox`]: rule state, webhook events and pending deliveries, in one transaction;
//! - [`consumer`]: the consumer loop that feeds the outbox;
//! - [`delivery`]: the workers that drain it within the concurrency limits, and the recorder
//!   that writes their attempt logs in batches;
//! - [`metrics`]: delivery attempts and their latency, by endpoint and outcome.
//!
//! Endpoints, signing, the address policy and the delivery log are the [`gf_webhooks`] library,
//! shared with the control plane.

pub mod consumer;
pub mod delivery;
pub mod metrics;
pub mod outbox;
pub mod rules;

use deadpool_postgres::Pool;
use gf_runtime::Config;
use tokio_util::sync::CancellationToken;

pub use consumer::NotifierError;

/// The whole stage until `stop`: the consumer feeding the outbox and the workers draining it.
pub async fn run(config: &Config, stop: CancellationToken) -> Result<(), NotifierError> {
    let pool = gf_runtime::db::pool(
        config.database_url()?,
        4 + config.webhook_concurrency.min(16),
    )?;
    run_with_pool(config, &pool, stop).await
}

/// [`run`] with a pool of the caller's.
pub async fn run_with_pool(
    config: &Config,
    pool: &Pool,
    stop: CancellationToken,
) -> Result<(), NotifierError> {
    let settings = gf_runtime::kafka::KafkaSettings::from_config(config)?;
    let producer = gf_runtime::producer::SharedProducer::for_stages(&settings, "gf-notifier")?;
    run_with(config, pool, &producer, stop).await
}

/// [`run`] with a pool and a producer of the caller's (`gf run all` shares both).
pub async fn run_with(
    config: &Config,
    pool: &Pool,
    producer: &gf_runtime::producer::SharedProducer,
    stop: CancellationToken,
) -> Result<(), NotifierError> {
    // Fail fast on a bad allow-list, before anything is consumed.
    gf_webhooks::ssrf::AddressPolicy::parse(&config.webhook_allowed_nets)?;
    let (consumed, delivered) = tokio::join!(
        consumer::run_with(config, pool, producer, stop.clone()),
        delivery::run(config, pool, stop.clone())
    );
    consumed.and(delivered)
}
