//! The bottom of gitrev: what the service is about, with nothing of how it is served or stored.
//!
//! - [`model`]: the resources (users, urls, events), their validation and their JSON form.
//! - [`shortcode`]: generating and checking short codes, and the names they may never take.
//! - [`import`]: reading the users, urls and events CSV files, row by row.
//! - [`retry`]: the one backoff policy every retry loop of the service uses.
//!
//! No HTTP and no database here (the crate does not depend on either), so every crate above can
//! use these types and none of them can leak into this one.

pub mod import;
pub mod model;
pub mod retry;
pub mod shortcode;

pub use model::{FieldError, ValidationError};

/// Which slice of a list to read: the query string asks for it, the store reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}
