//! `gf deliveries list|retry`.

use gf_runtime::Config;
use gf_runtime::paging::PageRequest;
use gf_schemas::time;
use gf_webhooks::delivery::{DeliveryScope, RetrySelection};
use serde_json::json;

use crate::cli::DeliveriesCommand;
use crate::output::{Output, table};

pub async fn run(cmd: DeliveriesCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    let (changes, actor) = crate::commands::settings(config)?;
    match cmd {
        DeliveriesCommand::List {
            endpoint,
            status,
            limit,
        } => {
            let scope = DeliveryScope {
                endpoint,
                status: status.map(|s| s.as_str()),
                ..DeliveryScope::default()
            };
            let rows = changes
                .deliveries(scope, &PageRequest::first(limit))
                .await?
                .items;
            out.print(&rows, || {
                table(
                    &["ID", "EVENT", "STATUS", "ATTEMPTS", "LAST", "NEXT ATTEMPT"],
                    rows.iter()
                        .map(|d| {
                            vec![
                                d.id.to_string(),
                                d.event_type.clone(),
                                d.status.clone(),
                                d.attempts.to_string(),
                                match (&d.last_status_code, &d.last_error) {
                                    (Some(code), _) => format!("HTTP {code}"),
                                    (None, Some(e)) => e.clone(),
                                    (None, None) => "-".into(),
                                },
                                d.next_attempt_at
                                    .as_ref()
                                    .map(time::format)
                                    .unwrap_or("-".into()),
                            ]
                        })
                        .collect(),
                )
            })
        }
        DeliveriesCommand::Retry {
            id,
            endpoint,
            failed_since,
        } => {
            let selection = match (id, failed_since) {
                (Some(id), _) => RetrySelection::One(id),
                (None, Some(since)) => RetrySelection::FailedSince { endpoint, since },
                (None, None) => anyhow::bail!("give a delivery id or --failed-since T"),
            };
            let ids = changes.retry(&actor, selection).await?;
            out.print(&json!({ "retried": ids }), || {
                format!("{} deliveries will be sent again now.", ids.len())
            })
        }
    }
}
