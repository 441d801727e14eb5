//! The control plane's library, shared by `gf`, the HTTP API and the console: products and
//! connections ([`connections`]), admin keys (who may change settings), the audit log (who
//! changed what, when), and [`settings`], the one way every front end makes a change.

pub mod admin_keys;
pub mod audit;
pub mod connections;
pub mod outcomes;
pub mod settings;
pub mod traffic;

pub use connections::{
    CONNECTION_CHANGES_CHANNEL, Connection, ConnectionAuth, ConnectionStatus, ControlError,
    ControlPlane, IssuedConnection, Product,
};

pub use admin_keys::{AdminKey, AdminKeySecret, AdminKeys, Role, Scope, Subject};
pub use audit::{Actor, Audit, AuditEntry};

#[derive(Debug, thiserror::Error)]
/// Why an admin-key or audit operation failed.
pub enum AccessError {
    #[error("no admin key with id {0}")]
    AdminKeyNotFound(uuid::Uuid),
    #[error("an admin key name must be 1 to 200 characters and not blank")]
    BadName,
    #[error("a key limited to products needs at least one product")]
    NoProducts,
    #[error("no product with id {}", ids(.0))]
    UnknownProducts(Vec<uuid::Uuid>),
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    #[error(transparent)]
    Db(#[from] gf_runtime::db::DbError),
}

gf_runtime::db_error_from!(AccessError::Db);

fn ids(ids: &[uuid::Uuid]) -> String {
    ids.iter()
        .map(uuid::Uuid::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
