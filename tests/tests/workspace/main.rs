//! Tests across the stages: the control plane, counting that agrees between receiver and
//! normalizer, ingest to events end to end, and the rules read off the source.
//!
//! One test binary (modules inside), so a cold build links it once; the trace test stays its own
//! binary because it installs the process's tracing subscriber.

mod control_plane;
mod counting_agrees;
mod deadletters;
mod import;
mod ingest_to_events;
mod source_rules;
