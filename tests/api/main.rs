//! The HTTP contract of gitrev (`docs/api.md`), checked against the real binary.
//!
//! One test binary on purpose: every file directly under `tests/` would be its own binary with its own
//! embedded PostgreSQL and its own server. Here the harness (`harness`) starts one server (and through
//! it one cluster) for the whole run, and each module checks one part of the contract. Tests run in
//! parallel against that shared database, so each makes its own data and never assumes an empty
//! table; tests that need exact counts or ids get a database of their own (`harness::fresh_database`).

mod harness;

mod analytics;
mod bad_bodies;
mod bulk;
mod concurrency;
mod events;
mod grouping;
mod health;
mod hotpaths;
mod keys;
mod lifecycle;
mod limits;
mod links;
mod openapi;
mod ops;
mod outage;
mod pagination;
mod partition;
mod redirect;
mod schema;
mod seed;
mod shutdown;
mod snapshot;
mod tier;
mod tier_serving;
mod urls;
mod users;
