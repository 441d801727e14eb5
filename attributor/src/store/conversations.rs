//! Conversations: the SDK's activity, conversations named by `gf_conversation_id`, and the
//! 15-minute window decided by event time.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use gf_schemas::canonical::CanonicalEvent;
use gf_schemas::conversation::{ConversationKind, ConversationMessage};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{CONVERSATION_WINDOW, StoreError, all_found, execute, explicit_key, ids_by_key, query};

/// Upserts the conversations the SDK reported and records each message's time, which the
/// 15-minute window is decided against; returns the conversations' ids.
pub(super) async fn record_conversation_activity(
    txn: &Transaction<'_>,
    messages: &[ConversationMessage],
    users: &[(Option<Uuid>, gf_schemas::attributed::UserResolution)],
) -> Result<Vec<Uuid>, StoreError> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    // One row per conversation, merged over the batch, in key order.
    let mut conversations: BTreeMap<(Uuid, &str), Value> = BTreeMap::new();
    let mut activity = Vec::with_capacity(messages.len());
    for (message, (user_id, _)) in messages.iter().zip(users) {
        let at = message.occurred_at;
        let started = (message.kind == ConversationKind::Started).then_some(at);
        let ended = (message.kind == ConversationKind::Ended).then_some(at);
        let row = conversations
            .entry((message.product_id, &message.external_conversation_id))
            .or_insert_with(|| {
                json!({"id": Uuid::now_v7(), "product_id": message.product_id,
                       "external_conversation_id": message.external_conversation_id,
                       "user_id": null, "started_at": null, "ended_at": null,
                       "last_activity_at": at})
            });
        merge_time(row, "started_at", started, |a, b| a.min(b));
        merge_time(row, "ended_at", ended, |a, b| a.max(b));
        merge_time(row, "last_activity_at", Some(at), |a, b| a.max(b));
        if row["user_id"].is_null()
            && let Some(user) = user_id
        {
            row["user_id"] = json!(user);
        }
        activity.push(
            json!({"message_id": message.id, "product_id": message.product_id,
            "external_conversation_id": message.external_conversation_id,
            "user_id": user_id, "kind": <&str>::from(message.kind), "occurred_at": at}),
        );
    }
    let recorded = query(
        txn,
        "INSERT INTO conversations (id, product_id, external_conversation_id, user_id, started_at,
                                    ended_at, last_activity_at, created_from)
         SELECT id, product_id, external_conversation_id, user_id, started_at, ended_at,
                last_activity_at, 'sdk'
           FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, product_id uuid,
                external_conversation_id text, user_id uuid, started_at timestamptz,
                ended_at timestamptz, last_activity_at timestamptz)
         ON CONFLICT (product_id, external_conversation_id) DO UPDATE SET
             user_id = COALESCE(conversations.user_id, EXCLUDED.user_id),
             started_at = LEAST(conversations.started_at, EXCLUDED.started_at),
             ended_at = GREATEST(conversations.ended_at, EXCLUDED.ended_at),
             last_activity_at = GREATEST(conversations.last_activity_at, EXCLUDED.last_activity_at)
         RETURNING id",
        &[&Value::Array(conversations.into_values().collect())],
    )
    .await?;
    execute(
        txn,
        "INSERT INTO conversation_activity (message_id, conversation_id, product_id, user_id, kind,
                                            occurred_at)
         SELECT x.message_id, c.id, x.product_id, COALESCE(x.user_id, c.user_id), x.kind,
                x.occurred_at
           FROM jsonb_to_recordset($1::jsonb) AS x(message_id uuid, product_id uuid,
                external_conversation_id text, user_id uuid, kind text, occurred_at timestamptz)
           JOIN conversations c ON c.product_id = x.product_id
                               AND c.external_conversation_id = x.external_conversation_id
         ON CONFLICT (message_id) DO NOTHING",
        &[&Value::Array(activity)],
    )
    .await?;
    Ok(recorded.iter().map(|r| r.get(0)).collect())
}

fn merge_time(
    row: &mut Value,
    field: &str,
    time: Option<DateTime<Utc>>,
    pick: fn(DateTime<Utc>, DateTime<Utc>) -> DateTime<Utc>,
) {
    let Some(time) = time else { return };
    let current = serde_json::from_value::<Option<DateTime<Utc>>>(row[field].clone())
        .ok()
        .flatten();
    row[field] = json!(current.map_or(time, |c| pick(c, time)));
}

/// Conversations named by `gf_conversation_id`, created when the conversation stream has not
/// delivered them yet; returns their ids.
pub(super) async fn upsert_explicit_conversations(
    txn: &Transaction<'_>,
    events: &[&CanonicalEvent],
    users: &[(Option<Uuid>, gf_schemas::attributed::UserResolution)],
) -> Result<HashMap<(Uuid, String), Uuid>, StoreError> {
    let mut rows: BTreeMap<(Uuid, String), Value> = BTreeMap::new();
    for (event, (user, _)) in events.iter().zip(users) {
        let Some(key) = explicit_key(event) else {
            continue;
        };
        let row = rows.entry(key.clone()).or_insert_with(|| {
            json!({"id": Uuid::now_v7(), "product_id": key.0,
                   "external_conversation_id": key.1, "user_id": null})
        });
        if row["user_id"].is_null()
            && let Some(user) = user
        {
            row["user_id"] = json!(user);
        }
    }
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    let keys: Vec<(Uuid, String)> = rows.keys().cloned().collect();
    // Written only when new or gaining its user; otherwise read.
    let found = query(
        txn,
        "WITH x AS (
             SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, product_id uuid,
                  external_conversation_id text, user_id uuid)),
         written AS (
             INSERT INTO conversations (id, product_id, external_conversation_id, user_id,
                                        created_from)
             SELECT id, product_id, external_conversation_id, user_id, 'analytics' FROM x
             ON CONFLICT (product_id, external_conversation_id) DO UPDATE SET
                 user_id = EXCLUDED.user_id
               WHERE conversations.user_id IS NULL AND EXCLUDED.user_id IS NOT NULL
             RETURNING id, product_id, external_conversation_id)
         SELECT id, product_id, external_conversation_id FROM written
         UNION ALL
         SELECT c.id, c.product_id, c.external_conversation_id
           FROM conversations c JOIN x ON c.product_id = x.product_id
                                      AND c.external_conversation_id = x.external_conversation_id",
        &[&Value::Array(rows.into_values().collect())],
    )
    .await?;
    all_found(ids_by_key(&found), &keys, "conversation")
}

/// For each event with a user and no explicit conversation: the user's conversation in the
/// product with the latest activity at or before the event time and at most 15 minutes before.
/// Keyed by the event's position.
pub(super) async fn conversations_in_window(
    txn: &Transaction<'_>,
    events: &[&CanonicalEvent],
    users: &[(Option<Uuid>, gf_schemas::attributed::UserResolution)],
    explicit: &HashMap<(Uuid, String), Uuid>,
) -> Result<HashMap<usize, Uuid>, StoreError> {
    let (mut positions, mut products, mut user_ids, mut times) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, (event, (user, _))) in events.iter().zip(users).enumerate() {
        let named = explicit_key(event).is_some_and(|k| explicit.contains_key(&k));
        if let (false, Some(user)) = (named, user) {
            positions.push(i as i32);
            products.push(event.product_id);
            user_ids.push(*user);
            times.push(event.event_at);
        }
    }
    if positions.is_empty() {
        return Ok(HashMap::new());
    }
    let window = format!("{} seconds", CONVERSATION_WINDOW.num_seconds());
    let found = query(
        txn,
        "SELECT x.i, a.conversation_id
           FROM unnest($1::int4[], $2::uuid[], $3::uuid[], $4::timestamptz[])
                AS x(i, product_id, user_id, event_at)
           CROSS JOIN LATERAL (
               SELECT conversation_id FROM conversation_activity a
                WHERE a.product_id = x.product_id AND a.user_id = x.user_id
                  AND a.occurred_at <= x.event_at
                  AND a.occurred_at >= x.event_at - $5::text::interval
                ORDER BY a.occurred_at DESC, a.conversation_id
                LIMIT 1) a",
        &[&positions, &products, &user_ids, &times, &window],
    )
    .await?;
    Ok(found
        .iter()
        .map(|r| (r.get::<_, i32>(0) as usize, r.get(1)))
        .collect())
}
