use gf_control::{Actor, Audit};
use gf_runtime::Config;
use gf_schemas::time;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::cli::{AuditCommand, Command, ConnectionCommand, EndpointCommand, ProductCommand};
use crate::output::{Output, table};

pub async fn run(cmd: AuditCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    let audit = Audit::new(gf_runtime::db::pool(config.database_url()?, 1)?);
    match cmd {
        AuditCommand::List { since, limit } => {
            let entries = audit.list(since, limit).await?;
            out.print(&entries, || {
                table(
                    &["AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL"],
                    entries
                        .iter()
                        .map(|e| {
                            vec![
                                time::format(&e.at),
                                e.actor.clone(),
                                e.action.clone(),
                                e.subject_id.map_or("-".into(), |id| id.to_string()),
                                e.detail.to_string(),
                            ]
                        })
                        .collect(),
                )
            })
        }
    }
}

/// The change a command makes, for the audit log: action, subject and detail (never a secret).
/// `None` for commands that change no settings. Admin keys record their own changes.
pub fn change(command: &Command) -> Option<(&'static str, Option<Uuid>, Value)> {
    Some(match command {
        Command::Product(ProductCommand::Create { name }) => {
            ("product.create", None, json!({ "name": name }))
        }
        Command::Connection(cmd) => match cmd {
            ConnectionCommand::Create {
                product,
                provider,
                secret,
            } => (
                "connection.create",
                None,
                json!({ "productId": product, "provider": gf_schemas::Provider::from(*provider), "sharedSecret": secret.is_some() }),
            ),
            ConnectionCommand::Rotate { id } => ("connection.rotate", Some(*id), json!({})),
            ConnectionCommand::Pause { id } => ("connection.pause", Some(*id), json!({})),
            ConnectionCommand::Resume { id } => ("connection.resume", Some(*id), json!({})),
            ConnectionCommand::Disconnect { id } => ("connection.disconnect", Some(*id), json!({})),
            ConnectionCommand::SetSecret(args) => (
                if args.clear {
                    "connection.secret.clear"
                } else {
                    "connection.secret.set"
                },
                Some(args.id),
                json!({}),
            ),
            ConnectionCommand::List { .. } | ConnectionCommand::Show { .. } => return None,
        },
        Command::Endpoint(cmd) => match cmd {
            EndpointCommand::Create {
                product,
                url,
                events,
            } => (
                "endpoint.create",
                None,
                json!({ "productId": product, "url": url, "events": events }),
            ),
            EndpointCommand::Disable { id } => ("endpoint.disable", Some(*id), json!({})),
            EndpointCommand::Enable { id } => ("endpoint.enable", Some(*id), json!({})),
            EndpointCommand::RotateSecret { id } => {
                ("endpoint.rotate_secret", Some(*id), json!({}))
            }
            EndpointCommand::Test { id, event } => {
                ("endpoint.test", Some(*id), json!({ "event": event }))
            }
            EndpointCommand::List { .. } => return None,
        },
        Command::Deliveries(crate::cli::DeliveriesCommand::Retry {
            id,
            endpoint,
            failed_since,
        }) => (
            "deliveries.retry",
            *id,
            json!({ "endpointId": endpoint, "failedSince": failed_since }),
        ),
        _ => return None,
    })
}

/// Records `change` as done by this shell's user.
pub async fn record(
    config: &Config,
    (action, subject, detail): (&'static str, Option<Uuid>, Value),
) -> anyhow::Result<()> {
    let audit = Audit::new(gf_runtime::db::pool(config.database_url()?, 1)?);
    audit.record(&Actor::cli(), action, subject, detail).await?;
    Ok(())
}
