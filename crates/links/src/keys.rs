//! The API keys a replica holds in memory: every live key by the SHA-256 of the key, so checking a
//! request's key costs one hash and one map lookup, no database round trip.
//!
//! The set is trusted only while this replica LISTENs (see [`crate::cache::listen`]): every key
//! change announces `NOTIFY gitrev_keys` when it commits, and each announcement drops the set, to
//! be reloaded (one query) by the next request that needs it. While the LISTEN connection is down
//! an announcement could be missed, so nothing is kept: each keyed request reads the live keys
//! from the database, and a key revoked elsewhere stops working here at once either way.
//!
//! Keys are compared by digest: a lookup's timing can reveal at most something about the digest,
//! from which nothing about a key can be learned. `GITREV_API_TOKEN`, when set, is an admin key
//! compared in constant time. A request notes its key's use in an atomic; when each key was last
//! used is written in batches ([`Keyring::flush_used`], every few seconds), never on a request's
//! path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use std::num::NonZeroU32;
use std::time::Duration;

use chrono::NaiveDateTime;
use gitrev_store::keys::{digest, KeyGrant, KeyLimit, Scope};
use gitrev_store::{Store, StoreError};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use prometheus::IntCounterVec;

/// Who a request is, as far as the API's access rules go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// No key exists and none is required (development and test only): everything is allowed.
    Open,
    /// A live key (or the `GITREV_API_TOKEN`, id 0).
    Granted(KeyGrant),
    /// No key presented, or one that is not (or no longer) a key.
    Denied,
}

/// The keyring of one replica; clones share it.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// SHA-256 of `GITREV_API_TOKEN`.
    token: Option<[u8; 32]>,
    /// SHA-256 of `GITREV_METRICS_TOKEN`: `/metrics` needs it when set.
    metrics_token: Option<[u8; 32]>,
    /// Production: a request without a key is denied even when no key exists.
    always_on: bool,
    /// Whether announcements reach this replica (the LISTEN connection is up).
    listening: AtomicBool,
    /// Moves on every announcement and every change of `listening`: a set loaded before it moved
    /// is not kept.
    generation: AtomicU64,
    /// The live keys; `None` until (re)loaded.
    keys: RwLock<Option<Arc<Held>>>,
    /// The service's rate limit for a key without its own.
    default_limit: Limit,
    /// Each key's bucket and last use, by key id, made on first use and kept across reloads of
    /// the set (a key's limit changing makes a new bucket).
    limiters: RwLock<HashMap<i64, Arc<KeyState>>>,
    /// Requests refused, by key id.
    limited: IntCounterVec,
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// What a replica keeps of one key between requests: its bucket and when it was last used (Unix
/// seconds), and the last use already written. Atomics: a request takes no lock to note its use.
struct KeyState {
    limit: Limit,
    limiter: Limiter,
    last_used: AtomicI64,
    written: AtomicI64,
}

/// Requests per second and burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub rate: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Limit {
    /// `own` where the key has its own, else `self`.
    fn over(self, own: KeyLimit) -> Limit {
        Limit {
            rate: own.rate.and_then(NonZeroU32::new).unwrap_or(self.rate),
            burst: own.burst.and_then(NonZeroU32::new).unwrap_or(self.burst),
        }
    }
}

/// A keyed request's standing with its rate limit, for the `ratelimit-*` headers (and
/// `retry-after` when refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateStanding {
    /// The bucket's size (`ratelimit-limit`).
    pub limit: u32,
    /// Requests left now (`ratelimit-remaining`).
    pub remaining: u32,
    /// Seconds until the bucket is full again (`ratelimit-reset`).
    pub reset_secs: u64,
    /// Refused: seconds until one more request is let through (`retry-after`).
    pub retry_after_secs: Option<u64>,
}

/// Whole seconds, rounded up (a client told 0 would retry at once).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The keys a replica holds.
struct Held {
    by_digest: HashMap<[u8; 32], KeyGrant>,
    /// Some key was ever made (revoked ones count): access control stays on.
    any_made: bool,
}

/// The grant of `GITREV_API_TOKEN`.
pub fn token_grant() -> KeyGrant {
    KeyGrant {
        id: 0,
        scope: Scope::Admin,
        limit: KeyLimit::default(),
        user_id: None,
    }
}

impl Keyring {
    pub fn new(
        store: Store,
        token: Option<&str>,
        metrics_token: Option<&str>,
        always_on: bool,
        default_limit: Limit,
        limited: IntCounterVec,
    ) -> Keyring {
        Keyring {
            inner: Arc::new(Inner {
                store,
                token: token.map(|t| digest(t.as_bytes())),
                metrics_token: metrics_token.map(|t| digest(t.as_bytes())),
                always_on,
                listening: AtomicBool::new(false),
                generation: AtomicU64::new(0),
                keys: RwLock::new(None),
                default_limit,
                limiters: RwLock::new(HashMap::new()),
                limited,
            }),
        }
    }

    /// Whether `presented` may read `/metrics`: always when no `GITREV_METRICS_TOKEN` is set, else
    /// only with that token (compared in constant time).
    pub fn admits_metrics(&self, presented: Option<&[u8]>) -> bool {
        match (&self.inner.metrics_token, presented) {
            (None, _) => true,
            (Some(token), Some(presented)) => constant_time_eq(token, &digest(presented)),
            (Some(_), None) => false,
        }
    }

    /// Checks `presented` (the bearer credential of a request, if any). Answers from memory while
    /// this replica listens and holds the set; else from the database (one query).
    pub async fn check(&self, presented: Option<&[u8]>) -> Result<Access, StoreError> {
        let presented = presented.map(digest);
        if let (Some(token), Some(presented)) = (&self.inner.token, &presented) {
            if constant_time_eq(token, presented) {
                return Ok(Access::Granted(token_grant()));
            }
        }
        let keys = self.keys().await?;
        if !keys.any_made && self.inner.token.is_none() && !self.inner.always_on {
            return Ok(Access::Open);
        }
        let Some(grant) = presented.and_then(|p| keys.by_digest.get(&p)) else {
            return Ok(Access::Denied);
        };
        Ok(Access::Granted(*grant))
    }

    /// The live keys: the set held, or a fresh read (kept if nothing was announced meanwhile and
    /// this replica listens).
    async fn keys(&self) -> Result<Arc<Held>, StoreError> {
        let inner = &self.inner;
        if inner.listening.load(Ordering::Acquire) {
            if let Some(keys) = read(&inner.keys).as_ref() {
                return Ok(keys.clone());
            }
        }
        let generation = inner.generation.load(Ordering::Acquire);
        let set = inner.store.live_keys().await?;
        let keys = Arc::new(Held {
            by_digest: set.live.into_iter().collect(),
            any_made: set.any_made,
        });
        if inner.listening.load(Ordering::Acquire) {
            let mut held = write(&inner.keys);
            if inner.generation.load(Ordering::Acquire) == generation {
                *held = Some(keys.clone());
            }
        }
        Ok(keys)
    }

    /// Takes one request from `grant`'s bucket (and notes the key's use): its standing, refused
    /// or not.
    pub fn take(&self, grant: &KeyGrant) -> RateStanding {
        let inner = &self.inner;
        let limit = inner.default_limit.over(grant.limit);
        let held = read(&inner.limiters)
            .get(&grant.id)
            .filter(|state| state.limit == limit)
            .cloned();
        let state = held.unwrap_or_else(|| {
            let quota = Quota::per_second(limit.rate).allow_burst(limit.burst);
            let made = Arc::new(KeyState {
                limit,
                limiter: RateLimiter::direct(quota).with_middleware(),
                last_used: AtomicI64::new(0),
                written: AtomicI64::new(0),
            });
            write(&inner.limiters).insert(grant.id, made.clone());
            made
        });
        state.last_used.store(unix_now(), Ordering::Relaxed);
        let limiter = &state.limiter;
        let size = limit.burst.get();
        let refill = |missing: u32| {
            ceil_secs(Duration::from_secs_f64(
                f64::from(missing) / f64::from(limit.rate.get()),
            ))
        };
        match limiter.check() {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                RateStanding {
                    limit: size,
                    remaining,
                    reset_secs: refill(size - remaining.min(size)),
                    retry_after_secs: None,
                }
            }
            Err(not_until) => {
                inner
                    .limited
                    .with_label_values(&[&grant.id.to_string()])
                    .inc();
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                RateStanding {
                    limit: size,
                    remaining: 0,
                    reset_secs: refill(size),
                    retry_after_secs: Some(ceil_secs(wait).max(1)),
                }
            }
        }
    }

    /// A key change was announced: drop the set.
    pub fn changed(&self) {
        tracing::debug!("API keys changed; dropping the keys held");
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        *write(&self.inner.keys) = None;
    }

    /// The LISTEN connection came up (`true`) or was lost (`false`); either way the set is dropped.
    pub fn listening(&self, up: bool) {
        self.inner.listening.store(up, Ordering::Release);
        self.changed();
    }

    /// Writes the last uses noted since the previous flush (one statement). A failed write is
    /// tried again at the next flush, with whatever came since.
    pub async fn flush_used(&self) -> Result<usize, StoreError> {
        let pending: Vec<(i64, i64, Arc<KeyState>)> = read(&self.inner.limiters)
            .iter()
            // Id 0 is GITREV_API_TOKEN: no row to write.
            .filter(|(id, _)| **id != 0)
            .filter_map(|(id, state)| {
                let used = state.last_used.load(Ordering::Relaxed);
                (used > state.written.load(Ordering::Relaxed)).then(|| (*id, used, state.clone()))
            })
            .collect();
        let rows: Vec<(i64, NaiveDateTime)> = pending
            .iter()
            .filter_map(|(id, used, _)| {
                Some((*id, chrono::DateTime::from_timestamp(*used, 0)?.naive_utc()))
            })
            .collect();
        self.inner.store.touch_keys(&rows).await?;
        for (_, used, state) in &pending {
            state.written.fetch_max(*used, Ordering::Relaxed);
        }
        Ok(rows.len())
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Compares every byte whatever the first difference, so the time taken does not depend on it.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_digests_compare_equal_and_any_one_byte_differs() {
        let a = [7u8; 32];
        assert!(constant_time_eq(&a, &a));
        for i in 0..32 {
            let mut b = a;
            b[i] ^= 1;
            assert!(!constant_time_eq(&a, &b), "byte {i}");
        }
    }
}
