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
use tracing_subscriber::filter::LevelFilter;
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

/// Dependencies whose debug and trace logs carry what must never be logged: query parameters
/// (signing secrets, scrypt hashes), request headers (shared secrets, bearer keys), client
/// configuration. They log at `info` at most, whatever `RUST_LOG` says.
pub const QUIET_TARGETS: &[&str] = &[
    "tokio_postgres",
    "postgres",
    "deadpool_postgres",
    "refinery",
    "refinery_core",
    "actix_http",
    "actix_web",
    "actix_server",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rdkafka",
    "librdkafka",
];

/// The log filter: `rust_log` (else `default_filter`) without anything it says about
/// [`QUIET_TARGETS`], which are capped at `info`.
pub fn log_filter(rust_log: Option<&str>, default_filter: &str) -> EnvFilter {
    let quiet = |directive: &str| {
        let target = directive.split(['=', '[']).next().unwrap_or("").trim();
        QUIET_TARGETS
            .iter()
            .any(|q| target == *q || target.starts_with(&format!("{q}::")))
    };
    let text = rust_log
        .filter(|t| !t.trim().is_empty())
        .unwrap_or(default_filter);
    let kept: Vec<&str> = text.split(',').filter(|d| !quiet(d)).collect();
    // The cap never raises a level: `warn` everywhere keeps them at `warn`.
    let global = kept
        .iter()
        .filter_map(|d| d.trim().parse::<LevelFilter>().ok())
        .max()
        .unwrap_or(LevelFilter::OFF);
    let cap = global.min(LevelFilter::INFO);
    let mut filter =
        EnvFilter::try_new(kept.join(",")).unwrap_or_else(|_| EnvFilter::new(default_filter));
    for target in QUIET_TARGETS {
        if let Ok(directive) = format!("{target}={cap}").parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Rate limit for log lines of one cause: at most one per interval; the next line let through
/// carries how many were held back, so an attacker who triggers a warning per request cannot
/// flood the logs and an operator still sees the volume.
pub struct LogLimiter {
    interval: std::time::Duration,
    seen: std::sync::Mutex<HashMap<String, (std::time::Instant, u64)>>,
}

impl LogLimiter {
    pub fn new(interval: std::time::Duration) -> Self {
        LogLimiter {
            interval,
            seen: std::sync::Mutex::default(),
        }
    }

    /// `Some(held_back)` when a line for `cause` may be written now.
    pub fn admit(&self, cause: &str) -> Option<u64> {
        self.admit_at(cause, std::time::Instant::now())
    }

    fn admit_at(&self, cause: &str, now: std::time::Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        // Causes are few (error codes); a bound keeps a bug from growing the map.
        if seen.len() > 1024 {
            seen.clear();
        }
        match seen.get_mut(cause) {
            Some((last, held)) if now.duration_since(*last) < self.interval => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                *last = now;
                Some(std::mem::take(held))
            }
            None => {
                seen.insert(cause.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

/// Installs the global subscriber for `service` (the OpenTelemetry `service.name`): `RUST_LOG`
/// filters (default `default_filter`), `GF_LOG_FORMAT=json` switches to one JSON object per line,
/// and spans are exported when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn init(service: &'static str, default_filter: &str) -> Telemetry {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = log_filter(rust_log.as_deref(), default_filter);
    // Colour codes only for a person at a terminal, never in files or collectors.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
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

#[cfg(test)]
mod tests {
    use super::{QUIET_TARGETS, log_filter};

    fn is_quiet(target: &str) -> bool {
        QUIET_TARGETS
            .iter()
            .any(|q| target == *q || target.starts_with(&format!("{q}::")))
    }

    #[test]
    fn repeated_causes_are_let_through_once_an_interval_with_a_count() {
        use std::time::{Duration, Instant};
        let limiter = super::LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limiter.admit_at("auth_busy", t0), Some(0));
        for i in 1..=500 {
            assert_eq!(
                limiter.admit_at("auth_busy", t0 + Duration::from_millis(i)),
                None
            );
        }
        // Another cause is not held back by the first.
        assert_eq!(limiter.admit_at("broker_unavailable", t0), Some(0));
        assert_eq!(
            limiter.admit_at("auth_busy", t0 + Duration::from_secs(10)),
            Some(500)
        );
        assert_eq!(
            limiter.admit_at("auth_busy", t0 + Duration::from_secs(11)),
            None
        );
    }

    #[test]
    fn dependencies_that_log_secrets_stay_at_info() {
        for rust_log in [
            Some("trace"),
            Some("debug,tokio_postgres=trace,tokio_postgres::query=trace"),
            Some("info,actix_http[request]=trace,h2=debug"),
            None,
        ] {
            let text = log_filter(rust_log, "info").to_string();
            for directive in text.split(',') {
                let target = directive.split(['=', '[']).next().unwrap_or("");
                if is_quiet(target) {
                    assert!(directive.ends_with("=info"), "{rust_log:?}: {text}");
                }
            }
            assert!(text.contains("tokio_postgres=info"), "{text}");
        }
        let text = log_filter(Some("actix_http[request]=trace,h2=debug"), "info").to_string();
        assert!(
            text.contains("actix_http=off") && !text.contains("trace"),
            "{text}"
        );
        // Never raised: a quiet default stays quiet for them too.
        let text = log_filter(Some("warn"), "info").to_string();
        assert!(text.contains("tokio_postgres=warn"), "{text}");
        let text = log_filter(Some("gf_receiver=debug"), "info").to_string();
        assert!(text.contains("tokio_postgres=off"), "{text}");
        // Everything else keeps what RUST_LOG asked for.
        let text = log_filter(Some("debug,gf_receiver=trace"), "info").to_string();
        assert!(
            text.contains("gf_receiver=trace") && text.contains("debug"),
            "{text}"
        );
    }
}
