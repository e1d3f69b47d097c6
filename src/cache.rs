//! The link cache in front of the redirect, and its invalidation across replicas.
//!
//! `LinkCache` maps a short code to what a redirect needs, with the `location` header already
//! encoded. A miss is loaded once however many requests wait for it (moka's coalesced
//! `try_get_with`), and unknown or inactive codes are cached too, briefly, so a flood of bad codes
//! costs one query per code per negative TTL.
//!
//! Every change that affects a redirect evicts the code locally and is announced with
//! `NOTIFY gitrev_links, '<code>'` in the same transaction; every replica `LISTEN`s on its own
//! connection ([`listen`]) and evicts. A replica whose LISTEN connection dropped may have missed
//! announcements, so it clears the whole cache when it reconnects. A TTL bounds staleness as a
//! last resort.
//!
//! A load that raced with an invalidation (the query read the row before the change committed,
//! the announcement arrived before the load finished) must not leave the old value behind: every
//! invalidation bumps an epoch, a load retries while the epoch moves under it, and a value found
//! stale right after insertion is evicted again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::HeaderValue;
use moka::future::Cache;
use moka::Expiry;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::store::urls::Link;
use crate::store::{Store, StoreError};

/// The channel replicas announce link changes on. A payload of `*` clears every cache.
pub const CHANNEL: &str = "gitrev_links";
pub const CLEAR_ALL: &str = "*";

/// Reads of one code retried while invalidations land under them.
const LOAD_ATTEMPTS: u32 = 4;

/// What a redirect needs, ready to send.
#[derive(Debug)]
pub struct CachedLink {
    pub url_id: i64,
    pub user_id: Option<i64>,
    /// The `location` header value.
    pub location: HeaderValue,
    /// The code and the target as stored; every click of this link shares them.
    pub short_code: Arc<str>,
    pub original_url: Arc<str>,
}

impl CachedLink {
    /// `None` when the stored target cannot be a `location` (it was validated on the way in, so
    /// only a hand-edited row gets here).
    pub fn new(code: &str, link: &Link) -> Option<CachedLink> {
        let normalized = url::Url::parse(&link.original_url).ok()?;
        let location =
            HeaderValue::from_maybe_shared(Bytes::from(String::from(normalized))).ok()?;
        Some(CachedLink {
            url_id: link.url_id,
            user_id: link.user_id,
            location,
            short_code: Arc::from(code),
            original_url: Arc::from(link.original_url.as_str()),
        })
    }
}

/// A cached answer: the link, or `None` for a code that is unknown or inactive.
pub type Entry = Option<Arc<CachedLink>>;

struct TtlPolicy {
    positive: Duration,
    negative: Duration,
}

impl Expiry<String, Entry> for TtlPolicy {
    fn expire_after_create(&self, _: &String, value: &Entry, _: Instant) -> Option<Duration> {
        Some(if value.is_some() {
            self.positive
        } else {
            self.negative
        })
    }
}

/// Cache settings.
#[derive(Clone, Copy, Debug)]
pub struct CacheConfig {
    pub capacity: u64,
    pub ttl: Duration,
    pub negative_ttl: Duration,
}

#[derive(Clone)]
pub struct LinkCache {
    cache: Cache<String, Entry>,
    epoch: Arc<AtomicU64>,
}

impl LinkCache {
    pub fn new(config: CacheConfig) -> LinkCache {
        let cache = Cache::builder()
            .max_capacity(config.capacity)
            .expire_after(TtlPolicy {
                positive: config.ttl,
                negative: config.negative_ttl,
            })
            .build();
        LinkCache {
            cache,
            epoch: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The cached answer for `code`, if there is one (no loading).
    pub async fn peek(&self, code: &str) -> Option<Entry> {
        self.cache.get(code).await
    }

    /// The answer for `code`, loading it through `store` on a miss. Concurrent misses of one
    /// code share one load. `Err` only when the database could not answer.
    pub async fn get(&self, code: &str, store: &Store) -> Result<Entry, Arc<StoreError>> {
        if let Some(entry) = self.cache.get(code).await {
            return Ok(entry);
        }
        let started_at = self.epoch.load(Ordering::Acquire);
        let entry = self
            .cache
            .try_get_with_by_ref(code, async {
                let mut attempts = 0;
                loop {
                    let before = self.epoch.load(Ordering::Acquire);
                    let link = store.find_link(code).await?;
                    attempts += 1;
                    // Under constant invalidation churn, stop retrying: the check after the
                    // insert below still evicts a value that raced.
                    if self.epoch.load(Ordering::Acquire) == before || attempts >= LOAD_ATTEMPTS {
                        return Ok::<Entry, StoreError>(
                            link.filter(|l| l.is_active)
                                .and_then(|l| CachedLink::new(code, &l))
                                .map(Arc::new),
                        );
                    }
                }
            })
            .await?;
        if self.epoch.load(Ordering::Acquire) != started_at {
            // An invalidation landed while we loaded: don't let a value read before it linger.
            self.cache.invalidate(code).await;
        }
        Ok(entry)
    }

    /// Evicts one code (a change seen here or announced by another replica).
    pub async fn invalidate(&self, code: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if code == CLEAR_ALL {
            self.cache.invalidate_all();
        } else {
            self.cache.invalidate(code).await;
        }
    }

    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
    }

    /// Puts an entry in directly (warming).
    pub async fn insert(&self, code: String, link: CachedLink) {
        self.cache.insert(code, Some(Arc::new(link))).await;
    }

    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Runs pending maintenance (tests and metrics want exact counts).
    pub async fn sync(&self) {
        self.cache.run_pending_tasks().await;
    }
}

/// Keeps a LISTEN connection open and evicts what other replicas announce, reconnecting with
/// backoff; clears the cache after every (re)connect because announcements may have been missed.
/// Returns when `shutdown` flips to true.
pub async fn listen(
    config: tokio_postgres::Config,
    cache: LinkCache,
    mut shutdown: watch::Receiver<bool>,
    connected: watch::Sender<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            return;
        }
        match config.connect(tokio_postgres::NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut notifications) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                if tx.send(n.payload().to_owned()).is_err() {
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
                if let Err(err) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    warn!(error = %err, "LISTEN failed");
                    driver.abort();
                } else {
                    cache.clear();
                    let _ = connected.send(true);
                    info!("listening for link invalidations");
                    backoff = Duration::from_millis(100);
                    loop {
                        tokio::select! {
                            payload = notifications.recv() => match payload {
                                Some(code) => cache.invalidate(&code).await,
                                None => break,
                            },
                            _ = shutdown.changed() => {
                                driver.abort();
                                return;
                            }
                        }
                    }
                    let _ = connected.send(false);
                    warn!("lost the link invalidation connection; reconnecting");
                }
            }
            Err(err) => warn!(error = %err, "cannot open the link invalidation connection"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
