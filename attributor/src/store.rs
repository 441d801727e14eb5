//! Writing a batch in one PostgreSQL transaction: conversation activity, users, organizations,
//! conversation links, business events and the outcome summaries, then publishing what changed
//! before the commit (so an offset is only ever committed for published, committed work).
//!
//! Every statement works on the whole batch at once (`jsonb_to_recordset`), so a batch of a
//! thousand events costs a dozen round trips. Rows are written in key order so concurrent
//! attributors lock in the same order; a deadlock, or a new user another writer created first,
//! rolls the transaction back and runs it again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::{GenericClient, Pool, Transaction};
use gf_runtime::classify::Class;
use gf_runtime::pipeline::OutputError;
use gf_runtime::stage::StageError;
use gf_schemas::attributed::{
    AttributedEvent, ConversationResolution, OrganizationResolution, Resolution,
};
use gf_schemas::canonical::{CanonicalEvent, EventValue};
use gf_schemas::conversation::{ConversationKind, ConversationMessage};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::resolve::{Identity, KnownUser, Origin, created_from, email_key, lookup_keys, plan};

/// How far back an event looks for its user's conversation.
pub const CONVERSATION_WINDOW: Duration = Duration::minutes(15);
/// Transaction attempts before a deadlock or creation race is reported.
const ATTEMPTS: usize = 8;

/// What one transaction writes.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub conversations: Vec<ConversationMessage>,
    pub events: Vec<CanonicalEvent>,
}

/// What a committed batch did.
#[derive(Debug, Default)]
pub struct Written {
    /// Events inserted or replaced (by a newer mapper version), as published.
    pub attributed: Vec<AttributedEvent>,
    /// Events already stored with the same or a newer mapper version.
    pub unchanged: usize,
    pub users_created: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL failed, classified once ([`gf_runtime::classify`]): an outage or a refusal.
    #[error(transparent)]
    Postgres(StageError),
    #[error("attributed events were not published: {0}")]
    Publish(#[from] OutputError),
    /// A deadlock or a concurrent creation of the same user: the transaction can simply run again.
    #[error("conflict with a concurrent writer: {0}")]
    Conflict(String),
}

impl StoreError {
    /// Whether PostgreSQL refused the data itself (retrying the same batch cannot help).
    pub fn is_refusal(&self) -> bool {
        matches!(self, StoreError::Postgres(e) if e.class == Class::Refused)
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let e = StageError::from(e);
        match e.class {
            Class::Conflict => StoreError::Conflict(e.message),
            _ => StoreError::Postgres(e),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => StoreError::Postgres(other.into()),
        }
    }
}

/// Publishes attributed events; called inside the transaction, before the commit.
pub trait Publisher {
    fn publish(&self, events: &[AttributedEvent]) -> impl Future<Output = Result<(), OutputError>>;
}

/// For callers that only want the rows (tests, tools).
pub struct NoPublish;

impl Publisher for NoPublish {
    async fn publish(&self, _: &[AttributedEvent]) -> Result<(), OutputError> {
        Ok(())
    }
}

/// The products among `ids` that exist.
pub async fn known_products(pool: &Pool, ids: &[Uuid]) -> Result<HashSet<Uuid>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query("SELECT id FROM products WHERE id = ANY($1)", &[&ids])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Writes a batch in one transaction, publishing what changed before committing; runs the
/// transaction again after a deadlock or a creation race.
pub async fn write(
    pool: &Pool,
    batch: &Batch,
    publisher: &impl Publisher,
) -> Result<Written, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut client = pool.get().await?;
        let txn = client.transaction().await?;
        let result = match attribute(&txn, batch).await {
            Ok(written) => match publisher.publish(&written.attributed).await {
                Ok(()) => txn.commit().await.map(|()| written).map_err(Into::into),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e),
        };
        match result {
            Err(StoreError::Conflict(reason)) if attempt < ATTEMPTS => {
                tracing::debug!(attempt, %reason, "attribution transaction conflicted; running it again");
            }
            other => return other,
        }
    }
}

/// Everything one batch writes, inside `txn`; returns the events that changed.
async fn attribute(txn: &Transaction<'_>, batch: &Batch) -> Result<Written, StoreError> {
    let events = latest_versions(&batch.events);

    // Users: every identity of the batch, conversation messages first (the SDK's identity is
    // authoritative), resolved against one lookup.
    let mut identities: Vec<Identity<'_>> = batch
        .conversations
        .iter()
        .map(|m| Identity {
            product_id: m.product_id,
            external_user_id: m.external_user_id.as_deref(),
            email: m.email.as_deref(),
            name: m.name.as_deref(),
            origin: Origin::Sdk,
        })
        .collect();
    identities.extend(events.iter().map(|e| Identity {
        product_id: e.product_id,
        external_user_id: e.external_user_id.as_deref(),
        email: e.user_hints.email.as_deref(),
        name: e.user_hints.name.as_deref(),
        origin: Origin::Analytics(e.source),
    }));
    let known = lookup_users(txn, &identities).await?;
    let mut plan = plan(&identities, &known);
    insert_users(txn, &mut plan.new_users).await?;
    let (message_users, event_users) = plan.resolved.split_at(batch.conversations.len());

    record_conversation_activity(txn, &batch.conversations, message_users).await?;

    let organizations = upsert_organizations(txn, &events).await?;
    let current: HashMap<Uuid, Option<Uuid>> =
        known.iter().map(|u| (u.id, u.organization_id)).collect();
    link_users(txn, &events, event_users, &organizations, &current).await?;
    let explicit = upsert_explicit_conversations(txn, &events, event_users).await?;
    let window = conversations_in_window(txn, &events, event_users, &explicit).await?;

    let attributed: Vec<AttributedEvent> = events
        .iter()
        .zip(event_users)
        .enumerate()
        .map(|(i, (event, &(user_id, user)))| {
            let organization_id = event
                .external_organization_id
                .as_ref()
                .and_then(|o| organizations.get(&(event.product_id, o.clone())).copied());
            let (conversation_id, conversation) = match explicit_key(event) {
                Some(key) => (
                    explicit.get(&key).copied(),
                    ConversationResolution::Explicit,
                ),
                None => match window.get(&i) {
                    Some(id) => (Some(*id), ConversationResolution::Window),
                    None => (None, ConversationResolution::None),
                },
            };
            AttributedEvent {
                event: (*event).clone(),
                user_id,
                organization_id,
                conversation_id,
                resolution: Resolution {
                    user,
                    organization: if organization_id.is_some() {
                        OrganizationResolution::ExternalId
                    } else {
                        OrganizationResolution::None
                    },
                    conversation,
                },
            }
        })
        .collect();

    let previous = previous_contributions(txn, &attributed).await?;
    let changed = upsert_events(txn, &attributed).await?;
    let mut deltas = OutcomeDeltas::default();
    for event in attributed.iter().filter(|a| changed.contains(&a.event.id)) {
        if let Some(old) = previous.get(&event.event.id) {
            deltas.add(old, -1);
        }
        deltas.add(&Contribution::of(event), 1);
    }
    update_outcomes(txn, deltas).await?;

    let total = attributed.len();
    let attributed: Vec<AttributedEvent> = attributed
        .into_iter()
        .filter(|a| changed.contains(&a.event.id))
        .collect();
    Ok(Written {
        unchanged: total - attributed.len(),
        users_created: plan.new_users.len(),
        attributed,
    })
}

/// Runs a statement prepared once per connection (parsing and describing it on every batch
/// would cost a round trip and a parse each time).
async fn query(
    txn: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let statement = txn.prepare_cached(sql).await?;
    Ok(txn.query(&statement, params).await?)
}

async fn execute(
    txn: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, StoreError> {
    let statement = txn.prepare_cached(sql).await?;
    Ok(txn.execute(&statement, params).await?)
}

/// One entry per event id, the highest mapper version (the last one on a tie), in batch order.
fn latest_versions(events: &[CanonicalEvent]) -> Vec<&CanonicalEvent> {
    let mut slot: HashMap<Uuid, usize> = HashMap::new();
    let mut kept: Vec<&CanonicalEvent> = Vec::with_capacity(events.len());
    for event in events {
        match slot.get(&event.id) {
            Some(&i) if kept[i].mapper_version > event.mapper_version => {}
            Some(&i) => kept[i] = event,
            None => {
                slot.insert(event.id, kept.len());
                kept.push(event);
            }
        }
    }
    kept
}

fn explicit_key(event: &CanonicalEvent) -> Option<(Uuid, String)> {
    event
        .external_conversation_id
        .as_ref()
        .filter(|c| !c.trim().is_empty())
        .map(|c| (event.product_id, c.clone()))
}

async fn lookup_users(
    txn: &Transaction<'_>,
    identities: &[Identity<'_>],
) -> Result<Vec<KnownUser>, StoreError> {
    let (by_external, by_email) = lookup_keys(identities);
    if by_external.is_empty() && by_email.is_empty() {
        return Ok(Vec::new());
    }
    let (ext_products, ext_ids): (Vec<Uuid>, Vec<String>) = by_external.into_iter().unzip();
    let (email_products, email_keys): (Vec<Uuid>, Vec<String>) = by_email.into_iter().unzip();
    let rows = query(
        txn,
        "SELECT u.id, u.product_id, u.external_user_id, u.email_key, u.organization_id
               FROM unnest($1::uuid[], $2::text[]) AS k(product_id, external_user_id)
               JOIN users u ON u.product_id = k.product_id
                           AND u.external_user_id = k.external_user_id
             UNION
             SELECT u.id, u.product_id, u.external_user_id, u.email_key, u.organization_id
               FROM unnest($3::uuid[], $4::text[]) AS k(product_id, email_key)
               JOIN users u ON u.product_id = k.product_id AND u.email_key = k.email_key
                           -- The partial index's own condition, so the planner can use it.
                           AND u.email_key IS NOT NULL AND u.email_key <> ''",
        &[&ext_products, &ext_ids, &email_products, &email_keys],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| KnownUser {
            id: r.get(0),
            product_id: r.get(1),
            external_user_id: r.get(2),
            email_key: r.get(3),
            organization_id: r.get(4),
        })
        .collect())
}

/// Inserts the planned users; one that another writer created meanwhile makes the transaction
/// run again, and the next lookup finds it.
async fn insert_users(
    txn: &Transaction<'_>,
    users: &mut [crate::resolve::NewUser],
) -> Result<(), StoreError> {
    if users.is_empty() {
        return Ok(());
    }
    users.sort_by(|a, b| {
        (
            a.product_id,
            &a.external_user_id,
            a.email.as_deref().and_then(email_key),
        )
            .cmp(&(
                b.product_id,
                &b.external_user_id,
                b.email.as_deref().and_then(email_key),
            ))
    });
    let rows: Vec<Value> = users
        .iter()
        .map(|u| {
            json!({"id": u.id, "product_id": u.product_id, "external_user_id": u.external_user_id,
                   "email": u.email, "email_key": u.email.as_deref().and_then(email_key),
                   "name": u.name, "properties": u.properties})
        })
        .collect();
    let inserted = execute(
        txn,
        "INSERT INTO users (id, product_id, external_user_id, email, email_key, name, properties)
             SELECT id, product_id, external_user_id, email, email_key, name, properties
               FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, product_id uuid,
                    external_user_id text, email text, email_key text, name text,
                    properties jsonb)
             ON CONFLICT DO NOTHING",
        &[&Value::Array(rows)],
    )
    .await?;
    if inserted as usize != users.len() {
        return Err(StoreError::Conflict(
            "a user of this batch was created by another writer".into(),
        ));
    }
    Ok(())
}

/// Upserts the conversations the SDK reported and records each message's time, which the
/// 15-minute window is decided against.
async fn record_conversation_activity(
    txn: &Transaction<'_>,
    messages: &[ConversationMessage],
    users: &[(Option<Uuid>, gf_schemas::attributed::UserResolution)],
) -> Result<(), StoreError> {
    if messages.is_empty() {
        return Ok(());
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
            "user_id": user_id, "kind": kind_name(message.kind), "occurred_at": at}),
        );
    }
    execute(
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
             last_activity_at = GREATEST(conversations.last_activity_at, EXCLUDED.last_activity_at)",
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
    Ok(())
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

fn kind_name(kind: ConversationKind) -> &'static str {
    match kind {
        ConversationKind::Started => "started",
        ConversationKind::Message => "message",
        ConversationKind::Ended => "ended",
    }
}

/// Upserts organizations by external id only (never by name); returns their ids.
async fn upsert_organizations(
    txn: &Transaction<'_>,
    events: &[&CanonicalEvent],
) -> Result<HashMap<(Uuid, String), Uuid>, StoreError> {
    let mut rows: BTreeMap<(Uuid, &str), Value> = BTreeMap::new();
    for event in events {
        let Some(external) = event
            .external_organization_id
            .as_deref()
            .filter(|o| !o.trim().is_empty())
        else {
            continue;
        };
        let row = rows.entry((event.product_id, external)).or_insert_with(|| {
            json!({"id": Uuid::now_v7(), "product_id": event.product_id,
                   "external_organization_id": external, "name": null,
                   "properties": created_from(Origin::Analytics(event.source))})
        });
        if let Some(name) = event.organization_hints.name.as_deref() {
            row["name"] = json!(name);
        }
    }
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    let keys: Vec<(Uuid, String)> = rows.keys().map(|(p, o)| (*p, (*o).to_owned())).collect();
    // Rows are written only when new or renamed; unchanged ones are read, not rewritten.
    let found = query(
        txn,
        "WITH x AS (
             SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, product_id uuid,
                  external_organization_id text, name text, properties jsonb)),
         written AS (
             INSERT INTO organizations (id, product_id, external_organization_id, name, properties)
             SELECT id, product_id, external_organization_id, name, properties FROM x
             ON CONFLICT (product_id, external_organization_id) DO UPDATE SET
                 name = EXCLUDED.name, updated_at = now()
               WHERE EXCLUDED.name IS NOT NULL AND organizations.name IS DISTINCT FROM EXCLUDED.name
             RETURNING id, product_id, external_organization_id)
         SELECT id, product_id, external_organization_id FROM written
         UNION ALL
         SELECT o.id, o.product_id, o.external_organization_id
           FROM organizations o JOIN x ON o.product_id = x.product_id
                                      AND o.external_organization_id = x.external_organization_id",
        &[&Value::Array(rows.into_values().collect())],
    )
    .await?;
    all_found(ids_by_key(&found), &keys, "organization")
}

/// Every key's id, or a conflict: a row another writer committed during the statement is
/// neither written nor seen by it, and the next attempt reads it.
fn all_found(
    found: HashMap<(Uuid, String), Uuid>,
    keys: &[(Uuid, String)],
    what: &str,
) -> Result<HashMap<(Uuid, String), Uuid>, StoreError> {
    match keys.iter().find(|k| !found.contains_key(k)) {
        None => Ok(found),
        Some(_) => Err(StoreError::Conflict(format!(
            "an {what} of this batch was created by another writer"
        ))),
    }
}

/// `(product_id, external id) -> id` from `RETURNING id, product_id, external_…_id` rows.
fn ids_by_key(rows: &[tokio_postgres::Row]) -> HashMap<(Uuid, String), Uuid> {
    rows.iter()
        .map(|r| ((r.get(1), r.get(2)), r.get(0)))
        .collect()
}

/// Links each user to the organization its latest event in the batch names, writing only the
/// links that change (`current`: the organization of each user the lookup found).
async fn link_users(
    txn: &Transaction<'_>,
    events: &[&CanonicalEvent],
    users: &[(Option<Uuid>, gf_schemas::attributed::UserResolution)],
    organizations: &HashMap<(Uuid, String), Uuid>,
    current: &HashMap<Uuid, Option<Uuid>>,
) -> Result<(), StoreError> {
    let mut links: BTreeMap<Uuid, Uuid> = BTreeMap::new();
    for (event, (user, _)) in events.iter().zip(users) {
        let organization = event
            .external_organization_id
            .as_ref()
            .and_then(|o| organizations.get(&(event.product_id, o.clone())));
        if let (Some(user), Some(organization)) = (user, organization) {
            links.insert(*user, *organization);
        }
    }
    links.retain(|user, organization| current.get(user) != Some(&Some(*organization)));
    if links.is_empty() {
        return Ok(());
    }
    let rows: Vec<Value> = links
        .iter()
        .map(|(u, o)| json!({"user_id": u, "organization_id": o}))
        .collect();
    execute(
        txn,
        "UPDATE users u SET organization_id = x.organization_id, updated_at = now()
           FROM jsonb_to_recordset($1::jsonb) AS x(user_id uuid, organization_id uuid)
          WHERE u.id = x.user_id AND u.organization_id IS DISTINCT FROM x.organization_id",
        &[&Value::Array(rows)],
    )
    .await?;
    Ok(())
}

/// Conversations named by `gf_conversation_id`, created when the conversation stream has not
/// delivered them yet; returns their ids.
async fn upsert_explicit_conversations(
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
async fn conversations_in_window(
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

/// What one stored event adds to its conversation's outcome summary.
#[derive(Clone, Debug, PartialEq)]
struct Contribution {
    conversation_id: Option<Uuid>,
    product_id: Uuid,
    influence: String,
    value: Option<f64>,
}

impl Contribution {
    fn of(a: &AttributedEvent) -> Self {
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
struct OutcomeDeltas(BTreeMap<Uuid, (Uuid, [i64; 4], [f64; 4])>);

impl OutcomeDeltas {
    /// Adds (`sign` 1) or removes (`sign` -1) one event's contribution.
    fn add(&mut self, c: &Contribution, sign: i64) {
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
async fn previous_contributions(
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

/// Inserts new events and replaces those stored by an older mapper version; returns the ids of
/// the rows written. The id stands for (product, insert id): see [`CanonicalEvent::derive_id`].
async fn upsert_events(
    txn: &Transaction<'_>,
    events: &[AttributedEvent],
) -> Result<HashSet<Uuid>, StoreError> {
    if events.is_empty() {
        return Ok(HashSet::new());
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
             RETURNING id",
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
    Ok(written.iter().map(|r| r.get(0)).collect())
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
fn numeric_value(e: &CanonicalEvent) -> Option<f64> {
    match e.value {
        Some(EventValue::Number(n)) if n.is_finite() => Some(n),
        _ => None,
    }
}

/// An enum's wire name, for text columns.
fn wire_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

/// Applies the batch's changes to the outcome summaries. Each row is updated relative to its
/// latest committed state under the row lock the upsert takes, so concurrent attributors add up.
async fn update_outcomes(txn: &Transaction<'_>, deltas: OutcomeDeltas) -> Result<(), StoreError> {
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
