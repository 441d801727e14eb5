//! Topic names. A topic is `{prefix}.{name}`; the prefix is [`DEFAULT_PREFIX`] unless configured
//! otherwise, so two pipelines (or two test runs) can share a cluster.

pub const DEFAULT_PREFIX: &str = "gf";

pub const RAW: &str = "raw.v1";
pub const EVENTS: &str = "events.v1";
pub const ATTRIBUTED: &str = "events.attributed.v1";
pub const CONVERSATIONS: &str = "conversations.v1";
pub const SIGNALS: &str = "signals.v1";
pub const DEADLETTER: &str = "deadletter.v1";
/// Compacted: the last record per conversation is its current outcome.
pub const OUTCOMES: &str = "outcomes.v1";

/// Every topic of the pipeline, in the order data flows.
pub const ALL: [&str; 7] = [
    RAW,
    EVENTS,
    ATTRIBUTED,
    CONVERSATIONS,
    SIGNALS,
    DEADLETTER,
    OUTCOMES,
];

/// The full name of topic `name` under `prefix`.
pub fn name(prefix: &str, name: &str) -> String {
    format!("{prefix}.{name}")
}
