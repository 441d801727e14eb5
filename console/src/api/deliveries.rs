//! Webhook deliveries: list, retry, attempts.

use actix_web::http::StatusCode;
use actix_web::web;
use chrono::{DateTime, Utc};
use gf_webhooks::delivery::{AttemptView, DeliveryScope, DeliveryView, RetrySelection};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{Answer, Data, ErrorBody, Page, Paged, ok};
use crate::auth::Admin;
use crate::error::ApiError;
use gf_control::Subject;
use gf_runtime::paging::PageRequest;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryQuery {
    endpoint_id: Option<Uuid>,
    /// `pending`, `delivered`, `failed` or `cancelled`.
    status: Option<String>,
    /// 1 to 500; default 100.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    offset: Option<u32>,
    /// The `nextCursor` of the previous page.
    after: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/deliveries", params(DeliveryQuery), tag = "deliveries",
    responses((status = 200, body = Paged<DeliveryView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "endpointId names an endpoint the key does not see")))]
pub(super) async fn list_deliveries(
    state: Data,
    admin: Admin,
    query: web::Query<DeliveryQuery>,
) -> Answer {
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
        after: query.after.clone(),
    };
    if let Some(endpoint) = query.endpoint_id {
        admin.check(&state, Subject::Endpoint(endpoint)).await?;
    }
    let scope = DeliveryScope {
        endpoint: query.endpoint_id,
        status: query.status.as_deref(),
        ..DeliveryScope::default()
    };
    let deliveries = state
        .settings
        .deliveries_in(admin.visible(), scope, &page.request()?)
        .await?;
    page.answer(deliveries)
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
    responses((status = 200, body = Retried), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is read-only"),
        (status = 404, body = ErrorBody, description = "deliveryId or endpointId names one the key does not see")))]
pub(super) async fn retry_deliveries(
    state: Data,
    admin: Admin,
    body: web::Json<RetryRequest>,
) -> Answer {
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
    let retried = match selection {
        RetrySelection::One(id) => {
            admin.check(&state, Subject::Delivery(id)).await?;
            state.settings.retry(&admin.actor(), selection).await?
        }
        RetrySelection::FailedSince {
            endpoint: Some(id), ..
        } => {
            admin.check(&state, Subject::Endpoint(id)).await?;
            state.settings.retry(&admin.actor(), selection).await?
        }
        RetrySelection::FailedSince {
            endpoint: None,
            since,
        } => match admin.visible() {
            None => state.settings.retry(&admin.actor(), selection).await?,
            // Every endpoint of every product would be more than the key sees: each of its
            // endpoints instead, as the console's "Retry failed deliveries" does.
            Some(visible) => {
                let endpoints = state
                    .settings
                    .endpoints_in(Some(visible), None, &PageRequest::everything())
                    .await?;
                let mut retried = Vec::new();
                for endpoint in endpoints.items {
                    let one = RetrySelection::FailedSince {
                        endpoint: Some(endpoint.id),
                        since,
                    };
                    retried.extend(state.settings.retry(&admin.actor(), one).await?);
                }
                retried
            }
        },
    };
    ok(&Retried { retried })
}

#[utoipa::path(get, path = "/api/v1/deliveries/{id}/attempts", params(("id" = Uuid, Path)), tag = "deliveries",
    responses((status = 200, body = Paged<AttemptView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn delivery_attempts(
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
