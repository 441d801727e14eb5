//! Turning signals and conversation starts into webhook events and deliveries, in the caller's
//! transaction: the rule state, the event and its deliveries commit together or not at all.

use chrono::{DateTime, SecondsFormat, Utc};
use deadpool_postgres::Transaction;
use gf_schemas::conversation::{ConversationKind, ConversationMessage};
use gf_schemas::signal::Signal;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::rules::{self, Evaluation, EventType};

/// Namespace of webhook event ids (UUIDv5 over what caused the event).
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6766_2d77_6562_686f_6f6b_2d65_7674_0001);

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

/// `conversation.started` for a start message; once per conversation, whatever is redelivered.
pub fn conversation_started(message: &ConversationMessage) -> Option<WebhookEvent> {
    if message.kind != ConversationKind::Started {
        return None;
    }
    let cause = format!(
        "started:{}:{}",
        message.product_id, message.external_conversation_id
    );
    Some(WebhookEvent {
        id: Uuid::new_v5(&EVENT_ID_NAMESPACE, cause.as_bytes()),
        product_id: message.product_id,
        event_type: EventType::ConversationStarted,
        created_at: message.occurred_at,
        data: json!({
            "externalConversationId": message.external_conversation_id,
            "externalUserId": message.external_user_id,
            "startedAt": message.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        }),
        traceparent: None,
    })
}

/// Evaluates a signal against its rule state (kept in `notifier_rule_state`, updated here);
/// returns the event to record when the rule fires.
pub async fn evaluate_signal(
    txn: &Transaction<'_>,
    signal: &Signal,
) -> Result<Option<WebhookEvent>, tokio_postgres::Error> {
    let Some((event_type, entity)) = rules::subject(signal) else {
        return Ok(None);
    };
    let previously = txn
        .query_opt(
            "SELECT breached FROM notifier_rule_state
              WHERE product_id = $1 AND entity = $2 AND event_type = $3 FOR UPDATE",
            &[&signal.product_id, &entity, &event_type.as_str()],
        )
        .await?
        .is_some_and(|r| r.get::<_, bool>(0));
    let Some(Evaluation {
        fire,
        breached,
        data,
        ..
    }) = rules::evaluate(signal, previously)
    else {
        return Ok(None);
    };
    if let Some(breached) = breached {
        txn.execute(
            "INSERT INTO notifier_rule_state (product_id, entity, event_type, breached)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (product_id, entity, event_type)
             DO UPDATE SET breached = EXCLUDED.breached, updated_at = now()",
            &[&signal.product_id, &entity, &event_type.as_str(), &breached],
        )
        .await?;
    }
    if !fire {
        return Ok(None);
    }
    let cause = format!("signal:{}:{}", signal.id, event_type.as_str());
    Ok(Some(WebhookEvent {
        id: Uuid::new_v5(&EVENT_ID_NAMESPACE, cause.as_bytes()),
        product_id: signal.product_id,
        event_type,
        created_at: signal.occurred_at,
        data,
        traceparent: None,
    }))
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
                    .any(|pattern| rules::subscribed(pattern, event.event_type))
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_conversation_starts_once_whatever_is_redelivered() {
        let message = ConversationMessage {
            id: Uuid::from_u128(1),
            kind: ConversationKind::Started,
            product_id: Uuid::from_u128(2),
            external_conversation_id: "c1".into(),
            external_user_id: Some("u1".into()),
            email: None,
            name: None,
            occurred_at: Utc.with_ymd_and_hms(2026, 5, 18, 12, 0, 0).unwrap(),
            role: None,
            metadata: Default::default(),
        };
        let first = conversation_started(&message).unwrap();
        let again = conversation_started(&ConversationMessage {
            id: Uuid::from_u128(9),
            ..message.clone()
        })
        .unwrap();
        assert_eq!(first.id, again.id);
        let payload = first.payload();
        assert_eq!(payload["type"], "conversation.started");
        assert_eq!(payload["createdAt"], "2026-05-18T12:00:00.000Z");
        assert_eq!(payload["data"]["externalConversationId"], "c1");
        let message = ConversationMessage {
            kind: ConversationKind::Message,
            ..message
        };
        assert_eq!(conversation_started(&message), None);
    }
}
