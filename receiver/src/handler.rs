//! The HTTP handlers: ingest, health, readiness, metrics.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use gf_schemas::Provider;
use gf_schemas::raw::RawRecordMeta;
use serde_json::json;
use tracing::Instrument;
use uuid::Uuid;

use crate::answers::{self, IngestError};
use crate::budget::Reservation;
use crate::payload::{self, BatchSummary, PayloadError};
use crate::server::AppState;
use crate::trace::child_traceparent;
use gf_control::traffic::RequestRecord;

pub const SHARED_SECRET_HEADER: &str = "x-greenflash-secret";
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Bodies above this are counted on the blocking pool, not on an HTTP worker.
const INLINE_INSPECT_BYTES: usize = 512 * 1024;
/// A client that trickles its body slower than this is cut off.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Ingest and the operator endpoints on one port (no `GF_ADMIN_ADDR`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    ingest_routes(cfg);
    operator_routes(cfg);
}

/// What senders reach: `POST`, `PUT` or `PATCH` (Segment's and Amplitude's destinations may use
/// any) on an ingest URL, which may carry an SDK's own path after the token (`/batch/`,
/// `/v1/batch`); and the public events API at `/v1/events` with a Bearer token.
pub fn ingest_routes(cfg: &mut web::ServiceConfig) {
    for path in [
        "/ingest/{provider}/{token}",
        "/ingest/{provider}/{token}/{tail:.*}",
    ] {
        cfg.service(ingest_methods(web::resource(path), ingest));
    }
    cfg.service(ingest_methods(web::resource("/v1/events"), ingest_public))
        .default_service(web::to(not_found));
}

fn ingest_methods<F, Args>(resource: actix_web::Resource, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    resource
        .route(web::post().to(handler.clone()))
        .route(web::put().to(handler.clone()))
        .route(web::patch().to(handler))
        .default_service(web::to(method_not_allowed))
}

async fn method_not_allowed() -> HttpResponse {
    IngestError::MethodNotAllowed.error_response()
}

/// `/healthz`, `/readyz`, `/metrics`: for operators and load balancers.
pub fn operator_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .default_service(web::to(not_found));
}

async fn not_found() -> HttpResponse {
    IngestError::NotFound.error_response()
}

async fn ingest(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let info = req.match_info();
    let provider = info
        .get("provider")
        .and_then(|p| p.parse::<Provider>().ok());
    let token = info.get("token").unwrap_or_default().to_owned();
    serve(req, provider, token, body, state).await
}

/// `/v1/events`: the public events API, its token in `Authorization: Bearer`.
async fn ingest_public(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.trim()
                .strip_prefix("Bearer ")
                .or_else(|| v.trim().strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    serve(req, Some(Provider::Api), token, body, state).await
}

async fn serve(
    req: HttpRequest,
    provider: Option<Provider>,
    token: String,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let request_id = Uuid::now_v7().to_string();
    // One span per request, continuing the caller's trace; never the token.
    let span = tracing::info_span!(
        "gf.receiver.ingest",
        provider = provider.map_or("unknown", Provider::as_str),
        request_id,
        http.response.status_code = tracing::field::Empty,
    );
    // The record's header is made inside the span (a child of it, or of ours when not recording).
    let _ = gf_runtime::telemetry::continue_trace(&span, incoming_traceparent(&req));
    let mut seen = None;
    let result = match provider {
        Some(p) => {
            handle(&req, p, &token, body, &state, &request_id, &mut seen)
                .instrument(span.clone())
                .await
        }
        None => Err(IngestError::NotFound),
    };
    // The connection's request log: what it was sent and answered, once its token was known.
    if let Some(seen) = seen {
        let status = match &result {
            Ok(response) => response.status(),
            Err(e) => e.status_code(),
        };
        let summary = seen.summary.unwrap_or_default();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        state.activity.note(RequestRecord {
            id: Uuid::now_v7(),
            connection_id: seen.connection_id,
            product_id: seen.product_id,
            at: seen.at,
            method: req.method().as_str().to_owned(),
            status: status.as_u16(),
            received: count(summary.received),
            accepted: count(if seen.raw.is_some() {
                summary.accepted
            } else {
                0
            }),
            dropped: count(summary.dropped),
            error_code: result.as_ref().err().map(|e| e.code().to_owned()),
            error_message: result.as_ref().err().map(IngestError::public_message),
            bytes: count(seen.bytes),
            raw: seen.raw,
            excerpt: seen.excerpt,
        });
    }
    let mut response = match result {
        Ok(response) => response,
        Err(e) => {
            let status = e.status_code();
            if status.is_server_error() {
                static LIMIT: std::sync::LazyLock<gf_runtime::telemetry::LogLimiter> =
                    std::sync::LazyLock::new(|| {
                        gf_runtime::telemetry::LogLimiter::new(std::time::Duration::from_secs(10))
                    });
                if let Some(held_back) = LIMIT.admit(e.code()) {
                    tracing::warn!(request_id, error = %e, source = ?std::error::Error::source(&e).map(|s| s.to_string()), held_back, "ingest request failed (one line per cause per 10 s; held_back: the same since the last)");
                }
            } else {
                tracing::debug!(request_id, code = e.code(), "ingest request refused");
            }
            e.error_response()
        }
    };
    span.record("http.response.status_code", response.status().as_u16());
    let label = provider.map_or("unknown", Provider::as_str);
    state
        .metrics
        .requests
        .with_label_values(&[label, response.status().as_str()])
        .inc();
    if let Ok(value) = request_id.parse() {
        response.headers_mut().insert(
            REQUEST_ID_HEADER.parse().expect("static header name"),
            value,
        );
    }
    response
}

/// What the request log needs to know of a request whose connection is known.
struct Seen {
    connection_id: Uuid,
    product_id: Uuid,
    at: chrono::DateTime<chrono::Utc>,
    /// The body's size, decoded (or as declared, when refused before it was read).
    bytes: usize,
    summary: Option<BatchSummary>,
    /// Where the body was stored.
    raw: Option<(i32, i64)>,
    /// The body's beginning, where the connection's owner turned excerpts on.
    excerpt: Option<String>,
}

async fn handle(
    req: &HttpRequest,
    provider: Provider,
    token: &str,
    body: web::Payload,
    state: &AppState,
    request_id: &str,
    seen: &mut Option<Seen>,
) -> Result<HttpResponse, IngestError> {
    let headers = req.headers();
    // A header that is not text cannot match any secret.
    let secret = headers
        .get(SHARED_SECRET_HEADER)
        .map(|v| v.to_str().unwrap_or(""));
    // Before this, nothing says whose request it is: it is in no connection's log.
    let caller = state.auth.authenticate(provider, token, secret).await?;
    let seen = seen.insert(Seen {
        connection_id: caller.connection_id,
        product_id: caller.product_id,
        at: chrono::Utc::now(),
        bytes: 0,
        summary: None,
        raw: None,
        excerpt: None,
    });
    if !caller.status.accepts_events() {
        return Ok(answers::not_taking_events());
    }

    let limit = state.options.max_body_bytes;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    seen.bytes = declared.unwrap_or(0);
    if declared.is_some_and(|len| len > limit) {
        return Err(PayloadError::TooLarge { limit }.into());
    }
    // Every byte of the body, compressed and decoded, counts against the memory budget until
    // the request is done (or dropped with it).
    let mut held = state.budget.permit(caller.connection_id);
    let raw = read_body(body, limit, declared, &mut held).await?;
    let (body, _held) = match headers
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => (raw, held),
        Some(e) if e.is_empty() || e == "identity" => (raw, held),
        Some(e) if e == "gzip" || e == "x-gzip" => {
            let (decoded, held) = web::block(move || {
                let decoded = payload::gunzip_reserving(&raw, limit, |n| held.grow(n));
                (decoded, held)
            })
            .await
            .map_err(|e| IngestError::BodyRead(e.to_string()))?;
            (Bytes::from(decoded?), held)
        }
        Some(other) => return Err(PayloadError::UnsupportedEncoding(other).into()),
    };

    seen.bytes = body.len();
    if caller.log_bodies {
        seen.excerpt = Some(gf_control::traffic::excerpt(&body));
    }
    let max_events = state.options.max_batch_events;
    let summary = if body.len() <= INLINE_INSPECT_BYTES {
        payload::inspect(provider, &body, max_events)?
    } else {
        let shared = body.clone();
        web::block(move || payload::inspect(provider, &shared, max_events))
            .await
            .map_err(|e| IngestError::BodyRead(e.to_string()))??
    };
    count_events(state, provider, summary);
    seen.summary = Some(summary);

    if summary.accepted > 0 {
        let received_at = chrono::Utc::now();
        let meta = RawRecordMeta {
            connection_id: caller.connection_id,
            product_id: caller.product_id,
            provider,
            received_at_ms: received_at.timestamp_millis(),
            request_id: request_id.to_owned(),
            content_type: headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            // The request span's context when spans are recorded, else a child id made here.
            traceparent: gf_runtime::telemetry::traceparent(&tracing::Span::current(), None)
                .or_else(|| Some(child_traceparent(incoming_traceparent(req)))),
        };
        let appended = state.sink.append(&meta, &body).await?;
        state
            .metrics
            .produce_seconds
            .with_label_values(&[provider.as_str()])
            .observe(appended.took.as_secs_f64());
        seen.at = received_at;
        seen.raw = Some((appended.partition, appended.offset));
    }
    tracing::debug!(
        request_id,
        connection = %caller.connection_id,
        received = summary.received,
        accepted = summary.accepted,
        dropped = summary.dropped,
        partition = seen.raw.map(|(p, _)| p),
        offset = seen.raw.map(|(_, o)| o),
        "ingest request stored"
    );
    Ok(answers::accepted(summary, body.len()))
}

/// Reads the body, refusing it as soon as it passes `limit`.
async fn read_body(
    mut body: web::Payload,
    limit: usize,
    declared: Option<usize>,
    held: &mut Reservation,
) -> Result<Bytes, IngestError> {
    let initial = declared.unwrap_or(8 * 1024).min(limit);
    if !held.grow(initial) {
        return Err(PayloadError::BudgetSpent.into());
    }
    let mut buffer = BytesMut::with_capacity(initial);
    let mut reserved = initial;
    let read = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| IngestError::BodyRead(e.to_string()))?;
            if buffer.len() + chunk.len() > limit {
                return Err(IngestError::from(PayloadError::TooLarge { limit }));
            }
            buffer.extend_from_slice(&chunk);
            if buffer.capacity() > reserved {
                if !held.grow(buffer.capacity() - reserved) {
                    return Err(PayloadError::BudgetSpent.into());
                }
                reserved = buffer.capacity();
            }
        }
        Ok::<(), IngestError>(())
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .map_err(|_| IngestError::BodyRead("timed out".into()))??;
    Ok(buffer.freeze())
}

fn count_events(state: &AppState, provider: Provider, summary: BatchSummary) {
    for (outcome, n) in [
        ("received", summary.received),
        ("accepted", summary.accepted),
        ("dropped", summary.dropped),
    ] {
        state
            .metrics
            .events
            .with_label_values(&[provider.as_str(), outcome])
            .inc_by(n as u64);
    }
}

fn incoming_traceparent(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
}

async fn healthz() -> HttpResponse {
    answers::json_response(StatusCode::OK, json!({ "status": "ok" }))
}

/// Ready when both the broker and PostgreSQL answer.
/// Reads what the background check last saw ([`crate::readiness`]); queries nothing.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let readiness = &state.readiness;
    let (ready, broker, postgres) = (readiness.ready(), readiness.broker(), readiness.postgres());
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    answers::json_response(
        status,
        json!({ "status": if ready { "ready" } else { "unavailable" }, "broker": broker, "postgres": postgres }),
    )
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/plain; version=0.0.4"))
        .body(state.metrics.render())
}
