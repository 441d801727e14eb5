//! The wire contract of the pipeline.
//!
//! One module per topic of the pipeline, each with the Rust type producers and consumers share.
//! The JSON Schema files under `schemas/json/` describe the same messages for teams that do not
//! use Rust; `tests/schemas/contract.rs` validates serialized samples of every type against them, so the
//! two cannot drift apart.
//!
//! | topic                     | type                                   | schema file |
//! |---------------------------|----------------------------------------|-------------|
//! | `gf.raw.v1`               | body bytes + [`raw::RawRecordMeta`] headers | `raw-headers.v1.schema.json` |
//! | `gf.events.v1`            | [`canonical::CanonicalEvent`]          | `canonical-event.v1.schema.json` |
//! | `gf.events.attributed.v1` | [`attributed::AttributedEvent`]        | `attributed-event.v1.schema.json` |
//! | `gf.conversations.v1`     | [`conversation::ConversationMessage`]  | `conversation.v1.schema.json` |
//! | `gf.signals.v1`           | [`signal::Signal`]                     | `signal.v1.schema.json` |
//! | `gf.deadletter.v1`        | [`deadletter::DeadLetter`]             | `deadletter.v1.schema.json` |
//! | `gf.outcomes.v1`          | [`outcome::ConversationOutcome`]       | `outcome.v1.schema.json` |
//! | public events API (HTTP)  | request body, checked by [`public_event::check`] | `public-event.v1.schema.json` |
//!
//! Consumers must ignore fields they do not know: new optional fields may appear within `v1`.
//! `asyncapi.yaml` describes the topics (channels, keys, headers, producers and consumers) for
//! AsyncAPI tools, with the payloads by reference to the same files; `tests/schemas/asyncapi.rs` checks it
//! against [`topic::ALL`] and validates it with the reference AsyncAPI parser.

pub mod accept;
pub mod attributed;
pub mod canonical;
pub mod conversation;
pub mod deadletter;
pub mod outcome;
pub mod provider;
pub mod public_event;
pub mod raw;
pub mod signal;
pub mod time;
pub mod topic;

pub use provider::Provider;

/// The JSON Schema files, by file name, as shipped in this crate.
pub const SCHEMA_FILES: &[(&str, &str)] = &[
    (
        "common.v1.schema.json",
        include_str!("../json/common.v1.schema.json"),
    ),
    (
        "raw-headers.v1.schema.json",
        include_str!("../json/raw-headers.v1.schema.json"),
    ),
    (
        "canonical-event.v1.schema.json",
        include_str!("../json/canonical-event.v1.schema.json"),
    ),
    (
        "attributed-event.v1.schema.json",
        include_str!("../json/attributed-event.v1.schema.json"),
    ),
    (
        "conversation.v1.schema.json",
        include_str!("../json/conversation.v1.schema.json"),
    ),
    (
        "signal.v1.schema.json",
        include_str!("../json/signal.v1.schema.json"),
    ),
    (
        "deadletter.v1.schema.json",
        include_str!("../json/deadletter.v1.schema.json"),
    ),
    (
        "outcome.v1.schema.json",
        include_str!("../json/outcome.v1.schema.json"),
    ),
    (
        "public-event.v1.schema.json",
        include_str!("../json/public-event.v1.schema.json"),
    ),
];

/// Base URI of the schema `$id`s; files refer to each other relative to it.
pub const SCHEMA_BASE_URI: &str = "https://schemas.greenflash.dev/gf/";
