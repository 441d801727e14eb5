//! The attributor stage: canonical events (`gf.events.v1`) and the SDK's conversation stream
//! (`gf.conversations.v1`) to users, organizations, conversations and business events in
//! PostgreSQL, and `gf.events.attributed.v1`.
//!
//! - [`resolve`]: who an identity is (external id, then email, then create or stay anonymous),
//!   pure and planned per batch;
//! - [`store`]: one transaction per batch, the 15-minute conversation window, idempotent event
//!   rows and conversation outcome summaries;
//! - [`consumer`]: the consumer loop (`gf run attributor`).
//!
//! The window is decided by event time against the recorded conversation activity, so a replay
//! attributes an event the same way whatever arrived since.

pub mod consumer;
pub mod resolve;
pub mod store;
