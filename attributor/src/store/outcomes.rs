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

/// The conversations whose outcome a batch may have changed, and how each is brought up to date.
#[derive(Debug, Default)]
pub(super) struct Touched {
    /// Judged again from what its outcome row holds plus the events this batch inserted into it.
    judged: BTreeSet<Uuid>,
    /// Events it counts changed other than by insertion (replaced, moved in or out): every
    /// event it has is read again.
    reread: BTreeSet<Uuid>,
    /// The events this batch inserted.
    inserted: Vec<Uuid>,
}

impl Touched {
    pub(super) fn extend(&mut self, conversations: impl IntoIterator<Item = Uuid>) {
        self.judged.extend(conversations);
    }

    pub(super) fn reread(&mut self, conversation: Option<Uuid>) {
        self.reread.extend(conversation);
    }

    /// An event this batch inserted (not one it replaced).
    pub(super) fn inserted(&mut self, event: Uuid, conversation: Option<Uuid>) {
        if let Some(conversation) = conversation {
            self.judged.insert(conversation);
            self.inserted.push(event);
        }
    }

    fn is_empty(&self) -> bool {
        self.judged.is_empty() && self.reread.is_empty()
    }
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

/// Moves each product's event-time watermark forward to the latest event time of the batch, in
/// the row of this connection's slot (see migration V17: no two writers wait on one row).
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
        "INSERT INTO product_watermarks AS w (product_id, slot, event_at)
         SELECT product_id, (pg_backend_pid() % 64)::smallint, event_at
           FROM unnest($1::uuid[], $2::timestamptz[]) AS x(product_id, event_at)
         ON CONFLICT (product_id, slot) DO UPDATE SET event_at = EXCLUDED.event_at
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
           FROM (SELECT product_id, max(event_at) AS event_at FROM product_watermarks
                  WHERE product_id = ANY($1) GROUP BY product_id) w
           JOIN conversation_outcomes o ON o.product_id = w.product_id
          WHERE o.verdict = 'open'
            AND o.silent_churn_at IS NOT NULL AND o.silent_churn_at <= w.event_at",
        &[&products],
    )
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Brings the outcomes of `touched` up to date with what is stored; returns those that changed,
/// whole.
///
/// Each outcome row is locked (in key order) before the events are read, and under PostgreSQL's
/// read-committed isolation the reading statement then sees whatever a transaction that held
/// the lock committed: two attributors writing events of one conversation both count all of
/// them, the second from the sums the first left plus its own new events.
pub(super) async fn recompute(
    txn: &Transaction<'_>,
    touched: Touched,
    rules: &OutcomeRules,
) -> Result<Vec<ConversationOutcome>, StoreError> {
    if touched.is_empty() {
        return Ok(Vec::new());
    }
    let reread: Vec<Uuid> = touched.reread.iter().copied().collect();
    let ids: Vec<Uuid> = touched.judged.union(&touched.reread).copied().collect();
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
    let changed: Vec<Uuid> = query(
        txn,
        RECOMPUTE,
        &[&ids, &rules.period(), &reread, &touched.inserted],
    )
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

/// The outcome of each conversation in `$1` from its events, its activity, its user's later
/// events and its product's watermark (`$2` is the silent-churn period); rows that did not change
/// are not written, so nothing is published for them.
///
/// What a conversation counts (counts, exact sums, first and last times, the deciding event) is
/// read from all its events when it is in `$3` or its row's sums are not known to be exact, and
/// otherwise is what its row holds plus the events of `$4` (those the batch inserted) now in it.
/// Both give the same result, so the outcome does not depend on arrival order.
///
/// The verdict is the latest (by event time, then id) positive or negative event's: `converted`,
/// `refunded` (negative with a negative currency value) or `negative`. With neither, the
/// conversation is quiet since the later of its last message and its last event, and churned
/// silently once the watermark passes the end of the period without any event of its user in it.
const RECOMPUTE: &str = "
WITH c AS (
    SELECT c.id, c.product_id, c.user_id, c.last_activity_at,
           (c.id = ANY($3) OR NOT o.sums_exact) AS whole
      FROM conversations c JOIN conversation_outcomes o ON o.conversation_id = c.id
     WHERE c.id = ANY($1)
), counted AS (
    SELECT conversation_id, id, event_at, influence, value_type, numeric_value,
           quality_impact_score
      FROM business_events
     WHERE conversation_id = ANY(ARRAY(SELECT id FROM c WHERE whole))
    UNION ALL
    SELECT conversation_id, id, event_at, influence, value_type, numeric_value,
           quality_impact_score
      FROM business_events
     WHERE id = ANY($4) AND conversation_id = ANY(ARRAY(SELECT id FROM c WHERE NOT whole))
), sums AS (
    SELECT conversation_id,
           count(*)::int AS events,
           (count(*) FILTER (WHERE influence = 'positive'))::int AS positive_events,
           (count(*) FILTER (WHERE influence = 'negative'))::int AS negative_events,
           (count(*) FILTER (WHERE influence = 'neutral'))::int AS neutral_events,
           coalesce(sum(numeric_value::numeric) FILTER (WHERE influence = 'positive'), 0) AS positive_sum,
           coalesce(sum(numeric_value::numeric) FILTER (WHERE influence = 'negative'), 0) AS negative_sum,
           coalesce(sum(numeric_value::numeric) FILTER (WHERE influence = 'neutral'), 0) AS neutral_sum,
           coalesce(sum(numeric_value::numeric), 0) AS total_sum,
           coalesce(sum(numeric_value::numeric)
                    FILTER (WHERE value_type = 'currency' AND numeric_value > 0), 0) AS revenue_sum,
           coalesce(-sum(numeric_value::numeric)
                    FILTER (WHERE value_type = 'currency' AND numeric_value < 0), 0) AS refunds_sum,
           coalesce(sum(quality_impact_score::numeric), 0) AS quality_sum,
           min(event_at) AS first_event_at,
           max(event_at) AS last_event_at,
           min(event_at) FILTER (WHERE influence = 'positive') AS first_positive_at,
           min(event_at) FILTER (WHERE influence = 'negative') AS first_negative_at
      FROM counted
     GROUP BY conversation_id
), decisive AS (
    SELECT DISTINCT ON (conversation_id) conversation_id, id, event_at,
           CASE WHEN influence = 'positive' THEN 'converted'
                WHEN value_type = 'currency' AND numeric_value < 0 THEN 'refunded'
                ELSE 'negative' END AS verdict
      FROM counted
     WHERE influence <> 'neutral'
     ORDER BY conversation_id, event_at DESC, id DESC
), merged AS (
    -- h is what the row holds, for a conversation not read whole: the batch's new events add to it.
    SELECT c.id, c.product_id, c.user_id, c.last_activity_at,
           coalesce(h.events, 0) + coalesce(s.events, 0) AS events,
           coalesce(h.positive_events, 0) + coalesce(s.positive_events, 0) AS positive_events,
           coalesce(h.negative_events, 0) + coalesce(s.negative_events, 0) AS negative_events,
           coalesce(h.neutral_events, 0) + coalesce(s.neutral_events, 0) AS neutral_events,
           coalesce(h.positive_sum, 0) + coalesce(s.positive_sum, 0) AS positive_sum,
           coalesce(h.negative_sum, 0) + coalesce(s.negative_sum, 0) AS negative_sum,
           coalesce(h.neutral_sum, 0) + coalesce(s.neutral_sum, 0) AS neutral_sum,
           coalesce(h.total_sum, 0) + coalesce(s.total_sum, 0) AS total_sum,
           coalesce(h.revenue_sum, 0) + coalesce(s.revenue_sum, 0) AS revenue_sum,
           coalesce(h.refunds_sum, 0) + coalesce(s.refunds_sum, 0) AS refunds_sum,
           coalesce(h.quality_sum, 0) + coalesce(s.quality_sum, 0) AS quality_sum,
           -- least and greatest skip nulls: without h, these are the batch's (or whole) times.
           least(h.first_event_at, s.first_event_at) AS first_event_at,
           greatest(h.last_event_at, s.last_event_at) AS last_event_at,
           least(h.first_positive_at, s.first_positive_at) AS first_positive_at,
           least(h.first_negative_at, s.first_negative_at) AS first_negative_at,
           -- The latest deciding event of the two: the one held, or the one read now.
           (h.decided_by_event_id IS NULL
            OR (d.event_at, d.id) > (h.decided_at, h.decided_by_event_id)) AS newly_decided,
           d.id AS new_decided_by, d.event_at AS new_decided_at, d.verdict AS new_decided,
           h.decided_by_event_id AS held_decided_by, h.decided_at AS held_decided_at,
           h.verdict AS held_verdict
      FROM c
      LEFT JOIN conversation_outcomes h ON h.conversation_id = c.id AND NOT c.whole
      LEFT JOIN sums s ON s.conversation_id = c.id
      LEFT JOIN decisive d ON d.conversation_id = c.id
), facts AS (
    SELECT m.*,
           CASE WHEN newly_decided THEN new_decided_by ELSE held_decided_by END AS decided_by,
           CASE WHEN newly_decided THEN new_decided_at ELSE held_decided_at END AS decided_at,
           CASE WHEN newly_decided THEN new_decided ELSE held_verdict END AS decided,
           greatest(m.last_activity_at, m.last_event_at) AS quiet_since
      FROM merged m
), judged AS (
    SELECT f.*, back.returned_at, w.event_at AS watermark,
           CASE WHEN f.decided_by IS NULL AND back.returned_at IS NULL
                THEN f.quiet_since + $2::text::interval END AS churn_at
      FROM facts f
      LEFT JOIN LATERAL (SELECT max(event_at) AS event_at FROM product_watermarks
                          WHERE product_id = f.product_id) w ON true
      LEFT JOIN LATERAL (
          SELECT min(u.event_at) AS returned_at FROM business_events u
           WHERE u.user_id = f.user_id AND u.event_at > f.quiet_since
             AND u.event_at <= f.quiet_since + $2::text::interval) back ON true
), next AS (
    SELECT id AS conversation_id, user_id,
           CASE WHEN decided_by IS NOT NULL THEN decided
                WHEN churn_at <= watermark THEN 'churned_silently'
                ELSE 'open' END AS verdict,
           decided_by AS decided_by_event_id, decided_at,
           events, positive_events, negative_events, neutral_events,
           positive_sum, negative_sum, neutral_sum, total_sum, revenue_sum, refunds_sum,
           quality_sum,
           first_event_at, last_event_at, last_activity_at, first_positive_at,
           first_negative_at, quiet_since, returned_at AS user_returned_at,
           churn_at AS silent_churn_at
      FROM judged
)
UPDATE conversation_outcomes o SET
       user_id = n.user_id, verdict = n.verdict, decided_by_event_id = n.decided_by_event_id,
       decided_at = n.decided_at,
       events = n.events, positive_events = n.positive_events,
       negative_events = n.negative_events, neutral_events = n.neutral_events,
       positive_sum = n.positive_sum, negative_sum = n.negative_sum,
       neutral_sum = n.neutral_sum, total_sum = n.total_sum, revenue_sum = n.revenue_sum,
       refunds_sum = n.refunds_sum, quality_sum = n.quality_sum,
       positive_value = n.positive_sum::float8, negative_value = n.negative_sum::float8,
       neutral_value = n.neutral_sum::float8, total_value = n.total_sum::float8,
       revenue = n.revenue_sum::float8, refunds = n.refunds_sum::float8,
       quality_impact = n.quality_sum::float8,
       first_event_at = n.first_event_at, last_event_at = n.last_event_at,
       last_activity_at = n.last_activity_at, first_positive_at = n.first_positive_at,
       first_negative_at = n.first_negative_at, quiet_since = n.quiet_since,
       user_returned_at = n.user_returned_at, silent_churn_at = n.silent_churn_at,
       sums_exact = true, updated_at = now()
  FROM next n
 WHERE o.conversation_id = n.conversation_id
   AND (o.user_id, o.verdict, o.decided_by_event_id, o.decided_at, o.events, o.positive_events,
        o.negative_events, o.neutral_events, o.positive_sum, o.negative_sum, o.neutral_sum,
        o.total_sum, o.revenue_sum, o.refunds_sum, o.quality_sum,
        o.first_event_at, o.last_event_at, o.last_activity_at, o.first_positive_at,
        o.first_negative_at, o.quiet_since, o.user_returned_at, o.silent_churn_at, o.sums_exact)
       IS DISTINCT FROM
       (n.user_id, n.verdict, n.decided_by_event_id, n.decided_at, n.events, n.positive_events,
        n.negative_events, n.neutral_events, n.positive_sum, n.negative_sum, n.neutral_sum,
        n.total_sum, n.revenue_sum, n.refunds_sum, n.quality_sum,
        n.first_event_at, n.last_event_at, n.last_activity_at, n.first_positive_at,
        n.first_negative_at, n.quiet_since, n.user_returned_at, n.silent_churn_at, true)
RETURNING o.conversation_id";
