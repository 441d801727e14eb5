//! Connections: create, list, show, rotate, pause, resume, disconnect, shared secrets.

use actix_web::web;
use gf_control::Connection;
use gf_control::settings::{ConnectionWithUrl, Transition};
use gf_schemas::Provider;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Answer, ByProduct, Data, ErrorBody, Paged, created, ok};
use crate::auth::Admin;
use gf_control::Subject;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateConnection {
    product_id: Uuid,
    provider: Provider,
    /// Also require this shared secret in the `x-greenflash-secret` header (8+ characters).
    secret: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/connections", request_body = CreateConnection, tag = "connections",
    responses((status = 201, body = ConnectionWithUrl), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is read-only"), (status = 404, body = ErrorBody)))]
pub(super) async fn create_connection(
    state: Data,
    admin: Admin,
    body: web::Json<CreateConnection>,
) -> Answer {
    admin
        .check(&state, Subject::Product(body.product_id))
        .await?;
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

#[utoipa::path(get, path = "/api/v1/connections", params(ByProduct), tag = "connections",
    responses((status = 200, body = Paged<Connection>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "productId names a product the key does not see")))]
pub(super) async fn list_connections(
    state: Data,
    admin: Admin,
    query: web::Query<ByProduct>,
) -> Answer {
    let page = query.page();
    let product = admin.product_filter(query.product_id)?;
    let connections = state
        .settings
        .control
        .list_connections_in(admin.visible(), product, &page.request()?)
        .await?;
    page.answer(connections)
}

#[utoipa::path(get, path = "/api/v1/connections/{id}", params(("id" = Uuid, Path)), tag = "connections",
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn show_connection(state: Data, _: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&state.settings.control.connection(*id).await?)
}

#[utoipa::path(post, path = "/api/v1/connections/{id}/rotate", params(("id" = Uuid, Path)), tag = "connections",
    responses((status = 200, body = ConnectionWithUrl), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is read-only"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn rotate_connection(state: Data, admin: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&state.settings.rotate(&admin.actor(), *id).await?)
}

#[utoipa::path(post, path = "/api/v1/connections/{id}/pause", params(("id" = Uuid, Path)), tag = "connections",
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is read-only"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn pause_connection(state: Data, admin: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&state
        .settings
        .transition(&admin.actor(), *id, Transition::Pause)
        .await?)
}

#[utoipa::path(post, path = "/api/v1/connections/{id}/resume", params(("id" = Uuid, Path)), tag = "connections",
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is read-only"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn resume_connection(state: Data, admin: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&state
        .settings
        .transition(&admin.actor(), *id, Transition::Resume)
        .await?)
}

#[utoipa::path(post, path = "/api/v1/connections/{id}/disconnect", params(("id" = Uuid, Path)), tag = "connections",
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is read-only"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn disconnect_connection(
    state: Data,
    admin: Admin,
    id: web::Path<Uuid>,
) -> Answer {
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
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is read-only"), (status = 404, body = ErrorBody)))]
pub(super) async fn set_secret(
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
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is read-only"), (status = 404, body = ErrorBody)))]
pub(super) async fn clear_secret(state: Data, admin: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&state.settings.set_secret(&admin.actor(), *id, None).await?)
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BodyExcerpts {
    /// Keep the first 2 KiB of each request body in the connection's request log.
    enabled: bool,
}

#[utoipa::path(put, path = "/api/v1/connections/{id}/body-excerpts", params(("id" = Uuid, Path)), request_body = BodyExcerpts, tag = "connections",
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is read-only"), (status = 404, body = ErrorBody)))]
pub(super) async fn set_body_excerpts(
    state: Data,
    admin: Admin,
    id: web::Path<Uuid>,
    body: web::Json<BodyExcerpts>,
) -> Answer {
    ok(&state
        .settings
        .set_log_bodies(&admin.actor(), *id, body.enabled)
        .await?)
}
