//! Printing results: one JSON document with `--json`, readable text otherwise.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    /// Prints `value` as JSON, or `text` for people.
    pub fn print<T: Serialize>(
        &self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        let document = if self.json {
            serde_json::to_string_pretty(value)?
        } else {
            text()
        };
        write_line(&document).map(drop)
    }

    /// Prints one record of a stream: compact JSON on one line (JSON Lines, for `jq` and
    /// scripts), or `text`. Returns false once the reader has gone (`| head`).
    pub fn line<T: Serialize>(
        &self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> anyhow::Result<bool> {
        let line = if self.json {
            serde_json::to_string(value)?
        } else {
            text()
        };
        write_line(&line)
    }

    /// Reports an error (and its causes) and returns the exit code.
    pub fn fail(&self, error: &anyhow::Error) -> ExitCode {
        let message = format!("{error:#}");
        if self.json {
            println!("{}", serde_json::json!({ "error": { "message": message } }));
        }
        eprintln!("error: {message}");
        ExitCode::FAILURE
    }
}

/// Writes `text` and a newline to stdout; false when the reader has gone. A reader that stopped
/// early (`| head`) is not an error of ours.
fn write_line(text: &str) -> anyhow::Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        other => other.map(|()| true).map_err(Into::into),
    }
}

/// A plain aligned table for list commands.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    if rows.is_empty() {
        return "(none)".into();
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    std::iter::once(line(headers.iter().map(|h| h.to_string()).collect()))
        .chain(rows.into_iter().map(line))
        .collect::<Vec<_>>()
        .join("\n")
}
