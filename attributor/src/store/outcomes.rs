//! Conversation outcomes, recomputed whole from the stored events of every conversation a batch
//! touched (never adjusted by deltas), so each is exact and the same in any arrival order: counts
//! and sums by influence, revenue and refunds, quality impact, first and last event, and the
//! verdict. Silent churn is judged against the product's event-time watermark, never the clock.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use gf_schemas::outcome::ConversationOutcome;
use uuid::Uuid;

use super::{StoreError, execute, query};

/// How outcomes are judged.
#[derive(Clone, Copy, Debug)]
pub struct OutcomeRules {
    /// How long a quiet conversation's user must send nothing before it counts as churned.
    pub silent_churn: chrono::Duration,
}

impl OutcomeRules {
    pub fn from_config(config: &gf_runtime::Config) -> Self {
        OutcomeRules {
            silent_churn: chrono::Duration::days(i64::from(config.silent_churn_days)),
        }
    }

    fn period(&self) -> String {
        format!("{} seconds", self.silent_churn.num_seconds())
    }
}

impl Default for OutcomeRules {
    fn default() -> Self {
        OutcomeRules {
            silent_churn: chrono::Duration::days(14),
        }
    }
}

/// The conversations whose outcome a batch may have changed.
#[derive(Debug, Default)]
pub(super) struct Touched(BTreeSet<Uuid>);

impl Touched {
    pub(super) fn add(&mut self, conversation: Option<Uuid>) {
        self.0.extend(conversation);
    }

    pub(super) fn extend(&mut self, conversations: impl IntoIterator<Item = Uuid>) {
        self.0.extend(conversations);
    }
}

/// The conversations the stored rows of `ids` belong to now, before a replacement moves them.
pub(super) async fn stored_conversations(
    txn: &Transaction<'_>,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    let rows = query(
        txn,
        "SELECT DISTINCT conversation_id FROM business_events
          WHERE id = ANY($1) AND conversation_id IS NOT NULL",
        &[&ids],
    )
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Conversations whose silent-churn period holds one of these (user, event time): the user came
/// back, so they cannot have churned (the caller holds every user's lock).
pub(super) async fn returned_to(
    txn: &Transaction<'_>,
    seen: &[(Uuid, DateTime<Utc>)],
    rules: &OutcomeRules,
) -> Result<Vec<Uuid>, StoreError> {
    if seen.is_empty() {
        return Ok(Vec::new());
    }
    let (users, times): (Vec<Uuid>, Vec<DateTime<Utc>>) = seen.iter().copied().unzip();
    let rows = query(
        txn,
        "SELECT DISTINCT o.conversation_id
           FROM unnest($1::uuid[], $2::timestamptz[]) AS x(user_id, at)
           JOIN conversation_outcomes o
             ON o.user_id = x.user_id AND o.quiet_since < x.at
            AND o.quiet_since >= x.at - $3::text::interval",
        &[&users, &times, &rules.period()],
    )
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Moves each product's event-time watermark forward to the latest event time of the batch.
pub(super) async fn advance_watermarks(
    txn: &Transaction<'_>,
    latest: &BTreeMap<Uuid, DateTime<Utc>>,
) -> Result<(), StoreError> {
    if latest.is_empty() {
        return Ok(());
    }
    let (products, times): (Vec<Uuid>, Vec<DateTime<Utc>>) =
        latest.iter().map(|(p, t)| (*p, *t)).unzip();
    execute(
        txn,
        "INSERT INTO product_watermarks AS w (product_id, event_at)
         SELECT * FROM unnest($1::uuid[], $2::timestamptz[])
         ON CONFLICT (product_id) DO UPDATE SET event_at = EXCLUDED.event_at
          WHERE w.event_at < EXCLUDED.event_at",
        &[&products, &times],
    )
    .await?;
    Ok(())
}

/// Open conversations of `products` whose silent-churn time their watermark has passed.
pub(super) async fn due(txn: &Transaction<'_>, products: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
    if products.is_empty() {
        return Ok(Vec::new());
    }
    let rows = query(
        txn,
        "SELECT o.conversation_id
           FROM product_watermarks w
           JOIN conversation_outcomes o ON o.product_id = w.product_id
          WHERE w.product_id = ANY($1) AND o.verdict = 'open'
            AND o.silent_churn_at IS NOT NULL AND o.silent_churn_at <= w.event_at",
        &[&products],
    )
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Recomputes the outcomes of `touched` from what is stored; returns those that changed, whole.
///
/// Each outcome row is locked (in key order) before the events are read, and under PostgreSQL's
/// read-committed isolation the reading statement then sees whatever a transaction that held
/// the lock committed: two attributors writing events of one conversation both count all of them.
pub(super) async fn recompute(
    txn: &Transaction<'_>,
    touched: Touched,
    rules: &OutcomeRules,
) -> Result<Vec<ConversationOutcome>, StoreError> {
    if touched.0.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = touched.0.into_iter().collect();
    execute(
        txn,
        "INSERT INTO conversation_outcomes (conversation_id, product_id)
         SELECT id, product_id FROM conversations WHERE id = ANY($1) ORDER BY id
         ON CONFLICT (conversation_id) DO NOTHING",
        &[&ids],
    )
    .await?;
    query(
        txn,
        "SELECT conversation_id FROM conversation_outcomes WHERE conversation_id = ANY($1)
          ORDER BY conversation_id FOR UPDATE",
        &[&ids],
    )
    .await?;
    let changed: Vec<Uuid> = query(txn, RECOMPUTE, &[&ids, &rules.period()])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    documents(txn, &changed).await
}

/// The wire documents of `ids`, in key order.
async fn documents(
    txn: &Transaction<'_>,
    ids: &[Uuid],
) -> Result<Vec<ConversationOutcome>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = query(
        txn,
        "SELECT document FROM conversation_outcome_documents
          WHERE conversation_id = ANY($1) ORDER BY conversation_id",
        &[&ids],
    )
    .await?;
    rows.iter()
        .map(|r| {
            serde_json::from_value(r.get(0)).map_err(|e| {
                StoreError::Db(gf_runtime::db::DbError::Corrupt(format!(
                    "an outcome cannot be read back: {e}"
                )))
            })
        })
        .collect()
}

/// The outcome of each conversation in `$1` from its stored events, its activity, its user's
/// later events and its product's watermark (`$2` is the silent-churn period); rows that did not
/// change are not written, so nothing is published for them.
///
/// The verdict is the latest (by event time, then id) positive or negative event's: `converted`,
/// `refunded` (negative with a negative currency value) or `negative`. With neither, the
/// conversation is quiet since the later of its last message and its last event, and churned
/// silently once the watermark passes the end of the period without any event of its user in it.
const RECOMPUTE: &str = "
WITH c AS (
    SELECT id, product_id, user_id, last_activity_at FROM conversations WHERE id = ANY($1)
), sums AS (
    SELECT conversation_id,
           count(*)::int AS events,
           (count(*) FILTER (WHERE influence = 'positive'))::int AS positive_events,
           (count(*) FILTER (WHERE influence = 'negative'))::int AS negative_events,
           (count(*) FILTER (WHERE influence = 'neutral'))::int AS neutral_events,
           coalesce(sum(numeric_value::numeric) FILTER (WHERE influence = 'positive'), 0) AS positive_value,
           coalesce(sum(numeric_value::numeric) FILTER (WHERE influence = 'negative'), 0) AS negative_value,
           coalesce(sum(numeric_value::numeric) FILTER (WHERE influence = 'neutral'), 0) AS neutral_value,
           coalesce(sum(numeric_value::numeric), 0) AS total_value,
           coalesce(sum(numeric_value::numeric)
                    FILTER (WHERE value_type = 'currency' AND numeric_value > 0), 0) AS revenue,
           coalesce(-sum(numeric_value::numeric)
                    FILTER (WHERE value_type = 'currency' AND numeric_value < 0), 0) AS refunds,
           coalesce(sum(quality_impact_score::numeric), 0) AS quality_impact,
           min(event_at) AS first_event_at,
           max(event_at) AS last_event_at,
           min(event_at) FILTER (WHERE influence = 'positive') AS first_positive_at,
           min(event_at) FILTER (WHERE influence = 'negative') AS first_negative_at
      FROM business_events WHERE conversation_id = ANY($1)
     GROUP BY conversation_id
), decisive AS (
    SELECT DISTINCT ON (conversation_id) conversation_id, id,
           CASE WHEN influence = 'positive' THEN 'converted'
                WHEN value_type = 'currency' AND numeric_value < 0 THEN 'refunded'
                ELSE 'negative' END AS verdict
      FROM business_events
     WHERE conversation_id = ANY($1) AND influence <> 'neutral'
     ORDER BY conversation_id, event_at DESC, id DESC
), facts AS (
    SELECT c.id, c.product_id, c.user_id, c.last_activity_at, s.*,
           d.id AS decided_by, d.verdict AS decided,
           greatest(c.last_activity_at, s.last_event_at) AS quiet_since
      FROM c
      LEFT JOIN sums s ON s.conversation_id = c.id
      LEFT JOIN decisive d ON d.conversation_id = c.id
), judged AS (
    SELECT f.*, back.returned_at, w.event_at AS watermark,
           CASE WHEN f.decided IS NULL AND back.returned_at IS NULL
                THEN f.quiet_since + $2::text::interval END AS churn_at
      FROM facts f
      LEFT JOIN product_watermarks w ON w.product_id = f.product_id
      LEFT JOIN LATERAL (
          SELECT min(u.event_at) AS returned_at FROM business_events u
           WHERE u.user_id = f.user_id AND u.event_at > f.quiet_since
             AND u.event_at <= f.quiet_since + $2::text::interval) back ON true
), next AS (
    SELECT id AS conversation_id, user_id,
           coalesce(decided, CASE WHEN churn_at <= watermark THEN 'churned_silently'
                                  ELSE 'open' END) AS verdict,
           decided_by AS decided_by_event_id,
           coalesce(events, 0) AS events,
           coalesce(positive_events, 0) AS positive_events,
           coalesce(negative_events, 0) AS negative_events,
           coalesce(neutral_events, 0) AS neutral_events,
           coalesce(positive_value, 0)::float8 AS positive_value,
           coalesce(negative_value, 0)::float8 AS negative_value,
           coalesce(neutral_value, 0)::float8 AS neutral_value,
           coalesce(total_value, 0)::float8 AS total_value,
           coalesce(revenue, 0)::float8 AS revenue,
           coalesce(refunds, 0)::float8 AS refunds,
           coalesce(quality_impact, 0)::float8 AS quality_impact,
           first_event_at, last_event_at, last_activity_at, first_positive_at,
           first_negative_at, quiet_since, returned_at AS user_returned_at,
           churn_at AS silent_churn_at
      FROM judged
)
UPDATE conversation_outcomes o SET
       user_id = n.user_id, verdict = n.verdict, decided_by_event_id = n.decided_by_event_id,
       events = n.events, positive_events = n.positive_events,
       negative_events = n.negative_events, neutral_events = n.neutral_events,
       positive_value = n.positive_value, negative_value = n.negative_value,
       neutral_value = n.neutral_value, total_value = n.total_value, revenue = n.revenue,
       refunds = n.refunds, quality_impact = n.quality_impact,
       first_event_at = n.first_event_at, last_event_at = n.last_event_at,
       last_activity_at = n.last_activity_at, first_positive_at = n.first_positive_at,
       first_negative_at = n.first_negative_at, quiet_since = n.quiet_since,
       user_returned_at = n.user_returned_at, silent_churn_at = n.silent_churn_at,
       updated_at = now()
  FROM next n
 WHERE o.conversation_id = n.conversation_id
   AND (o.user_id, o.verdict, o.decided_by_event_id, o.events, o.positive_events,
        o.negative_events, o.neutral_events, o.positive_value, o.negative_value,
        o.neutral_value, o.total_value, o.revenue, o.refunds, o.quality_impact,
        o.first_event_at, o.last_event_at, o.last_activity_at, o.first_positive_at,
        o.first_negative_at, o.quiet_since, o.user_returned_at, o.silent_churn_at)
       IS DISTINCT FROM
       (n.user_id, n.verdict, n.decided_by_event_id, n.events, n.positive_events,
        n.negative_events, n.neutral_events, n.positive_value, n.negative_value,
        n.neutral_value, n.total_value, n.revenue, n.refunds, n.quality_impact,
        n.first_event_at, n.last_event_at, n.last_activity_at, n.first_positive_at,
        n.first_negative_at, n.quiet_since, n.user_returned_at, n.silent_churn_at)
RETURNING o.conversation_id";
