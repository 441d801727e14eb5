//! The control plane: products and connections in PostgreSQL.
//!
//! Every change to a connection's authentication state (status, token, shared secret) fires
//! `NOTIFY gf_connection_changes` from a trigger (see the first migration), so receivers drop
//! cached state at once whoever made the change.

use gf_runtime::paging::{Cursor, Page, PageRequest};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use tokio_postgres::Row;
use uuid::Uuid;

use gf_schemas::Provider;

use gf_runtime::db::DbError;
use gf_runtime::token::{IngestToken, SecretHasher, TokenError, validate_shared_secret};

/// The channel the connections trigger notifies on.
pub const CONNECTION_CHANGES_CHANNEL: &str = "gf_connection_changes";

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no product with id {0}")]
    ProductNotFound(Uuid),
    #[error("no connection with id {0}")]
    ConnectionNotFound(Uuid),
    #[error("a product name must be 1 to 200 characters and not blank")]
    BadProductName,
    #[error("connection {id} is {status}: cannot {action} it")]
    InvalidTransition {
        id: Uuid,
        status: ConnectionStatus,
        action: &'static str,
    },
    #[error(transparent)]
    Secret(#[from] TokenError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("hashing was interrupted: {0}")]
    Hashing(String),
}

gf_runtime::db_error_from!(ControlError::Db);

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
pub enum ConnectionStatus {
    /// Created; no event accepted yet.
    Pending,
    /// At least one event accepted.
    Active,
    /// Requests answered 204 and dropped until resumed.
    Paused,
    /// Permanently off: requests answered 204; rotate and resume are refused.
    Disconnected,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether the receiver writes events for a connection in this status.
    pub fn accepts_events(self) -> bool {
        matches!(self, ConnectionStatus::Pending | ConnectionStatus::Active)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "gf_schemas::time")]
    pub created_at: DateTime<Utc>,
}

/// A connection as operators see it: never a hash, never a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub id: Uuid,
    pub product_id: Uuid,
    pub provider: Provider,
    pub status: ConnectionStatus,
    pub has_shared_secret: bool,
    #[serde(with = "gf_schemas::time")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "gf_schemas::time::option")]
    pub rotated_at: Option<DateTime<Utc>>,
    #[serde(with = "gf_schemas::time::option")]
    pub first_event_at: Option<DateTime<Utc>>,
    #[serde(with = "gf_schemas::time::option")]
    pub last_event_at: Option<DateTime<Utc>>,
    /// Whether the request log keeps an excerpt of each body (off unless its owner turns it on).
    pub log_bodies: bool,
}

/// What the receiver needs to authenticate a request for one token lookup.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionAuth {
    pub id: Uuid,
    pub product_id: Uuid,
    pub provider: Provider,
    pub status: ConnectionStatus,
    pub token_hash: String,
    pub secret_hash: Option<String>,
    pub log_bodies: bool,
}

impl fmt::Debug for ConnectionAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionAuth")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("status", &self.status)
            .field("has_shared_secret", &self.secret_hash.is_some())
            .finish_non_exhaustive()
    }
}

/// A connection together with the token shown exactly once (at create and rotate).
#[derive(Debug)]
pub struct IssuedConnection {
    pub connection: Connection,
    pub token: IngestToken,
}

const CONNECTION_COLUMNS: &str = "id, product_id, provider, status, secret_hash IS NOT NULL AS has_shared_secret, \
     created_at, rotated_at, first_event_at, last_event_at, log_bodies";

#[derive(Clone)]
pub struct ControlPlane {
    pool: Pool,
    hasher: SecretHasher,
}

impl ControlPlane {
    pub fn new(pool: Pool, hasher: SecretHasher) -> Self {
        ControlPlane { pool, hasher }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub async fn create_product(&self, name: &str) -> Result<Product, ControlError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ControlError::BadProductName);
        }
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "INSERT INTO products (id, name) VALUES ($1, $2) RETURNING id, name, created_at",
                &[&Uuid::now_v7(), &name],
            )
            .await?;
        Ok(product_from_row(&row))
    }

    /// Products in creation order, one page read by PostgreSQL.
    pub async fn list_products(&self, page: &PageRequest) -> Result<Page<Product>, ControlError> {
        self.list_products_in(None, None, page).await
    }

    /// [`ControlPlane::list_products`] of those in `visible` (every product when `None`: an
    /// admin key's [`Scope::products`](crate::Scope::products)).
    /// `search`: only products whose name holds it (any case).
    pub async fn list_products_in(
        &self,
        visible: Option<&[Uuid]>,
        search: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Product>, ControlError> {
        let client = self.pool.get().await?;
        let (at, id) = page.after_parts();
        let pattern = search
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| format!("%{}%", like_literal(s)));
        let rows = client
            .query(
                "SELECT id, name, created_at FROM products
                  WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2))
                    AND ($5::uuid[] IS NULL OR id = ANY($5))
                    AND ($6::text IS NULL OR name ILIKE $6)
                  ORDER BY created_at, id OFFSET $3 LIMIT $4",
                &[&at, &id, &page.offset, &page.fetch(), &visible, &pattern],
            )
            .await?;
        let products = rows.iter().map(product_from_row).collect();
        Ok(Page::of(products, page, |p: &Product| Cursor {
            at: p.created_at,
            id: p.id,
        }))
    }

    /// One product.
    pub async fn product(&self, id: Uuid) -> Result<Product, ControlError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id, name, created_at FROM products WHERE id = $1",
                &[&id],
            )
            .await?;
        row.as_ref()
            .map(product_from_row)
            .ok_or(ControlError::ProductNotFound(id))
    }

    pub async fn create_connection(
        &self,
        product_id: Uuid,
        provider: Provider,
        shared_secret: Option<&str>,
    ) -> Result<IssuedConnection, ControlError> {
        if let Some(secret) = shared_secret {
            validate_shared_secret(secret)?;
        }
        let token = IngestToken::generate()?;
        let token_hash = self.hash(token.secret().to_owned()).await?;
        let secret_hash = match shared_secret {
            Some(s) => Some(self.hash(s.to_owned()).await?),
            None => None,
        };
        let client = self.pool.get().await?;
        let exists = client
            .query_opt("SELECT 1 FROM products WHERE id = $1", &[&product_id])
            .await?;
        if exists.is_none() {
            return Err(ControlError::ProductNotFound(product_id));
        }
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO connections (id, product_id, provider, token_lookup, token_hash, secret_hash) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {CONNECTION_COLUMNS}"
                ),
                &[
                    &Uuid::now_v7(),
                    &product_id,
                    &provider.as_str(),
                    &token.lookup(),
                    &token_hash,
                    &secret_hash,
                ],
            )
            .await?;
        Ok(IssuedConnection {
            connection: connection_from_row(&row)?,
            token,
        })
    }

    /// Connections (of one product, when given) in creation order, one page read by PostgreSQL.
    pub async fn list_connections(
        &self,
        product_id: Option<Uuid>,
        page: &PageRequest,
    ) -> Result<Page<Connection>, ControlError> {
        self.list_connections_in(None, product_id, page).await
    }

    /// [`ControlPlane::list_connections`] of the products in `visible` (every product when
    /// `None`: an admin key's [`Scope::products`](crate::Scope::products)).
    pub async fn list_connections_in(
        &self,
        visible: Option<&[Uuid]>,
        product_id: Option<Uuid>,
        page: &PageRequest,
    ) -> Result<Page<Connection>, ControlError> {
        let client = self.pool.get().await?;
        let (at, id) = page.after_parts();
        let rows = client
            .query(
                &format!(
                    "SELECT {CONNECTION_COLUMNS} FROM connections
                      WHERE ($1::uuid IS NULL OR product_id = $1)
                        AND ($6::uuid[] IS NULL OR product_id = ANY($6))
                        AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
                      ORDER BY created_at, id OFFSET $4 LIMIT $5"
                ),
                &[&product_id, &at, &id, &page.offset, &page.fetch(), &visible],
            )
            .await?;
        let connections = rows
            .iter()
            .map(connection_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::of(connections, page, |c: &Connection| Cursor {
            at: c.created_at,
            id: c.id,
        }))
    }

    pub async fn connection(&self, id: Uuid) -> Result<Connection, ControlError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = $1"),
                &[&id],
            )
            .await?
            .ok_or(ControlError::ConnectionNotFound(id))?;
        connection_from_row(&row)
    }

    /// Issues a new token; the old one stops working at once.
    pub async fn rotate(&self, id: Uuid) -> Result<IssuedConnection, ControlError> {
        self.refuse_if_disconnected(id, "rotate").await?;
        let token = IngestToken::generate()?;
        let token_hash = self.hash(token.secret().to_owned()).await?;
        let connection = self
            .update(
                id,
                "rotate",
                "token_lookup = $2, token_hash = $3, rotated_at = now()",
                "status <> 'disconnected'",
                &[&token.lookup(), &token_hash],
            )
            .await?;
        Ok(IssuedConnection { connection, token })
    }

    pub async fn pause(&self, id: Uuid) -> Result<Connection, ControlError> {
        self.update(
            id,
            "pause",
            "status = 'paused'",
            "status <> 'disconnected'",
            &[],
        )
        .await
    }

    /// Back to `active`, or `pending` if no event was ever accepted.
    pub async fn resume(&self, id: Uuid) -> Result<Connection, ControlError> {
        self.update(
            id,
            "resume",
            "status = CASE WHEN first_event_at IS NULL THEN 'pending' ELSE 'active' END",
            "status <> 'disconnected'",
            &[],
        )
        .await
    }

    pub async fn disconnect(&self, id: Uuid) -> Result<Connection, ControlError> {
        self.update(id, "disconnect", "status = 'disconnected'", "true", &[])
            .await
    }

    /// Sets (or with `None` clears) the shared secret expected in `x-greenflash-secret`.
    pub async fn set_secret(
        &self,
        id: Uuid,
        secret: Option<&str>,
    ) -> Result<Connection, ControlError> {
        let hash = match secret {
            Some(s) => {
                validate_shared_secret(s)?;
                Some(self.hash(s.to_owned()).await?)
            }
            None => None,
        };
        self.update(
            id,
            "set the secret of",
            "secret_hash = $2",
            "true",
            &[&hash],
        )
        .await
    }

    /// Turns body excerpts in the connection's request log on or off.
    pub async fn set_log_bodies(&self, id: Uuid, on: bool) -> Result<Connection, ControlError> {
        self.update(
            id,
            "change the request log of",
            "log_bodies = $2",
            "true",
            &[&on],
        )
        .await
    }

    /// What the receiver needs to authenticate a token with this lookup.
    pub async fn auth_by_lookup(
        &self,
        lookup: &str,
    ) -> Result<Option<ConnectionAuth>, ControlError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id, product_id, provider, status, token_hash, secret_hash, log_bodies \
                 FROM connections WHERE token_lookup = $1",
                &[&lookup],
            )
            .await?;
        row.map(|row| {
            Ok(ConnectionAuth {
                id: row.get("id"),
                product_id: row.get("product_id"),
                provider: parse_column(&row, "provider")?,
                status: parse_column(&row, "status")?,
                token_hash: row.get("token_hash"),
                secret_hash: row.get("secret_hash"),
                log_bodies: row.get("log_bodies"),
            })
        })
        .transpose()
    }

    /// Records accepted events: stamps first/last event times and flips `pending` to `active`.
    pub async fn record_events(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), ControlError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE connections SET \
                   first_event_at = coalesce(first_event_at, $2), \
                   last_event_at = greatest(last_event_at, $2), \
                   status = CASE WHEN status = 'pending' THEN 'active' ELSE status END \
                 WHERE id = $1",
                &[&id, &at],
            )
            .await?;
        Ok(())
    }

    async fn hash(&self, secret: String) -> Result<String, ControlError> {
        let hasher = self.hasher;
        tokio::task::spawn_blocking(move || hasher.hash(&secret))
            .await
            .map_err(|e| ControlError::Hashing(e.to_string()))?
            .map_err(ControlError::from)
    }

    async fn refuse_if_disconnected(
        &self,
        id: Uuid,
        action: &'static str,
    ) -> Result<(), ControlError> {
        let current = self.connection(id).await?;
        if current.status == ConnectionStatus::Disconnected {
            return Err(ControlError::InvalidTransition {
                id,
                status: current.status,
                action,
            });
        }
        Ok(())
    }

    /// One guarded UPDATE: `set` applies only where `allowed` holds; otherwise the error says
    /// whether the row is missing or in a status that refuses `action`. Both are `'static` SQL
    /// written here; values go in `params` ($2...).
    async fn update(
        &self,
        id: Uuid,
        action: &'static str,
        set: &'static str,
        allowed: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Connection, ControlError> {
        let client = self.pool.get().await?;
        let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&id];
        all.extend_from_slice(params);
        let row = client
            .query_opt(
                &format!(
                    "UPDATE connections SET {set}, updated_at = now() \
                     WHERE id = $1 AND ({allowed}) RETURNING {CONNECTION_COLUMNS}"
                ),
                &all,
            )
            .await?;
        match row {
            Some(row) => connection_from_row(&row),
            None => {
                let current = self.connection(id).await?;
                Err(ControlError::InvalidTransition {
                    id,
                    status: current.status,
                    action,
                })
            }
        }
    }
}

fn product_from_row(row: &Row) -> Product {
    Product {
        id: row.get("id"),
        name: row.get("name"),
        created_at: row.get("created_at"),
    }
}

fn parse_column<T: FromStr>(row: &Row, column: &str) -> Result<T, ControlError> {
    let text: String = row.get(column);
    text.parse().map_err(|_| {
        ControlError::Db(DbError::Corrupt(format!(
            "connections.{column} holds {text:?}"
        )))
    })
}

fn connection_from_row(row: &Row) -> Result<Connection, ControlError> {
    Ok(Connection {
        id: row.get("id"),
        product_id: row.get("product_id"),
        provider: parse_column(row, "provider")?,
        status: parse_column(row, "status")?,
        has_shared_secret: row.get("has_shared_secret"),
        created_at: row.get("created_at"),
        rotated_at: row.get("rotated_at"),
        first_event_at: row.get("first_event_at"),
        last_event_at: row.get("last_event_at"),
        log_bodies: row.get("log_bodies"),
    })
}

/// `text` as a literal inside a LIKE pattern (`%`, `_` and `\\` escaped).
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod like_tests {
    #[test]
    fn like_wildcards_are_taken_literally() {
        assert_eq!(super::like_literal(r"50%_off\x"), r"50\%\_off\\x");
    }
}
