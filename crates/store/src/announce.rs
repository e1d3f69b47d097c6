//! Announcing link changes to every replica: `NOTIFY gitrev_links, '<code>'`, sent in the same
//! transaction as the change so that it is delivered exactly when the change commits.
//!
//! Every change that affects a redirect (a url updated, deactivated or deleted, a user deleted, a
//! new custom code, a reset) announces the codes concerned; the link cache above the store LISTENs
//! on [`CHANNEL`] and evicts them. The store owns the channel because it is the one that sends.

/// The channel replicas announce link changes on.
pub const CHANNEL: &str = "gitrev_links";
/// The payload that clears every cache (too many codes to name, or all of them).
pub const CLEAR_ALL: &str = "*";
/// Before a code: the link was created (`sql/0006_link_changes.sql` sends `+code` for every
/// inserted url). Codes never start with it (`[A-Za-z0-9_-]`).
pub const CREATED: char = '+';
