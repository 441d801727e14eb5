//! The normalizer stage: maps raw payloads to canonical business events (gf.raw.v1 to gf.events.v1).
//!
//! Not built yet: see the project's issues. This crate exists so the workspace layout of
//! `DESIGN.md` is in place; it exports nothing and nothing depends on it.
