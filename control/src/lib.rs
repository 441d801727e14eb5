//! The control plane's library, shared by `gf` and the HTTP API: admin keys (who may change
//! settings) and the audit log (who changed what, when).

pub mod admin_keys;
pub mod audit;

pub use admin_keys::{AdminKey, AdminKeySecret, AdminKeys};
pub use audit::{Actor, Audit, AuditEntry};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no admin key with id {0}")]
    AdminKeyNotFound(uuid::Uuid),
    #[error("an admin key name must be 1 to 200 characters and not blank")]
    BadName,
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    #[error(transparent)]
    Db(#[from] gf_runtime::db::DbError),
}

impl From<tokio_postgres::Error> for ControlError {
    fn from(e: tokio_postgres::Error) -> Self {
        ControlError::Db(gf_runtime::db::DbError::Query(e))
    }
}

impl From<deadpool_postgres::PoolError> for ControlError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ControlError::Db(gf_runtime::db::DbError::Unavailable(e))
    }
}
