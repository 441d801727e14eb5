//! The wire contract: the JSON Schemas, the AsyncAPI document and the Rust types agree.
//!
//! One test binary for the crate (modules inside), so a cold build links it once.

mod asyncapi;
mod contract;
