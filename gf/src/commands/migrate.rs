use gf_runtime::Config;
use serde_json::json;

use crate::output::Output;

pub async fn run(config: &Config, out: &Output) -> anyhow::Result<()> {
    let pool = gf_runtime::db::pool(config.database_url()?, 1)?;
    let applied = gf_runtime::db::migrate(&pool).await?;
    out.print(&json!({ "applied": applied }), || {
        if applied.is_empty() {
            "Database is up to date.".into()
        } else {
            format!(
                "Applied {} migration(s): {}",
                applied.len(),
                applied.join(", ")
            )
        }
    })
}
