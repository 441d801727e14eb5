//! The control-plane API under `/api/v1`: JSON in camelCase, `Authorization: Bearer gfa_...` on
//! every route but the OpenAPI document, errors as `{"error": {"code", "message", "field"?}}`.
//! Lists answer `{"items": [...], "nextOffset"}` and take `limit` (1 to 500, default 100) and
//! `offset`. Every change is recorded in the audit log with the admin key that made it.
//!
//! The OpenAPI 3.1 document (`/api/v1/openapi.json`) is generated from these handlers' `#[utoipa::path]`
//! attributes and the types they answer with.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use gf_control::{AdminKeys, AuditEntry};
use gf_control::{Connection, Product};
use gf_runtime::kafka::KafkaSettings;
use gf_runtime::topics::Topics;
use gf_schemas::Provider;
use gf_webhooks::delivery::{
    AttemptView, DeliveryScope, DeliveryView, RetrySelection, TestOutcome,
};
use gf_webhooks::endpoints::Endpoint;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::auth::Admin;
use crate::error::ApiError;
use gf_control::settings::{ConnectionWithUrl, EndpointWithSecret, Settings, Transition};

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
    info(title = "gf control plane", version = "1", description = "Products, connections, webhook endpoints, deliveries, dead letters and the audit log."),
    paths(
        create_product, list_products, create_connection, list_connections, show_connection,
        rotate_connection, pause_connection, resume_connection, disconnect_connection,
        set_secret, clear_secret, create_endpoint, list_endpoints, test_endpoint,
        enable_endpoint, disable_endpoint, rotate_endpoint_secret, list_deliveries,
        retry_deliveries, delivery_attempts, list_deadletters, list_audit
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

// ---- pagination ----

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    /// 1 to 500; default 100.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// How many items to skip.
    offset: Option<u32>,
}

/// One page of a list.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Paged<T> {
    pub items: Vec<T>,
    /// The `offset` of the next page; `null` on the last.
    pub next_offset: Option<u32>,
}

impl Page {
    fn bounds(&self) -> Result<(usize, usize), ApiError> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=500).contains(&limit) {
            return Err(ApiError::invalid("limit", "limit must be 1 to 500"));
        }
        Ok((self.offset.unwrap_or(0) as usize, limit as usize))
    }

    /// The page of `all`.
    fn of<T: Serialize>(&self, all: Vec<T>) -> Answer {
        let (offset, limit) = self.bounds()?;
        let total = all.len();
        let items: Vec<T> = all.into_iter().skip(offset).take(limit).collect();
        let next = (offset + items.len() < total).then(|| (offset + items.len()) as u32);
        Ok(HttpResponse::Ok().json(json!({ "items": items, "nextOffset": next })))
    }
}

fn created<T: Serialize>(value: &T) -> Answer {
    Ok(HttpResponse::Created().json(value))
}

fn ok<T: Serialize>(value: &T) -> Answer {
    Ok(HttpResponse::Ok().json(value))
}

// ---- products ----

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProduct {
    name: String,
}

#[utoipa::path(post, path = "/api/v1/products", request_body = CreateProduct, tag = "products",
    responses((status = 201, body = Product), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn create_product(state: Data, admin: Admin, body: web::Json<CreateProduct>) -> Answer {
    created(
        &state
            .settings
            .create_product(&admin.actor(), &body.name)
            .await?,
    )
}

#[utoipa::path(get, path = "/api/v1/products", params(Page), tag = "products",
    responses((status = 200, body = Paged<Product>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_products(state: Data, _: Admin, page: web::Query<Page>) -> Answer {
    page.of(state.settings.control.list_products().await?)
}

// ---- connections ----

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateConnection {
    product_id: Uuid,
    provider: Provider,
    /// Also require this shared secret in the `x-greenflash-secret` header (8+ characters).
    secret: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/connections", request_body = CreateConnection, tag = "connections",
    responses((status = 201, body = ConnectionWithUrl), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_connection(state: Data, admin: Admin, body: web::Json<CreateConnection>) -> Answer {
    created(
        &state
            .settings
            .create_connection(
                &admin.actor(),
                body.product_id,
                body.provider,
                body.secret.as_deref(),
            )
            .await?,
    )
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ByProduct {
    product_id: Option<Uuid>,
    limit: Option<u32>,
    offset: Option<u32>,
}

impl ByProduct {
    fn page(&self) -> Page {
        Page {
            limit: self.limit,
            offset: self.offset,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/connections", params(ByProduct), tag = "connections",
    responses((status = 200, body = Paged<Connection>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_connections(state: Data, _: Admin, query: web::Query<ByProduct>) -> Answer {
    query.page().of(state
        .settings
        .control
        .list_connections(query.product_id)
        .await?)
}

#[utoipa::path(get, path = "/api/v1/connections/{id}", params(("id" = Uuid, Path)), tag = "connections",
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show_connection(state: Data, _: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&state.settings.control.connection(*id).await?)
}

#[utoipa::path(post, path = "/api/v1/connections/{id}/rotate", params(("id" = Uuid, Path)), tag = "connections",
    responses((status = 200, body = ConnectionWithUrl), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn rotate_connection(state: Data, admin: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&state.settings.rotate(&admin.actor(), *id).await?)
}

#[utoipa::path(post, path = "/api/v1/connections/{id}/pause", params(("id" = Uuid, Path)), tag = "connections",
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn pause_connection(state: Data, admin: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&state
        .settings
        .transition(&admin.actor(), *id, Transition::Pause)
        .await?)
}

#[utoipa::path(post, path = "/api/v1/connections/{id}/resume", params(("id" = Uuid, Path)), tag = "connections",
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn resume_connection(state: Data, admin: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&state
        .settings
        .transition(&admin.actor(), *id, Transition::Resume)
        .await?)
}

#[utoipa::path(post, path = "/api/v1/connections/{id}/disconnect", params(("id" = Uuid, Path)), tag = "connections",
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn disconnect_connection(state: Data, admin: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&state
        .settings
        .transition(&admin.actor(), *id, Transition::Disconnect)
        .await?)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SharedSecret {
    /// 8 to 256 printable ASCII characters.
    secret: String,
}

#[utoipa::path(put, path = "/api/v1/connections/{id}/secret", params(("id" = Uuid, Path)), request_body = SharedSecret, tag = "connections",
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_secret(
    state: Data,
    admin: Admin,
    id: web::Path<Uuid>,
    body: web::Json<SharedSecret>,
) -> Answer {
    ok(&state
        .settings
        .set_secret(&admin.actor(), *id, Some(&body.secret))
        .await?)
}

#[utoipa::path(delete, path = "/api/v1/connections/{id}/secret", params(("id" = Uuid, Path)), tag = "connections",
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn clear_secret(state: Data, admin: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&state.settings.set_secret(&admin.actor(), *id, None).await?)
}

// ---- endpoints ----

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateEndpoint {
    product_id: Uuid,
    url: String,
    /// Exact types (`conversation.rating`), prefixes (`conversation.*`) or `*`.
    events: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/endpoints", request_body = CreateEndpoint, tag = "endpoints",
    responses((status = 201, body = EndpointWithSecret), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_endpoint(state: Data, admin: Admin, body: web::Json<CreateEndpoint>) -> Answer {
    created(
        &state
            .settings
            .create_endpoint(&admin.actor(), body.product_id, &body.url, &body.events)
            .await?,
    )
}

#[utoipa::path(get, path = "/api/v1/endpoints", params(ByProduct), tag = "endpoints",
    responses((status = 200, body = Paged<Endpoint>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_endpoints(state: Data, _: Admin, query: web::Query<ByProduct>) -> Answer {
    query
        .page()
        .of(state.settings.endpoints.list(query.product_id).await?)
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// The sample's event type; default `conversation.started`.
    event: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/endpoints/{id}/test", params(("id" = Uuid, Path)), request_body = Option<TestRequest>, tag = "endpoints",
    responses((status = 200, body = TestOutcome, description = "What the endpoint answered (also when it failed: see status and errorClass)"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn test_endpoint(
    state: Data,
    admin: Admin,
    id: web::Path<Uuid>,
    body: Option<web::Json<TestRequest>>,
) -> Answer {
    let event = body
        .and_then(|b| b.into_inner().event)
        .unwrap_or_else(|| "conversation.started".into());
    ok(&state
        .settings
        .test_endpoint(&admin.actor(), *id, &event)
        .await?)
}

#[utoipa::path(post, path = "/api/v1/endpoints/{id}/enable", params(("id" = Uuid, Path)), tag = "endpoints",
    responses((status = 200, body = Endpoint), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn enable_endpoint(state: Data, admin: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&state
        .settings
        .set_endpoint_enabled(&admin.actor(), *id, true)
        .await?)
}

#[utoipa::path(post, path = "/api/v1/endpoints/{id}/disable", params(("id" = Uuid, Path)), tag = "endpoints",
    responses((status = 200, body = Endpoint), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn disable_endpoint(state: Data, admin: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&state
        .settings
        .set_endpoint_enabled(&admin.actor(), *id, false)
        .await?)
}

#[utoipa::path(post, path = "/api/v1/endpoints/{id}/rotate-secret", params(("id" = Uuid, Path)), tag = "endpoints",
    responses((status = 200, body = EndpointWithSecret), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn rotate_endpoint_secret(state: Data, admin: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&state
        .settings
        .rotate_endpoint_secret(&admin.actor(), *id)
        .await?)
}

// ---- deliveries ----

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryQuery {
    endpoint_id: Option<Uuid>,
    /// `pending`, `delivered`, `failed` or `cancelled`.
    status: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/deliveries", params(DeliveryQuery), tag = "deliveries",
    responses((status = 200, body = Paged<DeliveryView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_deliveries(state: Data, _: Admin, query: web::Query<DeliveryQuery>) -> Answer {
    if let Some(status) = &query.status
        && !["pending", "delivered", "failed", "cancelled"].contains(&status.as_str())
    {
        return Err(ApiError::invalid(
            "status",
            "status must be pending, delivered, failed or cancelled",
        ));
    }
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    let (offset, limit) = page.bounds()?;
    // One more than the page, to tell whether another follows.
    let rows = state
        .settings
        .deliveries(
            DeliveryScope {
                endpoint: query.endpoint_id,
                status: query.status.as_deref(),
                ..DeliveryScope::default()
            },
            (offset + limit + 1) as i64,
        )
        .await?;
    page.of(rows)
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryRequest {
    /// One delivery; or
    delivery_id: Option<Uuid>,
    /// every failed delivery (of this endpoint, when given) created since `failedSince`.
    endpoint_id: Option<Uuid>,
    failed_since: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct Retried {
    /// The deliveries made due now.
    retried: Vec<Uuid>,
}

#[utoipa::path(post, path = "/api/v1/deliveries/retry", request_body = RetryRequest, tag = "deliveries",
    responses((status = 200, body = Retried), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn retry_deliveries(state: Data, admin: Admin, body: web::Json<RetryRequest>) -> Answer {
    let selection = match (body.delivery_id, body.failed_since) {
        (Some(id), None) if body.endpoint_id.is_none() => RetrySelection::One(id),
        (None, Some(since)) => RetrySelection::FailedSince {
            endpoint: body.endpoint_id,
            since,
        },
        _ => {
            return Err(ApiError::invalid(
                "deliveryId",
                "give deliveryId alone, or failedSince (with endpointId optionally)",
            ));
        }
    };
    let retried = state.settings.retry(&admin.actor(), selection).await?;
    ok(&Retried { retried })
}

#[utoipa::path(get, path = "/api/v1/deliveries/{id}/attempts", params(("id" = Uuid, Path)), tag = "deliveries",
    responses((status = 200, body = Paged<AttemptView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delivery_attempts(
    state: Data,
    _: Admin,
    id: web::Path<Uuid>,
    page: web::Query<Page>,
) -> Answer {
    match state.settings.attempts(*id).await? {
        Some(attempts) => page.of(attempts),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no delivery with id {id}"),
        )),
    }
}

// ---- dead letters and audit ----

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct DeadletterQuery {
    /// `normalizer`, `attributor` or `notifier`.
    stage: Option<String>,
    since: Option<DateTime<Utc>>,
    limit: Option<u32>,
    offset: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/deadletters", params(DeadletterQuery), tag = "deadletters",
    responses((status = 200, description = "A page of dead letters (gf.deadletter.v1 messages), oldest first"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_deadletters(state: Data, _: Admin, query: web::Query<DeadletterQuery>) -> Answer {
    let filter = gf_runtime::deadletters::Filter {
        stage: query.stage.clone(),
        since: query.since,
    };
    let letters = read_deadletters(&state, filter).await?;
    Page {
        limit: query.limit,
        offset: query.offset,
    }
    .of(letters)
}

/// The dead letters matching `filter`, oldest first (read from the topic off the HTTP workers).
pub async fn read_deadletters(
    state: &State,
    filter: gf_runtime::deadletters::Filter,
) -> Result<Vec<gf_schemas::deadletter::DeadLetter>, ApiError> {
    let (kafka, topics) = (state.kafka.clone(), state.topics.clone());
    let listing = tokio::task::spawn_blocking(move || {
        gf_runtime::deadletters::list(&kafka, &topics, &filter)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(|e| {
        tracing::warn!(error = %e, "dead letters could not be read");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the broker did not answer; retry shortly",
        )
    })?;
    Ok(listing.letters)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct AuditQuery {
    since: Option<DateTime<Utc>>,
    limit: Option<u32>,
    offset: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery), tag = "audit",
    responses((status = 200, body = Paged<AuditEntry>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_audit(state: Data, _: Admin, query: web::Query<AuditQuery>) -> Answer {
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    let (offset, limit) = page.bounds()?;
    let entries = state
        .settings
        .audit
        .list(query.since, (offset + limit + 1) as i64)
        .await?;
    page.of(entries)
}
