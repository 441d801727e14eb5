use gf_control::{Actor, AdminKey, AdminKeys, Scope};
use gf_runtime::Config;
use gf_schemas::time;
use serde_json::json;

use crate::cli::AdminKeyCommand;
use crate::output::{Output, table};

pub async fn run(cmd: AdminKeyCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    let keys = AdminKeys::new(gf_runtime::db::pool(config.database_url()?, 2)?);
    let actor = Actor::cli();
    match cmd {
        AdminKeyCommand::Create {
            name,
            role,
            products,
        } => {
            let scope = Scope::new(role, (!products.is_empty()).then_some(products));
            let (key, secret) = keys.create_scoped(&name, &scope, &actor).await?;
            let key_text = secret.reveal();
            let mut shown = serde_json::to_value(&key)?;
            shown["key"] = json!(key_text);
            out.print(&shown, || {
                format!(
                    "Created admin key {} ({}), role {} over {}. Its key, shown only this once:\n\n  {key_text}\n\nUse it as `Authorization: Bearer <key>` on the API, or to log in to the console.",
                    key.id,
                    key.name,
                    key.role,
                    products_text(&key)
                )
            })
        }
        AdminKeyCommand::List => {
            let listed = keys.list().await?;
            out.print(&listed, || {
                table(
                    &[
                        "ID",
                        "NAME",
                        "PREFIX",
                        "ROLE",
                        "PRODUCTS",
                        "CREATED",
                        "LAST USED",
                        "REVOKED",
                    ],
                    listed
                        .iter()
                        .map(|k| {
                            vec![
                                k.id.to_string(),
                                k.name.clone(),
                                k.prefix.clone(),
                                k.role.to_string(),
                                products_text(k),
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

/// "every product", or the key's product ids.
fn products_text(key: &AdminKey) -> String {
    match &key.product_ids {
        None => "every product".into(),
        Some(ids) => ids
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    }
}
