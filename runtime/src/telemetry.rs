//! Logging set-up shared by every binary. Logs go to stderr so `--json` output on stdout stays
//! one clean document.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), `GF_LOG_FORMAT=json`
/// switches to one JSON object per line for log collectors.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if std::env::var("GF_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A second call (tests, `gf run all`) keeps the first subscriber.
    drop(result);
}
