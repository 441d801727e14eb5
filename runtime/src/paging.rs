//! Lists paged by the database. A page starts after a [`Cursor`] (keyset: the last row's
//! `(created_at, id)`, an index range whatever the table's size) or, for clients that count,
//! after an offset; either way PostgreSQL reads one row more than the page to tell whether
//! another follows, and nothing is skipped in memory.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Where the next page starts: after the row with this creation time and id. Opaque to clients
/// (`<microseconds>.<id>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a cursor this API gave out")]
pub struct BadCursor;

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.at.timestamp_micros(), self.id.simple())
    }
}

impl FromStr for Cursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, BadCursor> {
        let (micros, id) = s.split_once('.').ok_or(BadCursor)?;
        let micros: i64 = micros.parse().map_err(|_| BadCursor)?;
        Ok(Cursor {
            at: DateTime::from_timestamp_micros(micros).ok_or(BadCursor)?,
            id: Uuid::try_parse(id).map_err(|_| BadCursor)?,
        })
    }
}

/// Which rows a list reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<Cursor>,
    /// Rows skipped after `after` (0 for keyset paging).
    pub offset: i64,
    pub limit: i64,
}

impl PageRequest {
    /// The first `limit` rows.
    pub fn first(limit: i64) -> Self {
        PageRequest {
            after: None,
            offset: 0,
            limit,
        }
    }

    /// Every row (the CLI lists everything; its lists are an operator's own).
    pub fn everything() -> Self {
        PageRequest::first(i64::MAX - 1)
    }

    /// The rows to ask PostgreSQL for: one more than the page.
    pub fn fetch(&self) -> i64 {
        self.limit.saturating_add(1)
    }

    /// The cursor's parts as query parameters (`NULL` without one).
    pub fn after_parts(&self) -> (Option<DateTime<Utc>>, Option<Uuid>) {
        (self.after.map(|c| c.at), self.after.map(|c| c.id))
    }
}

/// One page of rows, and where the next starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The cursor of the next page; `None` on the last.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// The page out of the [`PageRequest::fetch`] rows a query read, `key` naming each row's place.
    pub fn of(mut rows: Vec<T>, request: &PageRequest, key: impl Fn(&T) -> Cursor) -> Page<T> {
        let limit = usize::try_from(request.limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more { rows.last().map(key) } else { None };
        Page { items: rows, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_they_did_not_make() {
        let c = Cursor {
            at: DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap(),
            id: Uuid::from_u128(42),
        };
        assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
        for bad in [
            "",
            "x",
            "1.",
            ".1",
            "1.not-a-uuid",
            "99999999999999999999.0",
        ] {
            assert_eq!(bad.parse::<Cursor>(), Err(BadCursor), "{bad}");
        }
    }

    #[test]
    fn a_page_knows_whether_another_follows() {
        let request = PageRequest::first(2);
        assert_eq!(request.fetch(), 3);
        let key = |n: &i64| Cursor {
            at: DateTime::from_timestamp_micros(*n).unwrap(),
            id: Uuid::from_u128(*n as u128),
        };
        let page = Page::of(vec![1, 2, 3], &request, key);
        assert_eq!(page.items, [1, 2]);
        assert_eq!(page.next, Some(key(&2)));
        let last = Page::of(vec![4, 5], &request, key);
        assert_eq!((last.items.len(), last.next), (2, None));
        assert_eq!(PageRequest::everything().fetch(), i64::MAX);
    }
}
