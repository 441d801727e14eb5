//! Conversation outcomes: the list (newest first, filtered and paged in SQL), one conversation
//! with its timeline, and a product's totals by verdict and by day.

use actix_web::web;
use chrono::{DateTime, Utc};
use gf_control::outcomes::{ConversationDetail, OutcomeFilter, ProductOutcomes};
use gf_schemas::outcome::{ConversationOutcome, Verdict};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::{Answer, Data, ErrorBody, Page, Paged, ok};
use crate::auth::Admin;
use crate::error::ApiError;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ConversationQuery {
    product_id: Option<Uuid>,
    verdict: Option<Verdict>,
    /// Conversations quiet since (the later of their last message and last event) at or after.
    since: Option<DateTime<Utc>>,
    /// ... and before.
    until: Option<DateTime<Utc>>,
    /// 1 to 500; default 100.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    offset: Option<u32>,
    /// The `nextCursor` of the previous page.
    after: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/conversations", params(ConversationQuery), tag = "outcomes",
    responses((status = 200, description = "Conversations with their outcome, newest first", body = Paged<ConversationOutcome>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "productId names a product the key does not see")))]
pub(super) async fn list_conversations(
    state: Data,
    admin: Admin,
    query: web::Query<ConversationQuery>,
) -> Answer {
    let page = Page {
        limit: query.limit,
        offset: query.offset,
        after: query.after.clone(),
    };
    let filter = OutcomeFilter {
        product: admin.product_filter(query.product_id)?,
        verdict: query.verdict,
        since: query.since,
        until: query.until,
    };
    let conversations = state
        .settings
        .outcomes
        .list_in(admin.visible(), &filter, &page.request()?)
        .await?;
    page.answer(conversations)
}

#[utoipa::path(get, path = "/api/v1/conversations/{id}", params(("id" = Uuid, Path)), tag = "outcomes",
    responses((status = 200, description = "The conversation's outcome, its attributed events in time order and its messages", body = ConversationDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn show_conversation(state: Data, _: Admin, id: web::Path<Uuid>) -> Answer {
    match state.settings.outcomes.conversation(*id).await? {
        Some(detail) => ok(&detail),
        None => Err(ApiError::not_found(format!("no conversation with id {id}"))),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutcomeRange {
    /// Conversations quiet since a time at or after this.
    since: Option<DateTime<Utc>>,
    /// ... and before this.
    until: Option<DateTime<Utc>>,
}

#[utoipa::path(get, path = "/api/v1/products/{id}/outcomes", params(("id" = Uuid, Path), OutcomeRange), tag = "outcomes",
    responses((status = 200, description = "Totals by verdict, and revenue and refunds by day (UTC)", body = ProductOutcomes), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn product_outcomes(
    state: Data,
    _: Admin,
    id: web::Path<Uuid>,
    range: web::Query<OutcomeRange>,
) -> Answer {
    state.settings.control.product(*id).await?;
    ok(&state
        .settings
        .outcomes
        .product(*id, range.since, range.until)
        .await?)
}
