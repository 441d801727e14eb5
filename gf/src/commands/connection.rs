use gf_control::Connection;
use gf_control::settings::{ConnectionWithUrl, Transition};
use gf_runtime::Config;
use gf_runtime::paging::PageRequest;
use gf_schemas::time;

use crate::cli::{ConnectionCommand, SetSecretArgs};
use crate::commands::settings;
use crate::output::{Output, table};

pub async fn run(cmd: ConnectionCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    let (changes, actor) = settings(config)?;
    let control = &changes.control;
    match cmd {
        ConnectionCommand::Create {
            product,
            provider,
            secret,
        } => {
            let shown = changes
                .create_connection(&actor, product, provider.into(), secret.as_deref())
                .await?;
            print_issued(out, &shown, "Created")
        }
        ConnectionCommand::Rotate { id } => {
            let shown = changes.rotate(&actor, id).await?;
            print_issued(out, &shown, "Rotated")
        }
        ConnectionCommand::List { product } => {
            let connections = control
                .list_connections(product, &PageRequest::everything())
                .await?
                .items;
            out.print(&connections, || {
                table(
                    &[
                        "ID",
                        "PRODUCT",
                        "PROVIDER",
                        "STATUS",
                        "SECRET",
                        "LAST EVENT",
                    ],
                    connections
                        .iter()
                        .map(|c| {
                            vec![
                                c.id.to_string(),
                                c.product_id.to_string(),
                                c.provider.to_string(),
                                c.status.to_string(),
                                if c.has_shared_secret { "yes" } else { "no" }.into(),
                                c.last_event_at
                                    .as_ref()
                                    .map(time::format)
                                    .unwrap_or("-".into()),
                            ]
                        })
                        .collect(),
                )
            })
        }
        ConnectionCommand::Show { id } => {
            let c = control.connection(id).await?;
            out.print(&c, || describe(&c))
        }
        ConnectionCommand::Pause { id } => {
            let c = changes.transition(&actor, id, Transition::Pause).await?;
            out.print(&c, || {
                format!("Paused connection {id}: requests are answered 204 and dropped.")
            })
        }
        ConnectionCommand::Resume { id } => {
            let c = changes.transition(&actor, id, Transition::Resume).await?;
            out.print(&c, || {
                format!("Resumed connection {id} (now {}).", c.status)
            })
        }
        ConnectionCommand::Disconnect { id } => {
            let c = changes
                .transition(&actor, id, Transition::Disconnect)
                .await?;
            out.print(&c, || format!("Disconnected connection {id}."))
        }
        ConnectionCommand::SetSecret(SetSecretArgs { id, secret, clear }) => {
            let secret = if clear { None } else { secret };
            let c = changes.set_secret(&actor, id, secret.as_deref()).await?;
            out.print(&c, || match c.has_shared_secret {
                true => format!("Connection {id} now requires the x-greenflash-secret header."),
                false => format!("Connection {id} no longer requires a shared secret."),
            })
        }
    }
}

fn print_issued(out: &Output, shown: &ConnectionWithUrl, verb: &str) -> anyhow::Result<()> {
    let (c, url) = (&shown.connection, &shown.url);
    out.print(shown, || {
        format!(
            "{verb} {} connection {} for product {}.\n\
             Ingest URL (shown only now; store it in {} and your secrets manager):\n\n  {url}\n",
            c.provider, c.id, c.product_id, c.provider
        )
    })
}

fn describe(c: &Connection) -> String {
    let opt = |t: &Option<_>| t.as_ref().map(time::format).unwrap_or("-".into());
    format!(
        "id:             {}\nproduct:        {}\nprovider:       {}\nstatus:         {}\n\
         shared secret:  {}\ncreated:        {}\nrotated:        {}\nfirst event:    {}\nlast event:     {}",
        c.id,
        c.product_id,
        c.provider,
        c.status,
        if c.has_shared_secret {
            "required"
        } else {
            "none"
        },
        time::format(&c.created_at),
        opt(&c.rotated_at),
        opt(&c.first_event_at),
        opt(&c.last_event_at),
    )
}
