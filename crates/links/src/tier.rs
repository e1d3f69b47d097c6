//! When a replica may answer from its link tier (`gitrev_tier`, issue #12): the rules, kept apart
//! from the redirect path so they can be tested on their own.
//!
//! A tier holds every link as of one database snapshot. It is *trusted* for a code only when:
//! - the replica knows every change made since that snapshot, because it read the change log
//!   (`Store::links_changed_since`) after its LISTEN connection was up, and that connection has
//!   not dropped since;
//! - the code is not among those changes, whether they came from the log or from announcements
//!   heard since.
//!
//! For a code that is trusted and absent, the answer is "no such link", with no query. For
//! anything else ([`Answer::Ask`]), the caller asks the database as it would without a tier.
//!
//! A rebuild reads a new tier in the background, while the old one keeps serving. Codes announced
//! from the moment the rebuild starts are kept in a journal. When the new tier is swapped in, its
//! changed set is the change log read since its snapshot, plus that journal. If LISTEN dropped
//! during the rebuild, the new tier is not trusted until the next catch-up.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use gitrev_store::tier::Changes;
use gitrev_tier::{LinkRef, Origin, Tier};

/// What the tier says about a code.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<'a> {
    /// Not trusted for this code: ask the database.
    Ask,
    /// The tier is trusted and holds no such code: there is no such link.
    Absent,
    /// The link as it is in the database.
    Found(LinkRef<'a>),
}

#[derive(Default)]
struct Inner {
    tier: Option<Arc<Tier>>,
    /// Codes changed since the tier's snapshot (from the change log or announcements).
    changed: HashSet<Box<str>>,
    /// The LISTEN connection is up and has not dropped since it was last (re)established.
    listening: bool,
    /// Every change since the tier's snapshot is known (see the module's doc).
    trusted: bool,
    /// The snapshot the change log has been read up to, for the next catch-up.
    read_to: Option<String>,
    /// While a rebuild runs: the codes announced since it began.
    journal: Option<HashSet<Box<str>>>,
    /// LISTEN dropped while the rebuild ran: its announcements may be lost.
    lost_during_rebuild: bool,
    /// Every link changed while the rebuild ran: what it read is void.
    cleared_during_rebuild: bool,
}

impl Inner {
    /// No tier until the next rebuild; a rebuild running now read before this and is void.
    fn drop_tier(&mut self) {
        self.tier = None;
        self.changed.clear();
        self.trusted = false;
        self.read_to = None;
        if self.journal.is_some() {
            self.cleared_during_rebuild = true;
        }
    }
}

/// Where a replica's tier stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The tier's origin; `None`: no tier.
    pub origin: Option<Origin>,
    pub links: usize,
    /// Codes changed since its snapshot, answered from the database.
    pub changed: usize,
    pub trusted: bool,
}

/// The replica's tier and what it knows of the changes since.
#[derive(Default)]
pub struct TierState {
    inner: RwLock<Inner>,
}

impl std::fmt::Debug for TierState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.read();
        f.debug_struct("TierState")
            .field("links", &inner.tier.as_ref().map(|t| t.len()))
            .field("changed", &inner.changed.len())
            .field("trusted", &inner.trusted)
            .finish()
    }
}

impl TierState {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A state holding `tier`, not trusted until [`TierState::caught_up`].
    pub fn with_tier(tier: Tier) -> TierState {
        let read_to = Some(tier.origin().snapshot);
        TierState {
            inner: RwLock::new(Inner {
                tier: Some(Arc::new(tier)),
                read_to,
                ..Inner::default()
            }),
        }
    }

    /// What the tier says about `code`; `answer` gets it while the tier is held.
    pub fn lookup<R>(&self, code: &str, answer: impl FnOnce(Answer<'_>) -> R) -> R {
        let tier = {
            let inner = self.read();
            match &inner.tier {
                Some(tier) if inner.trusted && !inner.changed.contains(code) => tier.clone(),
                _ => return answer(Answer::Ask),
            }
        };
        match tier.get(code) {
            Some(found) => answer(Answer::Found(found)),
            None => answer(Answer::Absent),
        }
    }

    /// Where the tier stands (for the rebuild's schedule and the metrics).
    pub fn status(&self) -> Status {
        let inner = self.read();
        Status {
            origin: inner.tier.as_ref().map(|t| t.origin()),
            links: inner.tier.as_ref().map_or(0, |t| t.len()),
            changed: inner.changed.len(),
            trusted: inner.trusted,
        }
    }

    /// A catch-up is due: LISTEN is up, there is a tier, and it is not trusted yet.
    pub fn needs_catch_up(&self) -> bool {
        let inner = self.read();
        inner.listening && !inner.trusted && inner.tier.is_some()
    }

    /// The snapshot to read the change log from at the next catch-up.
    pub fn read_to(&self) -> Option<String> {
        self.read().read_to.clone()
    }

    /// A code was announced (created, changed or deleted; the code without the `+` of a
    /// creation): it bypasses the tier from now on.
    pub fn announced(&self, code: &str) {
        let mut inner = self.write();
        inner.changed.insert(code.into());
        if let Some(journal) = &mut inner.journal {
            journal.insert(code.into());
        }
    }

    /// Every link changed at once (the tables were emptied): the tier is dropped, and the next
    /// rebuild replaces it.
    pub fn everything_changed(&self) {
        self.write().drop_tier();
    }

    /// The LISTEN connection dropped: announcements may be lost until the next catch-up.
    pub fn listen_lost(&self) {
        let mut inner = self.write();
        inner.listening = false;
        inner.trusted = false;
        if inner.journal.is_some() {
            inner.lost_during_rebuild = true;
        }
    }

    /// The LISTEN connection is (re)established: announcements arrive from now on. The tier is
    /// trusted again once the change log has been read ([`TierState::caught_up`]).
    pub fn listen_up(&self) {
        self.write().listening = true;
    }

    /// The change log, read after [`TierState::listen_up`] from [`TierState::read_to`]: the tier
    /// is trusted again, except for the codes it names. A log that says everything changed drops
    /// the tier. `read_from` is the snapshot the log was read from. The answer is ignored (false)
    /// when it is for another snapshot (a rebuild swapped the tier in between) or LISTEN dropped
    /// meanwhile; the caller then reads again.
    pub fn caught_up(&self, read_from: &str, changes: &Changes) -> bool {
        let mut inner = self.write();
        if !inner.listening || inner.read_to.as_deref() != Some(read_from) {
            return false;
        }
        if changes.everything {
            inner.drop_tier();
            return true;
        }
        inner
            .changed
            .extend(changes.codes.iter().map(|c| c.as_str().into()));
        inner.read_to = Some(changes.snapshot.clone());
        inner.trusted = inner.tier.is_some();
        true
    }

    /// A rebuild begins: from now on, announced codes are also kept for the new tier.
    pub fn rebuild_begins(&self) {
        let mut inner = self.write();
        inner.journal = Some(HashSet::new());
        // With LISTEN down, announcements are being lost already.
        inner.lost_during_rebuild = !inner.listening;
        inner.cleared_during_rebuild = false;
    }

    /// A rebuild failed: back to the tier in use.
    pub fn rebuild_failed(&self) {
        let mut inner = self.write();
        inner.journal = None;
        inner.lost_during_rebuild = false;
        inner.cleared_during_rebuild = false;
    }

    /// Swaps in the rebuilt `tier`, given the change log read since its snapshot. It is trusted
    /// at once if LISTEN was up through the whole rebuild, else after the next catch-up. Lookups
    /// see either the old tier with its changes or the new one with its changes, never a mix.
    pub fn rebuilt(&self, tier: Tier, changes: &Changes) {
        let mut inner = self.write();
        let journal = inner.journal.take().unwrap_or_default();
        let lost = std::mem::take(&mut inner.lost_during_rebuild);
        if std::mem::take(&mut inner.cleared_during_rebuild) {
            // The tables were emptied after this tier was read: it is void, and so is the old.
            return;
        }
        if changes.everything {
            inner.drop_tier();
            return;
        }
        let mut changed: HashSet<Box<str>> =
            changes.codes.iter().map(|c| c.as_str().into()).collect();
        changed.extend(journal);
        inner.tier = Some(Arc::new(tier));
        inner.changed = changed;
        inner.read_to = Some(changes.snapshot.clone());
        // Announcements lost while the rebuild ran, or LISTEN down: catch up first.
        inner.trusted = inner.listening && !lost;
    }
}

#[cfg(test)]
mod tests;
