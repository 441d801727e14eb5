//! Reading conversation outcomes (the attributor writes them): a product's conversations newest
//! first, one conversation with its timeline, and a product's totals by verdict and by day. Every
//! list is paged and filtered in SQL; documents come from the `conversation_outcome_documents`
//! view, the same one the attributor publishes from.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::Pool;
use gf_runtime::db::DbError;
use gf_runtime::paging::{Cursor, Page, PageRequest};
use gf_schemas::outcome::{ConversationOutcome, Verdict};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// At most this many events in one conversation's timeline (the newest are dropped, and said so).
pub const TIMELINE_LIMIT: i64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum OutcomeError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("a stored outcome cannot be read: {0}")]
    Corrupt(String),
}

gf_runtime::db_error_from!(OutcomeError::Db);

/// Which conversations a list reads: a product's, optionally one verdict, and those quiet since
/// (the later of their last message and last event) within `[since, until)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OutcomeFilter {
    pub product: Option<Uuid>,
    pub verdict: Option<Verdict>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// A conversation's outcome and what happened in it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationDetail {
    #[serde(flatten)]
    pub outcome: ConversationOutcome,
    /// Its attributed events in event-time order.
    pub events: Vec<TimelineEvent>,
    /// Its messages (started, message, ended) in time order.
    pub activity: Vec<Activity>,
    /// Whether events past [`TIMELINE_LIMIT`] were left out.
    pub events_truncated: bool,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEvent {
    pub id: Uuid,
    pub event_type: String,
    pub event_at: DateTime<Utc>,
    /// `positive`, `negative` or `neutral`.
    pub influence: String,
    pub influence_rule: String,
    pub value: Option<Value>,
    pub value_type: Option<String>,
    pub quality_impact_score: Option<f64>,
    pub source: String,
    pub insert_id: String,
    /// How the event was tied to this conversation: `explicit` or `window`.
    pub conversation_resolution: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    /// `started`, `message` or `ended`.
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
}

/// A product's outcomes over a time range.
#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductOutcomes {
    pub conversations: i64,
    pub revenue: f64,
    pub refunds: f64,
    /// Every verdict, with zeros.
    pub by_verdict: Vec<VerdictTotal>,
    /// Days (UTC) with at least one conversation, oldest first.
    pub by_day: Vec<DayTotal>,
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerdictTotal {
    pub verdict: Verdict,
    pub conversations: i64,
    pub revenue: f64,
    pub refunds: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayTotal {
    #[schema(value_type = String, format = Date)]
    pub day: NaiveDate,
    pub conversations: i64,
    pub revenue: f64,
    pub refunds: f64,
}

/// Read-only access to the outcomes.
#[derive(Clone)]
pub struct Outcomes {
    pool: Pool,
}

impl Outcomes {
    pub fn new(pool: Pool) -> Self {
        Outcomes { pool }
    }

    /// One page of conversations matching `filter`, newest (by quiet-since time) first.
    pub async fn list(
        &self,
        filter: &OutcomeFilter,
        page: &PageRequest,
    ) -> Result<Page<ConversationOutcome>, OutcomeError> {
        self.list_in(None, filter, page).await
    }

    /// [`Outcomes::list`] of the products in `visible` (every product when `None`: an admin
    /// key's [`Scope::products`](crate::Scope::products)).
    pub async fn list_in(
        &self,
        visible: Option<&[Uuid]>,
        filter: &OutcomeFilter,
        page: &PageRequest,
    ) -> Result<Page<ConversationOutcome>, OutcomeError> {
        let client = self.pool.get().await?;
        let (at, id) = page.after_parts();
        let verdict = filter.verdict.map(Verdict::as_str);
        let rows = client
            .query(
                "SELECT document, quiet_since FROM conversation_outcome_documents
                  WHERE quiet_since IS NOT NULL
                    AND ($1::uuid IS NULL OR product_id = $1)
                    AND ($2::text IS NULL OR verdict = $2)
                    AND ($3::timestamptz IS NULL OR quiet_since >= $3)
                    AND ($4::timestamptz IS NULL OR quiet_since < $4)
                    AND ($5::timestamptz IS NULL OR (quiet_since, conversation_id) < ($5, $6))
                    AND ($9::uuid[] IS NULL OR product_id = ANY($9))
                  ORDER BY quiet_since DESC, conversation_id DESC OFFSET $7 LIMIT $8",
                &[
                    &filter.product,
                    &verdict,
                    &filter.since,
                    &filter.until,
                    &at,
                    &id,
                    &page.offset,
                    &page.fetch(),
                    &visible,
                ],
            )
            .await?;
        let items = rows
            .iter()
            .map(|r| Ok((document(r.get(0))?, r.get::<_, DateTime<Utc>>(1))))
            .collect::<Result<Vec<_>, OutcomeError>>()?;
        let page = Page::of(items, page, |(o, at)| Cursor {
            at: *at,
            id: o.conversation_id,
        });
        Ok(Page {
            items: page.items.into_iter().map(|(o, _)| o).collect(),
            next: page.next,
        })
    }

    /// One conversation's outcome with its timeline; `None` when it has none.
    pub async fn conversation(&self, id: Uuid) -> Result<Option<ConversationDetail>, OutcomeError> {
        let client = self.pool.get().await?;
        let Some(row) = client
            .query_opt(
                "SELECT document FROM conversation_outcome_documents WHERE conversation_id = $1",
                &[&id],
            )
            .await?
        else {
            return Ok(None);
        };
        let outcome = document(row.get(0))?;
        let rows = client
            .query(
                "SELECT id, event_type, event_at, influence, influence_rule, value, value_type,
                        quality_impact_score, source, insert_id, conversation_resolution
                   FROM business_events WHERE conversation_id = $1
                  ORDER BY event_at, id LIMIT $2",
                &[&id, &(TIMELINE_LIMIT + 1)],
            )
            .await?;
        let events_truncated = rows.len() as i64 > TIMELINE_LIMIT;
        let events = rows
            .iter()
            .take(TIMELINE_LIMIT as usize)
            .map(|r| TimelineEvent {
                id: r.get(0),
                event_type: r.get(1),
                event_at: r.get(2),
                influence: r.get(3),
                influence_rule: r.get(4),
                value: r.get(5),
                value_type: r.get(6),
                quality_impact_score: r.get(7),
                source: r.get(8),
                insert_id: r.get(9),
                conversation_resolution: r.get(10),
            })
            .collect();
        let activity = client
            .query(
                "SELECT kind, occurred_at FROM conversation_activity WHERE conversation_id = $1
                  ORDER BY occurred_at, message_id LIMIT $2",
                &[&id, &TIMELINE_LIMIT],
            )
            .await?
            .iter()
            .map(|r| Activity {
                kind: r.get(0),
                occurred_at: r.get(1),
            })
            .collect();
        Ok(Some(ConversationDetail {
            outcome,
            events,
            activity,
            events_truncated,
        }))
    }

    /// A product's conversations quiet since a time in `[since, until)`: totals by verdict and
    /// by day (UTC), with revenue and refunds.
    pub async fn product(
        &self,
        product: Uuid,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<ProductOutcomes, OutcomeError> {
        let client = self.pool.get().await?;
        // One read: the rows grouped by verdict, and by day (the other key null in each).
        let rows = client
            .query(
                "SELECT verdict, (quiet_since AT TIME ZONE 'UTC')::date AS day, count(*),
                        coalesce(sum(revenue), 0), coalesce(sum(refunds), 0)
                   FROM conversation_outcomes
                  WHERE product_id = $1 AND quiet_since IS NOT NULL
                    AND ($2::timestamptz IS NULL OR quiet_since >= $2)
                    AND ($3::timestamptz IS NULL OR quiet_since < $3)
                  GROUP BY GROUPING SETS ((verdict), (day))
                  ORDER BY day",
                &[&product, &since, &until],
            )
            .await?;
        let (verdicts, days): (Vec<_>, Vec<_>) = rows
            .iter()
            .partition(|r| r.get::<_, Option<&str>>(0).is_some());
        let mut totals = ProductOutcomes::default();
        for verdict in <Verdict as strum::IntoEnumIterator>::iter() {
            let row = verdicts
                .iter()
                .find(|r| r.get::<_, Option<&str>>(0) == Some(verdict.as_str()));
            let total = VerdictTotal {
                verdict,
                conversations: row.map_or(0, |r| r.get(2)),
                revenue: row.map_or(0.0, |r| r.get(3)),
                refunds: row.map_or(0.0, |r| r.get(4)),
            };
            totals.conversations += total.conversations;
            totals.revenue += total.revenue;
            totals.refunds += total.refunds;
            totals.by_verdict.push(total);
        }
        totals.by_day = days
            .iter()
            .filter_map(|r| {
                Some(DayTotal {
                    day: r.get::<_, Option<NaiveDate>>(1)?,
                    conversations: r.get(2),
                    revenue: r.get(3),
                    refunds: r.get(4),
                })
            })
            .collect();
        Ok(totals)
    }
}

fn document(value: Value) -> Result<ConversationOutcome, OutcomeError> {
    serde_json::from_value(value).map_err(|e| OutcomeError::Corrupt(e.to_string()))
}
