//! Writing a batch in one PostgreSQL transaction: conversation activity, users, organizations,
//! conversation links, business events and the conversation outcomes, then publishing what changed
//! before the commit (so an offset is only ever committed for published, committed work).
//!
//! Every statement works on the whole batch at once (typed arrays through `unnest`, or
//! `jsonb_to_recordset`), so a batch of a thousand events costs a dozen round trips. Rows are
//! written in key order so concurrent attributors lock in the same order; a deadlock, or an
//! identity or event another writer recorded first (a unique violation), rolls the transaction
//! back and runs it again.

use gf_runtime::db::DbError;
use std::collections::{HashMap, HashSet};
use std::future::Future;

use chrono::Duration;
use deadpool_postgres::{GenericClient, Pool, Transaction};
use gf_runtime::classify::Class;
use gf_runtime::pipeline::OutputError;
use gf_runtime::stage::StageError;
use gf_schemas::attributed::{
    AttributedEvent, ConversationResolution, OrganizationResolution, Resolution,
};
use gf_schemas::canonical::CanonicalEvent;
use gf_schemas::conversation::ConversationMessage;
use gf_schemas::outcome::ConversationOutcome;
use std::collections::BTreeMap;
use uuid::Uuid;

use crate::resolve::{Identity, IdentityConflict, IdentityKind, Origin, lock_keys, plan};

mod conversations;
mod events;
mod late;
mod organizations;
mod outcomes;
mod users;

use conversations::{
    conversations_in_window, record_conversation_activity, upsert_explicit_conversations,
};
use events::upsert_events;
use late::{Learned, reattribute};
use organizations::{link_users, upsert_organizations};
pub use outcomes::OutcomeRules;
use outcomes::{Touched, advance_watermarks, due, recompute, returned_to};
use users::{insert_identities, insert_users, lookup_users};

/// How far back an event looks for its user's conversation.
pub const CONVERSATION_WINDOW: Duration = Duration::minutes(15);

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
    /// Conversation outcomes that changed, whole, as published.
    pub outcomes: Vec<ConversationOutcome>,
    pub users_created: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL failed (a deadlock among them); classified once, by [`DbError::class`].
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("attributed events were not published: {0}")]
    Publish(#[from] OutputError),
    /// A concurrent creation of the same identity, event or organization, found by our own
    /// checks or by a unique violation of a key this transaction had found free: the transaction
    /// can simply run again.
    #[error("conflict with a concurrent writer: {0}")]
    Conflict(String),
}

gf_runtime::db_error_from!(StoreError::Db);

impl StoreError {
    /// Whether PostgreSQL refused the data itself (retrying the same batch cannot help).
    pub fn is_refusal(&self) -> bool {
        matches!(self, StoreError::Db(e) if e.class() == Class::Refused)
    }

    /// A unique violation of a statement that inserts only keys this transaction found free
    /// (under its lock or by its own read): another writer took one since, so it is a
    /// [`StoreError::Conflict`] and the transaction runs again, not data to set aside.
    fn on_unique_violation(self, what: &str) -> Self {
        match self {
            StoreError::Db(DbError::Query(e))
                if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
            {
                StoreError::Conflict(what.to_owned())
            }
            other => other,
        }
    }
}

impl From<StoreError> for StageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Db(e) => e.into(),
            StoreError::Publish(e) => e.into(),
            StoreError::Conflict(reason) => StageError::conflict(reason),
        }
    }
}

/// Publishes attributed events and changed outcomes; called inside the transaction, before the
/// commit.
pub trait Publisher {
    fn publish(
        &self,
        events: &[AttributedEvent],
        outcomes: &[ConversationOutcome],
    ) -> impl Future<Output = Result<(), OutputError>>;
}

/// For callers that only want the rows (tests, tools).
pub struct NoPublish;

impl Publisher for NoPublish {
    async fn publish(
        &self,
        _: &[AttributedEvent],
        _: &[ConversationOutcome],
    ) -> Result<(), OutputError> {
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

/// Writes a batch in one transaction, publishing what changed before committing. A deadlock or
/// a creation race is returned as [`StoreError::Conflict`]: the runner's one retry policy runs
/// it again ([`gf_runtime::stage::rerun_conflicts`]).
pub async fn write(
    pool: &Pool,
    batch: &Batch,
    publisher: &impl Publisher,
) -> Result<Written, StoreError> {
    write_with(pool, batch, &OutcomeRules::default(), publisher).await
}

/// [`write`] with the deployment's outcome rules.
pub async fn write_with(
    pool: &Pool,
    batch: &Batch,
    rules: &OutcomeRules,
    publisher: &impl Publisher,
) -> Result<Written, StoreError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    let written = attribute(&txn, batch, rules).await?;
    publisher
        .publish(&written.attributed, &written.outcomes)
        .await?;
    txn.commit().await?;
    Ok(written)
}

/// Judges again the open conversations whose silent-churn time their product's watermark has
/// passed. A batch does this for its own products; this catches a conversation written by one
/// attributor while another moved the watermark (neither saw the other's uncommitted row).
pub async fn settle_silent_churn(
    pool: &Pool,
    rules: &OutcomeRules,
    publisher: &impl Publisher,
) -> Result<Vec<ConversationOutcome>, StoreError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    let products: Vec<Uuid> = query(
        &txn,
        "SELECT DISTINCT product_id FROM product_watermarks",
        &[],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect();
    let mut touched = Touched::default();
    touched.extend(due(&txn, &products).await?);
    let outcomes = recompute(&txn, touched, rules).await?;
    if outcomes.is_empty() {
        return Ok(outcomes);
    }
    publisher.publish(&[], &outcomes).await?;
    txn.commit().await?;
    Ok(outcomes)
}

/// Computes the outcomes of up to `limit` conversations that have none yet (those stored before
/// outcomes were kept); returns how many it computed, 0 once none is left.
pub async fn fill_missing_outcomes(
    pool: &Pool,
    rules: &OutcomeRules,
    publisher: &impl Publisher,
    limit: i64,
) -> Result<usize, StoreError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    let missing: Vec<Uuid> = query(
        &txn,
        "SELECT c.id FROM conversations c
           LEFT JOIN conversation_outcomes o ON o.conversation_id = c.id
          WHERE o.quiet_since IS NULL
            AND (c.last_activity_at IS NOT NULL
                 OR EXISTS (SELECT 1 FROM business_events e WHERE e.conversation_id = c.id))
          ORDER BY c.id LIMIT $1",
        &[&limit],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect();
    let mut touched = Touched::default();
    for conversation in &missing {
        touched.reread(Some(*conversation));
    }
    let outcomes = recompute(&txn, touched, rules).await?;
    publisher.publish(&[], &outcomes).await?;
    txn.commit().await?;
    Ok(missing.len())
}

/// Everything one batch writes, inside `txn`; returns the events and outcomes that changed.
async fn attribute(
    txn: &Transaction<'_>,
    batch: &Batch,
    rules: &OutcomeRules,
) -> Result<Written, StoreError> {
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
    // The batch's external ids and e-mails are locked before the lookup, so a batch that
    // waited looks up what the other committed; the users they resolve to, after the plan.
    lock_users(txn, &lock_keys(&identities, [])).await?;
    let known = lookup_users(txn, &identities).await?;
    let mut plan = plan(&identities, &known);
    insert_users(txn, &plan.new_users).await?;
    insert_identities(txn, &mut plan.identities).await?;
    lock_users(
        txn,
        &lock_keys(&[], plan.resolved.iter().filter_map(|(user, _)| *user)),
    )
    .await?;
    for conflict in &plan.conflicts {
        identity_conflict(conflict);
    }
    let (message_users, event_users) = plan.resolved.split_at(batch.conversations.len());

    let mut touched = Touched::default();
    touched.extend(record_conversation_activity(txn, &batch.conversations, message_users).await?);

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

    let upserted = upsert_events(txn, &attributed).await?;
    for event in &attributed {
        let id = event.event.id;
        if upserted.inserted.contains(&id) {
            touched.inserted(id, event.conversation_id);
        } else if let Some(left) = upserted.replaced.get(&id) {
            // A replaced event may have left one conversation and changed what another counts.
            touched.reread(*left);
            touched.reread(event.conversation_id);
        }
    }
    let changed: HashSet<Uuid> = upserted
        .inserted
        .into_iter()
        .chain(upserted.replaced.into_keys())
        .collect();

    // What this batch learned may change events stored before it.
    let learned = Learned {
        identified: plan
            .identities
            .iter()
            .filter(|i| i.kind == IdentityKind::ExternalId)
            .map(|i| ((i.product_id, i.value.clone()), i.user_id))
            .collect(),
        activity: batch
            .conversations
            .iter()
            .zip(message_users)
            .filter_map(|(m, (user, _))| user.map(|u| (m.product_id, u, m.occurred_at)))
            .collect(),
        written: attributed.iter().map(|a| a.event.id).collect(),
    };
    let late = reattribute(txn, &learned, &mut touched).await?;

    // Outcomes: every conversation whose events or activity changed, those whose user this
    // batch shows came back, and those the products' new watermarks make silently churned.
    let seen: Vec<(Uuid, chrono::DateTime<chrono::Utc>)> = attributed
        .iter()
        .filter(|a| changed.contains(&a.event.id))
        .chain(&late)
        .filter_map(|a| a.user_id.map(|u| (u, a.event.event_at)))
        .collect();
    touched.extend(returned_to(txn, &seen, rules).await?);
    let mut latest: BTreeMap<Uuid, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
    for event in &events {
        let at = latest.entry(event.product_id).or_insert(event.event_at);
        *at = (*at).max(event.event_at);
    }
    advance_watermarks(txn, &latest).await?;
    let products: Vec<Uuid> = latest.into_keys().collect();
    touched.extend(due(txn, &products).await?);
    let outcomes = recompute(txn, touched, rules).await?;

    let total = attributed.len();
    let mut attributed: Vec<AttributedEvent> = attributed
        .into_iter()
        .filter(|a| changed.contains(&a.event.id))
        .collect();
    let unchanged = total - attributed.len();
    attributed.extend(late);
    Ok(Written {
        unchanged,
        outcomes,
        users_created: plan.new_users.len(),
        attributed,
    })
}

/// Two known users an identity proves to be one: attributed by external id (the documented
/// precedence), counted, and logged once per 10 s with how many more were seen.
fn identity_conflict(conflict: &IdentityConflict) {
    static CONFLICTS: std::sync::LazyLock<prometheus::IntCounter> =
        std::sync::LazyLock::new(|| {
            gf_runtime::metrics::process_wide(prometheus::IntCounter::new(
                "gf_attributor_identity_conflicts_total",
                "Events whose external id names one user and whose e-mail names another",
            ))
        });
    static LOG: std::sync::LazyLock<gf_runtime::telemetry::LogLimiter> =
        std::sync::LazyLock::new(|| {
            gf_runtime::telemetry::LogLimiter::new(std::time::Duration::from_secs(10))
        });
    CONFLICTS.inc();
    if let Some(held_back) = LOG.admit("identity_conflict") {
        tracing::warn!(
            product = %conflict.product_id,
            by_external_id = %conflict.by_external_id,
            by_email = %conflict.by_email,
            held_back,
            "an event's external id and e-mail name two users; attributed by external id, not merged"
        );
    }
}

/// Holds every user of the batch until the commit ([`lock_keys`]). A conversation message and
/// an event in its window can be written by two transactions at once by two attributors
/// (conversations are keyed by conversation, events by user). Each would miss the
/// other's uncommitted row; with the lock, the second waits, and its later statements see the
/// first's commit, so it links what either sequential order would. Each call takes its keys in
/// order; a deadlock across the two calls of a batch, or with row locks, is a conflict, and the
/// transaction runs again.
async fn lock_users(txn: &Transaction<'_>, keys: &[i64]) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    // unnest yields the array in order, and each row takes its lock as it is produced.
    query(
        txn,
        "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k",
        &[&keys],
    )
    .await?;
    Ok(())
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
