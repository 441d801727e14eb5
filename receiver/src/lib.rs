//! The receiver stage: authenticates ingest requests, checks the batch shape and appends the raw body to gf.raw.v1.
//!
//! Not built yet: see the project's issues. This crate exists so the workspace layout of
//! `DESIGN.md` is in place; it exports nothing and nothing depends on it.
