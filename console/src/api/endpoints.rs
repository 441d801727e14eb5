//! Webhook endpoints: create, list, test, enable, disable, rotate the secret.

use actix_web::web;
use gf_control::settings::EndpointWithSecret;
use gf_webhooks::delivery::TestOutcome;
use gf_webhooks::endpoints::Endpoint;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Answer, ByProduct, Data, ErrorBody, Paged, created, ok};
use crate::auth::Admin;
use gf_control::Subject;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateEndpoint {
    product_id: Uuid,
    url: String,
    /// Exact types (`conversation.rating`), prefixes (`conversation.*`) or `*`.
    events: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/endpoints", request_body = CreateEndpoint, tag = "endpoints",
    responses((status = 201, body = EndpointWithSecret), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is read-only"), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn create_endpoint(
    state: Data,
    admin: Admin,
    body: web::Json<CreateEndpoint>,
) -> Answer {
    admin
        .check(&state, Subject::Product(body.product_id))
        .await?;
    created(
        &state
            .settings
            .create_endpoint(&admin.actor(), body.product_id, &body.url, &body.events)
            .await?,
    )
}

#[utoipa::path(get, path = "/api/v1/endpoints", params(ByProduct), tag = "endpoints",
    responses((status = 200, body = Paged<Endpoint>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "productId names a product the key does not see")))]
pub(super) async fn list_endpoints(
    state: Data,
    admin: Admin,
    query: web::Query<ByProduct>,
) -> Answer {
    let page = query.page();
    let product = admin.product_filter(query.product_id)?;
    let endpoints = state
        .settings
        .endpoints_in(admin.visible(), product, &page.request()?)
        .await?;
    page.answer(endpoints)
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// The sample's event type; default `conversation.started`.
    event: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/endpoints/{id}/test", params(("id" = Uuid, Path)), request_body = Option<TestRequest>, tag = "endpoints",
    responses((status = 200, body = TestOutcome, description = "What the endpoint answered (also when it failed: see status and errorClass)"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is read-only"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn test_endpoint(
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
    responses((status = 200, body = Endpoint), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is read-only"), (status = 404, body = ErrorBody)))]
pub(super) async fn enable_endpoint(state: Data, admin: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&state
        .settings
        .set_endpoint_enabled(&admin.actor(), *id, true)
        .await?)
}

#[utoipa::path(post, path = "/api/v1/endpoints/{id}/disable", params(("id" = Uuid, Path)), tag = "endpoints",
    responses((status = 200, body = Endpoint), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is read-only"), (status = 404, body = ErrorBody)))]
pub(super) async fn disable_endpoint(state: Data, admin: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&state
        .settings
        .set_endpoint_enabled(&admin.actor(), *id, false)
        .await?)
}

#[utoipa::path(post, path = "/api/v1/endpoints/{id}/rotate-secret", params(("id" = Uuid, Path)), tag = "endpoints",
    responses((status = 200, body = EndpointWithSecret), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is read-only"), (status = 404, body = ErrorBody)))]
pub(super) async fn rotate_endpoint_secret(
    state: Data,
    admin: Admin,
    id: web::Path<Uuid>,
) -> Answer {
    ok(&state
        .settings
        .rotate_endpoint_secret(&admin.actor(), *id)
        .await?)
}
