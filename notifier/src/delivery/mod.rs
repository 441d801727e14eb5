//! The delivery workers: claim what is due, send within `GF_WEBHOOK_CONCURRENCY` attempts at
//! once and `GF_WEBHOOK_ENDPOINT_CONCURRENCY` per endpoint (a slow or dead endpoint only ever
//! holds its own slots), and record every attempt.
//!
//! - [`worker`]: the loop that claims, sends and hands results to the recorder;
//! - [`recorder`]: writes the attempt logs in batches; a log PostgreSQL refuses costs only itself.

pub mod recorder;
mod worker;

pub use worker::run;
