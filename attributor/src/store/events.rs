//! Business events: upserted by (product, insert id); a newer mapper version replaces the row.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use gf_schemas::attributed::AttributedEvent;
use gf_schemas::canonical::{CanonicalEvent, EventValue};
use serde_json::Value;
use uuid::Uuid;

use super::{StoreError, execute, query};

/// What [`upsert_events`] wrote.
#[derive(Debug, Default)]
pub(super) struct Upserted {
    /// Events that were not stored before.
    pub inserted: HashSet<Uuid>,
    /// Events that replaced a row of an older mapper version, with the conversation that row
    /// was in (read under the row's lock, so it is the conversation that counted it).
    pub replaced: HashMap<Uuid, Option<Uuid>>,
}

const COLUMNS: &str = "id, product_id, connection_id, insert_id, source, event_type, event_at,
    received_at, external_user_id, external_organization_id, external_conversation_id, value,
    value_type, numeric_value, influence, influence_rule, quality_impact_score, properties,
    user_hints, organization_hints, warnings, user_id, organization_id, conversation_id,
    user_resolution, organization_resolution, conversation_resolution, mapper_version, raw_topic,
    raw_partition, raw_offset, raw_index";

const ARRAYS: &str = "unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
    $6::text[], $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::text[],
    $12::jsonb[], $13::text[], $14::float8[], $15::text[], $16::text[], $17::float8[],
    $18::jsonb[], $19::jsonb[], $20::jsonb[], $21::jsonb[], $22::uuid[], $23::uuid[],
    $24::uuid[], $25::text[], $26::text[], $27::text[], $28::int4[], $29::text[], $30::int4[],
    $31::int8[], $32::int4[])";

/// Inserts new events and replaces those stored by an older mapper version. The id stands for
/// (product, insert id): see [`CanonicalEvent::derive_id`]. `events` hold one entry per id.
///
/// The ids already stored are locked and read first, so the conversation a replaced row leaves
/// is the one that counted it, even when another attributor moved that row a moment before;
/// the rest go in by a plain insert. That costs one index probe per event, which the insert's
/// own conflict check (`ON CONFLICT`) cost too, and saves the speculative insertion: about a
/// third of the statement's time and 48 bytes of WAL per event. A row another attributor
/// inserted after the read makes the insert fail, and the transaction runs again.
pub(super) async fn upsert_events(
    txn: &Transaction<'_>,
    events: &[AttributedEvent],
) -> Result<Upserted, StoreError> {
    let mut upserted = Upserted::default();
    if events.is_empty() {
        return Ok(upserted);
    }
    let mut sorted: Vec<&AttributedEvent> = events.iter().collect();
    sorted.sort_by_key(|a| a.event.id);
    sorted.dedup_by_key(|a| a.event.id);
    let ids: Vec<Uuid> = sorted.iter().map(|a| a.event.id).collect();
    let held: HashMap<Uuid, (Option<Uuid>, i32)> = query(
        txn,
        "SELECT id, conversation_id, mapper_version FROM business_events
          WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&ids],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2))))
    .collect();
    let (stored, fresh): (Vec<&AttributedEvent>, Vec<&AttributedEvent>) = sorted
        .into_iter()
        .partition(|a| held.contains_key(&a.event.id));
    if !fresh.is_empty() {
        // Typed arrays in PostgreSQL's binary format: far cheaper to decode than JSON rows.
        let columns = EventColumns::of(&fresh);
        execute(
            txn,
            &format!("INSERT INTO business_events ({COLUMNS}) SELECT * FROM {ARRAYS}"),
            &columns.params(),
        )
        .await
        .map_err(|e| {
            e.on_unique_violation("an event of this batch was stored by another writer")
        })?;
        upserted.inserted = fresh.iter().map(|a| a.event.id).collect();
    }
    let newer: Vec<&AttributedEvent> = stored
        .into_iter()
        .filter(|a| {
            held.get(&a.event.id)
                .is_some_and(|(_, version)| *version < mapper_version(a))
        })
        .collect();
    if newer.is_empty() {
        return Ok(upserted);
    }
    let columns = EventColumns::of(&newer);
    let replaced = query(
        txn,
        &format!(
            "UPDATE business_events b SET
                 connection_id = x.connection_id, source = x.source, event_type = x.event_type,
                 event_at = x.event_at, received_at = x.received_at,
                 external_user_id = x.external_user_id,
                 external_organization_id = x.external_organization_id,
                 external_conversation_id = x.external_conversation_id,
                 value = x.value, value_type = x.value_type, numeric_value = x.numeric_value,
                 influence = x.influence, influence_rule = x.influence_rule,
                 quality_impact_score = x.quality_impact_score, properties = x.properties,
                 user_hints = x.user_hints, organization_hints = x.organization_hints,
                 warnings = x.warnings, user_id = x.user_id, organization_id = x.organization_id,
                 conversation_id = x.conversation_id, user_resolution = x.user_resolution,
                 organization_resolution = x.organization_resolution,
                 conversation_resolution = x.conversation_resolution,
                 mapper_version = x.mapper_version, raw_topic = x.raw_topic,
                 raw_partition = x.raw_partition, raw_offset = x.raw_offset,
                 raw_index = x.raw_index, attributed_at = now()
               FROM {ARRAYS} AS x({COLUMNS})
              WHERE b.id = x.id AND b.mapper_version < x.mapper_version
             RETURNING b.id"
        ),
        &columns.params(),
    )
    .await?;
    upserted.replaced = replaced
        .iter()
        .map(|r| {
            let id: Uuid = r.get(0);
            (
                id,
                held.get(&id).and_then(|(conversation, _)| *conversation),
            )
        })
        .collect();
    Ok(upserted)
}

/// Mapper versions are small counters; one past i32 would be a bug upstream.
fn mapper_version(a: &AttributedEvent) -> i32 {
    i32::try_from(a.event.mapper_version).unwrap_or(i32::MAX)
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
    /// The 32 arrays as statement parameters, in [`COLUMNS`] order.
    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 32] {
        [
            &self.id,
            &self.product_id,
            &self.connection_id,
            &self.insert_id,
            &self.source,
            &self.event_type,
            &self.event_at,
            &self.received_at,
            &self.external_user_id,
            &self.external_organization_id,
            &self.external_conversation_id,
            &self.value,
            &self.value_type,
            &self.numeric_value,
            &self.influence,
            &self.influence_rule,
            &self.quality_impact_score,
            &self.properties,
            &self.user_hints,
            &self.organization_hints,
            &self.warnings,
            &self.user_id,
            &self.organization_id,
            &self.conversation_id,
            &self.user_resolution,
            &self.organization_resolution,
            &self.conversation_resolution,
            &self.mapper_version,
            &self.raw_topic,
            &self.raw_partition,
            &self.raw_offset,
            &self.raw_index,
        ]
    }

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
            c.mapper_version.push(mapper_version(a));
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
