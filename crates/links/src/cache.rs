//! The link cache in front of the redirect, and its invalidation across replicas.
//!
//! `LinkCache` maps a short code to what a redirect needs, with the `location` header already
//! encoded. A miss is loaded once however many requests wait for it (moka's coalesced
//! `try_get_with`), and unknown or inactive codes are cached too, briefly, so a flood of bad codes
//! costs one query per code per negative TTL.
//!
//! Behind the cache sits the link tier (every link, memory-mapped; [`crate::tier`] says when it may
//! answer): a miss asks it before the database, a link it answers enters the cache on its second
//! answer (`Doorkeeper`), and a code it does not know waits at the fence (`Fence`) rather than
//! being asked of the database.
//!
//! Every change that affects a redirect evicts the code locally and is announced by the triggers
//! on `urls` with `NOTIFY gitrev_links, '<code>'` (`+code` for a creation) in the same
//! transaction; every replica `LISTEN`s on its own connection ([`listen`]), evicts, and stops
//! trusting its tier for that code. A replica whose LISTEN connection dropped may have missed
//! announcements, so it clears the whole cache when it reconnects and reads the change log before
//! it trusts its tier again. A TTL bounds staleness as a last resort.
//!
//! A load that raced with an invalidation (the query read the row before the change committed,
//! the announcement arrived before the load finished) must not leave the old value behind: every
//! invalidation bumps an epoch, a load retries while the epoch moves under it, and a value found
//! stale right after insertion is evicted again.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gitrev_core::model::LinkOptions;
use gitrev_core::retry::{self, Retryable};
use gitrev_store::clicks::LIMITS_CHANNEL;
use gitrev_store::keys;
use gitrev_store::tier::{self as store_tier, CHANGES_KEPT};
use gitrev_store::urls::{ClickTarget, Link};
use gitrev_store::{Store, StoreError};
use http::header::HeaderValue;
use http::StatusCode;
use moka::future::Cache;
use moka::notification::RemovalCause;
use prometheus::IntCounterVec;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::keys::Keyring;
use crate::lifecycle::{ClickCounts, Forward, Limits};
use crate::tier::{Answer, TierState};

/// The channel replicas announce link changes on (the store sends). A payload of `*` clears every
/// cache.
pub use gitrev_store::announce::{CHANNEL, CLEAR_ALL, CREATED};

/// A cached answer: the link, or `None` for a code that is unknown or inactive.
pub type Entry = Option<Arc<CachedLink>>;

/// Reads of one code retried while invalidations land under them.
const LOAD_ATTEMPTS: u32 = 4;

/// What a redirect needs, ready to send. Kept small: a million of these should fit in a few
/// hundred MB, so the code is shared with the cache key, the stored target is kept only when it
/// differs from the `location` (it is usually the same text), and a link's expiry, limit, fallback
/// and forwarding sit behind one pointer that plain links leave empty.
#[derive(Debug)]
pub struct CachedLink {
    pub url_id: i64,
    pub user_id: Option<i64>,
    /// The `location` header value: the target in its normalized ASCII form.
    pub location: HeaderValue,
    /// The code, the same allocation as the cache key.
    pub short_code: Arc<str>,
    /// The link's own redirect status; `None`: the server's.
    pub status: Option<StatusCode>,
    /// The target as stored: the bytes of `location` (the same allocation) when it is the same
    /// text, else its own copy.
    target: ClickTarget,
    rules: Option<Box<Rules>>,
}

/// What a link with options decides besides its target.
#[derive(Debug)]
struct Rules {
    /// Microseconds since the Unix epoch (UTC) from which the link is expired.
    expires_at: Option<i64>,
    /// `max_clicks` and this replica's counts of the url's clicks.
    limit: Option<(i64, Arc<ClickCounts>)>,
    /// Where an expired link goes.
    fallback: Option<HeaderValue>,
    forward: Option<Forward>,
    /// The options as stored (for the snapshot and its reconcile).
    options: LinkOptions,
}

/// What a redirect answers.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Redirect there (with the link's status); a GET's click was taken.
    Go(HeaderValue),
    /// Expired, with a fallback: 302 there, no click.
    Fallback(HeaderValue),
    /// Expired, no fallback: 404 `expired`.
    Expired,
}

impl CachedLink {
    /// `None` when the stored target cannot be a `location` (it was validated on the way in, so
    /// only a hand-edited row gets here). A link with a `max_clicks` gets its url's counts from
    /// `limits`, raised to the stored clicks `link` was read with.
    pub fn new(code: Arc<str>, link: &Link, limits: &Limits) -> Option<CachedLink> {
        let normalized = Bytes::from(String::from(url::Url::parse(&link.original_url).ok()?));
        let target = if normalized == link.original_url.as_bytes() {
            ClickTarget::Location(normalized.clone())
        } else {
            ClickTarget::Stored(Arc::from(link.original_url.as_str()))
        };
        let o = &link.options;
        let plain = o.expires_at.is_none()
            && o.max_clicks.is_none()
            && o.expired_url.is_none()
            && !o.forward_query;
        let rules = (!plain).then(|| {
            Box::new(Rules {
                expires_at: o.expires_at.map(|at| at.and_utc().timestamp_micros()),
                limit: o
                    .max_clicks
                    .map(|max| (max, limits.counts(link.url_id, link.clicks))),
                fallback: o.expired_url.as_deref().and_then(|u| {
                    let u = url::Url::parse(u).ok()?;
                    HeaderValue::from_str(u.as_str()).ok()
                }),
                forward: o.forward_query.then(|| Forward::new(&normalized)),
                options: LinkOptions {
                    tags: Vec::new(),
                    ..o.clone()
                },
            })
        });
        let location = HeaderValue::from_maybe_shared(normalized).ok()?;
        Some(CachedLink {
            url_id: link.url_id,
            user_id: link.user_id,
            location,
            short_code: code,
            status: o
                .redirect_status
                .and_then(|s| StatusCode::from_u16(u16::try_from(s).ok()?).ok()),
            target,
            rules,
        })
    }

    /// The target exactly as stored (what click details report).
    pub fn original_url(&self) -> ClickTarget {
        self.target.clone()
    }

    /// The redirect options as stored (`tags` empty).
    pub fn options(&self) -> LinkOptions {
        self.rules
            .as_ref()
            .map(|r| r.options.clone())
            .unwrap_or_else(|| LinkOptions {
                redirect_status: self.status.map(|s| s.as_u16() as i16),
                ..LinkOptions::default()
            })
    }

    /// Whether the link counts its clicks against a `max_clicks`.
    pub fn is_limited(&self) -> bool {
        self.rules.as_ref().is_some_and(|r| r.limit.is_some())
    }

    /// What a request served at `now` (microseconds since the epoch) with query string `query`
    /// gets. `click`: the request records a click (GET), and so takes one of a `max_clicks`.
    pub fn decide(&self, now: i64, query: Option<&str>, click: bool) -> Verdict {
        let Some(rules) = &self.rules else {
            return Verdict::Go(self.location.clone());
        };
        let expired = rules.expires_at.is_some_and(|at| now >= at)
            || rules.limit.as_ref().is_some_and(|(max, counts)| {
                if click {
                    !counts.try_take(*max)
                } else {
                    counts.exhausted(*max)
                }
            });
        if expired {
            return match &rules.fallback {
                Some(fallback) => Verdict::Fallback(fallback.clone()),
                None => Verdict::Expired,
            };
        }
        let forwarded = rules.forward.as_ref().and_then(|f| f.location(query));
        Verdict::Go(forwarded.unwrap_or_else(|| self.location.clone()))
    }

    /// A click taken by [`CachedLink::decide`] was not recorded after all (the queue was full).
    pub fn release_click(&self) {
        if let Some((_, counts)) = self.rules.as_ref().and_then(|r| r.limit.as_ref()) {
            counts.release(1);
        }
    }
}

/// What the tier answered for a code the cache did not hold.
enum FromTier {
    /// Ask the database (no tier, not trusted, the code changed since the build, or a limited
    /// link, whose clicks so far only the database knows).
    Ask,
    /// No such code when the tier was built, and none announced since.
    Absent,
    /// The link, inactive: no redirect.
    Inactive,
    Link(CachedLink),
}

/// The store's view of a link the tier holds (a limited link never gets here: its stored clicks
/// are not in the tier).
fn tier_link(found: &gitrev_tier::LinkRef<'_>) -> Link {
    Link {
        url_id: found.url_id,
        user_id: found.user_id,
        original_url: found.target.to_owned(),
        is_active: found.active,
        options: LinkOptions {
            expires_at: found
                .expires_at_us
                .map(gitrev_store::clicks::micros_to_datetime),
            max_clicks: None,
            expired_url: found.expired_url.map(str::to_owned),
            redirect_status: found.redirect_status,
            forward_query: found.forward_query,
            tags: Vec::new(),
        },
        clicks: 0,
    }
}

/// Requests whose code the tier does not know wait here for every announcement committed before
/// they arrived: a link created on another replica a moment ago is announced, but its `+code`
/// may still be on its way. The LISTEN task answers them with one empty query on its connection:
/// PostgreSQL sends a connection every notification already committed before it answers a query
/// there, so once the answer is in, every creation committed before the request is known. One
/// such round trip answers every request waiting when it was sent.
///
/// The round trips have a budget ([`FENCE_TRIPS_PER_SEC`], bursts of [`FENCE_BURST`]): a request
/// that finds no trip on its way and the budget spent is answered from what has been heard
/// (counted as skipped). Ordinary traffic never comes near it (a few unknown codes a second); a
/// flood of random codes spends it in a moment and is then answered at the tier's speed, with a
/// bounded number of round trips a second rather than one per request or a wait per request.
struct Fence {
    trips: prometheus::IntCounter,
    skipped: prometheus::IntCounter,
    state: std::sync::Mutex<FenceState>,
    wake: tokio::sync::Notify,
    passed: watch::Sender<Passed>,
}

struct FenceState {
    /// Tickets handed out to waiting requests.
    asked: u64,
    /// A trip is wanted and has not started: the next requests join it.
    pending: bool,
    /// The budget: round trips that may start now.
    tokens: f64,
    refilled: std::time::Instant,
}

/// How far the fence has gone.
#[derive(Clone, Copy, Debug, Default)]
struct Passed {
    /// Every ticket up to this one is answered.
    covered: u64,
    /// Moves whenever the LISTEN connection is lost: tickets waiting then will not be answered.
    lost: u64,
}

/// The fence's round trips a second, in the long run.
pub const FENCE_TRIPS_PER_SEC: f64 = 100.0;
/// The fence's round trips that may follow one another at once.
pub const FENCE_BURST: f64 = 20.0;

/// What the fence said.
#[derive(Debug, PartialEq, Eq)]
enum Fenced {
    /// Every announcement committed before the request has been heard.
    Passed,
    /// Over the budget: what has been heard stands.
    Skipped,
    /// The LISTEN connection was lost or did not answer in time: ask the database.
    Failed,
}

impl Fence {
    fn new(trips: prometheus::IntCounter, skipped: prometheus::IntCounter) -> Fence {
        Fence {
            trips,
            skipped,
            state: std::sync::Mutex::new(FenceState {
                asked: 0,
                pending: false,
                tokens: FENCE_BURST,
                refilled: std::time::Instant::now(),
            }),
            wake: tokio::sync::Notify::new(),
            passed: watch::Sender::new(Passed::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FenceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A ticket for the next round trip (joining one already wanted, or wanting one within the
    /// budget); `None` over the budget.
    fn reserve(&self) -> Option<u64> {
        let mut state = self.lock();
        if !state.pending {
            let now = std::time::Instant::now();
            let earned = now.duration_since(state.refilled).as_secs_f64() * FENCE_TRIPS_PER_SEC;
            state.tokens = (state.tokens + earned).min(FENCE_BURST);
            state.refilled = now;
            if state.tokens < 1.0 {
                return None;
            }
            state.tokens -= 1.0;
            state.pending = true;
            self.wake.notify_one();
        }
        state.asked += 1;
        Some(state.asked)
    }

    /// A round trip is wanted (a heartbeat may have served the requests that woke the task).
    fn wanted(&self) -> bool {
        self.lock().pending
    }

    /// A round trip starts: it answers every ticket handed out so far (returned).
    fn start_trip(&self) -> u64 {
        let mut state = self.lock();
        state.pending = false;
        state.asked
    }

    /// Waits (at most `limit`) until every announcement committed before now has been heard.
    async fn pass(&self, limit: Duration) -> Fenced {
        let mut passed = self.passed.subscribe();
        let lost = passed.borrow().lost;
        let Some(ticket) = self.reserve() else {
            self.skipped.inc();
            return Fenced::Skipped;
        };
        let answered = tokio::time::timeout(
            limit,
            passed.wait_for(|p| p.covered >= ticket || p.lost != lost),
        )
        .await;
        match answered {
            Ok(Ok(p)) if p.covered >= ticket => Fenced::Passed,
            _ => Fenced::Failed,
        }
    }
}

/// Why a load did not produce a link.
#[derive(Debug)]
enum Miss {
    /// Unknown or inactive: remembered in the negative cache.
    Absent,
    Store(StoreError),
}

/// The link tier behind a cache.
pub struct TierSetup {
    pub state: TierState,
    /// How long a request whose code the tier does not know waits at the fence (`Fence`)
    /// before asking the database instead.
    pub fence_limit: Duration,
    /// Counts what the tier answered, by `answer`: `link`, `absent`, `database`.
    pub answers: IntCounterVec,
    /// Counts the fence's round trips, and the requests it let through over its budget.
    pub fence_trips: prometheus::IntCounter,
    pub fence_skipped: prometheus::IntCounter,
}

/// Cache settings.
#[derive(Clone, Copy, Debug)]
pub struct CacheConfig {
    pub capacity: u64,
    pub ttl: Duration,
    pub negative_ttl: Duration,
}

/// The codes the tier answered lately, one per slot (a slot keeps the last code hashed to it):
/// a code the tier answers enters the cache on its second answer while its slot still holds it.
/// With every link in the tier, the cache is for codes asked again; inserting each one asked once
/// made moka rehash and evict on every request of a cache-hostile load (the largest item in a
/// profile of random codes over 10M links). Twice the cache's capacity in slots, 4 bytes each.
struct Doorkeeper {
    slots: Box<[AtomicU32]>,
    hasher: std::hash::RandomState,
}

impl Doorkeeper {
    fn new(capacity: u64) -> Doorkeeper {
        let len = usize::try_from(capacity.saturating_mul(2))
            .unwrap_or(usize::MAX)
            .clamp(1_024, 1 << 24)
            .next_power_of_two();
        Doorkeeper {
            slots: (0..len).map(|_| AtomicU32::new(0)).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// Whether `code` was seen since its slot last took another code; records it either way.
    fn seen_again(&self, code: &str) -> bool {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(code);
        let slot = &self.slots[hash as usize & (self.slots.len() - 1)];
        // The high half as the code's tag; never 0, the empty slot.
        let tag = (hash >> 32) as u32 | 1;
        slot.swap(tag, Ordering::Relaxed) == tag
    }
}

/// Links by code, and (separately, with a short TTL) codes known to lead nowhere. Two caches with
/// one TTL each rather than one with per-entry expiry: per-entry timers cost memory per link.
/// Behind them, the link tier (every link, memory-mapped; [`crate::tier`]), then the database.
#[derive(Clone)]
pub struct LinkCache {
    pub tier: Arc<TierState>,
    fence: Arc<Fence>,
    /// How long a request waits at the fence before asking the database instead.
    fence_limit: Duration,
    /// Lookups past the cache answered by the tier: a link, no such link, or ask the database.
    tier_answers: [prometheus::IntCounter; 3],
    links: Cache<Arc<str>, Arc<CachedLink>>,
    /// Which codes the tier answered once already: only those enter the cache.
    doorkeeper: Arc<Doorkeeper>,
    absent: Cache<Arc<str>, ()>,
    epoch: Arc<AtomicU64>,
    /// Moves on every creation announced: a "no such code" read before it is not cached.
    absent_epoch: Arc<AtomicU64>,
    /// The click counts of limited links (shared with the click writer and the LISTEN task).
    pub limits: Limits,
}

impl LinkCache {
    /// `evictions` counts the links the cache drops on its own, by reason (`size`, `expired`);
    /// invalidations are not evictions and are not counted.
    pub fn new(config: CacheConfig, evictions: IntCounterVec) -> LinkCache {
        let answers = IntCounterVec::new(
            prometheus::Opts::new("tier_answers", "tier answers"),
            &["answer"],
        )
        .expect("valid metric");
        LinkCache::with_tier(
            config,
            evictions,
            TierSetup {
                state: TierState::default(),
                fence_limit: Duration::from_secs(1),
                answers,
                fence_trips: prometheus::IntCounter::new("fence_trips", "fence trips")
                    .expect("valid metric"),
                fence_skipped: prometheus::IntCounter::new("fence_skipped", "fence skipped")
                    .expect("valid metric"),
            },
        )
    }

    /// A cache in front of a link tier (see [`TierSetup`]).
    pub fn with_tier(config: CacheConfig, evictions: IntCounterVec, tier: TierSetup) -> LinkCache {
        let by_size = evictions.with_label_values(&["size"]);
        let by_ttl = evictions.with_label_values(&["expired"]);
        LinkCache {
            tier: Arc::new(tier.state),
            fence: Arc::new(Fence::new(tier.fence_trips, tier.fence_skipped)),
            fence_limit: tier.fence_limit,
            tier_answers: ["link", "absent", "database"]
                .map(|answer| tier.answers.with_label_values(&[answer])),
            links: Cache::builder()
                .max_capacity(config.capacity)
                .time_to_live(config.ttl)
                .eviction_listener(move |_code, _link, cause| match cause {
                    RemovalCause::Size => by_size.inc(),
                    RemovalCause::Expired => by_ttl.inc(),
                    RemovalCause::Explicit | RemovalCause::Replaced => {}
                })
                .build(),
            doorkeeper: Arc::new(Doorkeeper::new(config.capacity)),
            absent: Cache::builder()
                .max_capacity((config.capacity / 10).max(1_000))
                .time_to_live(config.negative_ttl)
                .build(),
            epoch: Arc::new(AtomicU64::new(0)),
            absent_epoch: Arc::new(AtomicU64::new(0)),
            limits: Limits::default(),
        }
    }

    /// The cached answer for `code` without loading: `Some(Some(link))`, `Some(None)` for a code
    /// known to lead nowhere, `None` when the cache does not know.
    pub async fn peek(&self, code: &str) -> Option<Entry> {
        if let Some(link) = self.links.get(code).await {
            return Some(Some(link));
        }
        self.absent.get(code).await.map(|()| None)
    }

    /// The answer for `code`, loading it through `store` on a miss. Concurrent misses of one
    /// code share one load (found or not). `Err` only when the database could not answer.
    pub async fn get(&self, code: &str, store: &Store) -> Result<Entry, Arc<StoreError>> {
        if let Some(entry) = self.peek(code).await {
            return Ok(entry);
        }
        let key: Arc<str> = Arc::from(code);
        let started_at = self.epoch.load(Ordering::Acquire);
        let absent_since = self.absent_epoch.load(Ordering::Acquire);
        let mut from_tier = self.ask_tier(&key);
        if matches!(from_tier, FromTier::Absent) {
            // Unknown to the tier: perhaps created elsewhere a moment ago, announced but not yet
            // heard. Once every earlier announcement is in, the tier's answer stands.
            from_tier = match self.fence.pass(self.fence_limit).await {
                Fenced::Passed => self.ask_tier(&key),
                Fenced::Skipped => FromTier::Absent,
                Fenced::Failed => FromTier::Ask,
            };
        }
        let [as_link, as_absent, as_database] = &self.tier_answers;
        match from_tier {
            FromTier::Ask => as_database.inc(),
            FromTier::Absent | FromTier::Inactive => {
                as_absent.inc();
                return Ok(None);
            }
            FromTier::Link(link) => {
                as_link.inc();
                let link = Arc::new(link);
                if !self.doorkeeper.seen_again(code) {
                    // Answered from the tier once: cached only if asked again soon. A load of
                    // codes that never repeat would otherwise only churn the cache.
                    return Ok(Some(link));
                }
                self.links.insert(key, link.clone()).await;
                if self.epoch.load(Ordering::Acquire) != started_at {
                    // An invalidation landed meanwhile; the tier was read before or after it,
                    // so don't keep what it said, but this request may have it.
                    self.links.invalidate(code).await;
                }
                return Ok(Some(link));
            }
        }
        let loaded = self
            .links
            .try_get_with(key.clone(), async {
                let mut attempts = 0;
                loop {
                    let before = self.epoch.load(Ordering::Acquire);
                    let link = store.find_link(code).await.map_err(Miss::Store)?;
                    attempts += 1;
                    // Under constant invalidation churn, stop retrying: the check after the
                    // insert below still evicts a value that raced.
                    if self.epoch.load(Ordering::Acquire) == before || attempts >= LOAD_ATTEMPTS {
                        return link
                            .filter(|l| l.is_active)
                            .and_then(|l| CachedLink::new(key.clone(), &l, &self.limits))
                            .map(Arc::new)
                            .ok_or(Miss::Absent);
                    }
                }
            })
            .await;
        let entry = match loaded {
            Ok(link) => Some(link),
            Err(miss) => match &*miss {
                Miss::Absent => {
                    // A creation announced meanwhile may be this code's: don't remember a
                    // "nowhere" read before it.
                    if self.absent_epoch.load(Ordering::Acquire) == absent_since {
                        self.absent.insert(key, ()).await;
                    }
                    None
                }
                Miss::Store(err) => {
                    return Err(Arc::new(match err {
                        StoreError::Unavailable(r) => StoreError::Unavailable(r.clone()),
                        other => StoreError::Internal(other.to_string()),
                    }))
                }
            },
        };
        if self.epoch.load(Ordering::Acquire) != started_at {
            // An invalidation landed while we loaded: don't let a value read before it linger.
            self.links.invalidate(code).await;
            self.absent.invalidate(code).await;
        }
        Ok(entry)
    }

    /// What the tier says about `code`.
    fn ask_tier(&self, code: &Arc<str>) -> FromTier {
        self.tier.lookup(code, |answer| match answer {
            Answer::Ask => FromTier::Ask,
            Answer::Absent => FromTier::Absent,
            Answer::Found(found) if !found.active => FromTier::Inactive,
            Answer::Found(found) if found.limited => FromTier::Ask,
            Answer::Found(found) => {
                match CachedLink::new(code.clone(), &tier_link(&found), &self.limits) {
                    Some(link) => FromTier::Link(link),
                    // A target that is no `location`: the database decides, as without a tier.
                    None => FromTier::Ask,
                }
            }
        })
    }

    /// Evicts one code (a change seen here or announced by another replica); the tier no longer
    /// answers for it.
    pub async fn invalidate(&self, code: &str) {
        if code == CLEAR_ALL {
            self.tier.everything_changed();
        } else {
            self.tier.announced(code);
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if code == CLEAR_ALL {
            self.links.invalidate_all();
            self.absent.invalidate_all();
        } else {
            self.links.invalidate(code).await;
            self.absent.invalidate(code).await;
        }
    }

    /// A link was created with this code: forget that the code led nowhere. What is cached for
    /// it is kept: it can only be this link, since an earlier link with the code was evicted
    /// when it was deleted, and that announcement came first. A load in flight that finds
    /// nothing does not cache its answer.
    pub async fn created(&self, code: &str) {
        self.tier.announced(code);
        self.absent_epoch.fetch_add(1, Ordering::AcqRel);
        self.absent.invalidate(code).await;
    }

    pub fn clear(&self) {
        self.invalidate_all_now();
    }

    fn invalidate_all_now(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.links.invalidate_all();
        self.absent.invalidate_all();
    }

    /// Puts a link in directly (warming).
    pub async fn insert(&self, link: CachedLink) {
        self.links
            .insert(link.short_code.clone(), Arc::new(link))
            .await;
    }

    /// Every link cached now (for the snapshot).
    pub fn links(&self) -> impl Iterator<Item = Arc<CachedLink>> + '_ {
        self.links.iter().map(|(_, link)| link)
    }

    /// Moves on every invalidation: a warm-up that saw it move may have raced one.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Links cached (codes known to be absent not counted).
    pub fn entry_count(&self) -> u64 {
        self.links.entry_count()
    }

    /// Runs pending maintenance (tests and metrics want exact counts).
    pub async fn sync(&self) {
        self.links.run_pending_tasks().await;
        self.absent.run_pending_tasks().await;
    }
}

/// How often the LISTEN connection is asked a trivial query: a connection that stays silent waits
/// for notifications forever, so without a question now and then a peer gone silent (a partition)
/// would never be noticed, and this replica would miss every announcement without knowing it.
pub const LISTEN_HEARTBEAT: Duration = Duration::from_secs(1);

/// Bounds of the LISTEN connection: how long connecting may take, and how long the database may
/// take to answer a heartbeat (or the LISTEN itself) before the connection is given up.
#[derive(Clone, Copy, Debug)]
pub struct ListenBounds {
    pub connect: Duration,
    pub answer: Duration,
}

/// How the LISTEN connection is retried: 100 ms, doubling, at most 5 s apart; the backoff starts
/// over after every connection that got as far as listening.
const LISTEN_RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Why there is no LISTEN connection (for the log line of the retry).
#[derive(Debug, thiserror::Error)]
enum Unsubscribed {
    #[error("lost the link invalidation connection")]
    Lost,
    #[error("cannot open the link invalidation connection: {0}")]
    Connect(StoreError),
    #[error("LISTEN failed: {0}")]
    Listen(tokio_postgres::Error),
    #[error("LISTEN was not answered in time")]
    ListenTimeout,
}

/// A connection listening on [`CHANNEL`]: its client, the task driving it (which forwards every
/// notification's payload) and where those payloads arrive.
struct Subscription {
    client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<()>,
    /// (channel, payload) of every notification.
    notifications: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
}

impl Subscription {
    /// Dropping the connection (not only the client) closes the socket: the driver goes, joined.
    async fn close(self) {
        self.driver.abort();
        let _ = self.driver.await;
    }
}

/// Opens a connection and LISTENs on it, each step bounded by `bounds`.
async fn subscribe(
    config: &tokio_postgres::Config,
    bounds: ListenBounds,
) -> Result<Subscription, Unsubscribed> {
    let (client, mut connection) = gitrev_store::open(config, bounds.connect)
        .await
        .map_err(Unsubscribed::Connect)?;
    let (tx, notifications) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx
                        .send((n.channel().to_owned(), n.payload().to_owned()))
                        .is_err()
                    {
                        break;
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    warn!(error = %err, "link invalidation connection failed");
                    break;
                }
            }
        }
    });
    let subscription = Subscription {
        client,
        driver,
        notifications,
    };
    let listening = tokio::time::timeout(
        bounds.answer,
        subscription.client.batch_execute(&format!(
            "LISTEN {CHANNEL}; LISTEN {}; LISTEN {}",
            keys::CHANNEL,
            LIMITS_CHANNEL
        )),
    )
    .await;
    let failed = match listening {
        Ok(Ok(())) => return Ok(subscription),
        Ok(Err(err)) => Unsubscribed::Listen(err),
        Err(_) => Unsubscribed::ListenTimeout,
    };
    subscription.close().await;
    Err(failed)
}

/// Keeps a LISTEN connection open and evicts what is announced (a changed or deleted code; for a
/// created one, `+code`, only a cached "no such code"), reconnecting with backoff; clears the cache after every (re)connect because announcements may have been missed.
/// The keyring hears of key changes on the same connection, and of the connection's ups and downs
/// (it keeps no key while announcements could be missed).
/// A heartbeat that is not answered within `bounds.answer` counts as a lost connection.
/// Returns when `shutdown` flips to true, at once, even in the middle of a retry's wait.
pub async fn listen(
    config: tokio_postgres::Config,
    bounds: ListenBounds,
    cache: LinkCache,
    keyring: Option<Keyring>,
    mut shutdown: watch::Receiver<bool>,
    connected: watch::Sender<bool>,
) {
    let config = &config;
    let mut just_lost = false;
    loop {
        if *shutdown.borrow() {
            return;
        }
        // A connection just lost counts as the first failed attempt of the next round, so even a
        // connection that keeps dropping as soon as it listens is retried at the backoff's pace.
        let attempt = || {
            let lost = std::mem::take(&mut just_lost);
            async move {
                if lost {
                    return Err(Unsubscribed::Lost);
                }
                subscribe(config, bounds).await
            }
        };
        let retried = attempt
            .retry(retry::backoff(LISTEN_RETRY.0, LISTEN_RETRY.1))
            .notify(|why, delay| warn!(%why, ?delay, "no link invalidation connection; retrying"));
        let subscription = tokio::select! {
            subscription = retried => subscription,
            _ = shutdown.changed() => return,
        };
        // The retry never gives up (no `.when`, no attempt limit): only `Ok` arrives here.
        let Ok(mut subscription) = subscription else {
            continue;
        };
        cache.clear();
        cache.tier.listen_up();
        catch_up(&subscription.client, &cache.tier, bounds.answer).await;
        if let Some(keyring) = &keyring {
            keyring.listening(true);
        }
        let _ = connected.send(true);
        info!("listening for link invalidations");
        let mut heartbeat = tokio::time::interval(LISTEN_HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stopping = loop {
            tokio::select! {
                notification = subscription.notifications.recv() => match notification {
                    Some(notification) => heard(&cache, keyring.as_ref(), notification).await,
                    None => break false,
                },
                _ = heartbeat.tick() => {
                    if !round_trip(&mut subscription, &cache, keyring.as_ref(), bounds.answer).await {
                        warn!("the link invalidation connection did not answer its heartbeat");
                        break false;
                    }
                    if cache.tier.needs_catch_up() {
                        catch_up(&subscription.client, &cache.tier, bounds.answer).await;
                    }
                }
                _ = cache.fence.wake.notified() => {
                    if !cache.fence.wanted() {
                        continue;
                    }
                    cache.fence.trips.inc();
                    if !round_trip(&mut subscription, &cache, keyring.as_ref(), bounds.answer).await {
                        warn!("the link invalidation connection did not answer");
                        break false;
                    }
                }
                _ = shutdown.changed() => break true,
            }
        };
        subscription.close().await;
        cache.tier.listen_lost();
        // Whoever waits for a trip now is told it will not come (they ask the database); the
        // next trip is wanted afresh.
        cache.fence.start_trip();
        cache.fence.passed.send_modify(|p| p.lost += 1);
        if let Some(keyring) = &keyring {
            keyring.listening(false);
        }
        if stopping {
            return;
        }
        let _ = connected.send(false);
        just_lost = true;
    }
}

/// One notification heard on the LISTEN connection: a key change, a limited link's click total,
/// or a link created (`+code`), changed or deleted (the code), or every link (`*`).
async fn heard(cache: &LinkCache, keyring: Option<&Keyring>, (channel, payload): (String, String)) {
    if channel == keys::CHANNEL {
        if let Some(keyring) = keyring {
            keyring.changed();
        }
    } else if channel == LIMITS_CHANNEL {
        cache.limits.observe_announced(&payload);
    } else {
        match payload.strip_prefix(CREATED) {
            Some(created) => cache.created(created).await,
            None => cache.invalidate(&payload).await,
        }
    }
}

/// An empty query on the LISTEN connection, answered within `answer`: the heartbeat, and the
/// fence's round trip. Every notification that arrived before its answer is dealt with before
/// the fence is told how far it got. False: the connection is to be given up.
async fn round_trip(
    subscription: &mut Subscription,
    cache: &LinkCache,
    keyring: Option<&Keyring>,
    answer: Duration,
) -> bool {
    let covering = cache.fence.start_trip();
    let answered = tokio::time::timeout(answer, subscription.client.simple_query("")).await;
    if !matches!(answered, Ok(Ok(_))) {
        return false;
    }
    // The connection's driver forwards a notification before it reads what follows it, so
    // everything sent before the answer is queued by now.
    while let Ok(notification) = subscription.notifications.try_recv() {
        heard(cache, keyring, notification).await;
    }
    cache
        .fence
        .passed
        .send_modify(|p| p.covered = p.covered.max(covering));
    true
}

/// The oldest tier a replica trusts: the change log keeps [`CHANGES_KEPT`], and a tier older than
/// that could miss changes the log has forgotten. A day's margin for clocks and the pruning's pace.
const TIER_MAX_AGE: Duration = Duration::from_secs(CHANGES_KEPT.as_secs() - 24 * 3600);

/// Reads on the LISTEN connection (up, so nothing committed from now on goes unheard) what changed
/// since the tier's snapshot, after checking the tier is this database's and not too old. A tier
/// of another database, or too old, is dropped (the rebuild replaces it); a question the database
/// did not answer is asked again at the next heartbeat.
async fn catch_up(client: &tokio_postgres::Client, tier: &TierState, answer: Duration) {
    let (Some(read_from), Some(origin)) = (tier.read_to(), tier.status().origin) else {
        return;
    };
    let age_us = chrono::Utc::now().timestamp_micros() - origin.built_at_us;
    if age_us > TIER_MAX_AGE.as_micros() as i64 {
        warn!(
            built_at_us = origin.built_at_us,
            "the link tier is older than the change log reaches; not using it"
        );
        tier.everything_changed();
        return;
    }
    let asked = tokio::time::timeout(answer, async {
        let (system_id, database) = store_tier::identity(client).await?;
        if system_id != origin.system_id || database != origin.database {
            return Ok(None);
        }
        store_tier::changed_since(client, &read_from)
            .await
            .map(Some)
    })
    .await;
    match asked {
        Ok(Ok(Some(changes))) => {
            if tier.caught_up(&read_from, &changes) {
                info!(
                    changed = changes.codes.len(),
                    everything = changes.everything,
                    "the link tier caught up with the change log"
                );
            }
        }
        Ok(Ok(None)) => {
            warn!(
                tier_system_id = origin.system_id,
                tier_database = %origin.database,
                "the link tier was built from another database; not using it"
            );
            tier.everything_changed();
        }
        Ok(Err(err)) => warn!(error = %err, "could not read the link change log; retrying"),
        Err(_) => warn!("the link change log was not read in time; retrying"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_doorkeeper_admits_a_code_on_its_second_answer() {
        let keeper = Doorkeeper::new(50_000);
        assert_eq!(
            keeper.slots.len(),
            131_072,
            "twice the capacity, a power of two"
        );
        assert!(!keeper.seen_again("abc1234"), "first answer: not cached");
        assert!(keeper.seen_again("abc1234"), "second: cached");
        assert!(keeper.seen_again("abc1234"));
        // A flood of codes asked once each admits almost none of them.
        let admitted = (0..100_000)
            .filter(|i| keeper.seen_again(&format!("flood{i}")))
            .count();
        assert!(
            admitted < 100,
            "{admitted} of 100,000 codes asked once were admitted"
        );
        assert_eq!(
            Doorkeeper::new(10).slots.len(),
            1_024,
            "at least 1,024 slots"
        );
    }
    use gitrev_store::clicks::micros_to_datetime;

    fn link_with(options: LinkOptions) -> Link {
        Link {
            url_id: 1,
            user_id: None,
            original_url: "https://example.com/a?b=c".into(),
            is_active: true,
            options,
            clicks: 0,
        }
    }

    fn location(v: &Verdict) -> Option<&str> {
        match v {
            Verdict::Go(l) | Verdict::Fallback(l) => l.to_str().ok(),
            Verdict::Expired => None,
        }
    }

    /// The clock is injected: a link expiring at a second redirects up to the microsecond before
    /// it and not from the second itself, with or without a fallback.
    #[test]
    fn a_link_expires_at_its_second() {
        let at: i64 = 1_800_000_000 * 1_000_000;
        let limits = Limits::default();
        let expiring = |fallback: Option<&str>| {
            CachedLink::new(
                "c".into(),
                &link_with(LinkOptions {
                    expires_at: Some(micros_to_datetime(at)),
                    expired_url: fallback.map(str::to_owned),
                    ..LinkOptions::default()
                }),
                &limits,
            )
            .unwrap()
        };
        let plain = expiring(None);
        assert_eq!(
            location(&plain.decide(at - 1, None, true)),
            Some("https://example.com/a?b=c")
        );
        assert_eq!(plain.decide(at, None, true), Verdict::Expired);
        assert_eq!(plain.decide(at + 1, None, false), Verdict::Expired);
        let fallback = expiring(Some("https://example.com/over"));
        assert!(matches!(
            fallback.decide(at - 1, None, true),
            Verdict::Go(_)
        ));
        let over = fallback.decide(at, None, true);
        assert!(matches!(over, Verdict::Fallback(_)));
        assert_eq!(location(&over), Some("https://example.com/over"));
    }

    #[test]
    fn a_limit_is_taken_by_get_only_and_given_back_when_the_click_is_dropped() {
        let limits = Limits::default();
        let limited = CachedLink::new(
            "c".into(),
            &Link {
                clicks: 1,
                ..link_with(LinkOptions {
                    max_clicks: Some(3),
                    redirect_status: Some(307),
                    ..LinkOptions::default()
                })
            },
            &limits,
        )
        .unwrap();
        assert!(limited.is_limited());
        assert_eq!(limited.status, Some(StatusCode::TEMPORARY_REDIRECT));
        for _ in 0..5 {
            assert!(
                matches!(limited.decide(0, None, false), Verdict::Go(_)),
                "HEAD"
            );
        }
        assert!(matches!(limited.decide(0, None, true), Verdict::Go(_)));
        assert!(matches!(limited.decide(0, None, true), Verdict::Go(_)));
        assert_eq!(limited.decide(0, None, true), Verdict::Expired);
        assert_eq!(limited.decide(0, None, false), Verdict::Expired);
        limited.release_click();
        assert!(matches!(limited.decide(0, None, true), Verdict::Go(_)));
        assert_eq!(limited.options().max_clicks, Some(3));
    }

    #[test]
    fn a_plain_link_ignores_the_query_and_keeps_its_status() {
        let limits = Limits::default();
        let plain = CachedLink::new(
            "c".into(),
            &link_with(LinkOptions {
                redirect_status: Some(308),
                ..LinkOptions::default()
            }),
            &limits,
        )
        .unwrap();
        assert_eq!(
            location(&plain.decide(0, Some("x=1"), true)),
            Some("https://example.com/a?b=c")
        );
        assert_eq!(plain.options().redirect_status, Some(308));
        assert!(!plain.is_limited());
        let forwarding = CachedLink::new(
            "c".into(),
            &link_with(LinkOptions {
                forward_query: true,
                ..LinkOptions::default()
            }),
            &limits,
        )
        .unwrap();
        assert_eq!(
            location(&forwarding.decide(0, Some("x=1"), true)),
            Some("https://example.com/a?b=c&x=1")
        );
        assert!(limits.is_empty(), "no limit, no counts");
    }

    fn counter() -> prometheus::IntCounter {
        prometheus::IntCounter::new("c", "c").unwrap()
    }

    /// Requests join the round trip already wanted, free; new round trips spend the budget, and
    /// past it a request is let through (skipped) at once rather than made to wait.
    #[test]
    fn the_fence_shares_round_trips_and_keeps_to_its_budget() {
        let skipped = counter();
        let fence = Fence::new(counter(), skipped.clone());
        let burst = FENCE_BURST as u64;
        for trip in 0..burst {
            // Ten requests, one trip.
            let tickets: Vec<u64> = (0..10)
                .map(|_| fence.reserve().expect("in budget"))
                .collect();
            assert!(fence.wanted());
            let covering = fence.start_trip();
            assert!(!fence.wanted());
            assert_eq!(covering, (trip + 1) * 10);
            assert!(tickets.iter().all(|t| *t <= covering));
        }
        assert_eq!(fence.reserve(), None, "the burst is spent");
        assert!(!fence.wanted(), "and no trip is wanted for it");
        // The budget comes back with time (at FENCE_TRIPS_PER_SEC).
        std::thread::sleep(Duration::from_millis(50));
        assert!(fence.reserve().is_some());
        assert!(fence.reserve().is_some(), "joins the trip wanted");
        assert_eq!(fence.start_trip(), burst * 10 + 2);
    }

    #[tokio::test]
    async fn a_request_over_the_fences_budget_is_skipped_and_a_lost_connection_fails_the_wait() {
        let skipped = counter();
        let fence = Arc::new(Fence::new(counter(), skipped.clone()));
        for _ in 0..FENCE_BURST as usize {
            fence.reserve().expect("in budget");
            fence.start_trip();
        }
        assert_eq!(fence.pass(Duration::from_secs(5)).await, Fenced::Skipped);
        assert_eq!(skipped.get(), 1);
        std::thread::sleep(Duration::from_millis(50));
        // A request waiting when the connection is lost is told at once.
        let waiting = tokio::spawn({
            let fence = fence.clone();
            async move { fence.pass(Duration::from_secs(60)).await }
        });
        while !fence.wanted() {
            tokio::task::yield_now().await;
        }
        fence.start_trip();
        fence.passed.send_modify(|p| p.lost += 1);
        assert_eq!(waiting.await.unwrap(), Fenced::Failed);
        // And a trip that covers it lets it pass.
        let waiting = tokio::spawn({
            let fence = fence.clone();
            async move { fence.pass(Duration::from_secs(60)).await }
        });
        while !fence.wanted() {
            tokio::task::yield_now().await;
        }
        let covering = fence.start_trip();
        fence.passed.send_modify(|p| p.covered = covering);
        assert_eq!(waiting.await.unwrap(), Fenced::Passed);
    }

    #[tokio::test]
    async fn listen_retries_a_database_that_is_not_there_and_ends_at_once_on_shutdown() {
        // Nothing listens on port 1: every attempt is refused, and the loop keeps retrying.
        let config: tokio_postgres::Config =
            "postgres://gitrev@127.0.0.1:1/gitrev".parse().unwrap();
        let cache = LinkCache::new(
            CacheConfig {
                capacity: 10,
                ttl: Duration::from_secs(60),
                negative_ttl: Duration::from_secs(1),
            },
            IntCounterVec::new(prometheus::Opts::new("evictions", "evictions"), &["reason"])
                .unwrap(),
        );
        let (stop_tx, stop) = watch::channel(false);
        let (connected_tx, connected) = watch::channel(false);
        let bounds = ListenBounds {
            connect: Duration::from_millis(500),
            answer: Duration::from_millis(500),
        };
        let task = tokio::spawn(listen(config, bounds, cache, None, stop, connected_tx));
        // Long enough for several attempts, the later ones hundreds of ms apart.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert!(!task.is_finished(), "still retrying");
        assert!(!*connected.borrow());
        let asked = std::time::Instant::now();
        let _ = stop_tx.send(true);
        tokio::time::timeout(Duration::from_millis(200), task)
            .await
            .expect("the stop ends the retry's wait at once")
            .expect("no panic");
        assert!(asked.elapsed() < Duration::from_millis(200));
    }
}
