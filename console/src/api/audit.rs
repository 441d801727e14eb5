//! The audit log, for keys over every product (it spans products).

use actix_web::web;
use chrono::{DateTime, Utc};
use gf_control::AuditEntry;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Answer, Data, ErrorBody, Page, Paged};
use crate::auth::EveryProduct;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct AuditQuery {
    since: Option<DateTime<Utc>>,
    limit: Option<u32>,
    offset: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery), tag = "audit",
    responses((status = 200, body = Paged<AuditEntry>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is limited to products (the log spans products)")))]
pub(super) async fn list_audit(
    state: Data,
    _: EveryProduct,
    query: web::Query<AuditQuery>,
) -> Answer {
    let page = Page {
        limit: query.limit,
        offset: query.offset,
        after: None,
    };
    let request = page.request()?;
    let entries = state
        .settings
        .audit
        .list(query.since, request.offset, request.fetch())
        .await?;
    page.rows(&request, entries)
}
