//! `gf deadletters list|replay`.

use gf_runtime::Config;
use gf_runtime::deadletters::{Filter, list, replay};
use gf_runtime::kafka::KafkaSettings;
use gf_runtime::topics::Topics;
use gf_schemas::time;

use crate::cli::{DeadletterFilterArgs, DeadlettersCommand};
use crate::output::{Output, table};

/// Longest excerpt shown in the text table.
const SHOWN: usize = 80;

pub async fn run(cmd: DeadlettersCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    let settings = KafkaSettings::from_config(config)?;
    let topics = Topics::new(&config.topic_prefix);
    match cmd {
        DeadlettersCommand::List { filter } => {
            let filter = filter_of(filter);
            let listing = {
                let (settings, topics) = (settings.clone(), topics.clone());
                tokio::task::spawn_blocking(move || list(&settings, &topics, &filter)).await??
            };
            let letters = &listing.letters;
            out.print(letters, || {
                let mut text = table(
                    &[
                        "FAILED AT",
                        "STAGE",
                        "CLASS",
                        "SOURCE",
                        "EVENT",
                        "REASON",
                        "EXCERPT",
                    ],
                    letters
                        .iter()
                        .map(|l| {
                            vec![
                                time::format(&l.failed_at),
                                l.stage.clone(),
                                l.reason_class.to_string(),
                                format!(
                                    "{}/{}/{}",
                                    l.source.topic, l.source.partition, l.source.offset
                                ),
                                l.event_index.map_or("-".into(), |i| i.to_string()),
                                l.reason.clone(),
                                shorten(&l.excerpt),
                            ]
                        })
                        .collect(),
                );
                if listing.unreadable > 0 {
                    text.push_str(&format!(
                        "\n{} records of {} are not readable as dead letters.\n",
                        listing.unreadable, topics.deadletter
                    ));
                }
                text
            })
        }
        DeadlettersCommand::Replay { filter, dry_run } => {
            let summary = replay(&settings, &topics, &filter_of(filter), dry_run).await?;
            out.print(&summary, || {
                let verb = if summary.dry_run {
                    "Would replay"
                } else {
                    "Replayed"
                };
                let mut text = format!(
                    "{verb} {} source records of {} dead letters ({} rebuilt from their excerpt).\n",
                    summary.replayed, summary.dead_letters, summary.rebuilt_from_excerpt
                );
                for (topic, n) in &summary.by_topic {
                    text.push_str(&format!("  {topic}: {n}\n"));
                }
                for m in &summary.missing {
                    text.push_str(&format!(
                        "  not retained any more and excerpt cut: {}/{}/{}\n",
                        m.topic, m.partition, m.offset
                    ));
                }
                text
            })
        }
    }
}

fn filter_of(args: DeadletterFilterArgs) -> Filter {
    Filter {
        stage: args.stage,
        since: args.since,
        newest: None,
    }
}

fn shorten(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(SHOWN)
        .collect();
    if text.chars().count() > SHOWN {
        format!("{one_line}…")
    } else {
        one_line
    }
}
