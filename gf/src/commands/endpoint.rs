//! `gf endpoint ...`: webhook endpoints. The signing secret is printed at create and
//! rotate-secret only.

use gf_notifier::delivery::{DeliverySettings, test_delivery};
use gf_notifier::endpoints::{Endpoint, Endpoints};
use gf_notifier::ssrf::AddressPolicy;
use gf_runtime::Config;
use serde::Serialize;

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
            let settings = DeliverySettings::from_config(config);
            let outcome = test_delivery(&pool, &settings, &policy, id, &event).await?;
            out.print(&outcome, || match outcome.status {
                Some(code) => format!(
                    "Delivery {}: HTTP {code} in {} ms\n{}\n\n{}",
                    outcome.delivery_id,
                    outcome.latency_ms,
                    outcome
                        .headers
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    outcome.body.clone().unwrap_or_default()
                ),
                None => format!(
                    "Delivery {} failed ({}): {}",
                    outcome.delivery_id,
                    outcome.error_class.unwrap_or("error"),
                    outcome.error.clone().unwrap_or_default()
                ),
            })
        }
    }
}
