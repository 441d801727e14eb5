//! Users: found by external id, then by e-mail key, through one lookup; created with their
//! identities, which keep one user per external id and per e-mail key.

use deadpool_postgres::Transaction;
use serde_json::Value;
use uuid::Uuid;

use crate::resolve::{Identity, IdentityKind, KnownUser, NewIdentity, lookup_keys};

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
    // Through every identity of a user, not only the ones it was created with.
    let rows = query(
        txn,
        "SELECT u.id, u.product_id, i.kind, i.value, u.organization_id
               FROM unnest($1::uuid[], $2::text[]) AS k(product_id, value)
               JOIN user_identities i ON i.product_id = k.product_id AND i.kind = 'external_id'
                                     AND i.value = k.value
               JOIN users u ON u.id = i.user_id
             UNION ALL
             SELECT u.id, u.product_id, i.kind, i.value, u.organization_id
               FROM unnest($3::uuid[], $4::text[]) AS k(product_id, value)
               JOIN user_identities i ON i.product_id = k.product_id AND i.kind = 'email'
                                     AND i.value = k.value
               JOIN users u ON u.id = i.user_id",
        &[&ext_products, &ext_ids, &email_products, &email_keys],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let kind: &str = r.get(2);
            let value: String = r.get(3);
            let external = kind == IdentityKind::ExternalId.as_str();
            KnownUser {
                id: r.get(0),
                product_id: r.get(1),
                external_user_id: external.then(|| value.clone()),
                email_key: (!external).then_some(value),
                organization_id: r.get(4),
            }
        })
        .collect())
}

/// Records identities in key order, by a plain insert. The batch's keys were looked up under
/// their advisory locks, so a unique violation here means a writer that did not take them (or a
/// collision of two keys' lock numbers): the transaction runs again, and the next lookup sees it.
pub(super) async fn insert_identities(
    txn: &Transaction<'_>,
    identities: &mut Vec<NewIdentity>,
) -> Result<(), StoreError> {
    if identities.is_empty() {
        return Ok(());
    }
    identities.sort();
    identities.dedup();
    let products: Vec<Uuid> = identities.iter().map(|i| i.product_id).collect();
    let kinds: Vec<&str> = identities.iter().map(|i| i.kind.as_str()).collect();
    let values: Vec<&str> = identities.iter().map(|i| i.value.as_str()).collect();
    let users: Vec<Uuid> = identities.iter().map(|i| i.user_id).collect();
    execute(
        txn,
        "INSERT INTO user_identities (product_id, kind, value, user_id)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[])",
        &[&products, &kinds, &values, &users],
    )
    .await
    .map_err(|e| {
        e.on_unique_violation("an identity of this batch was recorded by another writer")
    })?;
    Ok(())
}

/// Inserts the planned users, each under a new id. A user another writer created meanwhile is
/// found by [`insert_identities`], whose key names one user per external id and e-mail key: the
/// transaction runs again, and the next lookup finds it.
pub(super) async fn insert_users(
    txn: &Transaction<'_>,
    users: &[crate::resolve::NewUser],
) -> Result<(), StoreError> {
    if users.is_empty() {
        return Ok(());
    }
    // Typed arrays in PostgreSQL's binary format: cheaper to decode than JSON rows.
    let ids: Vec<Uuid> = users.iter().map(|u| u.id).collect();
    let products: Vec<Uuid> = users.iter().map(|u| u.product_id).collect();
    let external: Vec<Option<&str>> = users
        .iter()
        .map(|u| u.external_user_id.as_deref())
        .collect();
    let emails: Vec<Option<&str>> = users.iter().map(|u| u.email.as_deref()).collect();
    let keys: Vec<Option<&str>> = users.iter().map(|u| u.email_key.as_deref()).collect();
    let names: Vec<Option<&str>> = users.iter().map(|u| u.name.as_deref()).collect();
    let properties: Vec<Value> = users
        .iter()
        .map(|u| Value::Object(u.properties.clone()))
        .collect();
    execute(
        txn,
        "INSERT INTO users (id, product_id, external_user_id, email, email_key, name, properties)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::jsonb[])",
        &[
            &ids,
            &products,
            &external,
            &emails,
            &keys,
            &names,
            &properties,
        ],
    )
    .await?;
    Ok(())
}
