//! The outbox in PostgreSQL: claims with a lease, attempt logs, retries, pruning.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use gf_runtime::backoff::unit_random;
use gf_runtime::db::DbError;
use gf_runtime::paging::{Cursor, Page, PageRequest};
use uuid::Uuid;

use super::{AttemptLog, Claimed, DeliverySettings};
use crate::schedule::{self, Next, Outcome};

/// What a claim returns, read by [`claimed`].
const CLAIMED: &str = "d.id, d.endpoint_id, d.attempts, ev.payload, e.url, e.secret, \
     e.previous_secret, e.previous_secret_expires_at, ev.traceparent";

fn claimed(r: &tokio_postgres::Row) -> Claimed {
    Claimed {
        id: r.get(0),
        endpoint_id: r.get(1),
        attempt: r.get(2),
        payload: r.get(3),
        url: r.get(4),
        secret: r.get(5),
        previous_secret: r.get(6),
        previous_secret_expires_at: r.get(7),
        traceparent: r.get(8),
    }
}

/// Claims due deliveries: at most `limit`, and per endpoint at most its free slots (`slots`
/// for endpoints with attempts in flight, `per_endpoint` for the others).
pub async fn claim(
    pool: &Pool,
    settings: &DeliverySettings,
    limit: i64,
    per_endpoint: i32,
    slots: &HashMap<Uuid, i32>,
) -> Result<Vec<Claimed>, DbError> {
    let (busy, free): (Vec<Uuid>, Vec<i32>) = slots.iter().map(|(e, s)| (*e, *s)).unzip();
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!(
                "WITH candidates AS (
                     -- Per enabled endpoint, its oldest due deliveries up to its free slots: an
                     -- index range each, fair between endpoints whatever the backlog.
                     SELECT due.id
                       FROM webhook_endpoints e
                       LEFT JOIN unnest($2::uuid[], $3::int4[]) AS busy(endpoint_id, slots)
                              ON busy.endpoint_id = e.id
                       CROSS JOIN LATERAL (
                           SELECT d.id, d.next_attempt_at FROM deliveries d
                            WHERE d.endpoint_id = e.id AND d.status = 'pending'
                              AND d.next_attempt_at <= now()
                            ORDER BY d.next_attempt_at
                            LIMIT GREATEST(COALESCE(busy.slots, $4), 0)) due
                      WHERE e.enabled
                      ORDER BY due.next_attempt_at LIMIT $1)
                 UPDATE deliveries d
                    SET attempts = d.attempts + 1, next_attempt_at = now() + $5::text::interval,
                        updated_at = now()
                   FROM candidates c, webhook_events ev, webhook_endpoints e
                  WHERE d.id = c.id AND d.status = 'pending' AND d.next_attempt_at <= now()
                    AND ev.id = d.event_id AND e.id = d.endpoint_id
                 RETURNING {CLAIMED}"
            ),
            &[
                &limit,
                &busy,
                &free,
                &per_endpoint,
                &settings.lease_interval(),
            ],
        )
        .await?;
    Ok(rows.iter().map(claimed).collect())
}

/// Claims one delivery now, whatever its schedule (`gf endpoint test`).
pub async fn claim_now(
    pool: &Pool,
    settings: &DeliverySettings,
    id: Uuid,
) -> Result<Option<Claimed>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "UPDATE deliveries d
                    SET attempts = d.attempts + 1, next_attempt_at = now() + $2::text::interval,
                        updated_at = now()
                   FROM webhook_events ev, webhook_endpoints e
                  WHERE d.id = $1 AND ev.id = d.event_id AND e.id = d.endpoint_id
                 RETURNING {CLAIMED}"
            ),
            &[&id, &settings.lease_interval()],
        )
        .await?;
    Ok(row.as_ref().map(claimed))
}

/// A delivery as operators see it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// What a [`DeliveryView`] is read from, by [`delivery_view`].
const DELIVERY_VIEW: &str = "d.id, d.endpoint_id, d.event_id, ev.event_type, d.status, \
     d.attempts, d.last_status_code, d.last_error, d.next_attempt_at, d.created_at";

fn delivery_view(r: &tokio_postgres::Row) -> DeliveryView {
    DeliveryView {
        id: r.get(0),
        endpoint_id: r.get(1),
        event_id: r.get(2),
        event_type: r.get(3),
        status: r.get(4),
        attempts: r.get(5),
        last_status_code: r.get(6),
        last_error: r.get(7),
        next_attempt_at: r.get(8),
        created_at: r.get(9),
    }
}

/// Which deliveries [`list`] reads; every field narrows it.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeliveryScope<'a> {
    pub product: Option<Uuid>,
    pub endpoint: Option<Uuid>,
    pub status: Option<&'a str>,
    /// At most this many of each endpoint (the webhooks page shows each endpoint's newest).
    pub per_endpoint: Option<i64>,
    /// Only these products' (an admin key limited to products).
    pub products: Option<&'a [Uuid]>,
}

/// The newest deliveries in `scope`, newest first (ties by id, so pages are stable), one page:
/// one query, an index range per endpoint.
pub async fn list(
    pool: &Pool,
    scope: DeliveryScope<'_>,
    page: &PageRequest,
) -> Result<Page<DeliveryView>, DbError> {
    // Each endpoint gives at most what the page could need of it.
    let reach = page.offset.saturating_add(page.fetch());
    let per_endpoint = scope.per_endpoint.unwrap_or(reach).min(reach);
    let (at, id) = page.after_parts();
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {DELIVERY_VIEW}
                   FROM webhook_endpoints e
                   CROSS JOIN LATERAL (
                       SELECT * FROM deliveries
                        WHERE endpoint_id = e.id AND ($3::text IS NULL OR status = $3)
                          AND ($6::timestamptz IS NULL OR (created_at, id) < ($6, $7))
                        ORDER BY created_at DESC, id DESC LIMIT $4) d
                   JOIN webhook_events ev ON ev.id = d.event_id
                  WHERE ($1::uuid IS NULL OR e.product_id = $1)
                    AND ($2::uuid IS NULL OR e.id = $2)
                    AND ($9::uuid[] IS NULL OR e.product_id = ANY($9))
                  ORDER BY d.created_at DESC, d.id DESC OFFSET $8 LIMIT $5"
            ),
            &[
                &scope.product,
                &scope.endpoint,
                &scope.status,
                &per_endpoint,
                &page.fetch(),
                &at,
                &id,
                &page.offset,
                &scope.products,
            ],
        )
        .await?;
    let deliveries = rows.iter().map(delivery_view).collect();
    Ok(Page::of(deliveries, page, |d: &DeliveryView| Cursor {
        at: d.created_at,
        id: d.id,
    }))
}

/// One attempt of a delivery, as the webhook logs show it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub latency_ms: i32,
    pub status_code: Option<i32>,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Every attempt of a delivery, in order; `None` when there is no such delivery.
pub async fn attempts(pool: &Pool, delivery: Uuid) -> Result<Option<Vec<AttemptView>>, DbError> {
    let client = pool.get().await?;
    if client
        .query_opt("SELECT 1 FROM deliveries WHERE id = $1", &[&delivery])
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT attempt, started_at, latency_ms, status_code, error_class, error, response_body,
                    next_attempt_at
               FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt, id",
            &[&delivery],
        )
        .await?;
    Ok(Some(
        rows.iter()
            .map(|r| AttemptView {
                attempt: r.get(0),
                started_at: r.get(1),
                latency_ms: r.get(2),
                status_code: r.get(3),
                error_class: r.get(4),
                error: r.get(5),
                response_body: r.get(6),
                next_attempt_at: r.get(7),
            })
            .collect(),
    ))
}

/// Which deliveries `gf deliveries retry` sends again.
#[derive(Clone, Copy, Debug)]
pub enum RetrySelection {
    One(Uuid),
    /// Failed deliveries of an endpoint (or all endpoints) created since a time.
    FailedSince {
        endpoint: Option<Uuid>,
        since: DateTime<Utc>,
    },
}

/// Makes the selected deliveries due now (one more attempt each); returns their ids.
pub async fn retry(pool: &Pool, selection: RetrySelection) -> Result<Vec<Uuid>, DbError> {
    let client = pool.get().await?;
    let rows = match selection {
        RetrySelection::One(id) => {
            client
                .query(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = now(),
                                           updated_at = now()
                      WHERE id = $1 AND status <> 'pending' RETURNING id",
                    &[&id],
                )
                .await?
        }
        RetrySelection::FailedSince { endpoint, since } => {
            client
                .query(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = now(),
                                           updated_at = now()
                      WHERE status = 'failed' AND created_at >= $2
                        AND ($1::uuid IS NULL OR endpoint_id = $1)
                     RETURNING id",
                    &[&endpoint, &since],
                )
                .await?
        }
    };
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Logs one attempt and moves its delivery and endpoint on ([`finish_batch`] of one).
pub async fn finish(
    pool: &Pool,
    settings: &DeliverySettings,
    claimed: &Claimed,
    log: &AttemptLog,
) -> Result<Next, DbError> {
    let done = [(claimed.clone(), log.clone())];
    Ok(finish_batch(pool, settings, &done).await?[0])
}

/// Logs attempts and moves their deliveries and endpoints on, in one transaction: one commit for
/// many attempts keeps PostgreSQL from being the limit on deliveries per second.
pub async fn finish_batch(
    pool: &Pool,
    settings: &DeliverySettings,
    done: &[(Claimed, AttemptLog)],
) -> Result<Vec<Next>, DbError> {
    let now = Utc::now();
    let nexts: Vec<Next> = done
        .iter()
        .map(|(claimed, log)| {
            let attempt = u32::try_from(claimed.attempt).unwrap_or(u32::MAX);
            schedule::next(&settings.delays, attempt, log.outcome, now, unit_random())
        })
        .collect();
    let mut ids = Vec::new();
    let mut attempts = Vec::new();
    let mut started = Vec::new();
    let mut latencies = Vec::new();
    let mut codes = Vec::new();
    let mut classes = Vec::new();
    let mut errors = Vec::new();
    let mut bodies = Vec::new();
    let mut next_at = Vec::new();
    let mut statuses = Vec::new();
    let mut last_errors = Vec::new();
    for ((claimed, log), next) in done.iter().zip(&nexts) {
        let (status, at) = match next {
            Next::Done => ("delivered", None),
            Next::RetryAt(at) => ("pending", Some(*at)),
            Next::GiveUp | Next::DisableEndpoint => ("failed", None),
        };
        ids.push(claimed.id);
        attempts.push(claimed.attempt);
        started.push(log.started_at);
        latencies.push(i32::try_from(log.latency.as_millis()).unwrap_or(i32::MAX));
        codes.push(log.status_code.map(i32::from));
        classes.push(log.error_class);
        errors.push(log.error.clone());
        bodies.push(log.response_body.clone());
        next_at.push(at);
        statuses.push(status);
        last_errors.push(log.error_class.map(|class| match &log.error {
            Some(e) => format!("{class}: {e}"),
            None => class.to_owned(),
        }));
    }
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    txn.execute(
        "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, latency_ms, status_code,
                                        error_class, error, response_body, next_attempt_at)
         SELECT * FROM unnest($1::uuid[], $2::int4[], $3::timestamptz[], $4::int4[], $5::int4[],
                              $6::text[], $7::text[], $8::text[], $9::timestamptz[])",
        &[
            &ids, &attempts, &started, &latencies, &codes, &classes, &errors, &bodies, &next_at,
        ],
    )
    .await?;
    txn.execute(
        "UPDATE deliveries d SET status = x.status, next_attempt_at = x.next_at,
                                 last_status_code = x.code, last_error = x.error,
                                 updated_at = now()
           FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::int4[], $5::text[])
                AS x(id, status, next_at, code, error)
          WHERE d.id = x.id",
        &[&ids, &statuses, &next_at, &codes, &last_errors],
    )
    .await?;

    // Endpoints: a success clears the failure record; failures start it; 410, or failing for
    // 5 days, disables.
    let mut succeeded: Vec<Uuid> = Vec::new();
    let mut failed: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
    let mut gone: Vec<Uuid> = Vec::new();
    for ((claimed, log), next) in done.iter().zip(&nexts) {
        if log.outcome == Outcome::Delivered {
            succeeded.push(claimed.endpoint_id);
        } else {
            let first = failed.entry(claimed.endpoint_id).or_insert(log.started_at);
            *first = (*first).min(log.started_at);
        }
        if *next == Next::DisableEndpoint {
            gone.push(claimed.endpoint_id);
        }
    }
    failed.retain(|e, _| !succeeded.contains(e));
    if !succeeded.is_empty() {
        txn.execute(
            "UPDATE webhook_endpoints SET failing_since = NULL
              WHERE id = ANY($1) AND failing_since IS NOT NULL",
            &[&succeeded],
        )
        .await?;
    }
    let mut disable: Vec<(Uuid, &str)> = gone
        .iter()
        .map(|e| (*e, "the endpoint answered 410 Gone"))
        .collect();
    if !failed.is_empty() {
        let (endpoints, since): (Vec<Uuid>, Vec<DateTime<Utc>>) = failed.into_iter().unzip();
        let rows = txn
            .query(
                "UPDATE webhook_endpoints e SET failing_since = COALESCE(e.failing_since, x.since)
                   FROM unnest($1::uuid[], $2::timestamptz[]) AS x(id, since)
                  WHERE e.id = x.id
                 RETURNING e.id, e.failing_since",
                &[&endpoints, &since],
            )
            .await?;
        for row in rows {
            let endpoint: Uuid = row.get(0);
            if schedule::should_disable(row.get(1), now) && !gone.contains(&endpoint) {
                disable.push((endpoint, "failing for 5 days without a success"));
            }
        }
    }
    for (endpoint, reason) in disable {
        txn.execute(
            "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = now()
              WHERE id = $1 AND enabled",
            &[&endpoint, &reason],
        )
        .await?;
        tracing::warn!(%endpoint, reason, "webhook endpoint disabled");
    }
    txn.commit().await?;
    Ok(nexts)
}

/// Deletes attempt logs, and finished deliveries, older than the retention.
pub async fn prune(pool: &Pool, retention_days: u32) -> Result<u64, DbError> {
    let client = pool.get().await?;
    let days = format!("{retention_days} days");
    let attempts = client
        .execute(
            "DELETE FROM delivery_attempts WHERE started_at < now() - $1::text::interval",
            &[&days],
        )
        .await?;
    let deliveries = client
        .execute(
            "DELETE FROM deliveries WHERE status IN ('delivered', 'failed', 'cancelled')
                AND updated_at < now() - $1::text::interval",
            &[&days],
        )
        .await?;
    Ok(attempts + deliveries)
}
