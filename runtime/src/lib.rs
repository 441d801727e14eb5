//! What every stage shares, each in one place:
//!
//! - [`config`]: configuration from the environment, with errors that say what to set;
//! - [`topics`] and [`kafka`]: topic names, Kafka client settings, `gf topics ensure`;
//! - [`pipeline`]: producing outputs, dead letters and offsets, the same in every consumer loop;
//! - [`db`]: the PostgreSQL pool and the migrations;
//! - [`token`]: ingest tokens and shared secrets (generation, format, scrypt hashing);
//! - [`control`]: products and connections (the control plane behind `gf product|connection`);
//! - [`telemetry`]: logs and OpenTelemetry traces; [`metrics`]: Prometheus, Kafka statistics;
//! - [`shutdown`]: SIGINT/SIGTERM as a cancellation token.

pub mod config;
pub mod control;
pub mod db;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod shutdown;
pub mod telemetry;
pub mod token;
pub mod topics;

pub use config::Config;
