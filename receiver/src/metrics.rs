//! Prometheus metrics of the receiver.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub events: IntCounterVec,
    pub produce_seconds: HistogramVec,
}

impl Metrics {
    pub fn new(registry: Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "gf_receiver_requests_total",
                "Ingest requests by provider and HTTP status",
            ),
            &["provider", "code"],
        )?;
        let events = IntCounterVec::new(
            Opts::new(
                "gf_receiver_events_total",
                "Events by provider and outcome (received, accepted, dropped)",
            ),
            &["provider", "outcome"],
        )?;
        let produce_seconds = HistogramVec::new(
            HistogramOpts::new(
                "gf_receiver_produce_seconds",
                "Time from produce to broker acknowledgement",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["provider"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(produce_seconds.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            events,
            produce_seconds,
        })
    }

    pub fn render(&self) -> String {
        gf_runtime::metrics::render(&self.registry)
    }
}
