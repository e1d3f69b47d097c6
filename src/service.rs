//! The running service: builds the shared state and its background tasks, serves, and stops
//! everything in the right order.
//!
//! Stop order on SIGTERM/SIGINT: stop accepting and let in-flight requests finish (bounded by the
//! grace period); then the grouped writers are aborted (every request they served has been
//! answered or cut off by then, so nobody waits for what they still hold) and every background task
//! is told to stop and joined — the click queue drains into the database, the last snapshot is
//! written, the LISTEN connection closes; then the store closes its connections and joins their
//! drivers.
//! All of that within one bound. The caller stops the embedded database last.

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use gitrev_api::{AppState, Writers};
use gitrev_http::server;
use gitrev_links::batch::{ClickQueue, GroupWriter};
use gitrev_links::cache::{self, LinkCache};
use gitrev_links::keys::{Keyring, Limit};
use gitrev_links::snapshot;
use gitrev_store::{Store, StoreError};
use gitrev_telemetry::Metrics;
use hyper::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::{Environment, Settings};

/// Concurrent writers per grouped insert (POST /users, /urls, /events): two let one group gather
/// while the previous one is in flight.
const WRITERS: usize = 2;
/// How long start-up waits for the LISTEN connection before serving anyway.
const LISTEN_WAIT: Duration = Duration::from_secs(5);

/// Serves on `listener` until `shutdown` completes; `on_ready` runs once the service is ready
/// to take traffic.
pub async fn run(
    settings: Settings,
    store: Store,
    database_url: String,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    metrics
        .pool_max_connections
        .set(i64::from(settings.pool_size));
    let (stop_tx, stop_rx) = watch::channel(false);

    let tier = if settings.tier {
        crate::tier::open(&settings.data_dir).await
    } else {
        gitrev_links::tier::TierState::default()
    };
    let links = LinkCache::with_tier(
        settings.cache_config(),
        metrics.batch.cache_evictions.clone(),
        cache::TierSetup {
            state: tier,
            fence_limit: store.deadline(),
            answers: metrics.tier_answers.clone(),
            fence_trips: metrics.tier_fence_trips.clone(),
            fence_skipped: metrics.tier_fence_skipped.clone(),
        },
    );
    // Every background task of the service, owned here: joined at stop, aborted if it overruns
    // its bound (and on any early return, by the set's drop).
    let mut background = JoinSet::new();
    let keyring = Keyring::new(
        store.clone(),
        settings.api_token.as_ref().map(|token| token.expose()),
        settings.metrics_token.as_ref().map(|token| token.expose()),
        settings.environment == Environment::Production,
        Limit {
            rate: NonZeroU32::new(settings.key_rate).expect("validated at start: 1 or more"),
            burst: NonZeroU32::new(settings.key_burst).expect("validated at start: 1 or more"),
        },
        metrics.key_rate_limited.clone(),
    );
    background.spawn(record_key_uses(keyring.clone(), stop_rx.clone()));
    let (listening_tx, mut listening_rx) = watch::channel(false);
    background.spawn(cache::listen(
        store.side_config(),
        cache::ListenBounds {
            connect: store.connect_timeout(),
            answer: store.deadline(),
        },
        links.clone(),
        Some(keyring.clone()),
        stop_rx.clone(),
        listening_tx,
    ));
    let listen_gauge = metrics.listen_connected.clone();
    let mut listen_state = listening_rx.clone();
    // Ends with the LISTEN task (its sender dropped).
    background.spawn(async move {
        loop {
            listen_gauge.set(i64::from(*listen_state.borrow_and_update()));
            if listen_state.changed().await.is_err() {
                return;
            }
        }
    });
    if tokio::time::timeout(LISTEN_WAIT, listening_rx.wait_for(|up| *up))
        .await
        .is_err()
    {
        warn!("serving before the link invalidation connection is up");
    }

    if settings.snapshot_secs > 0 {
        let warmed = warm_from_snapshot(&settings, &store, &links).await;
        metrics.snapshot_links.set(warmed as i64);
    }
    if settings.snapshot_secs > 0 {
        // At stop it writes a last snapshot of what the cache holds, then ends.
        background.spawn(write_snapshots(
            snapshot::path_in(&settings.data_dir),
            links.clone(),
            Duration::from_secs(settings.snapshot_secs),
            stop_rx.clone(),
        ));
    }

    if settings.tier {
        background.spawn(crate::tier::keep(
            links.tier.clone(),
            metrics.clone(),
            store.clone(),
            database_url,
            settings.data_dir.clone(),
            crate::tier::Schedule {
                every: Duration::from_secs(settings.tier_rebuild_secs),
                max_changed: settings.tier_max_changed,
            },
            stop_rx.clone(),
        ));
    }
    background.spawn(maintain_clicks(
        store.clone(),
        settings.click_retention_days,
        stop_rx.clone(),
    ));
    let drain = Duration::from_millis(settings.click_drain_ms);
    let clicks = ClickQueue::start(
        store.clone(),
        settings.click_queue_config(),
        metrics.batch.clone(),
        links.limits.clone(),
        stop_rx.clone(),
        drain,
        &mut background,
    );
    let queue_depth = metrics.batch.click_queue_depth.clone();

    // The grouped writers answer requests: once serving has ended (every request answered, or cut
    // off by the grace period) nobody waits for what they still hold, so they are aborted then, not
    // drained — a write blocked on a lock must not hold the stop until the last resort.
    let mut group_writers = JoinSet::new();
    let writers = settings.user_batch.then(|| {
        let (max, sizes) = (settings.user_batch_max, &metrics.batch);
        let users = store.clone();
        let urls = store.clone();
        let events = store.clone();
        let tasks = &mut group_writers;
        Writers {
            users: GroupWriter::start(
                max,
                WRITERS,
                sizes.user_group_size.clone(),
                stop_rx.clone(),
                tasks,
                move |g| {
                    let store = users.clone();
                    async move { store.create_users(&g).await }
                },
            ),
            urls: GroupWriter::start(
                max,
                WRITERS,
                sizes.url_group_size.clone(),
                stop_rx.clone(),
                tasks,
                move |g| {
                    let store = urls.clone();
                    async move { store.create_urls(&g).await }
                },
            ),
            events: GroupWriter::start(
                max,
                WRITERS,
                sizes.event_group_size.clone(),
                stop_rx.clone(),
                tasks,
                move |g| {
                    let store = events.clone();
                    async move { store.create_events(&g).await }
                },
            ),
        }
    });

    let grace = settings.shutdown_grace();
    let server_settings = settings.server_settings();
    let connections = metrics.connections.clone();
    let closing = store.clone();
    let state = Arc::new(AppState {
        redirect_status: StatusCode::from_u16(settings.redirect_status)
            .expect("validated at start"),
        keyring,
        settings: settings.api_settings(),
        store,
        metrics,
        links,
        clicks,
        writers,
    });
    on_ready(listener.local_addr()?);
    server::serve(
        listener,
        server_settings,
        connections,
        move |req| gitrev_api::handle(state.clone(), req),
        shutdown,
        grace,
    )
    .await;

    let _ = stop_tx.send(true);
    group_writers.abort_all();
    while group_writers.join_next().await.is_some() {}
    let stopped = async {
        while let Some(ended) = background.join_next().await {
            if let Err(err) = ended {
                warn!(error = %err, "a background task ended abnormally");
            }
        }
        // Last: the click writer and the grouped writers needed the database until now.
        closing.close().await;
    };
    // Each part has its own bound (the drain deadline, connect and pool timeouts); this one is
    // the last resort, so that no database trouble can keep a stopping process alive.
    let bound = drain + STOP_SLACK;
    if tokio::time::timeout(bound, stopped).await.is_err() {
        warn!(
            queued = queue_depth.get(),
            ?bound,
            "the background work did not stop in time; exiting anyway (queued clicks are lost)"
        );
        background.abort_all();
        while background.join_next().await.is_some() {}
    }
    info!("service stopped");
    Ok(())
}

/// How often the last uses of API keys are written (one statement for all of them).
const KEY_USES_EVERY: Duration = Duration::from_secs(10);

/// Writes when each API key was last used, every [`KEY_USES_EVERY`] and once more at stop: a
/// keyed request never waits on the database for it.
async fn record_key_uses(keyring: Keyring, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(KEY_USES_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        if let Err(err) = keyring.flush_used().await {
            warn!(error = %err, "could not record when API keys were last used; retrying later");
        }
        if stopping {
            return;
        }
    }
}

/// Days of click partitions made ahead of need.
const PARTITIONS_AHEAD: i64 = 3;
/// How often the click log is looked after.
const CLICK_MAINTENANCE_EVERY: Duration = Duration::from_secs(600);
/// Old click rows moved out of `events` per transaction.
const MOVE_CHUNK: i64 = 5_000;

/// Looks after the click log, now and then every [`CLICK_MAINTENANCE_EVERY`]: makes the coming
/// days' partitions (never on a request's path: the writer makes a missing one only as a last
/// resort), moves the click rows older versions left in `events` and in `clicks` (chunk by chunk,
/// while serving), and drops the partitions past retention. Safe on every replica at once
/// (advisory locks; a moved row is written by whoever deleted it). Failures are logged and retried
/// next time.
async fn maintain_clicks(store: Store, retention_days: u32, mut stop: watch::Receiver<bool>) {
    loop {
        // A stop ends a pass wherever it is: what it was doing is transactional, or (a detach)
        // finished by the next pass.
        tokio::select! {
            _ = maintenance_pass(&store, retention_days) => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(CLICK_MAINTENANCE_EVERY) => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
    }
}

async fn maintenance_pass(store: &Store, retention_days: u32) {
    match store.prepare_partitions(PARTITIONS_AHEAD).await {
        Ok(made) if !made.is_empty() => info!(?made, "click partitions made"),
        Ok(_) => {}
        Err(err) => warn!(error = %err, "cannot make click partitions yet"),
    }
    // Builds the classifier (it compiles its patterns) off the runtime's threads, before the
    // first click needs it.
    let _ = tokio::task::spawn_blocking(gitrev_store::clicks::warm_up).await;
    let moved = move_all(|| store.move_old_clicks(MOVE_CHUNK)).await;
    if moved > 0 {
        info!(moved, "old click rows moved from events to the click log");
    }
    let moved = move_all(|| store.move_unrun_clicks(MOVE_CHUNK)).await;
    if moved > 0 {
        info!(moved, "clicks stored one row each moved into runs");
    }
    match store
        .prune_old_link_changes(gitrev_store::tier::CHANGES_KEPT)
        .await
    {
        Ok(0) => {}
        Ok(pruned) => info!(pruned, "link changes past their keeping time dropped"),
        Err(err) => warn!(error = %err, "cannot prune the link change log yet"),
    }
    match store.prune_clicks(retention_days).await {
        Ok(pruned) if !pruned.partitions.is_empty() => info!(
            partitions = ?pruned.partitions,
            clicks = pruned.clicks,
            bytes = pruned.bytes,
            "clicks past retention dropped"
        ),
        Ok(_) => {}
        Err(err) => warn!(error = %err, "cannot prune clicks yet"),
    }
}

/// Runs one chunk of a move after another until none is left (or one fails: logged, retried next
/// pass); answers how many rows moved.
async fn move_all<F, Fut>(mut chunk: F) -> u64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, gitrev_store::StoreError>>,
{
    let mut moved = 0u64;
    loop {
        match chunk().await {
            Ok(0) => return moved,
            Ok(n) => moved += n,
            Err(err) => {
                warn!(error = %err, "cannot move old clicks yet");
                return moved;
            }
        }
    }
}

/// How much longer than the click drain a stop may take before the process exits regardless.
const STOP_SLACK: Duration = Duration::from_secs(5);

/// Warms `links` from the snapshot, if there is a usable one. Links changed since the snapshot
/// are dropped first, by asking the database; only when it cannot be asked is the snapshot served
/// unchecked, and then only if it is younger than the cache TTL (the longest a link is ever served
/// unconfirmed) — the first LISTEN connection after the database returns clears the cache anyway.
/// Returns how many links went in.
async fn warm_from_snapshot(settings: &Settings, store: &Store, links: &LinkCache) -> usize {
    // Read before anything: a LISTEN (re)connect clears the cache and moves it, and a clear
    // during the warm-up would otherwise be undone by what we put in after it.
    let epoch = links.epoch();
    let path = snapshot::path_in(&settings.data_dir);
    let Some(saved) = tokio::task::spawn_blocking(move || snapshot::load(&path))
        .await
        .ok()
        .flatten()
    else {
        return 0;
    };
    let taken_at_ms = saved.taken_at_ms;
    let current = match snapshot::reconcile(store, saved.links).await {
        Ok(current) => current,
        Err((StoreError::Unavailable(reason), unchecked)) => {
            let age_ms = chrono::Utc::now().timestamp_millis() - taken_at_ms;
            let ttl_ms =
                i64::try_from(settings.cache_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            if age_ms > ttl_ms {
                warn!(%reason, age_ms, "the database is unreachable and the link snapshot is older than the cache TTL; not using it");
                return 0;
            }
            warn!(%reason, age_ms, "the database is unreachable: serving the link snapshot as it was taken");
            unchecked
        }
        Err((err, _)) => {
            warn!(error = %err, "could not check the snapshot against the database; not using it");
            return 0;
        }
    };
    let warmed = snapshot::warm(links, &current).await;
    if links.epoch() != epoch {
        // Cleared or invalidated while we warmed: it may concern a link we just put in.
        links.clear();
        info!("links changed during the warm-up; starting cold instead");
        return 0;
    }
    info!(links = warmed, "cache warmed from the snapshot");
    warmed
}

/// Writes the cached links to the snapshot every `every`, and once more when `stop` flips.
async fn write_snapshots(
    path: std::path::PathBuf,
    links: LinkCache,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; the cache was just warmed
    loop {
        let last = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.changed() => true,
        };
        // Walking a million links takes a while: not on the threads that serve requests.
        let (target, cache) = (path.clone(), links.clone());
        let written = tokio::task::spawn_blocking(move || {
            let taken = snapshot::take(&cache);
            snapshot::write(&target, &taken).map(|()| taken.links.len())
        })
        .await;
        let count = match written {
            Ok(Ok(count)) => {
                tracing::debug!(links = count, "link snapshot written");
                count
            }
            Ok(Err(err)) => {
                warn!(error = %err, "could not write the link snapshot");
                0
            }
            Err(err) => {
                warn!(error = %err, "the snapshot writer panicked");
                0
            }
        };
        if last {
            info!(links = count, path = %path.display(), "final link snapshot written");
            return;
        }
    }
}
