//! `gf import`: a customer's exported analytics history into the pipeline through the path live
//! traffic takes, so deduplication, replay and attribution work on it unchanged.
//!
//! This directory is the `gf_import` library (the `gf` package's library target), so the
//! workspace tests drive an import in-process; the command around it is
//! `gf/src/commands/import.rs` in the `gf` binary.
//!
//! - [`source`]: export files as numbered lines (a zip of gzipped JSON lines, gzip, plain);
//!   [`lines`]: one bounded line at a time;
//! - [`batch`]: the receiver's check of each line, and request-sized bodies in the provider's
//!   batch shape;
//! - [`reader`]: the reader thread, lines to counted batches;
//! - [`run`]: appending batches through the receiver's sink and recording each acknowledged one
//!   ([`state`], the resume state);
//! - [`report`]: progress and the summary.
//!
//! Each batch is appended to `gf.raw.v1` as the receiver appends a request's body: the same
//! key, headers and sink, counted by the receiver's own `inspect`. Lines go as they are: the
//! normalizer reads Amplitude's Export format (`event_time`, `$insert_id`, `uuid`,
//! `event_properties.$revenue`) as it reads the Webhook destination's events.

pub mod batch;
pub mod lines;
pub mod reader;
pub mod report;
pub mod run;
pub mod source;
pub mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gf_control::{ConnectionStatus, ControlPlane};
use gf_receiver::sink::{KafkaSink, RawSink};
use gf_runtime::Config;
use gf_runtime::kafka::KafkaSettings;
use gf_runtime::producer::SharedProducer;
use gf_runtime::topics::Topics;
use gf_schemas::Provider;
use uuid::Uuid;

pub use report::{FileReport, FileStatus, Observer, Quiet, SHOWN_PROBLEMS, Summary};
pub use run::import;
pub use source::Position;

/// Batches sent and not yet acknowledged, at most.
pub const IN_FLIGHT: usize = 8;

/// What to import and how.
#[derive(Clone, Debug)]
pub struct Options {
    pub files: Vec<PathBuf>,
    /// Where resume states are kept; `None`: beside each file.
    pub state_dir: Option<PathBuf>,
    /// Import every file from its first line, whatever an earlier run recorded.
    pub restart: bool,
    /// Events per batch at most (at most the receiver's `GF_MAX_BATCH_EVENTS`).
    pub batch_events: usize,
    /// Bytes per batch body at most (the receiver's `GF_MAX_BODY_BYTES`).
    pub batch_bytes: usize,
    /// Batches in flight at most.
    pub in_flight: usize,
}

impl Options {
    /// The receiver's limits from `config`; `batch_events` lowers the events per batch.
    pub fn new(
        config: &Config,
        files: Vec<PathBuf>,
        batch_events: Option<usize>,
    ) -> Result<Options, ImportError> {
        let most = config.max_batch_events;
        let batch_events = batch_events.unwrap_or(most);
        if batch_events == 0 || batch_events > most {
            return Err(ImportError::BatchEvents { most });
        }
        Ok(Options {
            files,
            state_dir: None,
            restart: false,
            batch_events,
            batch_bytes: config.max_body_bytes,
            in_flight: IN_FLIGHT,
        })
    }
}

/// The connection imported into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub connection_id: Uuid,
    pub product_id: Uuid,
    /// Decides how lines are read and batched.
    pub provider: Provider,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Control(#[from] gf_control::ControlError),
    #[error(
        "connection {id} is paused: it takes no events, imported or live, until `gf connection resume {id}`"
    )]
    Paused { id: Uuid },
    #[error(
        "connection {id} is disconnected for good: it takes no events; import into a connection that is not"
    )]
    Disconnected { id: Uuid },
    #[error("--batch-events must be 1 to {most} (GF_MAX_BATCH_EVENTS)")]
    BatchEvents { most: usize },
    #[error("cannot import {}: {error}", path.display())]
    File {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot create the state directory {}: {error}", path.display())]
    StateDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Read(#[from] reader::ReaderError),
    #[error("the file reader stopped: {0}")]
    Reader(String),
    #[error(
        "the batch ending at {at} was not stored: {error}; the run stopped, and rerunning the same command continues after the last acknowledged batch"
    )]
    Produce {
        at: String,
        error: gf_receiver::sink::SinkError,
    },
    #[error(transparent)]
    Config(#[from] gf_runtime::config::ConfigError),
    #[error("cannot reach the broker (KAFKA_BROKERS): {0}")]
    Broker(String),
    #[error("topic {0} does not exist (run `gf topics ensure`)")]
    NoTopic(String),
}

/// The connection `id`, refused unless it takes events now, as the receiver would refuse it.
/// Every provider can be imported: the `api` connection takes JSON lines of public-API events.
pub async fn target(control: &ControlPlane, id: Uuid) -> Result<Target, ImportError> {
    let connection = control.connection(id).await?;
    match connection.status {
        ConnectionStatus::Paused => return Err(ImportError::Paused { id }),
        ConnectionStatus::Disconnected => return Err(ImportError::Disconnected { id }),
        ConnectionStatus::Pending | ConnectionStatus::Active => {}
    }
    Ok(Target {
        connection_id: connection.id,
        product_id: connection.product_id,
        provider: connection.provider,
    })
}

/// The receiver's Kafka sink on the raw topic, with a producer of the import's own (acks=all,
/// idempotent) that waits for the broker as long as a stage does; refused when the broker or the
/// topic is missing.
pub async fn kafka_sink(config: &Config) -> Result<Arc<dyn RawSink>, ImportError> {
    let settings = KafkaSettings::from_config(config)?;
    let topic = Topics::new(&config.topic_prefix).raw;
    let probe: rdkafka::consumer::BaseConsumer = settings
        .consumer_config("gf-import", "gf-import-unused")
        .create()
        .map_err(|e| ImportError::Broker(e.to_string()))?;
    let name = topic.clone();
    // A consumer's metadata request never creates the topic it asks about.
    let partitions = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::Consumer;
        probe
            .fetch_metadata(Some(&name), Duration::from_secs(10))
            .map(|m| m.topics().first().map_or(0, |t| t.partitions().len()))
    })
    .await
    .map_err(|e| ImportError::Broker(e.to_string()))?
    .map_err(|e| ImportError::Broker(e.to_string()))?;
    if partitions == 0 {
        return Err(ImportError::NoTopic(topic));
    }
    let producer = SharedProducer::new(
        &settings,
        "gf-import",
        gf_runtime::pipeline::DELIVERY_TIMEOUT,
    )
    .map_err(|e| ImportError::Broker(e.to_string()))?;
    Ok(Arc::new(KafkaSink::with_producer(producer, &topic)))
}
