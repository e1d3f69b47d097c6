//! The running service: builds the shared state and its background tasks, serves, and stops
//! everything in the right order.
//!
//! Stop order on SIGTERM/SIGINT: stop accepting and let in-flight requests finish (bounded by the
//! grace period), then drain the click queue into the database, then close the LISTEN connection.
//! The caller stops the embedded database last.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::auth::ApiToken;
use crate::api::{AppState, Writers};
use crate::batch::{ClickQueue, ClickQueueConfig, GroupWriter};
use crate::cache::{self, CacheConfig, LinkCache};
use crate::config::Settings;
use crate::http::server;
use crate::store::Store;
use crate::telemetry::Metrics;

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
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    metrics
        .pool_max_connections
        .set(i64::from(settings.pool_size));
    let (stop_tx, stop_rx) = watch::channel(false);

    let links = LinkCache::new(
        CacheConfig {
            capacity: settings.cache_capacity,
            ttl: Duration::from_secs(settings.cache_ttl_secs),
            negative_ttl: Duration::from_millis(settings.negative_ttl_ms),
        },
        metrics.batch.cache_evictions.clone(),
    );
    let (listening_tx, mut listening_rx) = watch::channel(false);
    let listen_task = tokio::spawn(cache::listen(
        store.side_config(),
        links.clone(),
        stop_rx.clone(),
        listening_tx,
    ));
    if tokio::time::timeout(LISTEN_WAIT, listening_rx.wait_for(|up| *up))
        .await
        .is_err()
    {
        warn!("serving before the link invalidation connection is up");
    }

    let (clicks, click_writer) = ClickQueue::start(
        store.clone(),
        ClickQueueConfig {
            capacity: settings.click_queue,
            max_batch: settings.click_batch,
            flush_interval: Duration::from_millis(settings.click_flush_ms),
        },
        metrics.batch.clone(),
        stop_rx.clone(),
        Duration::from_millis(settings.click_drain_ms),
    );

    let writers = settings.user_batch.then(|| {
        let (max, sizes) = (settings.user_batch_max, &metrics.batch);
        let users = store.clone();
        let urls = store.clone();
        let events = store.clone();
        Writers {
            users: GroupWriter::start(max, WRITERS, sizes.user_group_size.clone(), move |g| {
                let store = users.clone();
                async move { store.create_users(&g).await }
            }),
            urls: GroupWriter::start(max, WRITERS, sizes.url_group_size.clone(), move |g| {
                let store = urls.clone();
                async move { store.create_urls(&g).await }
            }),
            events: GroupWriter::start(max, WRITERS, sizes.event_group_size.clone(), move |g| {
                let store = events.clone();
                async move { store.create_events(&g).await }
            }),
        }
    });

    let grace = settings.shutdown_grace();
    let state = Arc::new(AppState {
        redirect_status: StatusCode::from_u16(settings.redirect_status)
            .expect("validated at start"),
        api_token: settings
            .api_token
            .as_ref()
            .map(|token| ApiToken::new(token.expose())),
        settings,
        store,
        metrics,
        links,
        clicks,
        writers,
    });
    on_ready(listener.local_addr()?);
    server::serve(listener, state, shutdown, grace).await;

    let _ = stop_tx.send(true);
    if let Err(err) = click_writer.await {
        warn!(error = %err, "the click writer ended abnormally");
    }
    let _ = listen_task.await;
    info!("service stopped");
    Ok(())
}
