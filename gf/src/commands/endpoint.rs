//! `gf endpoint ...`: webhook endpoints. The signing secret is printed at create and
//! rotate-secret only.

use anyhow::Context;
use gf_notifier::delivery::{DeliverySettings, attempt, claim_now, finish, webhook_client};
use gf_notifier::endpoints::{Endpoint, Endpoints};
use gf_notifier::outbox::{WebhookEvent, record};
use gf_notifier::rules::EventType;
use gf_notifier::ssrf::AddressPolicy;
use gf_runtime::Config;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::cli::EndpointCommand;
use crate::output::{Output, table};

/// An endpoint with its secret: printed only at create and rotate-secret.
#[derive(Serialize)]
struct WithSecret<'a> {
    #[serde(flatten)]
    endpoint: &'a Endpoint,
    secret: String,
}

pub async fn run(cmd: EndpointCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    let pool = gf_runtime::db::pool(config.database_url()?, 2)?;
    let endpoints = Endpoints::new(pool.clone());
    let policy = AddressPolicy::parse(&config.webhook_allowed_nets)?;
    match cmd {
        EndpointCommand::Create {
            product,
            url,
            events,
        } => {
            let (endpoint, secret) = endpoints.create(&policy, product, &url, &events).await?;
            let shown = WithSecret {
                endpoint: &endpoint,
                secret: secret.reveal(),
            };
            out.print(&shown, || {
                format!(
                    "Created endpoint {} for {} ({}).\nSigning secret (shown only now): {}",
                    endpoint.id,
                    endpoint.url,
                    endpoint.event_types.join(", "),
                    shown.secret
                )
            })
        }
        EndpointCommand::RotateSecret { id } => {
            let (endpoint, secret) = endpoints.rotate_secret(id).await?;
            let shown = WithSecret {
                endpoint: &endpoint,
                secret: secret.reveal(),
            };
            out.print(&shown, || {
                format!(
                    "New signing secret for {id} (shown only now): {}\nThe previous secret keeps signing too for 24 hours.",
                    shown.secret
                )
            })
        }
        EndpointCommand::List { product } => {
            let list = endpoints.list(product).await?;
            out.print(&list, || {
                table(
                    &["ID", "PRODUCT", "URL", "EVENTS", "STATE"],
                    list.iter()
                        .map(|e| {
                            vec![
                                e.id.to_string(),
                                e.product_id.to_string(),
                                e.url.clone(),
                                e.event_types.join(","),
                                match (&e.enabled, &e.disabled_reason) {
                                    (true, _) => "enabled".into(),
                                    (false, Some(reason)) => format!("disabled: {reason}"),
                                    (false, None) => "disabled".into(),
                                },
                            ]
                        })
                        .collect(),
                )
            })
        }
        EndpointCommand::Disable { id } => {
            let e = endpoints
                .set_enabled(id, false, Some("disabled by an operator"))
                .await?;
            out.print(&e, || format!("Endpoint {id} disabled."))
        }
        EndpointCommand::Enable { id } => {
            let e = endpoints.set_enabled(id, true, None).await?;
            out.print(&e, || format!("Endpoint {id} enabled."))
        }
        EndpointCommand::Test { id, event } => {
            let event_type = EventType::parse(&event)
                .with_context(|| format!("unknown event type {event:?}"))?;
            let endpoint = endpoints.get(id).await?;
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
                ids.into_iter()
                    .next()
                    .with_context(|| format!("endpoint {id} is disabled: enable it first"))?
            };
            let settings = DeliverySettings::from_config(config);
            let claimed = claim_now(&pool, &settings, delivery)
                .await?
                .context("the test delivery vanished")?;
            let client = webhook_client(&policy)?;
            let log = attempt(&client, &policy, &claimed).await;
            finish(&pool, &settings, &claimed, &log).await?;
            let result = json!({
                "deliveryId": delivery,
                "statusCode": log.status_code,
                "latencyMs": log.latency.as_millis() as u64,
                "errorClass": log.error_class,
                "headers": log.response_headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "error": log.error,
                "responseBody": log.response_body,
            });
            out.print(&result, || match log.status_code {
                Some(code) => format!(
                    "Delivery {delivery}: HTTP {code} in {} ms\n{}\n\n{}",
                    log.latency.as_millis(),
                    log.response_headers
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    log.response_body.clone().unwrap_or_default()
                ),
                None => format!(
                    "Delivery {delivery} failed ({}): {}",
                    log.error_class.unwrap_or("error"),
                    log.error.clone().unwrap_or_default()
                ),
            })
        }
    }
}
