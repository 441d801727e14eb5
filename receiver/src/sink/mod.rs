//! Where accepted request bodies go, behind [`RawSink`]: the handler answers from what the sink
//! says, so every answer is tested in-process with [`MemorySink`] and served with [`KafkaSink`].

mod kafka;
mod memory;

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use gf_schemas::raw::RawRecordMeta;
use rdkafka::error::KafkaError;

pub use kafka::KafkaSink;
pub use memory::{Behaviour, MemorySink};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("the broker did not acknowledge the record: {0}")]
    Unavailable(String),
    #[error("the broker refuses a record this large")]
    TooLarge,
    #[error("cannot create the Kafka producer: {0}")]
    Setup(#[from] KafkaError),
}

/// Where a record was stored, and how long it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub took: Duration,
    pub partition: i32,
    pub offset: i64,
}

/// Appends one request's raw record durably, or says why it could not.
pub trait RawSink: Send + Sync {
    /// Resolves once the record is durable (the answer may then be 200), or definitely failed.
    fn append<'a>(
        &'a self,
        meta: &'a RawRecordMeta,
        body: &'a Bytes,
    ) -> BoxFuture<'a, Result<Appended, SinkError>>;

    /// Whether the sink can take records now (`/readyz`); may block up to `timeout`.
    fn reachable(&self, timeout: Duration) -> bool;

    /// Waits up to `timeout` for records still in flight (shutdown).
    fn flush(&self, timeout: Duration);
}
