//! What every consumer loop shares, one job per module:
//!
//! - [`incoming`]: a consumed record as plain values, for stage logic;
//! - [`output`]: producing outputs and waiting for their acknowledgements;
//! - [`refusal`]: why a record was refused, and its dead letter;
//! - [`offsets`]: receiving batches, storing and committing offsets only for what is durable;
//! - [`supervise`]: running a stage's consumer again after a failure, with [`Backoff`].
//!
//! Every item is re-exported here, so callers name `gf_runtime::pipeline::X` whatever module
//! holds it.

pub mod incoming;
pub mod offsets;
pub mod output;
pub mod refusal;
pub mod supervise;

pub use crate::backoff::Backoff;
pub use incoming::Incoming;
pub use offsets::{OffsetGate, commit_stored, next_batch, recv, store};
pub use output::{
    DELIVERY_TIMEOUT, Output, OutputError, acknowledged, acknowledged_or_refused, encode, enqueue,
    produce_all, producer,
};
pub use refusal::{
    Refusal, dead_letter, dead_letter_from, headers_of, parse_json, source_of, traceparent_of,
};
pub use supervise::supervise;
