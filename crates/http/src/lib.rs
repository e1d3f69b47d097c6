//! The HTTP side: the listener and connection lifecycle ([`server`]), path matching ([`router`]),
//! request bodies and query strings ([`body`], [`query`]) and response building ([`response`]).
//!
//! Generic over what answers a request: [`server::serve`] takes a service function, and nothing
//! here names a handler or the API's error type (the crate cannot: the API is above it). Errors
//! found here ([`body::BodyError`], a query's `ValidationError`) are the API's to answer.

pub mod body;
pub mod query;
pub mod response;
pub mod router;
pub mod server;

pub use body::Body;
pub type Response = hyper::Response<Body>;
