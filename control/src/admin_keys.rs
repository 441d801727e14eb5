//! Admin keys: `gfa_` + a 16-hex-digit public lookup + `_` + 43 base64url characters of secret
//! (32 bytes from the OS CSPRNG), the shape of ingest tokens. The lookup finds the row; only the
//! secret's SHA-256 is stored and compared in constant time. A slow hash (scrypt, as for ingest tokens) buys nothing for a
//! 256-bit random secret and would make every API call cost milliseconds.
//!
//! A key has a [`Role`] (`admin` changes, `read` only reads) and may be limited to some products;
//! together they are its [`Scope`], which every front end checks a request against: lists pass
//! [`Scope::products`] to their query, and an id a request names is checked with
//! [`AdminKeys::sees`].

use std::fmt;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_postgres::Row;
use uuid::Uuid;

use gf_runtime::db::DbError;
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

/// What a key may do: `admin` changes and reads, `read` only reads.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    utoipa::ToSchema,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Role {
    Admin,
    Read,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What a request may touch: its key's role and the products the key sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    role: Role,
    /// Sorted, without repeats; `None` is every product.
    products: Option<Vec<Uuid>>,
}

impl Scope {
    /// Everything: `gf` on a shell, a key made without `--role` or `--product`.
    pub fn everything() -> Scope {
        Scope {
            role: Role::Admin,
            products: None,
        }
    }

    /// `role` over `products` (`None`: every product). An empty list sees nothing.
    pub fn new(role: Role, products: Option<Vec<Uuid>>) -> Scope {
        let products = products.map(|mut ids| {
            ids.sort_unstable();
            ids.dedup();
            ids
        });
        Scope { role, products }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the key may change anything (its role is `admin`).
    pub fn may_change(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the key sees every product: what spans products (dead letters, the audit log,
    /// making a product) is only for such keys.
    pub fn sees_every_product(&self) -> bool {
        self.products.is_none()
    }

    /// Whether the key sees `product`.
    pub fn sees(&self, product: Uuid) -> bool {
        self.products
            .as_deref()
            .is_none_or(|ids| ids.binary_search(&product).is_ok())
    }

    /// The products the key sees, `None` for all: a list query's filter,
    /// `($n::uuid[] IS NULL OR product_id = ANY($n))`.
    pub fn products(&self) -> Option<&[Uuid]> {
        self.products.as_deref()
    }
}

/// Something a request names by id, checked against a key's products with [`AdminKeys::sees`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Product(Uuid),
    Connection(Uuid),
    Endpoint(Uuid),
    Delivery(Uuid),
    Conversation(Uuid),
}

impl Subject {
    /// What a key that does not see the subject is told: the very words a missing one gets, so
    /// ids of other products do not leak.
    pub fn not_found(&self) -> String {
        match self {
            Subject::Product(id) => format!("no product with id {id}"),
            Subject::Connection(id) => format!("no connection with id {id}"),
            Subject::Endpoint(id) => format!("no endpoint with id {id}"),
            Subject::Delivery(id) => format!("no delivery with id {id}"),
            Subject::Conversation(id) => format!("no conversation with id {id}"),
        }
    }

    pub fn id(&self) -> Uuid {
        match *self {
            Subject::Product(id)
            | Subject::Connection(id)
            | Subject::Endpoint(id)
            | Subject::Delivery(id)
            | Subject::Conversation(id) => id,
        }
    }

    /// The query for the subject's product (`$1`: its id); `None` for a product itself.
    fn product_query(&self) -> Option<&'static str> {
        match self {
            Subject::Product(_) => None,
            Subject::Connection(_) => Some("SELECT product_id FROM connections WHERE id = $1"),
            Subject::Endpoint(_) => Some("SELECT product_id FROM webhook_endpoints WHERE id = $1"),
            Subject::Delivery(_) => Some(
                "SELECT e.product_id FROM deliveries d
                   JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1",
            ),
            Subject::Conversation(_) => Some("SELECT product_id FROM conversations WHERE id = $1"),
        }
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
    pub role: Role,
    /// The products the key sees; `null`: every product.
    pub product_ids: Option<Vec<Uuid>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl AdminKey {
    fn from_row(row: &Row) -> Result<Self, AccessError> {
        let role: String = row.get("role");
        let role = role.parse().map_err(|_| {
            AccessError::Db(DbError::Corrupt(format!("admin_keys.role holds {role:?}")))
        })?;
        Ok(AdminKey {
            id: row.get("id"),
            name: row.get("name"),
            prefix: format!("{KEY_PREFIX}{}", row.get::<_, String>("key_lookup")),
            role,
            product_ids: row.get("product_ids"),
            created_at: row.get("created_at"),
            last_used_at: row.get("last_used_at"),
            revoked_at: row.get("revoked_at"),
        })
    }

    /// What requests made with this key may touch.
    pub fn scope(&self) -> Scope {
        Scope::new(self.role, self.product_ids.clone())
    }
}

const COLUMNS: &str =
    "id, name, key_lookup, role, product_ids, created_at, last_used_at, revoked_at";

#[derive(Clone)]
pub struct AdminKeys {
    pool: Pool,
}

impl AdminKeys {
    pub fn new(pool: Pool) -> Self {
        AdminKeys { pool }
    }

    /// Makes an `admin` key over every product; the secret is in the answer only.
    pub async fn create(
        &self,
        name: &str,
        actor: &Actor,
    ) -> Result<(AdminKey, AdminKeySecret), AccessError> {
        self.create_scoped(name, &Scope::everything(), actor).await
    }

    /// Makes a key with `scope`'s role, limited to its products (which must exist); the secret
    /// is in the answer only.
    pub async fn create_scoped(
        &self,
        name: &str,
        scope: &Scope,
        actor: &Actor,
    ) -> Result<(AdminKey, AdminKeySecret), AccessError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(AccessError::BadName);
        }
        let products = scope.products();
        if products.is_some_and(<[Uuid]>::is_empty) {
            return Err(AccessError::NoProducts);
        }
        let secret = AdminKeySecret::generate()?;
        let client = self.pool.get().await?;
        if let Some(products) = products {
            let unknown: Vec<Uuid> = client
                .query_one(
                    "SELECT coalesce(array_agg(p ORDER BY p), '{}') FROM unnest($1::uuid[]) p
                      WHERE NOT EXISTS (SELECT 1 FROM products WHERE id = p)",
                    &[&products],
                )
                .await?
                .get(0);
            if !unknown.is_empty() {
                return Err(AccessError::UnknownProducts(unknown));
            }
        }
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO admin_keys (id, name, key_lookup, key_hash, role, product_ids)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
                ),
                &[
                    &Uuid::now_v7(),
                    &name,
                    &secret.lookup,
                    &secret.digest().as_slice(),
                    &scope.role().as_str(),
                    &products,
                ],
            )
            .await?;
        let key = AdminKey::from_row(&row)?;
        Audit::record_with(
            &**client,
            actor,
            "admin_key.create",
            Some(key.id),
            serde_json::json!({"name": key.name, "role": key.role, "productIds": key.product_ids}),
        )
        .await?;
        Ok((key, secret))
    }

    /// Whether `scope` sees `subject`: always for a key over every product (no query); else the
    /// subject's product must be one of the key's, and a subject that does not exist is not
    /// seen either.
    pub async fn sees(&self, scope: &Scope, subject: Subject) -> Result<bool, AccessError> {
        if scope.sees_every_product() {
            return Ok(true);
        }
        let id = subject.id();
        let product = match subject.product_query() {
            None => Some(id),
            Some(query) => {
                let client = self.pool.get().await?;
                client
                    .query_opt(query, &[&id])
                    .await?
                    .map(|row| row.get::<_, Uuid>(0))
            }
        };
        Ok(product.is_some_and(|p| scope.sees(p)))
    }

    pub async fn list(&self) -> Result<Vec<AdminKey>, AccessError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!("SELECT {COLUMNS} FROM admin_keys ORDER BY created_at, id"),
                &[],
            )
            .await?;
        rows.iter().map(AdminKey::from_row).collect()
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
        AdminKey::from_row(&row)
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
        row.as_ref().map(AdminKey::from_row).transpose()
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
        Ok(Some(AdminKey::from_row(&row)?))
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
    fn a_scope_sees_its_products_and_a_read_key_changes_nothing() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let everything = Scope::everything();
        assert!(everything.may_change() && everything.sees_every_product() && everything.sees(c));
        assert_eq!(everything.products(), None);

        let limited = Scope::new(Role::Read, Some(vec![b, a, b]));
        assert!(!limited.may_change() && !limited.sees_every_product());
        assert!(limited.sees(a) && limited.sees(b) && !limited.sees(c));
        assert_eq!(
            limited.products().map(<[Uuid]>::len),
            Some(2),
            "deduplicated"
        );
        // An empty list sees nothing, rather than everything.
        assert!(!Scope::new(Role::Admin, Some(vec![])).sees(a));

        assert_eq!("read".parse::<Role>().unwrap(), Role::Read);
        assert!("owner".parse::<Role>().is_err());
        assert_eq!(
            Subject::Delivery(a).not_found(),
            format!("no delivery with id {a}")
        );
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
