use gf_runtime::Config;
use gf_runtime::kafka::{KafkaSettings, ensure_topics};
use gf_runtime::topics::{TopicLayout, Topics};

use crate::cli::TopicsCommand;
use crate::output::{Output, table};

pub async fn run(cmd: TopicsCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    match cmd {
        TopicsCommand::Ensure => {
            let settings = KafkaSettings::from_config(config)?;
            let layout = TopicLayout::from_config(config, settings.max_record_bytes);
            let specs = Topics::new(&config.topic_prefix).specs(&layout);
            let outcomes = ensure_topics(&settings, &specs).await?;
            out.print(&outcomes, || {
                table(
                    &["TOPIC", "PARTITIONS", "STATE"],
                    outcomes
                        .iter()
                        .map(|o| {
                            let state = if o.created { "created" } else { "exists" };
                            vec![o.topic.clone(), o.partitions.to_string(), state.into()]
                        })
                        .collect(),
                )
            })
        }
    }
}
