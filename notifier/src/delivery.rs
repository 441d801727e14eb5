//! The delivery workers: drain the outbox, one signed POST per attempt, and log every attempt.
//!
//! Due deliveries are claimed with a lease (their next attempt moved 5 minutes ahead), so two
//! workers never send the same attempt and a crashed worker's claims come back. At most
//! `GF_WEBHOOK_CONCURRENCY` attempts run at once, and at most `GF_WEBHOOK_ENDPOINT_CONCURRENCY`
//! to one endpoint, so a slow or dead endpoint only ever holds its own slots.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use gf_runtime::Config;
use rand_jitter::unit_random;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::consumer::NotifierError;
use crate::endpoints::{check_addresses, signing_secrets};
use crate::recorder;
use crate::schedule::{self, Next, Outcome};
use crate::signing::sign;
use crate::ssrf::AddressPolicy;

/// One attempt's time limit.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of an answer's body is logged.
pub const MAX_LOGGED_BODY: usize = 16 * 1024;
const POLL_EVERY: Duration = Duration::from_millis(200);

/// The retry schedule and the claim lease, from the configuration.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    pub delays: Vec<Duration>,
    pub lease: Duration,
}

impl DeliverySettings {
    pub fn from_config(config: &Config) -> Self {
        DeliverySettings {
            delays: config
                .webhook_retry_delays
                .clone()
                .unwrap_or_else(|| schedule::RETRY_DELAYS.to_vec()),
            lease: Duration::from_secs(config.webhook_lease_secs),
        }
    }

    fn lease_interval(&self) -> String {
        format!("{} seconds", self.lease.as_secs())
    }
}

/// A due delivery, claimed for one attempt.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub attempt: i32,
    pub payload: Value,
    pub url: String,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Trace context of what fired the event.
    traceparent: Option<String>,
}

/// What one attempt did, as logged.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptLog {
    pub started_at: DateTime<Utc>,
    pub latency: Duration,
    pub status_code: Option<u16>,
    pub error_class: Option<&'static str>,
    pub error: Option<String>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Option<String>,
    pub outcome: Outcome,
}

/// Refused at connect time: every address the name resolved to is blocked.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to addresses webhooks may not reach")]
struct BlockedAddress {
    host: String,
}

/// Resolves names and keeps only the addresses the policy allows, so the check holds for the
/// address actually connected to, even if DNS changes after the endpoint was created.
struct GuardedResolver {
    policy: AddressPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| policy.check(a.ip()).is_ok())
                .collect();
            if resolved.is_empty() {
                return Err(Box::new(BlockedAddress { host }) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(resolved.into_iter()) as Addrs)
        })
    }
}

/// The webhook HTTP client: no redirects, a 5-second limit per attempt, guarded DNS.
pub fn webhook_client(policy: &AddressPolicy) -> Result<reqwest::Client, NotifierError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(ATTEMPT_TIMEOUT)
        .user_agent(concat!("gf-notifier/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver {
            policy: policy.clone(),
        }))
        .build()
        .map_err(|e| NotifierError::Client(e.to_string()))
}

/// Sends one attempt and reports what happened (never fails: failures are outcomes). The
/// attempt is a span in the trace of what fired the event, and sends its `traceparent`.
pub async fn attempt(
    client: &reqwest::Client,
    policy: &AddressPolicy,
    claimed: &Claimed,
) -> AttemptLog {
    let span = tracing::info_span!(
        "gf.notifier.deliver",
        delivery_id = %claimed.id,
        endpoint_id = %claimed.endpoint_id,
        attempt = claimed.attempt,
        http.response.status_code = tracing::field::Empty,
    );
    let parent = claimed.traceparent.as_deref();
    let traceparent = gf_runtime::telemetry::continue_trace(&span, parent);
    let log = send(client, policy, claimed, traceparent)
        .instrument(span.clone())
        .await;
    if let Some(code) = log.status_code {
        span.record("http.response.status_code", code);
    }
    log
}

async fn send(
    client: &reqwest::Client,
    policy: &AddressPolicy,
    claimed: &Claimed,
    traceparent: Option<String>,
) -> AttemptLog {
    let started_at = Utc::now();
    let started = Instant::now();
    let failed = |class: &'static str, error: String| AttemptLog {
        started_at,
        latency: started.elapsed(),
        status_code: None,
        error_class: Some(class),
        error: Some(error),
        response_headers: Vec::new(),
        response_body: None,
        outcome: Outcome::NoResponse,
    };
    let url = match reqwest::Url::parse(&claimed.url) {
        Ok(url) => url,
        Err(e) => return failed("bad_url", e.to_string()),
    };
    // What the guarded resolver cannot see: IP-literal hosts, and where plain http may go.
    if let Err(refused) = check_addresses(&url, policy, url.scheme() == "http").await {
        return failed("blocked_address", refused.to_string());
    }
    let secrets = match signing_secrets(
        &claimed.secret,
        claimed.previous_secret.as_deref(),
        claimed.previous_secret_expires_at,
        started_at,
    ) {
        Ok(secrets) => secrets,
        Err(e) => return failed("bad_secret", e.to_string()),
    };
    let body = serde_json::to_vec(&claimed.payload).unwrap_or_default();
    let delivery = claimed.id.to_string();
    let timestamp = started_at.timestamp();
    let signature = sign(&secrets, &delivery, timestamp, &body);
    let mut request = client.post(url);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let sent = request
        .header("content-type", "application/json")
        .header("X-Greenflash-Delivery", &delivery)
        .header("X-Greenflash-Timestamp", timestamp.to_string())
        .header("X-Greenflash-Signature", &signature)
        .header("webhook-id", &delivery)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", &signature)
        .body(body)
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(e) => {
            let class = if source_is::<BlockedAddress>(&e) {
                "blocked_address"
            } else if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "request"
            };
            return failed(class, error_chain(&e));
        }
    };
    let code = response.status().as_u16();
    let response_headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| schedule::parse_retry_after(v, Utc::now()));
    let mut logged = Vec::new();
    let mut read_error = None;
    while logged.len() < MAX_LOGGED_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => logged.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                read_error = Some(error_chain(&e));
                break;
            }
        }
    }
    logged.truncate(MAX_LOGGED_BODY);
    let success = (200..300).contains(&code);
    AttemptLog {
        started_at,
        latency: started.elapsed(),
        status_code: Some(code),
        error_class: (!success).then_some("http_status"),
        error: read_error,
        response_headers,
        response_body: Some(storable_text(&logged)),
        outcome: if success {
            Outcome::Delivered
        } else {
            Outcome::Status { code, retry_after }
        },
    }
}

fn source_is<E: StdError + 'static>(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<E>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// An error and its causes on one line (reqwest's own message says little).
fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut current = error.source();
    while let Some(e) = current {
        parts.push(e.to_string());
        current = e.source();
    }
    storable_text(parts.join(": ").as_bytes())
}

/// Any bytes an endpoint answers with (NUL, invalid UTF-8, binary, gzip) as text PostgreSQL
/// stores: invalid UTF-8 and NUL become U+FFFD.
pub fn storable_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.contains('\0') {
        text.replace('\0', "\u{fffd}")
    } else {
        text.into_owned()
    }
}

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
) -> Result<Vec<Claimed>, DeliveryError> {
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
) -> Result<Option<Claimed>, DeliveryError> {
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
#[derive(Clone, Debug, serde::Serialize)]
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

/// The newest deliveries, optionally of one endpoint and in one status.
pub async fn list(
    pool: &Pool,
    endpoint: Option<Uuid>,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<DeliveryView>, DeliveryError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT d.id, d.endpoint_id, d.event_id, ev.event_type, d.status, d.attempts,
                    d.last_status_code, d.last_error, d.next_attempt_at, d.created_at
               FROM deliveries d JOIN webhook_events ev ON ev.id = d.event_id
              WHERE ($1::uuid IS NULL OR d.endpoint_id = $1)
                AND ($2::text IS NULL OR d.status = $2)
              ORDER BY d.created_at DESC LIMIT $3",
            &[&endpoint, &status, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DeliveryView {
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
        })
        .collect())
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
pub async fn retry(pool: &Pool, selection: RetrySelection) -> Result<Vec<Uuid>, DeliveryError> {
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

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("PostgreSQL is unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("PostgreSQL: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// Logs one attempt and moves its delivery and endpoint on ([`finish_batch`] of one).
pub async fn finish(
    pool: &Pool,
    settings: &DeliverySettings,
    claimed: &Claimed,
    log: &AttemptLog,
) -> Result<Next, DeliveryError> {
    let done = [(claimed.clone(), log.clone())];
    Ok(finish_batch(pool, settings, &done).await?[0])
}

/// Logs attempts and moves their deliveries and endpoints on, in one transaction: one commit for
/// many attempts keeps PostgreSQL from being the limit on deliveries per second.
pub async fn finish_batch(
    pool: &Pool,
    settings: &DeliverySettings,
    done: &[(Claimed, AttemptLog)],
) -> Result<Vec<Next>, DeliveryError> {
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
pub async fn prune(pool: &Pool, retention_days: u32) -> Result<u64, DeliveryError> {
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

/// Works the outbox until `stop`; attempts in flight at the stop are finished and logged.
pub async fn run(
    config: &Config,
    pool: &Pool,
    stop: CancellationToken,
) -> Result<(), NotifierError> {
    let policy = AddressPolicy::parse(&config.webhook_allowed_nets)?;
    let client = webhook_client(&policy)?;
    let settings = DeliverySettings::from_config(config);
    let total = config.webhook_concurrency;
    let per_endpoint = i32::try_from(config.webhook_endpoint_concurrency).unwrap_or(i32::MAX);
    let in_flight: Arc<Mutex<HashMap<Uuid, i32>>> = Arc::default();
    let mut tasks: JoinSet<()> = JoinSet::new();
    // Bounded: when PostgreSQL is slow to take the logs, workers wait instead of memory growing.
    let (recorder, results) = tokio::sync::mpsc::channel(recorder::QUEUE);
    let abandon = CancellationToken::new();
    let recording = tokio::spawn(recorder::run(
        pool.clone(),
        settings.clone(),
        results,
        abandon.clone(),
    ));
    let mut last_prune: Option<Instant> = None;
    let mut backoff = POLL_EVERY;
    tracing::info!(total, per_endpoint, "delivery workers running");
    while !stop.is_cancelled() {
        if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            match prune(pool, config.webhook_log_retention_days).await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "old delivery logs pruned"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning delivery logs failed"),
            }
            last_prune = Some(Instant::now());
        }
        let free = total.saturating_sub(tasks.len());
        let claimed = if free == 0 {
            Vec::new()
        } else {
            let slots: HashMap<Uuid, i32> = lock(&in_flight)
                .iter()
                .map(|(e, n)| (*e, per_endpoint - n))
                .collect();
            match claim(pool, &settings, free as i64, per_endpoint, &slots).await {
                Ok(claimed) => {
                    backoff = POLL_EVERY;
                    claimed
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot claim deliveries");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    Vec::new()
                }
            }
        };
        let idle = claimed.is_empty();
        for delivery in claimed {
            *lock(&in_flight).entry(delivery.endpoint_id).or_default() += 1;
            let (client, policy, in_flight) = (client.clone(), policy.clone(), in_flight.clone());
            let recorded = recorder.clone();
            tasks.spawn(async move {
                let log = attempt(&client, &policy, &delivery).await;
                let endpoint = delivery.endpoint_id;
                // The recorder logs it; if that never happens (a crash), the lease expires and
                // the attempt is made again under the same delivery id.
                let _ = recorded.send((delivery, log)).await;
                let mut map = lock(&in_flight);
                if let Some(n) = map.get_mut(&endpoint) {
                    *n -= 1;
                    if *n <= 0 {
                        map.remove(&endpoint);
                    }
                }
            });
        }
        if idle || tasks.len() >= total {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(backoff) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    // Attempts already sent are logged; each ends within the attempt timeout.
    let drain = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(ATTEMPT_TIMEOUT + Duration::from_secs(5), drain).await;
    drop(recorder);
    if tokio::time::timeout(Duration::from_secs(10), recording)
        .await
        .is_err()
    {
        // Shutting down and PostgreSQL is gone: the leases bring these attempts back.
        abandon.cancel();
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A number in [0, 1) for the retry jitter, from the OS generator.
mod rand_jitter {
    pub fn unit_random() -> f64 {
        let mut bytes = [0u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            return 0.5;
        }
        (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
    }
}
