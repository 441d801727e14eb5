//! The control-plane API and the console pages, over HTTP against a real PostgreSQL.
//!
//! One test binary for the crate (modules inside), so a cold build links it once.

mod api;
mod ui;
