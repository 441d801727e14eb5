use std::sync::Arc;

use gf_normalizer::mapping::MapOptions;
use gf_normalizer::replay::{Progress, ReplayRequest, replay};
use gf_runtime::Config;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ReplayArgs;
use crate::output::{Output, table};

/// A progress bar on stderr; indicatif draws nothing when stderr is not a terminal.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&self, total: u64) {
        self.0.set_length(total);
        self.0.set_style(
            ProgressStyle::with_template(
                "{spinner} replaying {pos}/{len} records [{bar:40}] {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
    }
    fn advance(&self, records: u64) {
        self.0.inc(records);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

pub async fn run(args: ReplayArgs, config: &Config, out: &Output) -> anyhow::Result<()> {
    let request = ReplayRequest {
        from: args.from,
        to: args.to,
        connection: args.connection,
        dry_run: args.dry_run,
        mapper: MapOptions {
            max_event_bytes: config.max_event_bytes,
            ..MapOptions::default()
        },
    };
    let summary = replay(config, request, Arc::new(Bar(ProgressBar::new(0)))).await?;
    out.print(&summary, || {
        let verb = if summary.dry_run { "Would replay" } else { "Replayed" };
        let mut text = format!(
            "{verb} {} raw records (mapper v{}): {} events, {} dropped messages, {} dead letters; {} records skipped (outside the range or other connections).\n\n",
            summary.records, summary.mapper_version, summary.events, summary.dropped, summary.dead_letters, summary.skipped
        );
        text += &table(
            &["CONNECTION", "RECORDS", "EVENTS", "DEAD LETTERS"],
            summary
                .connections
                .iter()
                .map(|(id, c)| vec![id.clone(), c.records.to_string(), c.events.to_string(), c.dead_letters.to_string()])
                .collect(),
        );
        text
    })
}
