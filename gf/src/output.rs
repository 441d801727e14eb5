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
        let mut stdout = std::io::stdout().lock();
        match writeln!(stdout, "{document}").and_then(|()| stdout.flush()) {
            // A reader that stopped early (`| head`) is not an error of ours.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
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
