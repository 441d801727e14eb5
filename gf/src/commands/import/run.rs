//! The import itself: for each file, a reader thread makes batches ([`crate::reader`]); this task
//! appends them through the receiver's sink, several at once, and records each acknowledged one,
//! in order, in the file's resume state.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gf_receiver::sink::{RawSink, SinkError};
use gf_runtime::backoff::Backoff;
use gf_schemas::raw::RawRecordMeta;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::reader::{self, Batch, ReadJob};
use crate::report::{FileReport, FileStatus, Observer, Summary, locate};
use crate::state::{self, FileIdentity, ImportState, Start, Totals};
use crate::{ImportError, Options, Target};

/// Batches read ahead of the ones in flight: the reader stays just ahead of the broker.
const READ_AHEAD: usize = 2;
/// Sends of one batch while the broker does not acknowledge it (each waits up to the
/// producer's delivery timeout).
const ATTEMPTS: u32 = 5;

/// One file to import, as planned before anything is sent.
struct Plan {
    path: PathBuf,
    identity: FileIdentity,
    state_path: PathBuf,
    state: ImportState,
    start: Start,
}

/// Imports `options.files` into `target` through `sink`, file after file, until done or `stop`.
/// Every file's resume state is checked first, so a file that changed since an interrupted
/// import is refused before anything is sent.
pub async fn import(
    target: &Target,
    options: &Options,
    sink: Arc<dyn RawSink>,
    observer: Arc<dyn Observer>,
    stop: &CancellationToken,
) -> Result<Summary, ImportError> {
    let started = Instant::now();
    let plans = plan(target.connection_id, options)?;
    let total: u64 = plans
        .iter()
        .filter(|p| p.start != Start::Finished)
        .map(|p| p.identity.size)
        .sum();
    observer.started(total);
    let mut summary = Summary::new(target.connection_id, target.provider);
    let mut run = Run {
        target,
        options,
        sink,
        observer,
        stop,
        told: Arc::new(AtomicUsize::new(0)),
        bytes_before: 0,
    };
    for mut plan in plans {
        let mut report = FileReport {
            path: plan.path.display().to_string(),
            status: FileStatus::Interrupted,
            resumed_from: match plan.start {
                Start::Resume(at) => Some(at),
                _ => None,
            },
            state: plan.state_path.display().to_string(),
            counts: Totals::default(),
        };
        if plan.start == Start::Finished {
            report.status = FileStatus::Skipped;
            summary.skipped_files += 1;
            summary.file_reports.push(report);
            continue;
        }
        if stop.is_cancelled() {
            summary.interrupted = true;
            summary.file_reports.push(report);
            continue;
        }
        summary.files += 1;
        let result = run.file(&mut plan, &mut report, &mut summary).await;
        summary.add(&report.counts);
        summary.file_reports.push(report);
        match result {
            Ok(true) => {}
            Ok(false) => summary.interrupted = true,
            Err(e) => return Err(e),
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Each file's identity and resume state; refuses a changed file, reads the same file once.
fn plan(connection: Uuid, options: &Options) -> Result<Vec<Plan>, ImportError> {
    if let Some(dir) = &options.state_dir {
        std::fs::create_dir_all(dir).map_err(|error| ImportError::StateDir {
            path: dir.clone(),
            error,
        })?;
    }
    let mut seen = HashSet::new();
    let mut plans = Vec::new();
    for path in &options.files {
        let identity = FileIdentity::of(path).map_err(|error| ImportError::File {
            path: path.clone(),
            error,
        })?;
        if !seen.insert(identity.path.clone()) {
            continue;
        }
        let state_path = state::path_for(&identity, options.state_dir.as_deref(), connection);
        let existing = ImportState::load(&state_path)?;
        let start = state::start(existing.as_ref(), &identity, &state_path, options.restart)?;
        let state = match (&start, existing) {
            (Start::Resume(_) | Start::Finished, Some(state)) => state,
            _ => ImportState::new(connection, identity.clone()),
        };
        plans.push(Plan {
            path: path.clone(),
            identity,
            state_path,
            state,
            start,
        });
    }
    Ok(plans)
}

struct Run<'a> {
    target: &'a Target,
    options: &'a Options,
    sink: Arc<dyn RawSink>,
    observer: Arc<dyn Observer>,
    stop: &'a CancellationToken,
    /// Malformed lines told so far.
    told: Arc<AtomicUsize>,
    /// Bytes of the files finished in this run, for progress.
    bytes_before: u64,
}

impl Run<'_> {
    /// Imports one file from its start; true when it was read to its end.
    async fn file(
        &mut self,
        plan: &mut Plan,
        report: &mut FileReport,
        summary: &mut Summary,
    ) -> Result<bool, ImportError> {
        let from = match plan.start {
            Start::Resume(at) => at,
            _ => Default::default(),
        };
        let (tx, mut rx) = mpsc::channel(READ_AHEAD);
        let offset = Arc::new(AtomicU64::new(0));
        let job = ReadJob {
            path: plan.path.clone(),
            from,
            provider: self.target.provider,
            max_bytes: self.options.batch_bytes,
            max_events: self.options.batch_events,
            offset,
            told: self.told.clone(),
            observer: self.observer.clone(),
        };
        let reading = tokio::task::spawn_blocking(move || reader::read(job, tx));

        // Ctrl-C stops taking batches; the ones in flight are still acknowledged and recorded.
        let (sink, target, stop) = (self.sink.clone(), *self.target, self.stop);
        let path = plan.path.clone();
        let batches =
            futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).take_until(stop.cancelled());
        // Boxed, so dropping it closes the channel and ends the reader.
        let mut acknowledged = Box::pin(
            batches
                .map(|batch| deliver(sink.clone(), target, &path, batch))
                .buffered(self.options.in_flight.max(1)),
        );
        let mut finished = false;
        let mut failure = None;
        let mut file_bytes = 0;
        while let Some(result) = acknowledged.next().await {
            let batch = match result {
                Ok(batch) => batch,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            let counts = Totals {
                events: batch.summary.received as u64,
                accepted: batch.summary.accepted as u64,
                dropped: batch.summary.dropped as u64,
                malformed: batch.malformed,
                batches: u64::from(batch.stored_body().is_some()),
            };
            let state = &mut plan.state;
            state.position = batch.end;
            state.entry_name = batch.entry_name.clone();
            state.done = batch.last;
            add(&mut state.totals, &counts);
            if let Err(e) = state.save(&plan.state_path) {
                failure = Some(e.into());
                break;
            }
            add(&mut report.counts, &counts);
            summary.body_bytes += batch.stored_body().map_or(0, |b| b.len() as u64);
            file_bytes = if batch.last {
                plan.identity.size
            } else {
                batch.offset
            };
            finished = batch.last;
            self.observer.progress(
                self.bytes_before + file_bytes,
                summary.events + report.counts.events,
            );
        }
        // The reader ends once nothing takes its batches.
        drop(acknowledged);
        let read = reading
            .await
            .map_err(|e| ImportError::Reader(e.to_string()))?;
        summary.bytes += file_bytes;
        self.bytes_before += plan.identity.size;
        if let Some(e) = failure {
            return Err(e);
        }
        summary.problems.extend(read?);
        if finished {
            report.status = FileStatus::Imported;
        }
        Ok(finished)
    }
}

fn add(totals: &mut Totals, counts: &Totals) {
    totals.events += counts.events;
    totals.accepted += counts.accepted;
    totals.dropped += counts.dropped;
    totals.malformed += counts.malformed;
    totals.batches += counts.batches;
}

/// Appends `batch` as the receiver appends a request's body (same key, headers and sink),
/// sending it again while the broker does not acknowledge it; a batch with nothing accepted is
/// not stored, as the receiver does not store it.
async fn deliver(
    sink: Arc<dyn RawSink>,
    target: Target,
    path: &Path,
    batch: Batch,
) -> Result<Batch, ImportError> {
    let Some(body) = batch.stored_body() else {
        return Ok(batch);
    };
    let span = tracing::info_span!(
        "gf.import.batch",
        connection = %target.connection_id,
        events = batch.summary.received,
    );
    let meta = RawRecordMeta {
        connection_id: target.connection_id,
        product_id: target.product_id,
        provider: target.provider,
        received_at_ms: chrono::Utc::now().timestamp_millis(),
        request_id: Uuid::now_v7().to_string(),
        content_type: Some("application/json".into()),
        traceparent: gf_runtime::telemetry::traceparent(&span, None)
            .or_else(|| Some(gf_receiver::trace::child_traceparent(None))),
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut attempt = 1;
    loop {
        match sink.append(&meta, body).instrument(span.clone()).await {
            Ok(_) => return Ok(batch),
            Err(SinkError::Unavailable(reason)) if attempt < ATTEMPTS => {
                tracing::warn!(attempt, %reason, "the broker did not acknowledge a batch; sending it again");
                tokio::time::sleep(backoff.next_delay()).await;
                attempt += 1;
            }
            Err(error) => {
                return Err(ImportError::Produce {
                    at: locate(path, batch.entry_name.as_deref(), batch.end.line),
                    error,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use gf_receiver::payload;
    use gf_receiver::sink::{Behaviour, MemorySink};
    use gf_schemas::Provider;

    use super::*;
    use crate::report::Quiet;
    use crate::source::tests::{TempFile, gzip, zip};

    fn target() -> Target {
        Target {
            connection_id: Uuid::from_u128(11),
            product_id: Uuid::from_u128(22),
            provider: Provider::Amplitude,
        }
    }

    fn options(files: &[&Path], batch_events: usize) -> Options {
        Options {
            files: files.iter().map(|p| p.to_path_buf()).collect(),
            state_dir: None,
            restart: false,
            batch_events,
            batch_bytes: 100_000,
            in_flight: 3,
        }
    }

    fn lines(prefix: &str, n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("{{\"event_type\":\"e\",\"$insert_id\":\"{prefix}{i}\"}}\n"))
            .collect::<String>()
            .into_bytes()
    }

    /// The insert ids of every record the sink holds, in order.
    fn insert_ids(sink: &MemorySink) -> Vec<String> {
        sink.records()
            .iter()
            .flat_map(|(_, body)| {
                let events: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap();
                events
                    .into_iter()
                    .map(|e| e["$insert_id"].as_str().unwrap().to_owned())
            })
            .collect()
    }

    /// Cancels the run after `after` acknowledged batches, as Ctrl-C does.
    struct StopAfter {
        after: u64,
        seen: Mutex<u64>,
        stop: CancellationToken,
    }

    impl Observer for StopAfter {
        fn progress(&self, _bytes: u64, _events: u64) {
            let mut seen = self.seen.lock().unwrap();
            *seen += 1;
            if *seen == self.after {
                self.stop.cancel();
            }
        }
    }

    #[tokio::test]
    async fn an_interrupted_import_continues_without_sending_a_batch_twice() {
        let archive = zip(&[
            ("1/1_2024-01-01_0#0.json.gz", gzip(&lines("a", 25))),
            ("1/1_2024-01-01_1#0.json.gz", gzip(&lines("b", 25))),
        ]);
        let file = TempFile::new("export.zip", &archive);
        let options = options(&[&file.0], 4);
        let sink = Arc::new(MemorySink::default());
        let stop = CancellationToken::new();
        let observer = Arc::new(StopAfter {
            after: 3,
            seen: Mutex::new(0),
            stop: stop.clone(),
        });
        let first = import(&target(), &options, sink.clone(), observer, &stop)
            .await
            .unwrap();
        assert!(first.interrupted);
        assert_eq!(first.file_reports[0].status, FileStatus::Interrupted);
        let sent_first = sink.records().len() as u64;
        // The batches in flight when it stopped were acknowledged and recorded too.
        assert!(sent_first >= 3, "{sent_first}");
        assert_eq!(first.batches, sent_first);

        let second = import(
            &target(),
            &options,
            sink.clone(),
            Arc::new(Quiet),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(!second.interrupted);
        assert!(second.file_reports[0].resumed_from.is_some());
        assert_eq!(first.events + second.events, 50);
        let ids = insert_ids(&sink);
        let unique: HashSet<_> = ids.iter().collect();
        assert_eq!((ids.len(), unique.len()), (50, 50), "no line sent twice");

        // Finished: a third run sends nothing; --restart sends it all again.
        let third = import(
            &target(),
            &options,
            sink.clone(),
            Arc::new(Quiet),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!((third.skipped_files, third.events), (1, 0));
        let restarted = import(
            &target(),
            &Options {
                restart: true,
                ..options.clone()
            },
            sink.clone(),
            Arc::new(Quiet),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(restarted.events, 50);
    }

    #[tokio::test]
    async fn records_carry_the_receivers_headers_and_counts() {
        let mut text = lines("x", 3);
        text.extend_from_slice(b"{\"user_id\":\"u\"}\nnot json\n");
        let file = TempFile::new("events.jsonl", &text);
        let sink = Arc::new(MemorySink::default());
        let summary = import(
            &target(),
            &options(&[&file.0], 1000),
            sink.clone(),
            Arc::new(Quiet),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(
            (
                summary.events,
                summary.accepted,
                summary.dropped,
                summary.malformed
            ),
            (4, 3, 1, 1)
        );
        assert_eq!(summary.problems.len(), 1);
        assert!(summary.problems[0].contains("events.jsonl, line 5"));
        let records = sink.records();
        assert_eq!(records.len(), 1);
        let (meta, body) = &records[0];
        assert_eq!(
            (meta.connection_id, meta.product_id, meta.provider),
            (
                target().connection_id,
                target().product_id,
                Provider::Amplitude
            )
        );
        assert_eq!(meta.content_type.as_deref(), Some("application/json"));
        assert!(meta.traceparent.is_some());
        let counted = payload::inspect(Provider::Amplitude, body, 1000).unwrap();
        assert_eq!((counted.received, counted.accepted), (4, 3));
    }

    #[tokio::test]
    async fn a_refused_batch_fails_the_run_and_a_rerun_sends_it() {
        let file = TempFile::new("events.jsonl", &lines("x", 3));
        let sink = Arc::new(MemorySink::default());
        sink.behave(Behaviour::TooLarge);
        let error = import(
            &target(),
            &options(&[&file.0], 1),
            sink.clone(),
            Arc::new(Quiet),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(
            error.to_string().contains("events.jsonl, line 1"),
            "{error}"
        );
        sink.behave(Behaviour::Store);
        let summary = import(
            &target(),
            &options(&[&file.0], 1),
            sink.clone(),
            Arc::new(Quiet),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(summary.events, 3);
    }

    #[tokio::test]
    async fn a_changed_file_is_refused_before_anything_is_sent() {
        let file = TempFile::new("events.jsonl", &lines("x", 3));
        let stop = CancellationToken::new();
        let observer = Arc::new(StopAfter {
            after: 1,
            seen: Mutex::new(0),
            stop: stop.clone(),
        });
        let sink = Arc::new(MemorySink::default());
        let options = Options {
            in_flight: 1,
            ..options(&[&file.0], 1)
        };
        let first = import(&target(), &options, sink.clone(), observer, &stop)
            .await
            .unwrap();
        assert!(first.interrupted);
        std::fs::write(&file.0, lines("y", 5)).unwrap();
        let sent = sink.records().len();
        let error = import(
            &target(),
            &options,
            sink.clone(),
            Arc::new(Quiet),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains("--restart"), "{error}");
        assert_eq!(sink.records().len(), sent);
    }
}
