//! Prometheus metrics shared by the stages: one process-wide registry (so `gf run all` has one
//! `/metrics`), librdkafka's statistics as gauges (consumer lag per partition among them), and a
//! small `/metrics` server for the stages that have no HTTP listener of their own.

use std::net::SocketAddr;
use std::sync::LazyLock;

use actix_web::{App, HttpResponse, HttpServer, web};
use prometheus::{Encoder, GaugeVec, IntGaugeVec, Opts, Registry, TextEncoder};
use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::statistics::Statistics;
use tokio_util::sync::CancellationToken;

/// How often librdkafka reports its statistics.
pub const KAFKA_STATISTICS_INTERVAL_MS: u32 = 5_000;

/// The registry every stage of the process registers in.
pub fn registry() -> &'static Registry {
    prometheus::default_registry()
}

/// The text exposition of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut buffer = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

/// Registers `metric` in `registry` and hands it back: the one way a metric is registered.
/// Components whose tests read their own registry (the receiver) take the registry; the rest
/// are process-wide statics made with [`process_wide`].
pub fn register<M>(registry: &Registry, metric: M) -> Result<M, prometheus::Error>
where
    M: prometheus::core::Collector + Clone + 'static,
{
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// A process-wide metric (held in a `static`), registered once in [`registry`]. Its definition
/// is a constant of the code, so an invalid one is a bug caught by the first test that counts;
/// a name registered twice is logged, and the metric still counts.
pub fn process_wide<M>(metric: Result<M, prometheus::Error>) -> M
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let metric = metric.expect("a valid metric definition");
    if let Err(e) = registry().register(Box::new(metric.clone())) {
        tracing::error!(error = %e, "a metric could not be registered");
    }
    metric
}

static DEAD_LETTERS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    process_wide(prometheus::IntCounterVec::new(
        Opts::new(
            "gf_dead_letters_total",
            "Records (or events of them) a stage dead-lettered, by stage and reason class",
        ),
        &["stage", "reason_class"],
    ))
});

/// Counts one dead letter.
pub fn dead_letter(stage: &str, class: gf_schemas::deadletter::ReasonClass) {
    DEAD_LETTERS
        .with_label_values(&[stage, class.as_ref()])
        .inc();
}

struct KafkaGauges {
    consumer_lag: IntGaugeVec,
    committed_offset: IntGaugeVec,
    high_watermark: IntGaugeVec,
    queued_messages: IntGaugeVec,
    received_messages: IntGaugeVec,
    received_bytes: IntGaugeVec,
    rebalances: IntGaugeVec,
    broker_rtt: GaugeVec,
}

fn int_gauges(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    process_wide(IntGaugeVec::new(Opts::new(name, help), labels))
}

static KAFKA: LazyLock<KafkaGauges> = LazyLock::new(|| {
    let partition = &["client", "topic", "partition"];
    let broker_rtt = process_wide(GaugeVec::new(
        Opts::new(
            "gf_kafka_broker_rtt_seconds",
            "Average broker round-trip time over the last statistics window",
        ),
        &["client", "broker"],
    ));
    KafkaGauges {
        consumer_lag: int_gauges(
            "gf_kafka_consumer_lag",
            "Records between the consumer's position and the partition's high watermark",
            partition,
        ),
        committed_offset: int_gauges(
            "gf_kafka_committed_offset",
            "Last committed offset of the consumer group",
            partition,
        ),
        high_watermark: int_gauges(
            "gf_kafka_high_watermark",
            "Partition high watermark seen by the consumer",
            partition,
        ),
        queued_messages: int_gauges(
            "gf_kafka_queued_messages",
            "Messages in the client's queues (librdkafka msg_cnt)",
            &["client"],
        ),
        received_messages: int_gauges(
            "gf_kafka_received_messages",
            "Messages received from brokers since the client started (librdkafka rxmsgs)",
            &["client"],
        ),
        received_bytes: int_gauges(
            "gf_kafka_received_bytes",
            "Bytes received from brokers since the client started (librdkafka rx_bytes)",
            &["client"],
        ),
        rebalances: int_gauges(
            "gf_kafka_rebalances",
            "Consumer-group rebalances since the client started",
            &["client"],
        ),
        broker_rtt,
    }
});

/// The context of every stage consumer: publishes librdkafka's statistics as gauges labelled
/// with the client id.
pub struct KafkaStats {
    client: String,
}

impl KafkaStats {
    pub fn new(client: &str) -> Self {
        KafkaStats {
            client: client.to_owned(),
        }
    }

    /// Updates the gauges from one statistics report.
    pub fn record(&self, stats: &Statistics) {
        let gauges = &*KAFKA;
        let client = self.client.as_str();
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's unassigned-partition placeholder.
                if *partition < 0 {
                    continue;
                }
                let labels = [client, topic.as_str(), &partition.to_string()];
                if p.consumer_lag >= 0 {
                    gauges
                        .consumer_lag
                        .with_label_values(&labels)
                        .set(p.consumer_lag);
                }
                if p.committed_offset >= 0 {
                    gauges
                        .committed_offset
                        .with_label_values(&labels)
                        .set(p.committed_offset);
                }
                if p.hi_offset >= 0 {
                    gauges
                        .high_watermark
                        .with_label_values(&labels)
                        .set(p.hi_offset);
                }
            }
        }
        gauges
            .queued_messages
            .with_label_values(&[client])
            .set(i64::try_from(stats.msg_cnt).unwrap_or(i64::MAX));
        gauges
            .received_messages
            .with_label_values(&[client])
            .set(stats.rxmsgs);
        gauges
            .received_bytes
            .with_label_values(&[client])
            .set(stats.rx_bytes);
        if let Some(group) = &stats.cgrp {
            gauges
                .rebalances
                .with_label_values(&[client])
                .set(group.rebalance_cnt);
        }
        for (name, broker) in &stats.brokers {
            if let Some(rtt) = broker.rtt.as_ref().filter(|w| w.cnt > 0) {
                gauges
                    .broker_rtt
                    .with_label_values(&[client, name.as_str()])
                    .set(rtt.avg as f64 / 1e6);
            }
        }
    }
}

impl ClientContext for KafkaStats {
    fn stats(&self, statistics: Statistics) {
        self.record(&statistics);
    }
}

impl ConsumerContext for KafkaStats {}

/// Serves `GET /metrics` (the process registry) on `addr` until `stop`.
pub async fn serve(addr: SocketAddr, stop: CancellationToken) -> std::io::Result<()> {
    let server = HttpServer::new(|| {
        App::new().route(
            "/metrics",
            web::get().to(|| async {
                HttpResponse::Ok()
                    .content_type("text/plain; version=0.0.4")
                    .body(render(registry()))
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?
    .run();
    tracing::info!(%addr, "metrics listening");
    let handle = server.handle();
    tokio::spawn(async move {
        stop.cancelled().await;
        handle.stop(true).await;
    });
    server.await
}

/// Starts [`serve`] in the background when `GF_METRICS_ADDR` is set.
pub fn serve_if_configured(config: &crate::Config, stop: &CancellationToken) {
    if let Some(addr) = config.metrics_addr {
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(addr, stop).await {
                tracing::error!(%addr, error = %e, "cannot serve /metrics");
            }
        });
    }
}
