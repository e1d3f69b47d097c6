//! The HTTP side: the listener and connection lifecycle ([`server`]), path matching ([`router`]),
//! request bodies and query strings ([`body`], [`query`]) and response building ([`response`]).

pub mod body;
pub mod query;
pub mod response;
pub mod router;
pub mod server;

/// The body type of every response: bytes built in full before sending.
pub type Body = http_body_util::Full<bytes::Bytes>;
pub type Response = hyper::Response<Body>;
