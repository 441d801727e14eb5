//! The normalizer: golden mappings, properties of the mapping, rows, and the consumer on a real broker.
//!
//! One test binary for the crate (modules inside), so a cold build links it once.

mod consumer;
mod golden;
mod properties;
mod rows;
