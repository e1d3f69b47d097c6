//! gitrev: a link service — users, short URLs and events behind a JSON API, with a redirect path built
//! to take internet-scale traffic.
//!
//! This package is the binary and what only the binary does; everything else lives in the crates
//! under `crates/`, where tests and benchmarks reach the same code the service runs:
//! - [`config`]: settings from the environment and flags, validated once, handed to each crate as
//!   its own settings struct.
//! - [`cli`]: the commands (`serve`, `migrate`, `seed`, …) and where each finds its database.
//! - [`service`]: building the shared state and its background tasks, serving, stopping in order.
//! - [`tier`]: the link tier's file, opened at start and rebuilt in a child process.
//!
//! The crates, bottom up (each may use only those below it; see `docs/architecture.md`):
//! `gitrev-core` (model, validation, short codes, CSV parsing), `gitrev-telemetry` (metrics,
//! logging), `gitrev-embedded` (the development PostgreSQL), `gitrev-store` (the database),
//! `gitrev-links` (link cache, snapshot, grouped writers), `gitrev-http` (listener, router, bodies,
//! responses) and `gitrev-api` (handlers and the one error edge).

pub mod cli;
pub mod config;
pub mod service;
pub mod tier;

#[cfg(test)]
mod proptests;
