//! The attributor against a real PostgreSQL (and broker for the consumer).
//!
//! One test binary for the crate (modules inside), so a cold build links it once.

mod support;

mod consumer;
mod order;
mod outcomes;
mod store;
