//! Dead letters, read from their topic off the HTTP workers; for keys over every product (they
//! span products).

use actix_web::http::StatusCode;
use actix_web::web;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Answer, Data, ErrorBody, Page, State};
use crate::auth::EveryProduct;
use crate::error::ApiError;

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
    responses((status = 200, description = "A page of dead letters (gf.deadletter.v1 messages), oldest first"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is limited to products (dead letters span products)")))]
pub(super) async fn list_deadletters(
    state: Data,
    _: EveryProduct,
    query: web::Query<DeadletterQuery>,
) -> Answer {
    let filter = window(gf_runtime::deadletters::Filter {
        stage: query.stage.clone(),
        since: query.since,
        newest: None,
    });
    let letters = read_deadletters(&state, filter).await?;
    Page {
        limit: query.limit,
        offset: query.offset,
        after: None,
    }
    .of(letters)
}

/// Dead letters read per partition when no `since` bounds the read: a request never reads the
/// whole topic (30 days of them); `since` reaches further back, from the broker's time index.
pub const NEWEST_PER_PARTITION: i64 = 10_000;

/// `filter`, bounded to the newest [`NEWEST_PER_PARTITION`] when it has no `since`.
pub fn window(filter: gf_runtime::deadletters::Filter) -> gf_runtime::deadletters::Filter {
    gf_runtime::deadletters::Filter {
        newest: filter.since.is_none().then_some(NEWEST_PER_PARTITION),
        ..filter
    }
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
