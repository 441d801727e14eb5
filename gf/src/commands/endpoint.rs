//! `gf endpoint ...`: webhook endpoints. The signing secret is printed at create and
//! rotate-secret only.

use gf_runtime::Config;
use gf_runtime::paging::PageRequest;

use crate::cli::EndpointCommand;
use crate::commands::settings;
use crate::output::{Output, table};

pub async fn run(cmd: EndpointCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    let (changes, actor) = settings(config)?;
    let endpoints = &changes.endpoints;
    match cmd {
        EndpointCommand::Create {
            product,
            url,
            events,
        } => {
            let shown = changes
                .create_endpoint(&actor, product, &url, &events)
                .await?;
            let endpoint = &shown.endpoint;
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
            let shown = changes.rotate_endpoint_secret(&actor, id).await?;
            out.print(&shown, || {
                format!(
                    "New signing secret for {id} (shown only now): {}\nThe previous secret keeps signing too for 24 hours.",
                    shown.secret
                )
            })
        }
        EndpointCommand::List { product } => {
            let list = endpoints
                .list(product, &PageRequest::everything())
                .await?
                .items;
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
            let e = changes.set_endpoint_enabled(&actor, id, false).await?;
            out.print(&e, || format!("Endpoint {id} disabled."))
        }
        EndpointCommand::Enable { id } => {
            let e = changes.set_endpoint_enabled(&actor, id, true).await?;
            out.print(&e, || format!("Endpoint {id} enabled."))
        }
        EndpointCommand::Test { id, event } => {
            let outcome = changes.test_endpoint(&actor, id, &event).await?;
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
