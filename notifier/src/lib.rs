//! The notifier stage: turns quality signals into signed, retried outbound webhooks.
//!
//! Not built yet: see the project's issues. This crate exists so the workspace layout of
//! `DESIGN.md` is in place; it exports nothing and nothing depends on it.
