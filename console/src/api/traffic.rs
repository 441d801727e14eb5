//! What flows: a product's overview (per connection and hour: requests, events received,
//! accepted and dropped, answer statuses; dead letters by reason; webhook deliveries by
//! endpoint) and a connection's newest requests with the events each became.

use std::collections::BTreeMap;

use actix_web::web;
use chrono::{DateTime, Duration, Utc};
use gf_control::traffic::{ProductStats, REQUESTS_KEPT, RequestEntry};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{Answer, Data, ErrorBody, State, ok};
use crate::auth::Admin;
use crate::error::ApiError;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// From this time on; default the last 24 hours.
    since: Option<DateTime<Utc>>,
}

/// A product's overview.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductOverview {
    #[serde(flatten)]
    pub stats: ProductStats,
    /// Dead letters of the product since then, by reason class; `null` when the broker did not
    /// answer.
    pub dead_letters: Option<Vec<ReasonCount>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReasonCount {
    pub reason_class: String,
    pub count: usize,
}

/// One connection's newest requests.
#[derive(Serialize, ToSchema)]
pub struct RequestLog {
    pub items: Vec<RequestEntry>,
}

#[utoipa::path(get, path = "/api/v1/products/{id}/stats", params(("id" = Uuid, Path), StatsQuery), tag = "traffic",
    responses((status = 200, description = "Per connection and hour: requests, events received, accepted and dropped, answer statuses; dead letters by reason; deliveries by endpoint", body = ProductOverview), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn product_stats(
    state: Data,
    _: Admin,
    id: web::Path<Uuid>,
    query: web::Query<StatsQuery>,
) -> Answer {
    ok(&overview(&state, *id, query.since).await?)
}

/// The overview of product `id` since `since` (default: the last 24 hours); the console's
/// product page shows the same.
pub async fn overview(
    state: &State,
    id: Uuid,
    since: Option<DateTime<Utc>>,
) -> Result<ProductOverview, ApiError> {
    state.settings.control.product(id).await?;
    let since = since.unwrap_or_else(|| Utc::now() - Duration::hours(24));
    let stats = state.settings.traffic.product(id, since).await?;
    let filter = gf_runtime::deadletters::Filter {
        stage: None,
        since: Some(since),
        newest: Some(super::NEWEST_PER_PARTITION),
    };
    let dead_letters = match super::read_deadletters(state, filter).await {
        Ok(letters) => {
            let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
            for letter in letters.iter().filter(|l| l.product_id() == Some(id)) {
                *by_reason
                    .entry(letter.reason_class.as_ref().to_owned())
                    .or_default() += 1;
            }
            Some(
                by_reason
                    .into_iter()
                    .map(|(reason_class, count)| ReasonCount {
                        reason_class,
                        count,
                    })
                    .collect(),
            )
        }
        Err(_) => None,
    };
    Ok(ProductOverview {
        stats,
        dead_letters,
    })
}

#[utoipa::path(get, path = "/api/v1/connections/{id}/requests", params(("id" = Uuid, Path)), tag = "traffic",
    responses((status = 200, description = "The connection's newest requests (at most 100), newest first: what each was answered and the canonical events it became", body = RequestLog), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn connection_requests(state: Data, _: Admin, id: web::Path<Uuid>) -> Answer {
    ok(&RequestLog {
        items: requests(&state, *id).await?,
    })
}

/// A connection's newest requests (404 for an unknown connection).
pub async fn requests(state: &State, id: Uuid) -> Result<Vec<RequestEntry>, ApiError> {
    state.settings.control.connection(id).await?;
    Ok(state.settings.traffic.requests(id, REQUESTS_KEPT).await?)
}
