//! Users: found by external id, then by e-mail key, through one lookup; created in key order.

use deadpool_postgres::Transaction;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::resolve::{Identity, KnownUser, email_key, lookup_keys};

use super::{StoreError, execute, query};

pub(super) async fn lookup_users(
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
pub(super) async fn insert_users(
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
