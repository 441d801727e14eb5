//! Every error answer of the API: `{"error": {"code", "message", "field"?}}` with its status.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use gf_control::ControlError;
use gf_runtime::db::DbError;
use gf_webhooks::delivery::TestError;
use gf_webhooks::endpoints::EndpointError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, for 400 and 422.
    pub field: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an admin key is required: Authorization: Bearer gfa_...",
        )
    }

    fn unavailable(what: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %what, "control-plane request failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "PostgreSQL did not answer; retry shortly",
        )
    }

    pub fn not_found(message: String) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 403: the admin key may not do this (a read-only key changing something, a key limited
    /// to products reading what spans products).
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            error["field"] = json!(field);
        }
        HttpResponse::build(self.status).json(json!({ "error": error }))
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::ProductNotFound(_) | ControlError::ConnectionNotFound(_) => {
                ApiError::not_found(e.to_string())
            }
            ControlError::BadProductName => ApiError::invalid("name", e.to_string()),
            ControlError::InvalidTransition { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            ControlError::Secret(_) => ApiError::invalid("secret", e.to_string()),
            ControlError::Db(_) | ControlError::Hashing(_) => ApiError::unavailable(e),
        }
    }
}

impl From<gf_control::AccessError> for ApiError {
    fn from(e: gf_control::AccessError) -> Self {
        match e {
            gf_control::AccessError::AdminKeyNotFound(_) => ApiError::not_found(e.to_string()),
            gf_control::AccessError::BadName => ApiError::invalid("name", e.to_string()),
            gf_control::AccessError::NoProducts | gf_control::AccessError::UnknownProducts(_) => {
                ApiError::invalid("productIds", e.to_string())
            }
            _ => ApiError::unavailable(e),
        }
    }
}

impl From<EndpointError> for ApiError {
    fn from(e: EndpointError) -> Self {
        let unprocessable = |field| ApiError {
            field: Some(field),
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                e.to_string(),
            )
        };
        match &e {
            EndpointError::ProductNotFound(_) | EndpointError::NotFound(_) => {
                ApiError::not_found(e.to_string())
            }
            EndpointError::BadUrl(_) => ApiError::invalid("url", e.to_string()),
            EndpointError::PlainHttp(_)
            | EndpointError::Blocked { .. }
            | EndpointError::Unresolvable(_) => unprocessable("url"),
            EndpointError::BadEventType(_) | EndpointError::NoEventTypes => {
                ApiError::invalid("events", e.to_string())
            }
            EndpointError::Secret(_) | EndpointError::Db(_) => ApiError::unavailable(e),
        }
    }
}

impl From<TestError> for ApiError {
    fn from(e: TestError) -> Self {
        match e {
            TestError::UnknownEventType(_) => ApiError::invalid("event", e.to_string()),
            TestError::Endpoint(e) => e.into(),
            TestError::Disabled(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            TestError::Db(_) | TestError::Client(_) => ApiError::unavailable(e),
        }
    }
}

impl From<gf_control::settings::SettingsError> for ApiError {
    fn from(e: gf_control::settings::SettingsError) -> Self {
        use gf_control::settings::SettingsError;
        match e {
            SettingsError::Control(e) => e.into(),
            SettingsError::Endpoint(e) => e.into(),
            SettingsError::Test(e) => e.into(),
            SettingsError::Db(e) => e.into(),
            SettingsError::Access(e) => e.into(),
        }
    }
}

impl From<gf_control::outcomes::OutcomeError> for ApiError {
    fn from(e: gf_control::outcomes::OutcomeError) -> Self {
        use gf_control::outcomes::OutcomeError;
        match e {
            OutcomeError::Db(e) => e.into(),
            OutcomeError::Corrupt(_) => ApiError::new(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                e.to_string(),
            ),
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::unavailable(e)
    }
}
