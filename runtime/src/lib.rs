//! What every stage shares, each in one place:
//!
//! - [`config`]: configuration from the environment, with errors that say what to set;
//! - [`topics`] and [`kafka`]: topic names, Kafka client settings, `gf topics ensure`;
//! - [`stage`]: the one batch-stage runner (batching, retries, isolation, dead letters, offsets);
//!   [`pipeline`]: producing outputs, dead letters and offsets, shared by every consumer loop;
//!   [`producer`]: the one Kafka producer every stage of a process shares;
//!   [`classify`]: the one answer to "outage or refusal?" for every error;
//! - [`db`]: the PostgreSQL pool and the migrations; [`deadletters`]: listing and replaying them;
//! - [`token`]: ingest tokens and shared secrets (generation, format, scrypt hashing);
//! - [`telemetry`]: logs and OpenTelemetry traces; [`metrics`]: Prometheus, Kafka statistics;
//! - [`shutdown`]: SIGINT/SIGTERM as a cancellation token.

pub mod alloc;
pub mod backoff;
pub mod classify;
pub mod config;
pub mod db;
pub mod deadletters;
pub mod kafka;
pub mod metrics;
pub mod paging;
pub mod pipeline;
pub mod producer;
pub mod quota;
pub mod shutdown;
pub mod stage;
pub mod telemetry;
pub mod token;
pub mod topics;

pub use config::Config;
