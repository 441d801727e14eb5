//! Late arrivals: what a batch learns can change how events stored earlier should have been
//! attributed. A new identity for an external id gives its unattributed events their user; a
//! conversation message gives the events of its user in the 15 minutes after it their window
//! conversation (or a later one than they had). Those events are re-attributed in the same
//! transaction and published again with the same ids, so consumers replace them and the
//! outcomes are recomputed: attribution is a function of the data, not of the order in
//! which partitions and topics deliver it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use gf_schemas::attributed::{
    AttributedEvent, ConversationResolution, OrganizationResolution, Resolution, UserResolution,
};
use gf_schemas::canonical::CanonicalEvent;
use uuid::Uuid;

use super::conversations::conversations_in_window;
use super::events::wire_name;
use super::outcomes::Touched;
use super::{CONVERSATION_WINDOW, StoreError, execute, query};

/// What a batch learned that may concern events stored before it.
#[derive(Debug, Default)]
pub(super) struct Learned {
    /// (product, external id) → the user it names from now on.
    pub identified: HashMap<(Uuid, String), Uuid>,
    /// (product, user, time) of every conversation message recorded.
    pub activity: Vec<(Uuid, Uuid, DateTime<Utc>)>,
    /// Events the batch attributed itself (with everything known): not candidates.
    pub written: Vec<Uuid>,
}

/// The stored event rebuilt as the canonical event it was, with its current links.
const STORED: &str = "SELECT jsonb_build_object(
        'id', id, 'productId', product_id, 'connectionId', connection_id, 'source', source,
        'eventType', event_type, 'externalUserId', external_user_id, 'eventAt', event_at,
        'insertId', insert_id, 'value', value, 'valueType', value_type,
        'properties', properties, 'userHints', user_hints,
        'externalOrganizationId', external_organization_id,
        'organizationHints', organization_hints, 'influence', influence,
        'influenceRule', influence_rule, 'qualityImpactScore', quality_impact_score,
        'externalConversationId', external_conversation_id, 'receivedAt', received_at,
        'mapperVersion', mapper_version,
        'origin', jsonb_build_object('topic', raw_topic, 'partition', raw_partition,
                                     'offset', raw_offset, 'index', raw_index),
        'warnings', warnings),
     user_id, organization_id, conversation_id, user_resolution, organization_resolution,
     conversation_resolution
  FROM business_events";

/// Re-attributes the stored events what the batch learned concerns; returns those that changed,
/// as they are now, and adds the conversations they left and joined to `touched`.
pub(super) async fn reattribute(
    txn: &Transaction<'_>,
    learned: &Learned,
    touched: &mut Touched,
) -> Result<Vec<AttributedEvent>, StoreError> {
    if learned.identified.is_empty() && learned.activity.is_empty() {
        return Ok(Vec::new());
    }
    let (ext_products, ext_ids): (Vec<Uuid>, Vec<&str>) = learned
        .identified
        .keys()
        .map(|(p, e)| (*p, e.as_str()))
        .unzip();
    let (act_products, act_users, act_times) = learned.activity.iter().fold(
        (Vec::new(), Vec::new(), Vec::new()),
        |(mut p, mut u, mut t), (product, user, at)| {
            p.push(*product);
            u.push(*user);
            t.push(*at);
            (p, u, t)
        },
    );
    let window = format!("{} seconds", CONVERSATION_WINDOW.num_seconds());
    let sql = format!(
        "{STORED} WHERE id IN (
            SELECT b.id FROM business_events b
              JOIN unnest($1::uuid[], $2::text[]) AS k(product_id, external_user_id)
                ON b.product_id = k.product_id AND b.external_user_id = k.external_user_id
             WHERE b.user_id IS NULL
            UNION
            SELECT b.id FROM business_events b
              JOIN unnest($3::uuid[], $4::uuid[], $5::timestamptz[]) AS a(product_id, user_id, at)
                ON b.product_id = a.product_id AND b.user_id = a.user_id
               AND b.event_at >= a.at AND b.event_at <= a.at + $6::text::interval
             WHERE b.conversation_resolution <> 'explicit')
           AND id <> ALL($7::uuid[])
         ORDER BY id FOR UPDATE"
    );
    let rows = query(
        txn,
        &sql,
        &[
            &ext_products,
            &ext_ids,
            &act_products,
            &act_users,
            &act_times,
            &window,
            &learned.written,
        ],
    )
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let stored: Vec<AttributedEvent> = rows.iter().map(stored_event).collect::<Result<_, _>>()?;

    // The user: the stored one, else the one the event's external id now names.
    let users: Vec<(Option<Uuid>, UserResolution)> = stored
        .iter()
        .map(|a| match a.user_id {
            Some(user) => (Some(user), a.resolution.user),
            None => a
                .event
                .external_user_id
                .as_ref()
                .and_then(|e| learned.identified.get(&(a.event.product_id, e.clone())))
                .map_or((None, UserResolution::None), |u| {
                    (Some(*u), UserResolution::ExternalId)
                }),
        })
        .collect();
    let events: Vec<&CanonicalEvent> = stored.iter().map(|a| &a.event).collect();
    let window = conversations_in_window(txn, &events, &users, &HashMap::new()).await?;

    let mut changed = Vec::new();
    for (i, (old, (user_id, user))) in stored.iter().zip(users).enumerate() {
        let (conversation_id, conversation) =
            if old.resolution.conversation == ConversationResolution::Explicit {
                (old.conversation_id, ConversationResolution::Explicit)
            } else {
                match window.get(&i) {
                    Some(id) => (Some(*id), ConversationResolution::Window),
                    None => (None, ConversationResolution::None),
                }
            };
        if user_id == old.user_id && conversation_id == old.conversation_id {
            continue;
        }
        touched.reread(old.conversation_id);
        touched.reread(conversation_id);
        let mut now = old.clone();
        now.user_id = user_id;
        now.resolution.user = user;
        now.conversation_id = conversation_id;
        now.resolution.conversation = conversation;
        changed.push(now);
    }
    if changed.is_empty() {
        return Ok(changed);
    }
    let ids: Vec<Uuid> = changed.iter().map(|a| a.event.id).collect();
    let user_ids: Vec<Option<Uuid>> = changed.iter().map(|a| a.user_id).collect();
    let user_resolutions: Vec<String> = changed
        .iter()
        .map(|a| wire_name(&a.resolution.user))
        .collect();
    let conversation_ids: Vec<Option<Uuid>> = changed.iter().map(|a| a.conversation_id).collect();
    let conversation_resolutions: Vec<String> = changed
        .iter()
        .map(|a| wire_name(&a.resolution.conversation))
        .collect();
    execute(
        txn,
        "UPDATE business_events e SET user_id = x.user_id, user_resolution = x.user_resolution,
                conversation_id = x.conversation_id,
                conversation_resolution = x.conversation_resolution, attributed_at = now()
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[])
                AS x(id, user_id, user_resolution, conversation_id, conversation_resolution)
          WHERE e.id = x.id",
        &[
            &ids,
            &user_ids,
            &user_resolutions,
            &conversation_ids,
            &conversation_resolutions,
        ],
    )
    .await?;
    Ok(changed)
}

fn stored_event(r: &tokio_postgres::Row) -> Result<AttributedEvent, StoreError> {
    let corrupt = |what: &str, e: serde_json::Error| {
        StoreError::Db(gf_runtime::db::DbError::Corrupt(format!(
            "a stored event's {what} cannot be read back: {e}"
        )))
    };
    let named = |i: usize| serde_json::Value::String(r.get::<_, String>(i));
    let event: CanonicalEvent = serde_json::from_value(r.get(0)).map_err(|e| corrupt("row", e))?;
    let user: UserResolution =
        serde_json::from_value(named(4)).map_err(|e| corrupt("user resolution", e))?;
    let organization: OrganizationResolution =
        serde_json::from_value(named(5)).map_err(|e| corrupt("organization resolution", e))?;
    let conversation: ConversationResolution =
        serde_json::from_value(named(6)).map_err(|e| corrupt("conversation resolution", e))?;
    Ok(AttributedEvent {
        event,
        user_id: r.get(1),
        organization_id: r.get(2),
        conversation_id: r.get(3),
        resolution: Resolution {
            user,
            organization,
            conversation,
        },
    })
}
