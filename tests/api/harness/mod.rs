//! The harness every test module shares, one concern a module:
//!
//! - [`server`]: starting and stopping `gitrev serve` (the shared server, servers of a test's own,
//!   signals, directories);
//! - [`http`]: the client, requests through a `TestServer` and their `Reply`, raw sockets;
//! - [`fixtures`]: unique data and the users and urls tests make;
//! - [`shapes`]: what a user, url, event and error look like;
//! - [`db`]: databases of a test's own, direct reads, and the `gitrev` command line;
//! - [`metrics`]: reading `/metrics`;
//! - [`clicks`]: waiting until the clicks of answered redirects are written, and reading events;
//! - [`poll`]: waiting on a fact with a deadline, the one way any test waits;
//! - [`proxy`]: a TCP proxy that partitions the network between a server and PostgreSQL.
//!
//! Their items are re-exported here, so a test module imports what it uses from `crate::harness`.

pub mod analytics;
pub mod clicks;
pub mod db;
pub mod fixtures;
pub mod http;
pub mod metrics;
pub mod poll;
pub mod proxy;
pub mod server;
pub mod shapes;

pub use clicks::*;
pub use db::*;
pub use fixtures::*;
pub use http::*;
pub use metrics::*;
pub use poll::*;
pub use server::*;
pub use shapes::*;
