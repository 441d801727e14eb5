//! Conversation outcome summaries: what each stored event contributes, moved when a newer
//! mapper version replaces it.

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::Transaction;
use gf_schemas::attributed::AttributedEvent;
use serde_json::{Value, json};
use uuid::Uuid;

use super::events::{numeric_value, wire_name};
use super::{StoreError, execute, query};

/// What one stored event adds to its conversation's outcome summary.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Contribution {
    conversation_id: Option<Uuid>,
    product_id: Uuid,
    influence: String,
    value: Option<f64>,
}

impl Contribution {
    pub(super) fn of(a: &AttributedEvent) -> Self {
        Contribution {
            conversation_id: a.conversation_id,
            product_id: a.event.product_id,
            influence: wire_name(&a.event.influence),
            value: numeric_value(&a.event),
        }
    }
}

/// The outcome summary changes of one batch, per conversation.
#[derive(Debug, Default)]
pub(super) struct OutcomeDeltas(BTreeMap<Uuid, (Uuid, [i64; 4], [f64; 4])>);

impl OutcomeDeltas {
    /// Adds (`sign` 1) or removes (`sign` -1) one event's contribution.
    pub(super) fn add(&mut self, c: &Contribution, sign: i64) {
        let Some(conversation) = c.conversation_id else {
            return;
        };
        let slot = match c.influence.as_str() {
            "positive" => 1,
            "negative" => 2,
            _ => 3,
        };
        let (_, counts, values) =
            self.0
                .entry(conversation)
                .or_insert((c.product_id, [0; 4], [0.0; 4]));
        let value = c.value.unwrap_or(0.0) * sign as f64;
        counts[0] += sign;
        counts[slot] += sign;
        values[0] += value;
        values[slot] += value;
    }
}

/// The contribution of each already-stored event, to move it when a newer mapper version
/// replaces the row.
pub(super) async fn previous_contributions(
    txn: &Transaction<'_>,
    events: &[AttributedEvent],
) -> Result<HashMap<Uuid, Contribution>, StoreError> {
    let ids: Vec<Uuid> = events.iter().map(|a| a.event.id).collect();
    let rows = query(
        txn,
        "SELECT id, conversation_id, product_id, influence, numeric_value
               FROM business_events WHERE id = ANY($1)",
        &[&ids],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let contribution = Contribution {
                conversation_id: r.get(1),
                product_id: r.get(2),
                influence: r.get(3),
                value: r.get(4),
            };
            (r.get(0), contribution)
        })
        .collect())
}

/// Applies the batch's changes to the outcome summaries. Each row is updated relative to its
/// latest committed state under the row lock the upsert takes, so concurrent attributors add up.
pub(super) async fn update_outcomes(
    txn: &Transaction<'_>,
    deltas: OutcomeDeltas,
) -> Result<(), StoreError> {
    if deltas.0.is_empty() {
        return Ok(());
    }
    let rows: Vec<Value> = deltas
        .0
        .iter()
        .map(|(conversation, (product, n, v))| {
            json!({"conversation_id": conversation, "product_id": product,
                   "events": n[0], "positive_events": n[1], "negative_events": n[2],
                   "neutral_events": n[3], "total_value": v[0], "positive_value": v[1],
                   "negative_value": v[2], "neutral_value": v[3]})
        })
        .collect();
    execute(
        txn,
        "INSERT INTO conversation_outcomes AS o (conversation_id, product_id, events,
             positive_events, negative_events, neutral_events, positive_value, negative_value,
             neutral_value, total_value)
         SELECT conversation_id, product_id, events, positive_events, negative_events,
                neutral_events, positive_value, negative_value, neutral_value, total_value
           FROM jsonb_to_recordset($1::jsonb) AS x(conversation_id uuid, product_id uuid,
                events integer, positive_events integer, negative_events integer,
                neutral_events integer, positive_value double precision,
                negative_value double precision, neutral_value double precision,
                total_value double precision)
         ON CONFLICT (conversation_id) DO UPDATE SET
             events = o.events + EXCLUDED.events,
             positive_events = o.positive_events + EXCLUDED.positive_events,
             negative_events = o.negative_events + EXCLUDED.negative_events,
             neutral_events = o.neutral_events + EXCLUDED.neutral_events,
             positive_value = o.positive_value + EXCLUDED.positive_value,
             negative_value = o.negative_value + EXCLUDED.negative_value,
             neutral_value = o.neutral_value + EXCLUDED.neutral_value,
             total_value = o.total_value + EXCLUDED.total_value,
             updated_at = now()",
        &[&Value::Array(rows)],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contribution(
        conversation: Option<u128>,
        influence: &str,
        value: Option<f64>,
    ) -> Contribution {
        Contribution {
            conversation_id: conversation.map(Uuid::from_u128),
            product_id: Uuid::from_u128(9),
            influence: influence.into(),
            value,
        }
    }

    #[test]
    fn deltas_count_per_influence_and_a_replaced_event_moves() {
        let mut deltas = OutcomeDeltas::default();
        deltas.add(&contribution(Some(1), "positive", Some(49.0)), 1);
        deltas.add(&contribution(Some(1), "negative", Some(-5.0)), 1);
        deltas.add(&contribution(Some(1), "neutral", None), 1);
        // A newer mapper version turns the first event negative: out with the old, in with the new.
        deltas.add(&contribution(Some(1), "positive", Some(49.0)), -1);
        deltas.add(&contribution(Some(1), "negative", Some(-49.0)), 1);
        // No conversation, no summary.
        deltas.add(&contribution(None, "positive", Some(1.0)), 1);
        let (product, counts, values) = deltas.0[&Uuid::from_u128(1)];
        assert_eq!(product, Uuid::from_u128(9));
        assert_eq!(counts, [3, 0, 2, 1]);
        assert_eq!(values, [-54.0, 0.0, -54.0, 0.0]);
        assert_eq!(deltas.0.len(), 1);
    }
}
