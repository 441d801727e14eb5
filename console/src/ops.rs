//! Every change the API and the console make, each recorded in the audit log with who made it:
//! one place, so the two front ends cannot drift apart.

use gf_control::Actor;
use gf_control::{Connection, IssuedConnection, Product};
use gf_notifier::delivery::{RetrySelection, TestOutcome, test_delivery};
use gf_notifier::endpoints::Endpoint;
use gf_runtime::token::ingest_url;
use gf_schemas::Provider;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::State;
use crate::error::ApiError;

/// A connection with its ingest URL: only in the answers that create or rotate it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionWithUrl {
    #[serde(flatten)]
    pub connection: Connection,
    pub url: String,
}

/// An endpoint with its signing secret: only in the answers that create or rotate it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    pub secret: String,
}

/// What can happen to a connection's status.
#[derive(Clone, Copy, Debug)]
pub enum Transition {
    Pause,
    Resume,
    Disconnect,
}

async fn audited(
    state: &State,
    actor: &Actor,
    action: &str,
    subject: Option<Uuid>,
    detail: Value,
) -> Result<(), ApiError> {
    Ok(state.audit.record(actor, action, subject, detail).await?)
}

fn with_url(state: &State, issued: IssuedConnection) -> ConnectionWithUrl {
    ConnectionWithUrl {
        url: ingest_url(&state.public_url, issued.connection.provider, &issued.token),
        connection: issued.connection,
    }
}

pub async fn create_product(state: &State, actor: &Actor, name: &str) -> Result<Product, ApiError> {
    let product = state.control.create_product(name).await?;
    audited(
        state,
        actor,
        "product.create",
        Some(product.id),
        json!({"name": product.name}),
    )
    .await?;
    Ok(product)
}

pub async fn create_connection(
    state: &State,
    actor: &Actor,
    product: Uuid,
    provider: Provider,
    secret: Option<&str>,
) -> Result<ConnectionWithUrl, ApiError> {
    let issued = state
        .control
        .create_connection(product, provider, secret)
        .await?;
    let shown = with_url(state, issued);
    audited(
        state,
        actor,
        "connection.create",
        Some(shown.connection.id),
        json!({"productId": product, "provider": provider, "sharedSecret": secret.is_some()}),
    )
    .await?;
    Ok(shown)
}

pub async fn rotate(state: &State, actor: &Actor, id: Uuid) -> Result<ConnectionWithUrl, ApiError> {
    let shown = with_url(state, state.control.rotate(id).await?);
    audited(state, actor, "connection.rotate", Some(id), json!({})).await?;
    Ok(shown)
}

pub async fn transition(
    state: &State,
    actor: &Actor,
    id: Uuid,
    to: Transition,
) -> Result<Connection, ApiError> {
    let (connection, action) = match to {
        Transition::Pause => (state.control.pause(id).await?, "connection.pause"),
        Transition::Resume => (state.control.resume(id).await?, "connection.resume"),
        Transition::Disconnect => (state.control.disconnect(id).await?, "connection.disconnect"),
    };
    audited(state, actor, action, Some(id), json!({})).await?;
    Ok(connection)
}

/// Sets (`Some`) or clears (`None`) a connection's shared secret.
pub async fn set_secret(
    state: &State,
    actor: &Actor,
    id: Uuid,
    secret: Option<&str>,
) -> Result<Connection, ApiError> {
    let connection = state.control.set_secret(id, secret).await?;
    let action = if secret.is_some() {
        "connection.secret.set"
    } else {
        "connection.secret.clear"
    };
    audited(state, actor, action, Some(id), json!({})).await?;
    Ok(connection)
}

pub async fn create_endpoint(
    state: &State,
    actor: &Actor,
    product: Uuid,
    url: &str,
    events: &[String],
) -> Result<EndpointWithSecret, ApiError> {
    let (endpoint, secret) = state
        .endpoints
        .create(&state.policy, product, url, events)
        .await?;
    audited(
        state,
        actor,
        "endpoint.create",
        Some(endpoint.id),
        json!({"productId": product, "url": endpoint.url, "events": endpoint.event_types}),
    )
    .await?;
    Ok(EndpointWithSecret {
        endpoint,
        secret: secret.reveal(),
    })
}

pub async fn set_endpoint_enabled(
    state: &State,
    actor: &Actor,
    id: Uuid,
    enabled: bool,
) -> Result<Endpoint, ApiError> {
    let (reason, action) = if enabled {
        (None, "endpoint.enable")
    } else {
        (Some("disabled by an operator"), "endpoint.disable")
    };
    let endpoint = state.endpoints.set_enabled(id, enabled, reason).await?;
    audited(state, actor, action, Some(id), json!({})).await?;
    Ok(endpoint)
}

pub async fn rotate_endpoint_secret(
    state: &State,
    actor: &Actor,
    id: Uuid,
) -> Result<EndpointWithSecret, ApiError> {
    let (endpoint, secret) = state.endpoints.rotate_secret(id).await?;
    audited(state, actor, "endpoint.rotate_secret", Some(id), json!({})).await?;
    Ok(EndpointWithSecret {
        endpoint,
        secret: secret.reveal(),
    })
}

pub async fn test_endpoint(
    state: &State,
    actor: &Actor,
    id: Uuid,
    event: &str,
) -> Result<TestOutcome, ApiError> {
    let outcome = test_delivery(&state.pool, &state.delivery, &state.policy, id, event).await?;
    audited(
        state,
        actor,
        "endpoint.test",
        Some(id),
        json!({"event": event}),
    )
    .await?;
    Ok(outcome)
}

pub async fn retry(
    state: &State,
    actor: &Actor,
    selection: RetrySelection,
) -> Result<Vec<Uuid>, ApiError> {
    let retried = gf_notifier::delivery::retry(&state.pool, selection).await?;
    let (subject, detail) = match selection {
        RetrySelection::One(id) => (Some(id), json!({"retried": retried.len()})),
        RetrySelection::FailedSince { endpoint, since } => (
            endpoint,
            json!({"endpointId": endpoint, "failedSince": since, "retried": retried.len()}),
        ),
    };
    audited(state, actor, "deliveries.retry", subject, detail).await?;
    Ok(retried)
}
