//! `gf import --connection ID FILE...`: the command around the `gf_import` library
//! (`commands/import/lib.rs`): the connection from the control plane, the broker, Ctrl-C, the
//! progress bar and the summary.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use gf_import::{Observer, Options, SHOWN_PROBLEMS, Summary};
use gf_runtime::Config;
use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::cli::ImportArgs;
use crate::commands::control_plane;
use crate::output::{Output, table};

pub async fn run(
    args: ImportArgs,
    config: &Config,
    out: &Output,
    json: bool,
) -> anyhow::Result<()> {
    let control = control_plane(config)?;
    let target = gf_import::target(&control, args.connection).await?;
    let options = Options {
        state_dir: args.state_dir,
        restart: args.restart,
        ..Options::new(config, args.files, args.batch_events)?
    };
    let sink = gf_import::kafka_sink(config).await?;
    let stop = stop_on_ctrl_c();
    let bar = Bar::new(!json && std::io::stderr().is_terminal());
    let summary = gf_import::import(&target, &options, sink, Arc::new(bar.clone()), &stop).await;
    bar.0.finish_and_clear();
    let summary = summary?;
    if summary.malformed > SHOWN_PROBLEMS as u64 {
        eprintln!(
            "warning: {} malformed lines skipped in all; the first {SHOWN_PROBLEMS} are above",
            summary.malformed
        );
    }
    // As the receiver does for live traffic: the first accepted event turns a pending
    // connection active, and the last one is its last event.
    if summary.accepted > 0
        && let Err(e) = control
            .record_events(target.connection_id, chrono::Utc::now())
            .await
    {
        tracing::warn!(error = %e, "cannot record the connection's activity");
    }
    if summary.interrupted {
        anyhow::bail!(
            "interrupted: {} events in {} batches were acknowledged and recorded; run the same command again to continue after them",
            summary.events,
            summary.batches
        );
    }
    out.print(&summary, || describe(&summary))
        .context("cannot print the summary")
}

/// The first Ctrl-C stops taking batches and lets the ones in flight be acknowledged and
/// recorded; a second quits at once (a rerun sends those again: insert ids deduplicate them).
fn stop_on_ctrl_c() -> CancellationToken {
    let stop = CancellationToken::new();
    let cancel = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        eprintln!(
            "stopping once the batches in flight are acknowledged (Ctrl-C again to quit now)"
        );
        cancel.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    stop
}

/// Events, MB/s and the time left by bytes of the files, on stderr when it is a terminal.
#[derive(Clone)]
struct Bar(ProgressBar);

impl Bar {
    fn new(visible: bool) -> Bar {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Bar(bar)
    }
}

impl Observer for Bar {
    fn started(&self, total_bytes: u64) {
        self.0.set_length(total_bytes);
        self.0.set_message("0 events");
    }

    fn progress(&self, bytes: u64, events: u64) {
        self.0.set_position(bytes);
        self.0.set_message(format!("{} events", HumanCount(events)));
    }

    fn malformed(&self, problem: &str) {
        // Printed above the bar, or plainly when there is none.
        self.0.suspend(|| eprintln!("warning: skipped {problem}"));
    }
}

fn describe(summary: &Summary) -> String {
    let rate = |n: u64| n as f64 / summary.seconds.max(0.001);
    let mut text = format!(
        "Imported {} events into {} connection {} ({} accepted, {} dropped, {} malformed lines skipped) in {} batches: {:.1} MB in {:.1} s ({:.0} events/s, {:.1} MB/s).",
        summary.events,
        summary.provider,
        summary.connection,
        summary.accepted,
        summary.dropped,
        summary.malformed,
        summary.batches,
        summary.bytes as f64 / 1e6,
        summary.seconds,
        rate(summary.events),
        rate(summary.bytes) / 1e6,
    );
    if summary.skipped_files > 0 {
        text += &format!(
            "\n{} file(s) were imported completely before and skipped (--restart imports them again).",
            summary.skipped_files
        );
    }
    text += "\n\n";
    text += &table(
        &[
            "FILE",
            "STATUS",
            "EVENTS",
            "ACCEPTED",
            "DROPPED",
            "MALFORMED",
            "BATCHES",
        ],
        summary
            .file_reports
            .iter()
            .map(|f| {
                let status = serde_json::to_value(f.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                vec![
                    f.path.clone(),
                    status,
                    f.counts.events.to_string(),
                    f.counts.accepted.to_string(),
                    f.counts.dropped.to_string(),
                    f.counts.malformed.to_string(),
                    f.counts.batches.to_string(),
                ]
            })
            .collect(),
    );
    text
}
