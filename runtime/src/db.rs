//! The PostgreSQL pool and the schema migrations (refinery, embedded from `runtime/migrations/`).

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

refinery::embed_migrations!("migrations");

/// Serialises concurrent `gf migrate` runs (several replicas starting at once).
const MIGRATION_LOCK: i64 = 0x6766_6d69_6772_6174;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    BadUrl(tokio_postgres::Error),
    #[error("could not create the PostgreSQL pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("PostgreSQL is unreachable: {0}")]
    Unavailable(deadpool_postgres::PoolError),
    #[error("PostgreSQL error: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("unexpected data in the database: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
}

impl DbError {
    /// Outage, conflict or refusal, by the one classification every stage uses.
    pub fn class(&self) -> crate::classify::Class {
        match self {
            DbError::Query(e) => crate::classify::postgres(e),
            DbError::Unavailable(e) => crate::classify::pool(e),
            DbError::BadUrl(_) | DbError::Build(_) | DbError::Migration(_) => {
                crate::classify::Class::Transient
            }
            DbError::Corrupt(_) => crate::classify::Class::Refused,
        }
    }
}

/// The driver's error and the pool's, named for [`db_error_from!`](crate::db_error_from).
pub type PgError = tokio_postgres::Error;
pub use deadpool_postgres::PoolError;

impl From<PoolError> for DbError {
    /// A backend error met while checking a connection out is PostgreSQL's answer, not an outage
    /// of the pool: it keeps its SQLSTATE.
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => DbError::Query(e),
            other => DbError::Unavailable(other),
        }
    }
}

/// Lets `?` turn a query's or a pool checkout's error into an error enum's one [`DbError`]
/// variant, so no enum hand-writes the pair: `gf_runtime::db_error_from!(MyError::Db);`.
#[macro_export]
macro_rules! db_error_from {
    ($error:ident :: $variant:ident) => {
        impl From<$crate::db::PgError> for $error {
            fn from(e: $crate::db::PgError) -> Self {
                $error::$variant($crate::db::DbError::Query(e))
            }
        }
        impl From<$crate::db::PoolError> for $error {
            fn from(e: $crate::db::PoolError) -> Self {
                $error::$variant($crate::db::DbError::from(e))
            }
        }
    };
}

pub fn pool(database_url: &str, max_size: usize) -> Result<Pool, DbError> {
    let config: tokio_postgres::Config = database_url.parse().map_err(DbError::BadUrl)?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?)
}

/// Applies the migrations not yet applied; returns the names of those it applied.
pub async fn migrate(pool: &Pool) -> Result<Vec<String>, DbError> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = migrations::runner().run_async(&mut **client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    Ok(report?
        .applied_migrations()
        .iter()
        .map(|m| format!("V{}__{}", m.version(), m.name()))
        .collect())
}
