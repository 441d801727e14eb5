//! The attributor stage: ties canonical events to users, organizations and conversations in PostgreSQL.
//!
//! Not built yet: see the project's issues. This crate exists so the workspace layout of
//! `DESIGN.md` is in place; it exports nothing and nothing depends on it.
