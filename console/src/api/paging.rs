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
        let more = page.next.is_some();
        self.body(page.items, page.next, more)
    }

    /// The answer for a list paged by offset only: `rows` are the [`PageRequest::fetch`] rows
    /// read after `request.offset` (one more than the page tells whether another follows).
    pub(super) fn rows<T: Serialize>(&self, request: &PageRequest, mut rows: Vec<T>) -> Answer {
        let limit = usize::try_from(request.limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        self.body(rows, None, more)
    }

    /// The page of a list that is short and read whole (a delivery's attempts).
    pub(super) fn of<T: Serialize>(&self, all: Vec<T>) -> Answer {
        let request = self.request()?;
        if request.after.is_some() {
            return Err(ApiError::invalid("after", "this list pages by offset only"));
        }
        let skip = usize::try_from(request.offset).unwrap_or(usize::MAX);
        let take = usize::try_from(request.fetch()).unwrap_or(usize::MAX);
        self.rows(&request, all.into_iter().skip(skip).take(take).collect())
    }

    /// `{"items", "nextCursor", "nextOffset"}`: the one body every list answers with.
    fn body<T: Serialize>(&self, items: Vec<T>, next: Option<Cursor>, more: bool) -> Answer {
        let offset = self.offset.unwrap_or(0) as usize;
        let next_offset = more.then(|| u32::try_from(offset + items.len()).unwrap_or(u32::MAX));
        Ok(HttpResponse::Ok().json(json!({
            "items": items,
            "nextCursor": next.map(|c| c.to_string()),
            "nextOffset": next_offset,
        })))
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
