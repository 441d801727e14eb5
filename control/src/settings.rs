//! Every change to the settings, made the same way by `gf`, the HTTP API and the console, and
//! each recorded in the audit log with who made it: one place, so the front ends cannot drift.

use deadpool_postgres::Pool;
use gf_runtime::db::DbError;
use gf_runtime::paging::{Page, PageRequest};
use gf_webhooks::delivery::{
    AttemptView, DeliveryScope, DeliverySettings, DeliveryView, RetrySelection, TestError,
    TestOutcome, test_delivery,
};
use gf_webhooks::endpoints::{Endpoint, EndpointError, Endpoints};
use gf_webhooks::ssrf::AddressPolicy;

use crate::AccessError;
use crate::audit::{Actor, Audit};
use crate::connections::{Connection, ControlError, ControlPlane, IssuedConnection, Product};
use gf_runtime::token::ingest_url;
use gf_schemas::Provider;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    Test(#[from] TestError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Access(#[from] AccessError),
}

/// Why [`Settings::from_config`] could not set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("GF_SCRYPT_LOG_N: {0}")]
    Scrypt(#[from] gf_runtime::token::TokenError),
    #[error(transparent)]
    AllowedNets(#[from] gf_webhooks::ssrf::BadNetwork),
}

/// The stores a change touches, and how ingest URLs and webhook tests are made.
#[derive(Clone)]
pub struct Settings {
    pub control: ControlPlane,
    pub endpoints: Endpoints,
    pub audit: Audit,
    /// Read-only: the attributor writes them.
    pub outcomes: crate::outcomes::Outcomes,
    /// Read-only: the receiver writes it.
    pub traffic: crate::traffic::Traffic,
    pool: Pool,
    policy: AddressPolicy,
    delivery: DeliverySettings,
    pub public_url: String,
}

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

impl Settings {
    /// Everything from the configuration, on `pool`.
    pub fn from_config(config: &gf_runtime::Config, pool: Pool) -> Result<Settings, SetupError> {
        Ok(Settings {
            control: ControlPlane::new(
                pool.clone(),
                gf_runtime::token::SecretHasher::new(config.scrypt_log_n)?,
            ),
            endpoints: Endpoints::new(pool.clone()),
            audit: Audit::new(pool.clone()),
            outcomes: crate::outcomes::Outcomes::new(pool.clone()),
            traffic: crate::traffic::Traffic::new(pool.clone()),
            policy: AddressPolicy::parse(&config.webhook_allowed_nets)?,
            delivery: DeliverySettings::from_config(config),
            public_url: config.public_url.clone(),
            pool,
        })
    }

    async fn audited(
        &self,
        actor: &Actor,
        action: &str,
        subject: Option<Uuid>,
        detail: Value,
    ) -> Result<(), SettingsError> {
        Ok(self.audit.record(actor, action, subject, detail).await?)
    }

    fn with_url(&self, issued: IssuedConnection) -> ConnectionWithUrl {
        ConnectionWithUrl {
            url: ingest_url(&self.public_url, issued.connection.provider, &issued.token),
            connection: issued.connection,
        }
    }

    pub async fn create_product(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<Product, SettingsError> {
        let product = self.control.create_product(name).await?;
        self.audited(
            actor,
            "product.create",
            Some(product.id),
            json!({"name": product.name}),
        )
        .await?;
        Ok(product)
    }

    pub async fn create_connection(
        &self,
        actor: &Actor,
        product: Uuid,
        provider: Provider,
        secret: Option<&str>,
    ) -> Result<ConnectionWithUrl, SettingsError> {
        let issued = self
            .control
            .create_connection(product, provider, secret)
            .await?;
        let shown = self.with_url(issued);
        self.audited(
            actor,
            "connection.create",
            Some(shown.connection.id),
            json!({"productId": product, "provider": provider, "sharedSecret": secret.is_some()}),
        )
        .await?;
        Ok(shown)
    }

    pub async fn rotate(
        &self,
        actor: &Actor,
        id: Uuid,
    ) -> Result<ConnectionWithUrl, SettingsError> {
        let shown = self.with_url(self.control.rotate(id).await?);
        self.audited(actor, "connection.rotate", Some(id), json!({}))
            .await?;
        Ok(shown)
    }

    pub async fn transition(
        &self,
        actor: &Actor,
        id: Uuid,
        to: Transition,
    ) -> Result<Connection, SettingsError> {
        let (connection, action) = match to {
            Transition::Pause => (self.control.pause(id).await?, "connection.pause"),
            Transition::Resume => (self.control.resume(id).await?, "connection.resume"),
            Transition::Disconnect => (self.control.disconnect(id).await?, "connection.disconnect"),
        };
        self.audited(actor, action, Some(id), json!({})).await?;
        Ok(connection)
    }

    /// Sets (`Some`) or clears (`None`) a connection's shared secret.
    pub async fn set_secret(
        &self,
        actor: &Actor,
        id: Uuid,
        secret: Option<&str>,
    ) -> Result<Connection, SettingsError> {
        let connection = self.control.set_secret(id, secret).await?;
        let action = if secret.is_some() {
            "connection.secret.set"
        } else {
            "connection.secret.clear"
        };
        self.audited(actor, action, Some(id), json!({})).await?;
        Ok(connection)
    }

    /// Body excerpts in the connection's request log, on or off (audited).
    pub async fn set_log_bodies(
        &self,
        actor: &Actor,
        id: Uuid,
        on: bool,
    ) -> Result<Connection, SettingsError> {
        let connection = self.control.set_log_bodies(id, on).await?;
        self.audited(
            actor,
            "connection.log_bodies",
            Some(id),
            json!({ "enabled": on }),
        )
        .await?;
        Ok(connection)
    }

    pub async fn create_endpoint(
        &self,
        actor: &Actor,
        product: Uuid,
        url: &str,
        events: &[String],
    ) -> Result<EndpointWithSecret, SettingsError> {
        let (endpoint, secret) = self
            .endpoints
            .create(&self.policy, product, url, events)
            .await?;
        self.audited(
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
        &self,
        actor: &Actor,
        id: Uuid,
        enabled: bool,
    ) -> Result<Endpoint, SettingsError> {
        let (reason, action) = if enabled {
            (None, "endpoint.enable")
        } else {
            (Some("disabled by an operator"), "endpoint.disable")
        };
        let endpoint = self.endpoints.set_enabled(id, enabled, reason).await?;
        self.audited(actor, action, Some(id), json!({})).await?;
        Ok(endpoint)
    }

    pub async fn rotate_endpoint_secret(
        &self,
        actor: &Actor,
        id: Uuid,
    ) -> Result<EndpointWithSecret, SettingsError> {
        let (endpoint, secret) = self.endpoints.rotate_secret(id).await?;
        self.audited(actor, "endpoint.rotate_secret", Some(id), json!({}))
            .await?;
        Ok(EndpointWithSecret {
            endpoint,
            secret: secret.reveal(),
        })
    }

    pub async fn test_endpoint(
        &self,
        actor: &Actor,
        id: Uuid,
        event: &str,
    ) -> Result<TestOutcome, SettingsError> {
        let outcome = test_delivery(&self.pool, &self.delivery, &self.policy, id, event).await?;
        self.audited(actor, "endpoint.test", Some(id), json!({"event": event}))
            .await?;
        Ok(outcome)
    }

    pub async fn retry(
        &self,
        actor: &Actor,
        selection: RetrySelection,
    ) -> Result<Vec<Uuid>, SettingsError> {
        let retried = gf_webhooks::delivery::retry(&self.pool, selection).await?;
        let (subject, detail) = match selection {
            RetrySelection::One(id) => (Some(id), json!({"retried": retried.len()})),
            RetrySelection::FailedSince { endpoint, since } => (
                endpoint,
                json!({"endpointId": endpoint, "failedSince": since, "retried": retried.len()}),
            ),
        };
        self.audited(actor, "deliveries.retry", subject, detail)
            .await?;
        Ok(retried)
    }

    /// The newest deliveries in `scope`, one page.
    pub async fn deliveries(
        &self,
        scope: DeliveryScope<'_>,
        page: &PageRequest,
    ) -> Result<Page<DeliveryView>, SettingsError> {
        Ok(gf_webhooks::delivery::list(&self.pool, scope, page).await?)
    }

    /// [`Settings::deliveries`] of the products in `visible` (every product when `None`: an admin
    /// key's [`Scope::products`](crate::Scope::products)).
    pub async fn deliveries_in(
        &self,
        visible: Option<&[Uuid]>,
        scope: DeliveryScope<'_>,
        page: &PageRequest,
    ) -> Result<Page<DeliveryView>, SettingsError> {
        let scope = DeliveryScope {
            products: visible,
            ..scope
        };
        self.deliveries(scope, page).await
    }

    /// Endpoints (of one product, when given) of the products in `visible` (every product when
    /// `None`), in creation order, one page.
    pub async fn endpoints_in(
        &self,
        visible: Option<&[Uuid]>,
        product: Option<Uuid>,
        page: &PageRequest,
    ) -> Result<Page<Endpoint>, SettingsError> {
        Ok(self.endpoints.list_in(visible, product, page).await?)
    }

    /// Every attempt of a delivery; `None` when there is no such delivery.
    pub async fn attempts(
        &self,
        delivery: Uuid,
    ) -> Result<Option<Vec<AttemptView>>, SettingsError> {
        Ok(gf_webhooks::delivery::attempts(&self.pool, delivery).await?)
    }
}
