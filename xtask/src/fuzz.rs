//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/`, each for a bounded time.
//!
//! Each target first replays `fuzz/regressions/TARGET/` (inputs that once failed), then fuzzes
//! from a corpus seeded with the golden files of the mapping tests. libFuzzer needs a nightly
//! compiler's `-Z` flags: the `nightly` toolchain when rustup has one, otherwise the installed
//! compiler with `RUSTC_BOOTSTRAP=1`. Without sanitizers (`-s none`): our code is safe Rust, and
//! what we look for are panics, runaway memory and hangs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub const TARGETS: [&str; 4] = [
    "receiver_body",
    "amplitude_mapper",
    "segment_mapper",
    "counting_agrees",
];
const CARGO_FUZZ_VERSION: &str = "0.13.1";

pub fn run(root: &Path, seconds: u64, targets: &[String]) -> anyhow::Result<()> {
    let targets: Vec<&str> = if targets.is_empty() {
        TARGETS.to_vec()
    } else {
        for t in targets {
            if !TARGETS.contains(&t.as_str()) {
                bail!("unknown fuzz target {t:?}; the targets are {TARGETS:?}");
            }
        }
        targets.iter().map(String::as_str).collect()
    };
    ensure_cargo_fuzz()?;
    let nightly = has_nightly();
    for target in targets {
        let corpus = seed_corpus(root, target)?;
        let regressions = root.join("fuzz/regressions").join(target);
        std::fs::create_dir_all(&regressions)?;
        eprintln!("==> fuzz {target}: replaying {}", regressions.display());
        fuzz(root, nightly, target, &[&regressions], &["-runs=0"])?;
        eprintln!("==> fuzz {target}: {seconds}s from {}", corpus.display());
        let limit = format!("-max_total_time={seconds}");
        fuzz(
            root,
            nightly,
            target,
            &[&corpus],
            &[
                &limit,
                "-max_len=65536",
                "-rss_limit_mb=2048",
                "-timeout=10",
                // The final statistics, not a line per new input.
                "-verbosity=0",
                "-print_final_stats=1",
            ],
        )
        .with_context(|| {
            format!(
                "fuzz target {target} failed: the input is in fuzz/artifacts/{target}/; \
                 copy it to fuzz/regressions/{target}/ and add a test for it"
            )
        })?;
    }
    Ok(())
}

fn fuzz(
    root: &Path,
    nightly: bool,
    target: &str,
    corpora: &[&Path],
    libfuzzer_args: &[&str],
) -> anyhow::Result<()> {
    let mut cmd = Command::new("cargo");
    if nightly {
        cmd.arg("+nightly");
    } else {
        cmd.env("RUSTC_BOOTSTRAP", "1");
    }
    cmd.current_dir(root)
        .args(["fuzz", "run", "--fuzz-dir", "fuzz", "--sanitizer", "none"])
        .arg(target)
        .args(corpora)
        .arg("--")
        .args(libfuzzer_args);
    let status = cmd.status().context("cannot run cargo fuzz")?;
    if !status.success() {
        bail!("cargo fuzz run {target} failed ({status})");
    }
    Ok(())
}

/// `target/fuzz/corpus/TARGET`, holding the golden inputs for a start (libFuzzer adds its own).
fn seed_corpus(root: &Path, target: &str) -> anyhow::Result<PathBuf> {
    let corpus = root.join("target/fuzz/corpus").join(target);
    std::fs::create_dir_all(&corpus)?;
    let providers: &[&str] = match target {
        "amplitude_mapper" => &["amplitude"],
        "segment_mapper" => &["segment"],
        _ => &["amplitude", "segment"],
    };
    for provider in providers {
        let golden = root.join("normalizer/tests/golden").join(provider);
        for entry in std::fs::read_dir(&golden)
            .with_context(|| format!("cannot read {}", golden.display()))?
        {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".json") && !name.ends_with(".expected.json") {
                std::fs::copy(&path, corpus.join(format!("golden-{provider}-{name}")))?;
            }
        }
    }
    Ok(corpus)
}

fn has_nightly() -> bool {
    Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    eprintln!("==> installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    let status = Command::new("cargo")
        .args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ_VERSION,
        ])
        .status()
        .context("cannot run cargo install")?;
    if !status.success() {
        bail!("installing cargo-fuzz failed ({status})");
    }
    Ok(())
}
