//! Logs and traces, set up once for every binary.
//!
//! Logs go to stderr so `--json` output on stdout stays one clean document. Spans become
//! OpenTelemetry spans (through `tracing-opentelemetry`) and are exported over OTLP/HTTP only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set; otherwise no span leaves the process. Between stages the
//! W3C `traceparent` rides in Kafka headers: [`stage_span`] continues it and [`traceparent`]
//! writes the next hop's header.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The standard variable that switches trace export on.
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Flushes exported spans when dropped; keep it alive for the life of `main`.
#[must_use = "dropping the guard flushes and stops trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("trace export did not shut down cleanly: {e}");
        }
    }
}

/// Installs the global subscriber for `service` (the OpenTelemetry `service.name`): `RUST_LOG`
/// filters (default `default_filter`), `GF_LOG_FORMAT=json` switches to one JSON object per line,
/// and spans are exported when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn init(service: &'static str, default_filter: &str) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if std::env::var("GF_LOG_FORMAT").is_ok_and(|f| f == "json") {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let provider = std::env::var(OTLP_ENDPOINT_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|_| match otlp_provider(service) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("traces will not be exported: {e}");
                None
            }
        });
    let otel = provider.as_ref().map(layer);
    // A second call (tests, `gf run all`) keeps the first subscriber.
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok();
    Telemetry {
        provider: provider.filter(|_| installed),
    }
}

/// The subscriber layer that turns spans into OpenTelemetry spans of `provider` (exposed so tests
/// can install an in-memory exporter).
pub fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("greenflash"))
}

fn otlp_provider(
    service: &'static str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (and the other OTEL_* variables) itself.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build())
}

/// Makes `span` a child of the trace in `parent` (a `traceparent` header), when there is one, and
/// returns the `traceparent` for what is written inside the span (see [`traceparent`]).
pub fn continue_trace(span: &tracing::Span, parent: Option<&str>) -> Option<String> {
    if let Some(parent) = parent {
        let carrier = HashMap::from([("traceparent".to_owned(), parent.to_owned())]);
        let cx = TraceContextPropagator::new().extract(&carrier);
        // Fails only when the span is disabled; then there is nothing to link.
        let _ = span.set_parent(cx);
    }
    traceparent(span, parent)
}

/// The `traceparent` for records written inside `span`: its own context when spans are recorded,
/// else `parent` unchanged, so the trace id still travels when nothing is exported.
pub fn traceparent(span: &tracing::Span, parent: Option<&str>) -> Option<String> {
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier
        .remove("traceparent")
        .or_else(|| parent.map(str::to_owned))
}
