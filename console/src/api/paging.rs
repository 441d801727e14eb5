//! Lists answer `{"items": [...], "nextCursor", "nextOffset"}` and take `limit` (1 to 500,
//! default 100) and either `after` (the `nextCursor` of the page before: keyset paging, an index
//! range however long the list) or `offset`. PostgreSQL reads the page; nothing is skipped here.

use actix_web::HttpResponse;
use gf_runtime::paging::{self, Cursor, PageRequest};
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
    /// How many items to skip (after `after`, when given).
    pub(super) offset: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub(super) after: Option<String>,
}

/// One page of a list.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Paged<T> {
    pub items: Vec<T>,
    /// Where the next page starts (`after=`); `null` on the last.
    pub next_cursor: Option<String>,
    /// The `offset` of the next page; `null` on the last.
    pub next_offset: Option<u32>,
}

impl Page {
    /// What to ask the database for.
    pub(super) fn request(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=500).contains(&limit) {
            return Err(ApiError::invalid("limit", "limit must be 1 to 500"));
        }
        let after = match &self.after {
            Some(text) => Some(text.parse::<Cursor>().map_err(|e| {
                ApiError::invalid("after", format!("after: {e}; pass a nextCursor back"))
            })?),
            None => None,
        };
        Ok(PageRequest {
            after,
            offset: i64::from(self.offset.unwrap_or(0)),
            limit: i64::from(limit),
        })
    }

    /// The answer for a page the database read.
    pub(super) fn answer<T: Serialize>(&self, page: paging::Page<T>) -> Answer {
        let offset = self.offset.unwrap_or(0) as usize;
        let next_offset = page
            .next
            .is_some()
            .then(|| u32::try_from(offset + page.items.len()).unwrap_or(u32::MAX));
        Ok(HttpResponse::Ok().json(json!({
            "items": page.items,
            "nextCursor": page.next.map(|c| c.to_string()),
            "nextOffset": next_offset,
        })))
    }

    /// The page of a list that is short and read whole (a delivery's attempts).
    pub(super) fn of<T: Serialize>(&self, all: Vec<T>) -> Answer {
        let request = self.request()?;
        if request.after.is_some() {
            return Err(ApiError::invalid("after", "this list pages by offset only"));
        }
        let (offset, limit) = (request.offset as usize, request.limit as usize);
        let total = all.len();
        let items: Vec<T> = all.into_iter().skip(offset).take(limit).collect();
        let next = (offset + items.len() < total).then(|| (offset + items.len()) as u32);
        Ok(HttpResponse::Ok()
            .json(json!({ "items": items, "nextCursor": null, "nextOffset": next })))
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ByProduct {
    pub(super) product_id: Option<Uuid>,
    /// 1 to 500; default 100.
    #[param(minimum = 1, maximum = 500)]
    pub(super) limit: Option<u32>,
    pub(super) offset: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub(super) after: Option<String>,
}

impl ByProduct {
    pub(super) fn page(&self) -> Page {
        Page {
            limit: self.limit,
            offset: self.offset,
            after: self.after.clone(),
        }
    }
}
