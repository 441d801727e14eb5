//! What an import tells as it goes ([`Observer`]) and at its end ([`Summary`]).

use std::path::Path;

use gf_schemas::Provider;
use serde::Serialize;
use uuid::Uuid;

use crate::source::Position;
use crate::state::Totals;

/// At most this many malformed lines are told one by one in a run; the summary counts them all.
pub const SHOWN_PROBLEMS: usize = 20;

/// Hears about an import while it runs (a progress bar, a test). Called from the import's task
/// and, for malformed lines, from its reader thread.
pub trait Observer: Send + Sync {
    /// Before the first file: the bytes of every file to read.
    fn started(&self, _total_bytes: u64) {}
    /// After each acknowledged batch: bytes of the files read so far (by acknowledged batches),
    /// and events acknowledged in this run.
    fn progress(&self, _bytes: u64, _events: u64) {}
    /// One of the first [`SHOWN_PROBLEMS`] malformed lines: file, entry, line number, why.
    fn malformed(&self, _problem: &str) {}
}

/// An observer that hears nothing.
pub struct Quiet;

impl Observer for Quiet {}

/// What one file's import did in this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    /// Read to its end in this run.
    Imported,
    /// Imported completely by an earlier run: skipped.
    Skipped,
    /// Stopped before its end (Ctrl-C, or the run failed on an earlier file).
    Interrupted,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileReport {
    pub path: String,
    pub status: FileStatus,
    /// Where this run started in the file, when it continued an earlier one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<Position>,
    /// Where the resume state is kept.
    pub state: String,
    /// Acknowledged in this run.
    #[serde(flatten)]
    pub counts: Totals,
}

/// The run's outcome; counts are of acknowledged batches, as the receiver would have answered.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub connection: Uuid,
    pub provider: Provider,
    /// Files read in this run (completely or not); `skippedFiles` were finished before.
    pub files: usize,
    pub skipped_files: usize,
    /// Events received, as the receiver counts them: accepted plus dropped.
    pub events: u64,
    pub accepted: u64,
    pub dropped: u64,
    /// Lines skipped: not JSON, not an object, refused by the receiver's checks, too long.
    pub malformed: u64,
    /// Records appended to the raw topic (batches with an accepted event).
    pub batches: u64,
    /// File bytes read.
    pub bytes: u64,
    /// Body bytes appended to the raw topic.
    pub body_bytes: u64,
    pub seconds: f64,
    /// Stopped before the end; a rerun continues where it stopped.
    pub interrupted: bool,
    /// The first malformed lines, each with its file and line number.
    pub problems: Vec<String>,
    pub file_reports: Vec<FileReport>,
}

impl Summary {
    pub fn new(connection: Uuid, provider: Provider) -> Self {
        Summary {
            connection,
            provider,
            files: 0,
            skipped_files: 0,
            events: 0,
            accepted: 0,
            dropped: 0,
            malformed: 0,
            batches: 0,
            bytes: 0,
            body_bytes: 0,
            seconds: 0.0,
            interrupted: false,
            problems: Vec::new(),
            file_reports: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, counts: &Totals) {
        self.events += counts.events;
        self.accepted += counts.accepted;
        self.dropped += counts.dropped;
        self.malformed += counts.malformed;
        self.batches += counts.batches;
    }
}

/// Where a line is: `file, line N`, or `file (entry), line N` in a zip.
pub fn locate(file: &Path, entry: Option<&str>, line: u64) -> String {
    match entry {
        Some(entry) => format!("{} ({entry}), line {line}", file.display()),
        None => format!("{}, line {line}", file.display()),
    }
}
