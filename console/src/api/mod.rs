//! The control-plane API under `/api/v1`: JSON in camelCase, `Authorization: Bearer gfa_...` on
//! every route but the OpenAPI document, errors as `{"error": {"code", "message", "field"?}}`.
//! Lists answer `{"items": [...], "nextOffset"}` and take `limit` (1 to 500, default 100) and
//! `offset`. Every change is recorded in the audit log with the admin key that made it.
//!
//! What a key may do is checked in [`crate::auth`]: a `read` key gets 403 on every change, and a
//! key limited to products sees only theirs (lists filtered in SQL, others' ids answered 404).
//!
//! The OpenAPI 3.1 document (`/api/v1/openapi.json`) is generated from these handlers' `#[utoipa::path]`
//! attributes and the types they answer with.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use gf_control::AdminKeys;
use gf_runtime::kafka::KafkaSettings;
use gf_runtime::topics::Topics;
use gf_schemas::Provider;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::error::ApiError;
use gf_control::settings::Settings;

mod audit;
mod connections;
mod deadletters;
mod deliveries;
mod endpoints;
mod outcomes;
mod paging;
mod products;
mod traffic;

use audit::*;
use connections::*;
use deadletters::*;
pub use deadletters::{read_deadletters, window};
use deliveries::*;
use endpoints::*;
use outcomes::*;
pub use paging::{ByProduct, Page, Paged};
use products::*;
use traffic::*;
pub use traffic::{ProductOverview, overview, requests};

/// What every handler shares.
pub struct State {
    /// Every change goes through here (and into the audit log).
    pub settings: Settings,
    pub keys: AdminKeys,
    pub kafka: KafkaSettings,
    pub topics: Topics,
    /// The console's logged-in sessions.
    pub sessions: crate::ui::session::Sessions,
    /// Session cookies are `Secure` unless the console listens on loopback.
    pub secure_cookies: bool,
}

type Data = web::Data<State>;
type Answer = Result<HttpResponse, ApiError>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    let json = web::JsonConfig::default()
        .limit(64 * 1024)
        .error_handler(|e, _| {
            ApiError::invalid("body", format!("the body is not valid: {e}")).into()
        });
    let query = web::QueryConfig::default().error_handler(|e, _| {
        ApiError::invalid("query", format!("the query is not valid: {e}")).into()
    });
    let path = web::PathConfig::default().error_handler(|e, _| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such resource: {e}"),
        )
        .into()
    });
    cfg.service(
        web::scope("/api/v1")
            .app_data(json)
            .app_data(query)
            .app_data(path)
            .route("/openapi.json", web::get().to(openapi))
            .service(authorized()),
    );
}

/// Every route but the OpenAPI document.
fn authorized() -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::scope("")
        .wrap(actix_web::middleware::from_fn(crate::auth::require_admin))
        .route("/products", web::post().to(create_product))
        .route("/products", web::get().to(list_products))
        .route("/connections", web::post().to(create_connection))
        .route("/connections", web::get().to(list_connections))
        .route("/connections/{id}", web::get().to(show_connection))
        .route(
            "/connections/{id}/rotate",
            web::post().to(rotate_connection),
        )
        .route("/connections/{id}/pause", web::post().to(pause_connection))
        .route(
            "/connections/{id}/resume",
            web::post().to(resume_connection),
        )
        .route(
            "/connections/{id}/disconnect",
            web::post().to(disconnect_connection),
        )
        .route("/connections/{id}/secret", web::put().to(set_secret))
        .route("/connections/{id}/secret", web::delete().to(clear_secret))
        .route(
            "/connections/{id}/body-excerpts",
            web::put().to(set_body_excerpts),
        )
        .route("/endpoints", web::post().to(create_endpoint))
        .route("/endpoints", web::get().to(list_endpoints))
        .route("/endpoints/{id}/test", web::post().to(test_endpoint))
        .route("/endpoints/{id}/enable", web::post().to(enable_endpoint))
        .route("/endpoints/{id}/disable", web::post().to(disable_endpoint))
        .route(
            "/endpoints/{id}/rotate-secret",
            web::post().to(rotate_endpoint_secret),
        )
        .route("/deliveries", web::get().to(list_deliveries))
        .route("/deliveries/retry", web::post().to(retry_deliveries))
        .route(
            "/deliveries/{id}/attempts",
            web::get().to(delivery_attempts),
        )
        .route("/deadletters", web::get().to(list_deadletters))
        .route("/audit", web::get().to(list_audit))
        .route("/conversations", web::get().to(list_conversations))
        .route("/conversations/{id}", web::get().to(show_conversation))
        .route("/products/{id}/outcomes", web::get().to(product_outcomes))
        .route("/products/{id}/stats", web::get().to(product_stats))
        .route(
            "/connections/{id}/requests",
            web::get().to(connection_requests),
        )
        .default_service(web::to(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
        }))
}

trait IntoResponse {
    fn into_response(self) -> HttpResponse;
}

impl IntoResponse for ApiError {
    fn into_response(self) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "gf control plane", version = "1", description = "Products, connections, webhook endpoints, deliveries, dead letters, the audit log and conversation outcomes."),
    paths(
        create_product, list_products, create_connection, list_connections, show_connection,
        rotate_connection, pause_connection, resume_connection, disconnect_connection,
        set_secret, clear_secret, set_body_excerpts, create_endpoint, list_endpoints, test_endpoint,
        enable_endpoint, disable_endpoint, rotate_endpoint_secret, list_deliveries,
        retry_deliveries, delivery_attempts, list_deadletters, list_audit, list_conversations,
        show_conversation, product_outcomes, product_stats, connection_requests
    ),
    components(schemas(ErrorBody, ErrorDetail, Provider)),
    modifiers(&BearerKey),
    security(("adminKey" = []))
)]
pub struct ApiDoc;

struct BearerKey;

impl utoipa::Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "adminKey",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `{"error": {...}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

pub(super) fn created<T: Serialize>(value: &T) -> Answer {
    Ok(HttpResponse::Created().json(value))
}

pub(super) fn ok<T: Serialize>(value: &T) -> Answer {
    Ok(HttpResponse::Ok().json(value))
}
