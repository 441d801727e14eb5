//! The secret-leak check after a full test run: the run's whole output and every log file the
//! tests' processes wrote must hold no ingest token and no signing secret.
//!
//! Tests make their secrets at random, so the check looks for their shapes: `gft_` + 16 hex
//! digits + `_` + 43 base64url characters, admin keys (`gfa_`, the same shape), and `whsec_` +
//! base64.

use std::path::{Path, PathBuf};

use anyhow::bail;
use regex::Regex;

/// Where the tests' processes write logs: the fault and security scenarios, the demo.
const LOG_DIRS: [&str; 2] = ["target/faults", "target/demo"];

fn patterns() -> [(&'static str, Regex); 3] {
    [
        (
            "an admin key",
            Regex::new(r"gfa_[0-9a-f]{16}_[A-Za-z0-9_-]{43}").expect("pattern"),
        ),
        (
            "an ingest token",
            Regex::new(r"gft_[0-9a-f]{16}_[A-Za-z0-9_-]{43}").expect("pattern"),
        ),
        (
            "a signing secret",
            Regex::new(r"whsec_[A-Za-z0-9+/]{32,}").expect("pattern"),
        ),
    ]
}

/// Lines that hold a secret, as `file:line: what`, never the secret itself.
pub fn find(text: &str, source: &str) -> Vec<String> {
    let patterns = patterns();
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            patterns
                .iter()
                .find(|(_, p)| p.is_match(line))
                .map(|(what, _)| format!("{source}:{}: {what}", i + 1))
        })
        .collect()
}

fn log_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            log_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "log") {
            out.push(path);
        }
    }
}

/// Scans `output` (the test run's) and the log directories; fails naming each place.
pub fn check(root: &Path, output: &Path) -> anyhow::Result<()> {
    let mut files = vec![output.to_path_buf()];
    for dir in LOG_DIRS {
        log_files(&root.join(dir), &mut files);
    }
    let mut found = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file)?;
        let shown = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        found.extend(find(&String::from_utf8_lossy(&bytes), &shown));
    }
    if !found.is_empty() {
        bail!("secrets in test output or logs:\n{}", found.join("\n"));
    }
    eprintln!(
        "==> no token, admin key or signing secret in the test output and {} log files",
        files.len() - 1
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tokens_and_secrets_and_names_only_their_place() {
        let text = "ok line\n\
                    url https://x/ingest/amplitude/gft_0123456789abcdef_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ\n\
                    lookup gft_0123456789abcdef alone is public\n\
                    secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw+abc/def==\n\
                    key gfa_0123456789abcdef_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ\n\
                    prefix gfa_0123456789abcdef alone is public\n";
        let found = find(text, "run.log");
        assert_eq!(
            found,
            [
                "run.log:2: an ingest token",
                "run.log:4: a signing secret",
                "run.log:5: an admin key"
            ]
        );
        assert!(
            found
                .iter()
                .all(|f| !f.contains("gft_") && !f.contains("whsec_") && !f.contains("gfa_"))
        );
    }
}
