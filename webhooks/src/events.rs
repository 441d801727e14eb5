//! Webhook events and their pending deliveries, recorded in the caller's transaction (the
//! outbox the delivery workers drain).

use chrono::{DateTime, SecondsFormat, Utc};
use deadpool_postgres::Transaction;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::event_types::{EventType, subscribed};

/// Namespace of webhook event ids (UUIDv5 over what caused the event).
pub const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6766_2d77_6562_686f_6f6b_2d65_7674_0001);

/// A webhook event to record.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookEvent {
    pub id: Uuid,
    pub product_id: Uuid,
    pub event_type: EventType,
    pub created_at: DateTime<Utc>,
    pub data: Value,
    /// Trace context of what caused the event; its deliveries continue that trace.
    pub traceparent: Option<String>,
}

impl WebhookEvent {
    /// The body every delivery of this event sends.
    pub fn payload(&self) -> Value {
        json!({
            "id": self.id,
            "type": self.event_type.as_str(),
            "createdAt": self.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "productId": self.product_id,
            "data": self.data,
        })
    }
}

/// Records an event and one pending delivery per enabled endpoint subscribed to it (only to
/// `only` when given, for `gf endpoint test`); an event already recorded adds nothing. Returns the
/// delivery ids.
pub async fn record(
    txn: &Transaction<'_>,
    event: &WebhookEvent,
    only: Option<Uuid>,
) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    let inserted = txn
        .execute(
            "INSERT INTO webhook_events (id, product_id, event_type, payload, traceparent)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            &[
                &event.id,
                &event.product_id,
                &event.event_type.as_str(),
                &event.payload(),
                &event.traceparent,
            ],
        )
        .await?;
    if inserted == 0 && only.is_none() {
        return Ok(Vec::new());
    }
    let endpoints = txn
        .query(
            "SELECT id, event_types FROM webhook_endpoints
              WHERE product_id = $1 AND enabled AND ($2::uuid IS NULL OR id = $2)",
            &[&event.product_id, &only],
        )
        .await?;
    let targets: Vec<Uuid> = endpoints
        .iter()
        .filter(|r| {
            only.is_some()
                || r.get::<_, Vec<String>>(1)
                    .iter()
                    .any(|pattern| subscribed(pattern, event.event_type))
        })
        .map(|r| r.get(0))
        .collect();
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = targets.iter().map(|_| Uuid::now_v7()).collect();
    let rows = txn
        .query(
            "INSERT INTO deliveries (id, event_id, endpoint_id, status, next_attempt_at)
             SELECT d, $1, e, 'pending', now() FROM unnest($2::uuid[], $3::uuid[]) AS x(d, e)
             ON CONFLICT (event_id, endpoint_id) DO NOTHING RETURNING id",
            &[&event.id, &ids, &targets],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
