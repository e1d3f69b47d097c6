//! Announcing link changes to every replica: `NOTIFY gitrev_links, '<code>'`, sent in the same
//! transaction as the change so that it is delivered exactly when the change commits.
//!
//! The triggers on `urls` (`sql/0006_link_changes.sql`) send them, for every write to the table
//! whatever made it: `+code` for a url created, the code for one updated or deleted (a user's
//! deletion included), `*` when the table is emptied. The store's statements do not announce
//! anything themselves. The link cache above the store LISTENs on [`CHANNEL`].

/// The channel replicas announce link changes on.
pub const CHANNEL: &str = "gitrev_links";
/// The payload that clears every cache (too many codes to name, or all of them).
pub const CLEAR_ALL: &str = "*";
/// Before a code: the link was created (`sql/0006_link_changes.sql` sends `+code` for every
/// inserted url). Codes never start with it (`[A-Za-z0-9_-]`).
pub const CREATED: char = '+';
