use gf_control::{Actor, AdminKeys};
use gf_runtime::Config;
use gf_schemas::time;
use serde_json::json;

use crate::cli::AdminKeyCommand;
use crate::output::{Output, table};

pub async fn run(cmd: AdminKeyCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    let keys = AdminKeys::new(gf_runtime::db::pool(config.database_url()?, 2)?);
    let actor = Actor::cli();
    match cmd {
        AdminKeyCommand::Create { name } => {
            let (key, secret) = keys.create(&name, &actor).await?;
            let key_text = secret.reveal();
            let mut shown = serde_json::to_value(&key)?;
            shown["key"] = json!(key_text);
            out.print(&shown, || {
                format!(
                    "Created admin key {} ({}). Its key, shown only this once:\n\n  {key_text}\n\nUse it as `Authorization: Bearer <key>` on the API, or to log in to the console.",
                    key.id, key.name
                )
            })
        }
        AdminKeyCommand::List => {
            let listed = keys.list().await?;
            out.print(&listed, || {
                table(
                    &["ID", "NAME", "PREFIX", "CREATED", "LAST USED", "REVOKED"],
                    listed
                        .iter()
                        .map(|k| {
                            vec![
                                k.id.to_string(),
                                k.name.clone(),
                                k.prefix.clone(),
                                time::format(&k.created_at),
                                k.last_used_at
                                    .as_ref()
                                    .map(time::format)
                                    .unwrap_or("-".into()),
                                k.revoked_at
                                    .as_ref()
                                    .map(time::format)
                                    .unwrap_or("-".into()),
                            ]
                        })
                        .collect(),
                )
            })
        }
        AdminKeyCommand::Revoke { id } => {
            let key = keys.revoke(id, &actor).await?;
            out.print(&key, || format!("Revoked admin key {id} ({}).", key.name))
        }
    }
}
