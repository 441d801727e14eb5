//! Every answer the receiver gives, in one place: status codes, error codes and bodies.
//!
//! Bodies carry our `{"received","accepted","dropped"}` and also Amplitude's own response fields
//! (`code` always, `events_ingested` on success, `error` on failure), so Amplitude's SDKs can post
//! straight to an ingest URL and their retry logic works (a 413 makes them split the batch).

use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::auth::AuthError;
use crate::payload::{BatchSummary, PayloadError};
use crate::sink::SinkError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(
        "no such endpoint; ingest URLs look like /ingest/<amplitude|segment|posthog|api>/<token>, or POST /v1/events with Authorization: Bearer <token>"
    )]
    NotFound,
    #[error("this URL takes POST, PUT or PATCH")]
    MethodNotAllowed,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
}

impl IngestError {
    /// Short machine-readable reason.
    /// The message the sender is answered (and its connection's request log shows). Never the
    /// token: no error variant carries request text; internal causes are not told.
    pub fn public_message(&self) -> String {
        match self {
            IngestError::Auth(AuthError::LookupFailed(_)) => {
                "the connection could not be looked up; safe to retry".to_owned()
            }
            IngestError::Sink(SinkError::Unavailable(_) | SinkError::Setup(_)) => {
                "the event store did not acknowledge the batch in time; nothing was stored, retry later".to_owned()
            }
            other => other.to_string(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            IngestError::NotFound => "not_found",
            IngestError::MethodNotAllowed => "method_not_allowed",
            IngestError::Auth(e) => match e {
                AuthError::InvalidToken => "invalid_token",
                AuthError::WrongProvider => "wrong_provider",
                AuthError::SecretMissing => "missing_secret",
                AuthError::SecretWrong => "invalid_secret",
                AuthError::LookupFailed(_) => "lookup_failed",
                AuthError::Busy => "auth_busy",
            },
            IngestError::Payload(e) => match e {
                PayloadError::InvalidJson(_) => "invalid_json",
                PayloadError::WrongShape { .. } => "invalid_shape",
                PayloadError::TooManyEvents { .. } => "too_many_events",
                PayloadError::TooLarge { .. } => "body_too_large",
                PayloadError::UnsupportedEncoding(_) => "unsupported_encoding",
                PayloadError::BadGzip(_) => "invalid_gzip",
                PayloadError::BudgetSpent => "body_budget_spent",
                PayloadError::InvalidEvents(_) => "invalid_events",
            },
            IngestError::Sink(SinkError::TooLarge) => "body_too_large",
            IngestError::Sink(_) => "broker_unavailable",
            IngestError::BodyRead(_) => "body_unreadable",
        }
    }

    /// Seconds a client should wait before retrying, for the retryable answers.
    fn retry_after(&self) -> Option<u32> {
        match self {
            IngestError::Auth(AuthError::Busy)
            | IngestError::Payload(PayloadError::BudgetSpent) => Some(1),
            IngestError::Sink(SinkError::Unavailable(_) | SinkError::Setup(_)) => Some(5),
            _ => None,
        }
    }
}

impl ResponseError for IngestError {
    fn status_code(&self) -> StatusCode {
        match self {
            IngestError::NotFound | IngestError::Auth(AuthError::WrongProvider) => {
                StatusCode::NOT_FOUND
            }
            IngestError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            IngestError::Auth(AuthError::LookupFailed(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            IngestError::Auth(AuthError::Busy)
            | IngestError::Payload(PayloadError::BudgetSpent) => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::Auth(_) => StatusCode::UNAUTHORIZED,
            IngestError::Payload(
                PayloadError::TooManyEvents { .. } | PayloadError::TooLarge { .. },
            ) => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::Payload(_) | IngestError::BodyRead(_) => StatusCode::BAD_REQUEST,
            IngestError::Sink(SinkError::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::Sink(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let message = self.public_message();
        let mut body = json!({
            "code": status.as_u16(),
            "error": self.code(),
            "message": message,
        });
        if let IngestError::Payload(PayloadError::InvalidEvents(problems)) = self {
            body["problems"] = json!(problems);
        }
        let mut response = HttpResponse::build(status).json(body);
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if matches!(self, IngestError::MethodNotAllowed) {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(INGEST_METHODS));
        }
        response
    }
}

/// The methods every ingest URL takes (Segment's and Amplitude's destinations may use any).
pub const INGEST_METHODS: &str = "POST, PUT, PATCH";

/// 200 with the counts, and Amplitude's `payload_size_bytes` (the body as stored) and
/// `server_upload_time` (ms since the epoch).
pub fn accepted(summary: BatchSummary, payload_size_bytes: usize) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "code": 200,
        "received": summary.received,
        "accepted": summary.accepted,
        "dropped": summary.dropped,
        "events_ingested": summary.accepted,
        "payload_size_bytes": payload_size_bytes,
        "server_upload_time": chrono::Utc::now().timestamp_millis(),
    }))
}

/// 204: the connection is paused or disconnected; nothing was written.
pub fn not_taking_events() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

pub fn json_response(status: StatusCode, body: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(body.to_string())
}
