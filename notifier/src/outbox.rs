//! Turning signals and conversation starts into webhook events and deliveries, in the caller's
//! transaction: the rule state, the event and its deliveries ([`gf_webhooks::events::record`])
//! commit together or not at all.

use chrono::SecondsFormat;
use deadpool_postgres::Transaction;
use gf_schemas::conversation::{ConversationKind, ConversationMessage};
use gf_schemas::signal::Signal;
use serde_json::json;
use uuid::Uuid;

use gf_webhooks::EventType;
use gf_webhooks::events::{EVENT_ID_NAMESPACE, WebhookEvent};

use crate::rules::{self, Evaluation};

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

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

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
