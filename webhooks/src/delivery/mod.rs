//! Deliveries: one signed POST per attempt, and the log of every attempt.
//!
//! Due deliveries are claimed with a lease (their next attempt moved 5 minutes ahead), so two
//! workers never send the same attempt and a crashed worker's claims come back. The notifier's
//! workers drive the claims; the concurrency limits are theirs.

//!
//! - [`client`]: the HTTP client, its guarded DNS and the SSRF check at connect time;
//! - [`attempt`]: one signed POST and what it did, as an [`AttemptLog`] (never fails);
//! - [`probe`]: a test delivery sent now ("Test Delivery");
//! - [`repository`]: claims, attempt logs, retries and pruning in PostgreSQL;

mod attempt;
mod client;
mod probe;
mod repository;

pub use attempt::{attempt, storable_text};
pub use client::{ClientError, webhook_client};
pub use probe::{TestError, TestOutcome, test_delivery};
pub use repository::{
    AttemptView, DeliveryScope, DeliveryView, RetrySelection, attempts, claim, claim_now, finish,
    finish_batch, list, prune, retry,
};

use std::time::Duration;

use chrono::{DateTime, Utc};
use gf_runtime::Config;
use serde_json::Value;
use uuid::Uuid;

use crate::schedule::{self, Outcome};

/// One attempt's time limit.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of an answer's body is logged.
pub const MAX_LOGGED_BODY: usize = 16 * 1024;

/// The retry schedule and the claim lease, from the configuration.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    pub delays: Vec<Duration>,
    pub lease: Duration,
}

impl DeliverySettings {
    pub fn from_config(config: &Config) -> Self {
        DeliverySettings {
            delays: config
                .webhook_retry_delays
                .clone()
                .unwrap_or_else(|| schedule::RETRY_DELAYS.to_vec()),
            lease: Duration::from_secs(config.webhook_lease_secs),
        }
    }

    fn lease_interval(&self) -> String {
        format!("{} seconds", self.lease.as_secs())
    }
}

/// A due delivery, claimed for one attempt.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub attempt: i32,
    pub payload: Value,
    pub url: String,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Trace context of what fired the event.
    traceparent: Option<String>,
}

/// What one attempt did, as logged.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptLog {
    pub started_at: DateTime<Utc>,
    pub latency: Duration,
    pub status_code: Option<u16>,
    pub error_class: Option<&'static str>,
    pub error: Option<String>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Option<String>,
    pub outcome: Outcome,
}
