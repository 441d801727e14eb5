//! `gf outcomes list|show`.

use anyhow::Context;
use gf_control::outcomes::{OutcomeFilter, Outcomes};
use gf_runtime::Config;
use gf_runtime::paging::PageRequest;
use gf_schemas::time;

use crate::cli::OutcomesCommand;
use crate::output::{Output, table};

pub async fn run(cmd: OutcomesCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    let outcomes = Outcomes::new(gf_runtime::db::pool(config.database_url()?, 2)?);
    match cmd {
        OutcomesCommand::List {
            product,
            verdict,
            since,
            until,
            limit,
        } => {
            let filter = OutcomeFilter {
                product: Some(product),
                verdict,
                since,
                until,
            };
            let rows = outcomes
                .list(&filter, &PageRequest::first(limit))
                .await?
                .items;
            out.print(&rows, || {
                table(
                    &[
                        "CONVERSATION",
                        "EXTERNAL ID",
                        "VERDICT",
                        "REVENUE",
                        "REFUNDS",
                        "EVENTS +/-/=",
                        "LAST EVENT",
                    ],
                    rows.iter()
                        .map(|o| {
                            vec![
                                o.conversation_id.to_string(),
                                o.external_conversation_id.clone(),
                                o.verdict.as_str().to_owned(),
                                format!("{:.2}", o.revenue),
                                format!("{:.2}", o.refunds),
                                format!(
                                    "{}/{}/{}",
                                    o.counts.positive, o.counts.negative, o.counts.neutral
                                ),
                                o.last_event_at.as_ref().map_or("-".into(), time::format),
                            ]
                        })
                        .collect(),
                )
            })
        }
        OutcomesCommand::Show { conversation } => {
            let detail = outcomes
                .conversation(conversation)
                .await?
                .with_context(|| format!("no conversation with id {conversation}"))?;
            out.print(&detail, || {
                let o = &detail.outcome;
                let mut text = format!(
                    "conversation {} ({})\nverdict {}  revenue {:.2}  refunds {:.2}  quality impact {}\n",
                    o.conversation_id,
                    o.external_conversation_id,
                    o.verdict.as_str(),
                    o.revenue,
                    o.refunds,
                    o.quality_impact
                );
                if let Some(at) = &o.silent_churn_at {
                    text.push_str(&format!("silent churn at {}\n", time::format(at)));
                }
                let mut timeline: Vec<(String, Vec<String>)> = detail
                    .activity
                    .iter()
                    .map(|a| {
                        let at = time::format(&a.occurred_at);
                        (at.clone(), vec![at, format!("conversation {}", a.kind), "".into(), "".into()])
                    })
                    .collect();
                timeline.extend(detail.events.iter().map(|e| {
                    let at = time::format(&e.event_at);
                    let value = e.value.as_ref().map_or("-".into(), |v| v.to_string());
                    (at.clone(), vec![at, e.event_type.clone(), e.influence.clone(), value])
                }));
                timeline.sort_by(|a, b| a.0.cmp(&b.0));
                text.push_str(&table(
                    &["AT", "WHAT", "INFLUENCE", "VALUE"],
                    timeline.into_iter().map(|(_, row)| row).collect(),
                ));
                if detail.events_truncated {
                    text.push_str("\n(only the first 1000 events are shown)");
                }
                text
            })
        }
    }
}
