//! gitrev: a link service — users, short URLs and events behind a JSON API, with a redirect path built
//! to take internet-scale traffic.
//!
//! The binary (`src/main.rs`) only parses the command line; everything else lives here so tests and
//! benchmarks reach the same code the service runs:
//! - [`config`]: settings from the environment and flags, validated once.
//! - [`http`]: listener, router, request bodies, responses.
//! - [`api`]: one handler module per resource; no SQL.
//! - [`model`]: resource structs, validation and their JSON form.
//! - [`store`]: PostgreSQL — pool, migrations, queries, seeding, sequences, schema check.
//! - [`embedded`]: the private PostgreSQL used when no `DATABASE_URL` is given.
//! - [`error`]: the one error type and its mapping to status and JSON body.

pub mod api;
pub mod batch;
pub mod cache;
pub mod cli;
pub mod config;
pub mod embedded;
pub mod error;
pub mod http;
pub mod import;
pub mod model;
pub mod service;
pub mod shortcode;
pub mod snapshot;
pub mod store;
pub mod telemetry;

#[cfg(test)]
mod proptests;
