//! Admin keys: `gfa_` + a 16-hex-digit public lookup + `_` + 43 base64url characters of secret
//! (32 bytes from the OS CSPRNG), the shape of ingest tokens. The lookup finds the row; only the
//! secret's SHA-256 is stored and compared in constant time. A slow hash (scrypt, as for ingest tokens) buys nothing for a
//! 256-bit random secret and would make every API call cost milliseconds.

use std::fmt;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_postgres::Row;
use uuid::Uuid;

use gf_runtime::token::{random_lookup_and_secret, split_lookup_and_secret};

use crate::AccessError;
use crate::audit::{Actor, Audit};

pub const KEY_PREFIX: &str = "gfa_";

/// A key as presented or freshly made. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminKeySecret {
    lookup: String,
    secret: String,
}

impl AdminKeySecret {
    pub fn generate() -> Result<Self, AccessError> {
        let (lookup, secret) =
            random_lookup_and_secret().map_err(|e| AccessError::Random(e.to_string()))?;
        Ok(AdminKeySecret { lookup, secret })
    }

    /// `None` for anything that is not an admin key's shape.
    pub fn parse(text: &str) -> Option<Self> {
        let (lookup, secret) = split_lookup_and_secret(text, KEY_PREFIX)?;
        Some(AdminKeySecret {
            lookup: lookup.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The whole key, shown once when it is created.
    pub fn reveal(&self) -> String {
        format!("{KEY_PREFIX}{}_{}", self.lookup, self.secret)
    }

    fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }
}

impl fmt::Debug for AdminKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdminKeySecret({KEY_PREFIX}{}_…)", self.lookup)
    }
}

/// An admin key's row; never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminKey {
    pub id: Uuid,
    pub name: String,
    /// The public part (`gfa_<lookup>`), to tell keys apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl AdminKey {
    fn from_row(row: &Row) -> Self {
        AdminKey {
            id: row.get("id"),
            name: row.get("name"),
            prefix: format!("{KEY_PREFIX}{}", row.get::<_, String>("key_lookup")),
            created_at: row.get("created_at"),
            last_used_at: row.get("last_used_at"),
            revoked_at: row.get("revoked_at"),
        }
    }
}

const COLUMNS: &str = "id, name, key_lookup, created_at, last_used_at, revoked_at";

#[derive(Clone)]
pub struct AdminKeys {
    pool: Pool,
}

impl AdminKeys {
    pub fn new(pool: Pool) -> Self {
        AdminKeys { pool }
    }

    /// Makes a key; the secret is in the answer only.
    pub async fn create(
        &self,
        name: &str,
        actor: &Actor,
    ) -> Result<(AdminKey, AdminKeySecret), AccessError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(AccessError::BadName);
        }
        let secret = AdminKeySecret::generate()?;
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO admin_keys (id, name, key_lookup, key_hash) VALUES ($1, $2, $3, $4)
                     RETURNING {COLUMNS}"
                ),
                &[
                    &Uuid::now_v7(),
                    &name,
                    &secret.lookup,
                    &secret.digest().as_slice(),
                ],
            )
            .await?;
        let key = AdminKey::from_row(&row);
        Audit::record_with(
            &**client,
            actor,
            "admin_key.create",
            Some(key.id),
            serde_json::json!({"name": key.name}),
        )
        .await?;
        Ok((key, secret))
    }

    pub async fn list(&self) -> Result<Vec<AdminKey>, AccessError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!("SELECT {COLUMNS} FROM admin_keys ORDER BY created_at, id"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(AdminKey::from_row).collect())
    }

    /// Revokes a key at once; revoking twice keeps the first time.
    pub async fn revoke(&self, id: Uuid, actor: &Actor) -> Result<AdminKey, AccessError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!(
                    "UPDATE admin_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1
                     RETURNING {COLUMNS}"
                ),
                &[&id],
            )
            .await?
            .ok_or(AccessError::AdminKeyNotFound(id))?;
        Audit::record_with(
            &**client,
            actor,
            "admin_key.revoke",
            Some(id),
            serde_json::json!({}),
        )
        .await?;
        Ok(AdminKey::from_row(&row))
    }

    /// Key `id` when it is still live (not revoked): a console session lasts only as long as
    /// its key.
    pub async fn live(&self, id: Uuid) -> Result<Option<AdminKey>, AccessError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM admin_keys WHERE id = $1 AND revoked_at IS NULL"),
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(AdminKey::from_row))
    }

    /// The key `presented` stands for, when it is a live key; `None` for anything else, with no
    /// detail about why.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<AdminKey>, AccessError> {
        let Some(secret) = AdminKeySecret::parse(presented.trim()) else {
            return Ok(None);
        };
        let client = self.pool.get().await?;
        let Some(row) = client
            .query_opt(
                &format!(
                    "SELECT {COLUMNS}, key_hash FROM admin_keys WHERE key_lookup = $1 AND revoked_at IS NULL"
                ),
                &[&secret.lookup],
            )
            .await?
        else {
            return Ok(None);
        };
        let stored: Vec<u8> = row.get("key_hash");
        if !bool::from(stored.as_slice().ct_eq(secret.digest().as_slice())) {
            return Ok(None);
        }
        client
            .execute(
                "UPDATE admin_keys SET last_used_at = now() WHERE id = $1",
                &[&row.get::<_, Uuid>("id")],
            )
            .await?;
        Ok(Some(AdminKey::from_row(&row)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_never_show_their_secret() {
        let key = AdminKeySecret::generate().unwrap();
        let text = key.reveal();
        assert!(text.starts_with("gfa_"), "{text}");
        assert_eq!(text.len(), 4 + 16 + 1 + 43);
        assert_eq!(AdminKeySecret::parse(&text), Some(key.clone()));
        assert!(!format!("{key:?}").contains(&key.secret));
    }

    #[test]
    fn anything_else_is_not_a_key() {
        let text = AdminKeySecret::generate().unwrap().reveal();
        for bad in [
            "",
            "gfa_",
            "Bearer x",
            &text[..text.len() - 1],
            &format!("{text}A"),
            &text.replace("gfa_", "gft_"),
            &text.replacen('_', "-", 2),
        ] {
            assert_eq!(AdminKeySecret::parse(bad), None, "{bad}");
        }
    }
}
