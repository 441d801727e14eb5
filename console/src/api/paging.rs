//! Lists answer `{"items": [...], "nextOffset"}` and take `limit` and `offset`.

use actix_web::HttpResponse;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::Answer;
use crate::error::ApiError;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    /// 1 to 500; default 100.
    #[param(minimum = 1, maximum = 500)]
    pub(super) limit: Option<u32>,
    /// How many items to skip.
    pub(super) offset: Option<u32>,
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
    pub(super) fn bounds(&self) -> Result<(usize, usize), ApiError> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=500).contains(&limit) {
            return Err(ApiError::invalid("limit", "limit must be 1 to 500"));
        }
        Ok((self.offset.unwrap_or(0) as usize, limit as usize))
    }

    /// The page of `all`.
    pub(super) fn of<T: Serialize>(&self, all: Vec<T>) -> Answer {
        let (offset, limit) = self.bounds()?;
        let total = all.len();
        let items: Vec<T> = all.into_iter().skip(offset).take(limit).collect();
        let next = (offset + items.len() < total).then(|| (offset + items.len()) as u32);
        Ok(HttpResponse::Ok().json(json!({ "items": items, "nextOffset": next })))
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ByProduct {
    pub(super) product_id: Option<Uuid>,
    pub(super) limit: Option<u32>,
    pub(super) offset: Option<u32>,
}

impl ByProduct {
    pub(super) fn page(&self) -> Page {
        Page {
            limit: self.limit,
            offset: self.offset,
        }
    }
}
