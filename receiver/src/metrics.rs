//! Prometheus metrics of the receiver.

use gf_runtime::metrics::register;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub events: IntCounterVec,
    pub produce_seconds: HistogramVec,
    /// scrypt runs (cache misses), counted by the authenticator.
    pub scrypt_verifications: IntCounter,
}

impl Metrics {
    pub fn new(registry: Registry) -> Result<Self, prometheus::Error> {
        let requests = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "gf_receiver_requests_total",
                    "Ingest requests by provider and HTTP status",
                ),
                &["provider", "code"],
            )?,
        )?;
        let events = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "gf_receiver_events_total",
                    "Events by provider and outcome (received, accepted, dropped)",
                ),
                &["provider", "outcome"],
            )?,
        )?;
        let produce_seconds = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "gf_receiver_produce_seconds",
                    "Time from produce to broker acknowledgement",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["provider"],
            )?,
        )?;
        let scrypt_verifications = register(
            &registry,
            IntCounter::new(
                "gf_receiver_scrypt_verifications_total",
                "scrypt verifications of URL tokens and shared secrets (cache misses)",
            )?,
        )?;
        Ok(Metrics {
            registry,
            requests,
            events,
            produce_seconds,
            scrypt_verifications,
        })
    }

    pub fn render(&self) -> String {
        gf_runtime::metrics::render(&self.registry)
    }
}
