use gf_runtime::Config;
use gf_runtime::kafka::{KafkaSettings, ensure_topics};
use gf_runtime::topics::Topics;

use crate::cli::TopicsCommand;
use crate::output::{Output, table};

pub async fn run(cmd: TopicsCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    match cmd {
        TopicsCommand::Ensure => {
            let settings = KafkaSettings::from_config(config)?;
            let specs = Topics::new(&config.topic_prefix).specs(
                config.topic_partitions,
                config.topic_replication,
                settings.max_record_bytes,
            );
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
