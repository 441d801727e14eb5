//! The audit log: every change made through `gf` or the API, with who made it and when.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::AccessError;

/// Who made a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// `gf` on a shell, as this operating-system user.
    Cli { user: String },
    /// The HTTP API or the console, with this admin key.
    AdminKey { id: Uuid, name: String },
}

impl Actor {
    /// The user running this process (`$USER`, else `$LOGNAME`, else `unknown`).
    pub fn cli() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        Actor::Cli { user }
    }

    /// How the actor is written in the log: `cli:<user>` or `admin_key:<id> (<name>)`.
    pub fn label(&self) -> String {
        match self {
            Actor::Cli { user } => format!("cli:{user}"),
            Actor::AdminKey { id, name } => format!("admin_key:{id} ({name})"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub subject_id: Option<Uuid>,
    pub detail: Value,
}

#[derive(Clone)]
pub struct Audit {
    pool: Pool,
}

impl Audit {
    pub fn new(pool: Pool) -> Self {
        Audit { pool }
    }

    /// Records one change.
    pub async fn record(
        &self,
        actor: &Actor,
        action: &str,
        subject_id: Option<Uuid>,
        detail: Value,
    ) -> Result<(), AccessError> {
        let client = self.pool.get().await?;
        Audit::record_with(&**client, actor, action, subject_id, detail).await
    }

    /// [`Audit::record`] on a client already held (inside the change's own transaction).
    pub async fn record_with(
        client: &impl GenericClient,
        actor: &Actor,
        action: &str,
        subject_id: Option<Uuid>,
        detail: Value,
    ) -> Result<(), AccessError> {
        client
            .execute(
                "INSERT INTO audit_log (actor, action, subject_id, detail) VALUES ($1, $2, $3, $4)",
                &[&actor.label(), &action, &subject_id, &detail],
            )
            .await?;
        Ok(())
    }

    /// Entries since `since` (all when `None`), oldest first, `limit` of them after skipping
    /// `offset`.
    pub async fn list(
        &self,
        since: Option<DateTime<Utc>>,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, AccessError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, at, actor, action, subject_id, detail FROM audit_log
                  WHERE $1::timestamptz IS NULL OR at >= $1 ORDER BY id OFFSET $2 LIMIT $3",
                &[&since, &offset, &limit],
            )
            .await?;
        Ok(rows.iter().map(entry).collect())
    }

    /// The newest `limit` entries, oldest first (the console's page).
    pub async fn newest(&self, limit: i64) -> Result<Vec<AuditEntry>, AccessError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT * FROM (
                     SELECT id, at, actor, action, subject_id, detail FROM audit_log
                      ORDER BY id DESC LIMIT $1) newest
                  ORDER BY id",
                &[&limit],
            )
            .await?;
        Ok(rows.iter().map(entry).collect())
    }
}

fn entry(r: &tokio_postgres::Row) -> AuditEntry {
    AuditEntry {
        id: r.get("id"),
        at: r.get("at"),
        actor: r.get("actor"),
        action: r.get("action"),
        subject_id: r.get("subject_id"),
        detail: r.get("detail"),
    }
}
