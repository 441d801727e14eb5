//! The reading side of an import, on a thread of its own: lines to checked, counted batches,
//! handed over through a bounded channel (so reading waits for the broker, never the reverse).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use gf_receiver::payload::{self, BatchSummary, PayloadError};
use gf_schemas::Provider;
use tokio::sync::mpsc;

use crate::batch::{BatchBuilder, LineCheck};
use crate::report::{Observer, SHOWN_PROBLEMS, locate};
use crate::source::{self, Flow, Line, LineAt, Position, ReadError};

/// One request's worth of lines, or the end of the file.
pub struct Batch {
    /// The body, when a line was taken since the last batch.
    pub body: Option<Bytes>,
    /// The receiver's counts of `body`.
    pub summary: BatchSummary,
    /// The last line it covers, skipped lines included.
    pub end: Position,
    pub entry_name: Option<String>,
    /// Malformed lines skipped since the previous batch.
    pub malformed: u64,
    /// The file offset read when it closed.
    pub offset: u64,
    /// Nothing follows in the file.
    pub last: bool,
}

impl Batch {
    /// The receiver stores a body only when it accepted an event of it.
    pub fn stored_body(&self) -> Option<&Bytes> {
        self.body.as_ref().filter(|_| self.summary.accepted > 0)
    }
}

pub struct ReadJob {
    pub path: PathBuf,
    pub from: Position,
    pub provider: Provider,
    pub max_bytes: usize,
    pub max_events: usize,
    pub offset: Arc<AtomicU64>,
    /// Malformed lines told so far in the run, over every file.
    pub told: Arc<AtomicUsize>,
    pub observer: Arc<dyn Observer>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Every line passed the receiver's check alone, so the batch cannot fail it: a bug.
    #[error(
        "the receiver's check refuses the batch ending at {at}, whose lines it accepted one by one: {error}"
    )]
    Refused { at: String, error: PayloadError },
}

/// Reads `job`'s file from its position to the end (or until the channel closes), sending each
/// batch; returns the malformed lines it told.
pub fn read(job: ReadJob, tx: mpsc::Sender<Batch>) -> Result<Vec<String>, ReaderError> {
    let builder = BatchBuilder::new(job.provider, job.max_bytes, job.max_events);
    let max_line = builder.max_line();
    let mut batcher = Batcher {
        builder,
        check: LineCheck::new(job.provider),
        end: job.from,
        entry: None,
        malformed: 0,
        told: Vec::new(),
        failure: None,
        job: &job,
        tx,
    };
    let flow = source::each_line(&job.path, job.from, max_line, &job.offset, |at| {
        batcher.line(at, max_line)
    })?;
    if flow == Flow::Finished {
        let _ = batcher.close(true);
    }
    match batcher.failure {
        Some(e) => Err(e),
        None => Ok(batcher.told),
    }
}

struct Batcher<'a> {
    job: &'a ReadJob,
    tx: mpsc::Sender<Batch>,
    builder: BatchBuilder,
    check: LineCheck,
    /// The last line consumed.
    end: Position,
    /// The entry being read: its index and name.
    entry: Option<(usize, Option<String>)>,
    malformed: u64,
    told: Vec<String>,
    failure: Option<ReaderError>,
}

impl Batcher<'_> {
    fn line(&mut self, at: LineAt<'_>, max_line: usize) -> ControlFlow<()> {
        if self.entry.as_ref().map(|(index, _)| *index) != Some(at.entry) {
            self.entry = Some((at.entry, at.entry_name.map(str::to_owned)));
        }
        let problem = match at.line {
            Line::TooLong(len) => Some(format!(
                "{len} bytes, more than the {max_line} one request may hold"
            )),
            Line::Text(text) if text.trim_ascii().is_empty() => None,
            Line::Text(text) => match self.check.check(text) {
                Err(reason) => Some(reason),
                Ok(_) => {
                    // A line that does not fit closes the batch before it.
                    if !self.builder.has_room(text.len()) {
                        self.close(false)?;
                    }
                    self.builder.push(text);
                    None
                }
            },
        };
        if let Some(reason) = problem {
            self.malformed += 1;
            self.tell(&at, &reason);
        }
        self.end = at.position();
        if self.builder.is_full() {
            self.close(false)?;
        }
        ControlFlow::Continue(())
    }

    fn tell(&mut self, at: &LineAt<'_>, reason: &str) {
        if self.job.told.fetch_add(1, Ordering::Relaxed) >= SHOWN_PROBLEMS {
            return;
        }
        let problem = format!(
            "{}: {reason}",
            locate(&self.job.path, at.entry_name, at.number)
        );
        self.job.observer.malformed(&problem);
        self.told.push(problem);
    }

    /// Sends what was gathered (with `last`, even nothing: the end is recorded too).
    fn close(&mut self, last: bool) -> ControlFlow<()> {
        let body = self.builder.take();
        let summary = match &body {
            None => BatchSummary::default(),
            Some(body) => match payload::inspect(self.job.provider, body, self.job.max_events) {
                Ok(summary) => summary,
                Err(error) => {
                    let entry = self.entry.as_ref().and_then(|(_, name)| name.as_deref());
                    self.failure = Some(ReaderError::Refused {
                        at: locate(&self.job.path, entry, self.end.line),
                        error,
                    });
                    return ControlFlow::Break(());
                }
            },
        };
        let batch = Batch {
            body: body.map(Bytes::from),
            summary,
            end: self.end,
            entry_name: self.entry.as_ref().and_then(|(_, name)| name.clone()),
            malformed: std::mem::take(&mut self.malformed),
            offset: self.job.offset.load(Ordering::Relaxed),
            last,
        };
        // The import stopped taking batches (Ctrl-C, a failure): stop reading.
        match self.tx.blocking_send(batch) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Quiet;
    use crate::source::tests::TempFile;

    fn run(text: &str, from: Position, max_events: usize) -> (Vec<Batch>, Vec<String>) {
        let file = TempFile::new("events.jsonl", text.as_bytes());
        let (tx, mut rx) = mpsc::channel(1000);
        let job = ReadJob {
            path: file.0.clone(),
            from,
            provider: Provider::Amplitude,
            max_bytes: 10_000,
            max_events,
            offset: Arc::new(AtomicU64::new(0)),
            told: Arc::new(AtomicUsize::new(0)),
            observer: Arc::new(Quiet),
        };
        let told = read(job, tx).unwrap();
        let mut batches = Vec::new();
        while let Ok(batch) = rx.try_recv() {
            batches.push(batch);
        }
        (batches, told)
    }

    fn at(line: u64) -> Position {
        Position { entry: 0, line }
    }

    #[test]
    fn batches_cover_every_line_and_the_end_is_marked() {
        let text =
            "{\"event_type\":\"a\"}\n\n{\"event_type\":\"b\"}\nnot json\n{\"user_id\":\"u\"}\n";
        let (batches, told) = run(text, Position::default(), 2);
        let ends: Vec<_> = batches.iter().map(|b| (b.end, b.last)).collect();
        // Two events close the first batch at line 3; the rest ends at line 5, last.
        assert_eq!(ends, [(at(3), false), (at(5), true)]);
        assert_eq!(
            batches[0].summary,
            BatchSummary {
                received: 2,
                accepted: 2,
                dropped: 0
            }
        );
        assert_eq!(
            batches[1].summary,
            BatchSummary {
                received: 1,
                accepted: 0,
                dropped: 1
            }
        );
        // A user object alone: received, dropped, and not stored, as the receiver does.
        assert!(batches[1].stored_body().is_none());
        assert_eq!(batches[1].malformed, 1);
        assert_eq!(told.len(), 1);
        assert!(
            told[0].contains("events.jsonl, line 4: not a JSON object"),
            "{told:?}"
        );
    }

    #[test]
    fn a_resumed_read_starts_after_the_recorded_line() {
        let text = "{\"event_type\":\"a\"}\n{\"event_type\":\"b\"}\n{\"event_type\":\"c\"}\n";
        let (batches, _) = run(text, at(2), 10);
        assert_eq!(batches.len(), 1);
        assert_eq!(
            batches[0].body.as_deref(),
            Some(&b"[{\"event_type\":\"c\"}]"[..])
        );
        assert_eq!((batches[0].end, batches[0].last), (at(3), true));
        // Nothing left: only the end is sent, so it is recorded.
        let (batches, _) = run(text, at(3), 10);
        assert_eq!(batches.len(), 1);
        assert!(batches[0].body.is_none() && batches[0].last);
    }

    #[test]
    fn trailing_malformed_lines_are_counted_with_the_end() {
        let (batches, told) = run("{\"event_type\":\"a\"}\n{\n[]\n", Position::default(), 1);
        let counts: Vec<_> = batches.iter().map(|b| (b.malformed, b.last)).collect();
        assert_eq!(counts, [(0, false), (2, true)]);
        assert_eq!(told.len(), 2);
    }
}
