//! Between the store and the API: what keeps the redirect off the database and the writes grouped.
//!
//! - [`cache`]: the link cache in front of the redirect, and its invalidation across replicas
//!   (LISTEN on the store's announcement channel).
//! - [`snapshot`]: the cache's links on disk (rkyv), so a restarted replica starts warm.
//! - [`tier`]: when a replica may answer from its link tier (every link, memory-mapped): trust,
//!   the codes changed since its snapshot, rebuilds (issue #12; not on the redirect path yet).
//! - [`lifecycle`]: what a link's expiry, click limit, fallback and query forwarding decide on
//!   the redirect path, from what the cache holds.
//! - [`keys`]: the API keys each replica holds in memory (reloaded on the store's key
//!   announcements), so that a keyed request costs no database round trip.
//! - [`batch`]: the click queue and its writers, and the group writer behind `POST /users`,
//!   `POST /urls` and `POST /events`.
//!
//! Built on the store (rows, announcements, the click type); knows nothing of requests. The one
//! HTTP type here is the cached `location` header value, encoded once when a link is cached.

pub mod batch;
pub mod cache;
pub mod keys;
pub mod lifecycle;
pub mod snapshot;
pub mod tier;
