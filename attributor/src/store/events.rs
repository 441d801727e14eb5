//! Business events: upserted by (product, insert id); a newer mapper version replaces the row.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use gf_schemas::attributed::AttributedEvent;
use gf_schemas::canonical::{CanonicalEvent, EventValue};
use serde_json::Value;
use uuid::Uuid;

use super::{StoreError, query};

/// Inserts new events and replaces those stored by an older mapper version; returns the id of
/// each row written and whether it was inserted (not replaced). The id stands for (product,
/// insert id): see [`CanonicalEvent::derive_id`].
pub(super) async fn upsert_events(
    txn: &Transaction<'_>,
    events: &[AttributedEvent],
) -> Result<HashMap<Uuid, bool>, StoreError> {
    if events.is_empty() {
        return Ok(HashMap::new());
    }
    let mut sorted: Vec<&AttributedEvent> = events.iter().collect();
    sorted.sort_by_key(|a| a.event.id);
    // Typed arrays in PostgreSQL's binary format: far cheaper to decode than JSON rows.
    let c = EventColumns::of(&sorted);
    let written = query(
        txn,
        "INSERT INTO business_events (id, product_id, connection_id, insert_id, source,
                 event_type, event_at, received_at, external_user_id, external_organization_id,
                 external_conversation_id, value, value_type, numeric_value, influence,
                 influence_rule, quality_impact_score, properties, user_hints, organization_hints,
                 warnings, user_id, organization_id, conversation_id, user_resolution,
                 organization_resolution, conversation_resolution, mapper_version, raw_topic,
                 raw_partition, raw_offset, raw_index)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                 $6::text[], $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[],
                 $11::text[], $12::jsonb[], $13::text[], $14::float8[], $15::text[], $16::text[],
                 $17::float8[], $18::jsonb[], $19::jsonb[], $20::jsonb[], $21::jsonb[],
                 $22::uuid[], $23::uuid[], $24::uuid[], $25::text[], $26::text[], $27::text[],
                 $28::int4[], $29::text[], $30::int4[], $31::int8[], $32::int4[])
             ON CONFLICT (id) DO UPDATE SET
                 connection_id = EXCLUDED.connection_id, source = EXCLUDED.source,
                 event_type = EXCLUDED.event_type, event_at = EXCLUDED.event_at,
                 received_at = EXCLUDED.received_at,
                 external_user_id = EXCLUDED.external_user_id,
                 external_organization_id = EXCLUDED.external_organization_id,
                 external_conversation_id = EXCLUDED.external_conversation_id,
                 value = EXCLUDED.value, value_type = EXCLUDED.value_type,
                 numeric_value = EXCLUDED.numeric_value, influence = EXCLUDED.influence,
                 influence_rule = EXCLUDED.influence_rule,
                 quality_impact_score = EXCLUDED.quality_impact_score,
                 properties = EXCLUDED.properties, user_hints = EXCLUDED.user_hints,
                 organization_hints = EXCLUDED.organization_hints, warnings = EXCLUDED.warnings,
                 user_id = EXCLUDED.user_id, organization_id = EXCLUDED.organization_id,
                 conversation_id = EXCLUDED.conversation_id,
                 user_resolution = EXCLUDED.user_resolution,
                 organization_resolution = EXCLUDED.organization_resolution,
                 conversation_resolution = EXCLUDED.conversation_resolution,
                 mapper_version = EXCLUDED.mapper_version, raw_topic = EXCLUDED.raw_topic,
                 raw_partition = EXCLUDED.raw_partition, raw_offset = EXCLUDED.raw_offset,
                 raw_index = EXCLUDED.raw_index, attributed_at = now()
               WHERE business_events.mapper_version < EXCLUDED.mapper_version
             RETURNING id, xmax = 0",
        &[
            &c.id,
            &c.product_id,
            &c.connection_id,
            &c.insert_id,
            &c.source,
            &c.event_type,
            &c.event_at,
            &c.received_at,
            &c.external_user_id,
            &c.external_organization_id,
            &c.external_conversation_id,
            &c.value,
            &c.value_type,
            &c.numeric_value,
            &c.influence,
            &c.influence_rule,
            &c.quality_impact_score,
            &c.properties,
            &c.user_hints,
            &c.organization_hints,
            &c.warnings,
            &c.user_id,
            &c.organization_id,
            &c.conversation_id,
            &c.user_resolution,
            &c.organization_resolution,
            &c.conversation_resolution,
            &c.mapper_version,
            &c.raw_topic,
            &c.raw_partition,
            &c.raw_offset,
            &c.raw_index,
        ],
    )
    .await?;
    // A row version an upsert inserted has no xmax; one that replaced a row carries the lock
    // its update took.
    Ok(written.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// `business_events` rows as one array per column.
#[derive(Default)]
struct EventColumns {
    id: Vec<Uuid>,
    product_id: Vec<Uuid>,
    connection_id: Vec<Uuid>,
    insert_id: Vec<String>,
    source: Vec<&'static str>,
    event_type: Vec<String>,
    event_at: Vec<DateTime<Utc>>,
    received_at: Vec<DateTime<Utc>>,
    external_user_id: Vec<Option<String>>,
    external_organization_id: Vec<Option<String>>,
    external_conversation_id: Vec<Option<String>>,
    value: Vec<Option<Value>>,
    value_type: Vec<Option<String>>,
    numeric_value: Vec<Option<f64>>,
    influence: Vec<String>,
    influence_rule: Vec<String>,
    quality_impact_score: Vec<Option<f64>>,
    properties: Vec<Value>,
    user_hints: Vec<Value>,
    organization_hints: Vec<Value>,
    warnings: Vec<Value>,
    user_id: Vec<Option<Uuid>>,
    organization_id: Vec<Option<Uuid>>,
    conversation_id: Vec<Option<Uuid>>,
    user_resolution: Vec<String>,
    organization_resolution: Vec<String>,
    conversation_resolution: Vec<String>,
    mapper_version: Vec<i32>,
    raw_topic: Vec<String>,
    raw_partition: Vec<i32>,
    raw_offset: Vec<i64>,
    raw_index: Vec<i32>,
}

impl EventColumns {
    fn of(events: &[&AttributedEvent]) -> Self {
        let mut c = EventColumns::default();
        for a in events {
            let e = &a.event;
            c.id.push(e.id);
            c.product_id.push(e.product_id);
            c.connection_id.push(e.connection_id);
            c.insert_id.push(e.insert_id.clone());
            c.source.push(e.source.as_str());
            c.event_type.push(e.event_type.clone());
            c.event_at.push(e.event_at);
            c.received_at.push(e.received_at);
            c.external_user_id.push(e.external_user_id.clone());
            c.external_organization_id
                .push(e.external_organization_id.clone());
            c.external_conversation_id
                .push(e.external_conversation_id.clone());
            c.value.push(e.value.as_ref().map(to_json));
            c.value_type.push(e.value_type.as_ref().map(wire_name));
            c.numeric_value.push(numeric_value(e));
            c.influence.push(wire_name(&e.influence));
            c.influence_rule.push(wire_name(&e.influence_rule));
            c.quality_impact_score.push(e.quality_impact_score);
            c.properties.push(Value::Object(e.properties.clone()));
            c.user_hints.push(to_json(&e.user_hints));
            c.organization_hints.push(to_json(&e.organization_hints));
            c.warnings.push(to_json(&e.warnings));
            c.user_id.push(a.user_id);
            c.organization_id.push(a.organization_id);
            c.conversation_id.push(a.conversation_id);
            c.user_resolution.push(wire_name(&a.resolution.user));
            c.organization_resolution
                .push(wire_name(&a.resolution.organization));
            c.conversation_resolution
                .push(wire_name(&a.resolution.conversation));
            // Mapper versions are small counters; one past i32 would be a bug upstream.
            c.mapper_version
                .push(i32::try_from(e.mapper_version).unwrap_or(i32::MAX));
            c.raw_topic.push(e.origin.topic.clone());
            c.raw_partition.push(e.origin.partition);
            c.raw_offset.push(e.origin.offset);
            c.raw_index
                .push(i32::try_from(e.origin.index).unwrap_or(i32::MAX));
        }
        c
    }
}

/// A serializable value as JSON; our own types always serialize.
fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The value when it is a number, for sums.
pub(super) fn numeric_value(e: &CanonicalEvent) -> Option<f64> {
    match e.value {
        Some(EventValue::Number(n)) if n.is_finite() => Some(n),
        _ => None,
    }
}

/// An enum's wire name, for text columns (strum's, the same as serde's: a schemas test holds
/// them equal).
pub(super) fn wire_name<T: Copy + Into<&'static str>>(value: &T) -> String {
    let name: &'static str = (*value).into();
    name.to_owned()
}
