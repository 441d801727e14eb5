//! The normalizer stage: raw payloads (`gf.raw.v1`) to canonical business events (`gf.events.v1`).
//!
//! - [`mapping`]: the pure mapping library, one module per provider plus the shared rules;
//! - [`influence`]: positive / negative / neutral from an event's name;
//! - [`overrides`]: the `gf_*` magic properties; [`bounds`]: the limits every event keeps;
//! - [`consumer`]: the consumer loop (`gf run normalizer`);
//! - [`replay`]: re-normalizing a time range of the raw topic (`gf replay`).

pub mod bounds;
pub mod consumer;
pub mod influence;
pub mod mapping;
pub mod overrides;
pub mod replay;
