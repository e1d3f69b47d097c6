//! The listener and connection lifecycle: accept (at most `GITREV_MAX_CONNECTIONS` at once), serve
//! HTTP/1.1 with keep-alive within the head size, header count and header read time limits, and on
//! shutdown stop accepting, let in-flight requests finish within the grace period, then return.
//!
//! What answers the requests is the caller's: any function from request to response.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::Response;

/// hyper's own default: any other value makes it allocate the header array per request.
pub const DEFAULT_MAX_HEADERS: usize = 100;

/// The listener's and each connection's limits.
#[derive(Clone, Copy, Debug)]
pub struct ServerSettings {
    /// Most client connections served at once.
    pub max_connections: usize,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Most headers in one request.
    pub max_headers: usize,
    /// How long a client may take to send a request's headers, and how long an idle keep-alive
    /// connection stays open; `None`: no limit.
    pub header_read_timeout: Option<Duration>,
}

/// Serves connections from `listener` with `service` until `shutdown` completes, then drains.
/// `connections` counts the connections open.
pub async fn serve<S, F>(
    listener: TcpListener,
    settings: ServerSettings,
    connections: prometheus::IntGauge,
    service: S,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    S: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .max_header_size(settings.max_header_bytes);
    if settings.max_headers != DEFAULT_MAX_HEADERS {
        // Any value but hyper's default moves the header array to the heap, per request.
        builder.max_headers(settings.max_headers);
    }
    match settings.header_read_timeout {
        // Bounds both a slow client's request head and an idle keep-alive connection.
        Some(timeout) => {
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(timeout);
        }
        None => {
            builder.header_read_timeout(None);
        }
    }
    // A connection is accepted only with a permit in hand: beyond the limit, clients wait in the
    // listen backlog instead of costing memory and file descriptors here.
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let open = connections;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = service_fn(service.clone());
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                let open = OpenConnection::new(open.clone(), permit);
                tokio::spawn(async move {
                    if let Err(err) = conn.await {
                        debug!(%peer, error = %err, "connection ended with an error");
                    }
                    drop(open);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    info!("stopped accepting connections; draining in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            ?grace,
            "in-flight requests did not finish within the grace period"
        );
    }
}

/// A served connection's slot: counted open while it lives, its permit returned when it ends
/// however it ends (even if the connection task panics).
struct OpenConnection {
    gauge: prometheus::IntGauge,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(gauge: prometheus::IntGauge, permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        gauge.inc();
        OpenConnection {
            gauge,
            _permit: permit,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
