//! "Test Delivery": a sample event sent to one endpoint now, through the same outbox, signing
//! and attempt log as every delivery, answered with what the endpoint said. Shared by `gf
//! endpoint test` and the control-plane API.

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use deadpool_postgres::Pool;
use gf_runtime::db::DbError;

use super::{DeliverySettings, attempt, claim_now, finish, webhook_client};
use crate::EventType;
use crate::endpoints::{EndpointError, Endpoints};
use crate::events::{WebhookEvent, record};
use crate::ssrf::AddressPolicy;

/// What the endpoint answered to a test delivery.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestOutcome {
    pub delivery_id: Uuid,
    /// The HTTP status; `None` when no answer came (see `errorClass`).
    pub status: Option<u16>,
    pub headers: std::collections::BTreeMap<String, String>,
    /// At most 16 KiB of the answer.
    pub body: Option<String>,
    pub latency_ms: u64,
    pub error_class: Option<&'static str>,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("endpoint {0} is disabled: enable it first")]
    Disabled(Uuid),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Client(#[from] super::ClientError),
}

/// Sends a sample `event` (a webhook event type) to endpoint `id` and waits for its answer.
pub async fn test_delivery(
    pool: &Pool,
    settings: &DeliverySettings,
    policy: &AddressPolicy,
    id: Uuid,
    event: &str,
) -> Result<TestOutcome, TestError> {
    let event_type =
        EventType::parse(event).ok_or_else(|| TestError::UnknownEventType(event.to_owned()))?;
    let endpoint = Endpoints::new(pool.clone()).get(id).await?;
    let sample = WebhookEvent {
        id: Uuid::now_v7(),
        product_id: endpoint.product_id,
        event_type,
        created_at: chrono::Utc::now(),
        data: json!({"test": true, "externalConversationId": "test-conversation"}),
        traceparent: None,
    };
    let delivery = {
        let mut client = pool.get().await?;
        let txn = client.transaction().await?;
        let ids = record(&txn, &sample, Some(id)).await?;
        txn.commit().await?;
        ids.into_iter().next().ok_or(TestError::Disabled(id))?
    };
    let claimed = claim_now(pool, settings, delivery)
        .await?
        .ok_or(TestError::Disabled(id))?;
    let client = webhook_client(policy)?;
    let log = attempt(&client, policy, &claimed).await;
    finish(pool, settings, &claimed, &log).await?;
    Ok(TestOutcome {
        delivery_id: delivery,
        status: log.status_code,
        headers: log.response_headers.iter().cloned().collect(),
        body: log.response_body.clone(),
        latency_ms: log.latency.as_millis() as u64,
        error_class: log.error_class,
        error: log.error.clone(),
    })
}

gf_runtime::db_error_from!(TestError::Db);
