//! The receiver stage: authenticates ingest requests, checks the batch shape, appends the raw
//! body to `gf.raw.v1` and answers. Nothing else happens on the request path: no mapping, no
//! database writes (connection activity is written in the background).
//!
//! - [`payload`]: pure body checks (gzip decoding with a bound, counting events per provider);
//! - [`auth`]: token and shared-secret verification with a cache kept fresh by `NOTIFY`;
//! - [`budget`]: body bytes in flight, bounded for the receiver and per connection;
//! - [`sink`]: where accepted bodies go ([`sink::RawSink`]): Kafka, waiting for every
//!   acknowledgement, or memory in tests;
//! - [`answers`]: every status code and body, in one place (a 413, a 503, their bodies);
//! - [`handler`]: the HTTP handlers; [`server`]: wiring and graceful shutdown;
//! - [`readiness`]: what `/readyz` says, checked in the background;
//! - [`activity`], [`metrics`], [`trace`]: first/last-event times, Prometheus, W3C trace context.

pub mod activity;
pub mod answers;
pub mod auth;
pub mod budget;
pub mod handler;
pub mod metrics;
pub mod payload;
pub mod readiness;
pub mod server;
pub mod sink;
pub mod trace;

pub use server::{Receiver, ReceiverError, ReceiverOptions};

/// Runs a receiver on `GF_RECEIVER_ADDR` until `stop` is cancelled.
pub async fn run(
    config: &gf_runtime::Config,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), ReceiverError> {
    run_with(config, ReceiverOptions::from_config(config), stop).await
}

/// [`run`] with options of the caller's (`gf run all` passes its shared producer).
pub async fn run_with(
    config: &gf_runtime::Config,
    options: ReceiverOptions,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), ReceiverError> {
    let listener = std::net::TcpListener::bind(config.receiver_addr)?;
    tracing::info!(addr = %config.receiver_addr, "receiver listening");
    let receiver = Receiver::new(
        config,
        options,
        gf_runtime::metrics::registry().clone(),
        stop,
    )?;
    receiver.serve(listener)?.await
}
