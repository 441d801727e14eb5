use gf_control::Audit;
use gf_runtime::Config;
use gf_schemas::time;

use crate::cli::AuditCommand;
use crate::output::{Output, table};

pub async fn run(cmd: AuditCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    let audit = Audit::new(gf_runtime::db::pool(config.database_url()?, 1)?);
    match cmd {
        AuditCommand::List { since, limit } => {
            let entries = audit.list(since, 0, limit).await?;
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
