use gf_runtime::Config;
use gf_runtime::paging::PageRequest;
use gf_schemas::time;

use crate::cli::ProductCommand;
use crate::commands::{control_plane, settings};
use crate::output::{Output, table};

pub async fn run(cmd: ProductCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    let control = control_plane(config)?;
    match cmd {
        ProductCommand::Create { name } => {
            let (settings, actor) = settings(config)?;
            let product = settings.create_product(&actor, &name).await?;
            out.print(&product, || {
                format!("Created product {} ({})", product.id, product.name)
            })
        }
        ProductCommand::List => {
            let products = control
                .list_products(&PageRequest::everything())
                .await?
                .items;
            out.print(&products, || {
                table(
                    &["ID", "NAME", "CREATED"],
                    products
                        .iter()
                        .map(|p| {
                            vec![
                                p.id.to_string(),
                                p.name.clone(),
                                time::format(&p.created_at),
                            ]
                        })
                        .collect(),
                )
            })
        }
    }
}
