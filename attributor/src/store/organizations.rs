//! Organizations: upserted by external id only; users linked to the one their latest event names.

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::Transaction;
use gf_schemas::canonical::CanonicalEvent;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::resolve::{Origin, created_from};

use super::{StoreError, all_found, execute, ids_by_key, query};

/// Upserts organizations by external id only (never by name); returns their ids.
pub(super) async fn upsert_organizations(
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
        // Only organizations that are new or renamed are written: an upsert of an unchanged
        // row would still lock it until the commit, and every attributor naming the same
        // organization would wait for the others' whole transactions.
        "WITH x AS (
             SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, product_id uuid,
                  external_organization_id text, name text, properties jsonb)),
         existing AS (
             SELECT o.id, o.product_id, o.external_organization_id,
                    x.name IS NOT NULL AND o.name IS DISTINCT FROM x.name AS renamed
               FROM organizations o JOIN x ON o.product_id = x.product_id
                                          AND o.external_organization_id = x.external_organization_id),
         written AS (
             INSERT INTO organizations (id, product_id, external_organization_id, name, properties)
             SELECT id, product_id, external_organization_id, name, properties FROM x
              WHERE NOT EXISTS (SELECT 1 FROM existing e
                                 WHERE e.product_id = x.product_id
                                   AND e.external_organization_id = x.external_organization_id
                                   AND NOT e.renamed)
             ON CONFLICT (product_id, external_organization_id) DO UPDATE SET
                 name = EXCLUDED.name, updated_at = now()
               WHERE EXCLUDED.name IS NOT NULL AND organizations.name IS DISTINCT FROM EXCLUDED.name
             RETURNING id, product_id, external_organization_id)
         SELECT id, product_id, external_organization_id FROM written
         UNION ALL
         SELECT id, product_id, external_organization_id FROM existing",
        &[&Value::Array(rows.into_values().collect())],
    )
    .await?;
    all_found(ids_by_key(&found), &keys, "organization")
}

/// Links each user to the organization its latest event in the batch names, writing only the
/// links that change (`current`: the organization of each user the lookup found).
pub(super) async fn link_users(
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
