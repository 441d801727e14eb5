//! What flows through each connection: the newest requests it received (kept bounded), hourly
//! counts per answer status, and a product's overview built from them. The receiver writes,
//! off the request path; the API, the console and `gf` read. Never a token, a secret or a header
//! value: only what the sender was answered.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use gf_runtime::db::DbError;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// Requests kept per connection.
pub const REQUESTS_KEPT: i64 = 100;
/// The most of a body a request log keeps, where its connection's owner turned excerpts on.
pub const EXCERPT_BYTES: usize = 2048;

/// The first [`EXCERPT_BYTES`] of a body as text (invalid UTF-8 replaced, cut on a character
/// boundary); pages escape it when they show it.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(EXCERPT_BYTES)]);
    let mut end = text.len().min(EXCERPT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// One request a connection received, as the receiver answered it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub id: Uuid,
    pub connection_id: Uuid,
    pub product_id: Uuid,
    pub at: DateTime<Utc>,
    pub method: String,
    pub status: u16,
    pub received: u32,
    pub accepted: u32,
    pub dropped: u32,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub bytes: u32,
    /// Where the stored body is in the raw topic (partition, offset).
    pub raw: Option<(i32, i64)>,
    /// The body's beginning ([`excerpt`]), only where the connection logs bodies.
    pub excerpt: Option<String>,
}

/// Which counter a request adds to: (connection, product, hour, answer status).
pub type HourKey = (Uuid, Uuid, DateTime<Utc>, u16);

/// Counts of one connection's requests in one hour with one answer status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HourlyCount {
    pub requests: i64,
    pub received: i64,
    pub accepted: i64,
    pub dropped: i64,
}

impl HourlyCount {
    pub fn add(&mut self, r: &RequestRecord) {
        self.requests += 1;
        self.received += i64::from(r.received);
        self.accepted += i64::from(r.accepted);
        self.dropped += i64::from(r.dropped);
    }
}

/// A request as the log shows it, with the canonical events it became.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestEntry {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub method: String,
    pub status: u16,
    pub received: u32,
    pub accepted: u32,
    pub dropped: u32,
    /// A refusal: the code and message the sender was answered.
    pub error: Option<RequestError>,
    pub bytes: u32,
    /// The body's beginning, where the connection's owner turned excerpts on.
    pub excerpt: Option<String>,
    /// Why the dropped events were dropped (the counting rule of the connection's sender).
    pub dropped_because: Option<String>,
    /// The canonical events the request became, once the pipeline stored them.
    pub events: Vec<RequestEvent>,
    /// Their ids, in the same order.
    pub event_ids: Vec<Uuid>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RequestError {
    pub code: String,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestEvent {
    pub id: Uuid,
    pub event_type: String,
    pub influence: String,
    /// What the mapper noticed but did not drop the event for.
    #[schema(value_type = Vec<Object>)]
    pub warnings: Value,
}

/// A product's traffic since a time.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductStats {
    pub since: DateTime<Utc>,
    pub connections: Vec<ConnectionStats>,
    /// Webhook deliveries made since, by endpoint.
    pub deliveries: Vec<EndpointDeliveries>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStats {
    pub connection_id: Uuid,
    pub provider: String,
    pub status: String,
    pub last_event_at: Option<DateTime<Utc>>,
    pub requests: i64,
    pub received: i64,
    pub accepted: i64,
    pub dropped: i64,
    /// Requests by answer status.
    pub statuses: Vec<StatusCount>,
    /// Hours with requests, oldest first.
    pub hours: Vec<HourStats>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct StatusCount {
    pub status: u16,
    pub requests: i64,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HourStats {
    pub hour: DateTime<Utc>,
    pub requests: i64,
    pub received: i64,
    pub accepted: i64,
    pub dropped: i64,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointDeliveries {
    pub endpoint_id: Uuid,
    pub url: String,
    pub delivered: i64,
    pub pending: i64,
    pub failed: i64,
}

#[derive(Clone)]
pub struct Traffic {
    pool: Pool,
}

impl Traffic {
    pub fn new(pool: Pool) -> Self {
        Traffic { pool }
    }

    /// Stores requests and hourly counts in one transaction, keeping the newest
    /// [`REQUESTS_KEPT`] requests of each connection written to.
    pub async fn record(
        &self,
        requests: &[RequestRecord],
        hourly: &[(HourKey, HourlyCount)],
    ) -> Result<(), DbError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        if !requests.is_empty() {
            let c = RequestColumns::of(requests);
            txn.execute(
                "INSERT INTO connection_requests (id, connection_id, product_id, at, method, status,
                        received, accepted, dropped, error_code, error_message, bytes,
                        raw_partition, raw_offset, excerpt)
                 SELECT x.* FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[],
                        $5::text[], $6::int2[], $7::int4[], $8::int4[], $9::int4[], $10::text[],
                        $11::text[], $12::int4[], $13::int4[], $14::int8[], $15::text[])
                        AS x(id, connection_id, product_id, at, method, status, received, accepted,
                             dropped, error_code, error_message, bytes, raw_partition, raw_offset,
                             excerpt)
                   JOIN connections c ON c.id = x.connection_id
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &c.id,
                    &c.connection_id,
                    &c.product_id,
                    &c.at,
                    &c.method,
                    &c.status,
                    &c.received,
                    &c.accepted,
                    &c.dropped,
                    &c.error_code,
                    &c.error_message,
                    &c.bytes,
                    &c.raw_partition,
                    &c.raw_offset,
                    &c.excerpt,
                ],
            )
            .await?;
            let mut connections: Vec<Uuid> = requests.iter().map(|r| r.connection_id).collect();
            connections.sort();
            connections.dedup();
            txn.execute(
                "DELETE FROM connection_requests r USING (
                     SELECT id FROM (
                         SELECT id, row_number() OVER (PARTITION BY connection_id
                                                       ORDER BY at DESC, id DESC) AS n
                           FROM connection_requests WHERE connection_id = ANY($1)) ranked
                      WHERE n > $2) old
                  WHERE r.id = old.id",
                &[&connections, &REQUESTS_KEPT],
            )
            .await?;
        }
        if !hourly.is_empty() {
            let mut columns = HourlyColumns::default();
            for ((connection, product, hour, status), count) in hourly {
                columns.connection_id.push(*connection);
                columns.product_id.push(*product);
                columns.hour.push(*hour);
                columns.status.push(*status as i16);
                columns.requests.push(count.requests);
                columns.received.push(count.received);
                columns.accepted.push(count.accepted);
                columns.dropped.push(count.dropped);
            }
            txn.execute(
                "INSERT INTO connection_hourly AS h (connection_id, product_id, hour, status,
                        requests, received, accepted, dropped)
                 SELECT x.* FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int2[],
                        $5::int8[], $6::int8[], $7::int8[], $8::int8[])
                        AS x(connection_id, product_id, hour, status, requests, received,
                             accepted, dropped)
                   JOIN connections c ON c.id = x.connection_id
                  ORDER BY 1, 3, 4
                 ON CONFLICT (connection_id, hour, status) DO UPDATE SET
                    requests = h.requests + EXCLUDED.requests,
                    received = h.received + EXCLUDED.received,
                    accepted = h.accepted + EXCLUDED.accepted,
                    dropped = h.dropped + EXCLUDED.dropped",
                &[
                    &columns.connection_id,
                    &columns.product_id,
                    &columns.hour,
                    &columns.status,
                    &columns.requests,
                    &columns.received,
                    &columns.accepted,
                    &columns.dropped,
                ],
            )
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// The newest requests of a connection, newest first, each with the canonical events its
    /// stored body became and why events were dropped.
    pub async fn requests(
        &self,
        connection: Uuid,
        limit: i64,
    ) -> Result<Vec<RequestEntry>, DbError> {
        let client = self.pool.get().await?;
        let provider = client
            .query_opt(
                "SELECT provider FROM connections WHERE id = $1",
                &[&connection],
            )
            .await?
            .and_then(|r| r.get::<_, String>(0).parse::<gf_schemas::Provider>().ok());
        let because = provider.and_then(gf_schemas::accept::dropped_because);
        let rows = client
            .query(
                "SELECT r.id, r.at, r.method, r.status, r.received, r.accepted, r.dropped,
                        r.error_code, r.error_message, r.bytes,
                        coalesce(e.events, '[]'::jsonb), r.excerpt
                   FROM connection_requests r
                   LEFT JOIN LATERAL (
                       SELECT jsonb_agg(jsonb_build_object('id', b.id, 'eventType', b.event_type,
                                        'influence', b.influence, 'warnings', b.warnings)
                                        ORDER BY b.raw_index) AS events
                         FROM business_events b
                        WHERE r.raw_partition IS NOT NULL AND b.raw_partition = r.raw_partition
                          AND b.raw_offset = r.raw_offset AND b.product_id = r.product_id
                          AND b.connection_id = r.connection_id) e ON true
                  WHERE r.connection_id = $1
                  ORDER BY r.at DESC, r.id DESC LIMIT $2",
                &[&connection, &limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let code: Option<String> = r.get(7);
                let message: Option<String> = r.get(8);
                let events: Vec<RequestEvent> = serde_json::from_value(r.get(10))
                    .map_err(|e| DbError::Corrupt(format!("a request's events: {e}")))?;
                Ok(RequestEntry {
                    id: r.get(0),
                    at: r.get(1),
                    method: r.get(2),
                    status: r.get::<_, i16>(3) as u16,
                    received: r.get::<_, i32>(4) as u32,
                    accepted: r.get::<_, i32>(5) as u32,
                    dropped: r.get::<_, i32>(6) as u32,
                    error: code.map(|code| RequestError {
                        code,
                        message: message.unwrap_or_default(),
                    }),
                    bytes: r.get::<_, i32>(9) as u32,
                    excerpt: r.get(11),
                    dropped_because: (r.get::<_, i32>(6) > 0)
                        .then_some(because)
                        .flatten()
                        .map(str::to_owned),
                    event_ids: events.iter().map(|e| e.id).collect(),
                    events,
                })
            })
            .collect()
    }

    /// A product's connections and webhook deliveries since `since`.
    pub async fn product(
        &self,
        product: Uuid,
        since: DateTime<Utc>,
    ) -> Result<ProductStats, DbError> {
        let client = self.pool.get().await?;
        let connections = client
            .query(
                "SELECT id, provider, status, last_event_at FROM connections
                  WHERE product_id = $1 ORDER BY created_at, id",
                &[&product],
            )
            .await?;
        let hourly = client
            .query(
                "SELECT connection_id, hour, status, requests, received, accepted, dropped
                   FROM connection_hourly WHERE product_id = $1 AND hour >= date_trunc('hour', $2::timestamptz)
                  ORDER BY connection_id, hour, status",
                &[&product, &since],
            )
            .await?;
        let mut stats: Vec<ConnectionStats> = connections
            .iter()
            .map(|r| ConnectionStats {
                connection_id: r.get(0),
                provider: r.get(1),
                status: r.get(2),
                last_event_at: r.get(3),
                requests: 0,
                received: 0,
                accepted: 0,
                dropped: 0,
                statuses: Vec::new(),
                hours: Vec::new(),
            })
            .collect();
        for r in &hourly {
            let id: Uuid = r.get(0);
            let Some(c) = stats.iter_mut().find(|c| c.connection_id == id) else {
                continue;
            };
            let (hour, status): (DateTime<Utc>, i16) = (r.get(1), r.get(2));
            let (requests, received, accepted, dropped): (i64, i64, i64, i64) =
                (r.get(3), r.get(4), r.get(5), r.get(6));
            c.requests += requests;
            c.received += received;
            c.accepted += accepted;
            c.dropped += dropped;
            match c.statuses.iter_mut().find(|s| s.status == status as u16) {
                Some(s) => s.requests += requests,
                None => c.statuses.push(StatusCount {
                    status: status as u16,
                    requests,
                }),
            }
            match c.hours.last_mut().filter(|h| h.hour == hour) {
                Some(h) => {
                    h.requests += requests;
                    h.received += received;
                    h.accepted += accepted;
                    h.dropped += dropped;
                }
                None => c.hours.push(HourStats {
                    hour,
                    requests,
                    received,
                    accepted,
                    dropped,
                }),
            }
        }
        for c in &mut stats {
            c.statuses.sort_by_key(|s| s.status);
        }
        let deliveries = client
            .query(
                "SELECT e.id, e.url,
                        count(*) FILTER (WHERE d.status = 'delivered'),
                        count(*) FILTER (WHERE d.status = 'pending'),
                        count(*) FILTER (WHERE d.status = 'failed')
                   FROM webhook_endpoints e
                   LEFT JOIN deliveries d ON d.endpoint_id = e.id AND d.created_at >= $2
                  WHERE e.product_id = $1
                  GROUP BY e.id, e.url, e.created_at ORDER BY e.created_at, e.id",
                &[&product, &since],
            )
            .await?
            .iter()
            .map(|r| EndpointDeliveries {
                endpoint_id: r.get(0),
                url: r.get(1),
                delivered: r.get(2),
                pending: r.get(3),
                failed: r.get(4),
            })
            .collect();
        Ok(ProductStats {
            since,
            connections: stats,
            deliveries,
        })
    }
}

/// `connection_requests` rows as one array per column.
#[derive(Default)]
struct RequestColumns {
    id: Vec<Uuid>,
    connection_id: Vec<Uuid>,
    product_id: Vec<Uuid>,
    at: Vec<DateTime<Utc>>,
    method: Vec<String>,
    status: Vec<i16>,
    received: Vec<i32>,
    accepted: Vec<i32>,
    dropped: Vec<i32>,
    error_code: Vec<Option<String>>,
    error_message: Vec<Option<String>>,
    bytes: Vec<i32>,
    raw_partition: Vec<Option<i32>>,
    raw_offset: Vec<Option<i64>>,
    excerpt: Vec<Option<String>>,
}

impl RequestColumns {
    fn of(requests: &[RequestRecord]) -> Self {
        let mut c = RequestColumns::default();
        let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        for r in requests {
            c.id.push(r.id);
            c.connection_id.push(r.connection_id);
            c.product_id.push(r.product_id);
            c.at.push(r.at);
            c.method.push(r.method.clone());
            c.status.push(r.status as i16);
            c.received.push(int(r.received));
            c.accepted.push(int(r.accepted));
            c.dropped.push(int(r.dropped));
            c.error_code.push(r.error_code.clone());
            c.error_message.push(r.error_message.clone());
            c.bytes.push(int(r.bytes));
            c.raw_partition.push(r.raw.map(|(p, _)| p));
            c.raw_offset.push(r.raw.map(|(_, o)| o));
            c.excerpt.push(r.excerpt.clone());
        }
        c
    }
}

#[derive(Default)]
struct HourlyColumns {
    connection_id: Vec<Uuid>,
    product_id: Vec<Uuid>,
    hour: Vec<DateTime<Utc>>,
    status: Vec<i16>,
    requests: Vec<i64>,
    received: Vec<i64>,
    accepted: Vec<i64>,
    dropped: Vec<i64>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_excerpt_is_capped_on_a_character_boundary() {
        let body = "é".repeat(super::EXCERPT_BYTES);
        let cut = super::excerpt(body.as_bytes());
        assert_eq!(cut.len(), super::EXCERPT_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(super::excerpt(b"{\"a\":1}\xff"), "{\"a\":1}\u{fffd}");
    }
}
