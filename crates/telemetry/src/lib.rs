//! Logs and metrics.
//!
//! Logs go through `tracing`: JSON lines when stderr is not a terminal (or when asked), readable
//! text in a terminal. Metrics live in one `prometheus` registry owned by the app state (with the
//! crate's process collector for CPU, memory and file descriptors) and are rendered by
//! `GET /metrics` in the Prometheus text format (0.0.4).

use std::io::IsTerminal;

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, human-readable when it is.
    Auto,
    Json,
    Text,
}

/// Installs the global subscriber; later calls (tests) are ignored. Lines are written by a
/// background thread, so a slow stderr never blocks a request; keep the returned guard alive
/// until exit, when it flushes what is left. `filter` is in tracing's EnvFilter syntax.
pub fn init_logging(
    filter: &str,
    format: LogFormat,
) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
    guard
}

/// Metrics of the cache and the grouped writers (cheap to clone: handles onto shared values).
#[derive(Clone)]
pub struct BatchMetrics {
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    /// Links the cache dropped on its own, by `reason`: `size` (capacity) or `expired` (TTL).
    pub cache_evictions: IntCounterVec,
    pub click_queue_depth: IntGauge,
    pub click_overflow: IntCounter,
    pub click_lost: IntCounter,
    pub click_batch_size: Histogram,
    pub click_flush_seconds: Histogram,
    pub user_group_size: Histogram,
    pub url_group_size: Histogram,
    pub event_group_size: Histogram,
}

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    /// Client connections open now.
    pub connections: IntGauge,
    /// Links the cache was warmed with from the snapshot at start.
    pub snapshot_links: IntGauge,
    pub pool_connections: IntGauge,
    pub pool_idle: IntGauge,
    pub pool_in_use: IntGauge,
    pub pool_waiting: IntGauge,
    pub pool_max_connections: IntGauge,
    pub cache_entries: IntGauge,
    /// Database checkouts abandoned at their client-side deadline.
    pub db_deadlines_passed: IntCounter,
    /// 1 while the LISTEN connection for link invalidations is up.
    pub listen_connected: IntGauge,
    pub batch: BatchMetrics,
}

fn latency_buckets() -> Vec<f64> {
    // 50 µs .. ~1.6 s
    exponential_buckets(0.000_05, 2.0, 16).expect("valid buckets")
}

fn size_buckets() -> Vec<f64> {
    // 1 .. 4096
    exponential_buckets(1.0, 2.0, 13).expect("valid buckets")
}

/// Registers a metric built from fixed, valid options.
fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and valid");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help).expect("valid metric"))
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).expect("valid metric"))
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    register(
        registry,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
            .expect("valid metric"),
    )
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("the process collector registers once");
        let requests = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "gitrev_http_requests_total",
                    "HTTP requests served, by route, method and status",
                ),
                &["route", "method", "status"],
            )
            .expect("valid metric"),
        );
        let latency = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "gitrev_http_request_duration_seconds",
                    "Time from request to response, by route",
                )
                .buckets(latency_buckets()),
                &["route"],
            )
            .expect("valid metric"),
        );
        let batch = BatchMetrics {
            cache_hits: counter(
                &registry,
                "gitrev_link_cache_hits_total",
                "Redirect lookups answered by the cache",
            ),
            cache_misses: counter(
                &registry,
                "gitrev_link_cache_misses_total",
                "Redirect lookups that went to the database",
            ),
            cache_evictions: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "gitrev_link_cache_evictions_total",
                        "Links the cache dropped on its own, by reason (size: over capacity, expired: TTL)",
                    ),
                    &["reason"],
                )
                .expect("valid metric"),
            ),
            click_queue_depth: gauge(
                &registry,
                "gitrev_click_queue_depth",
                "Clicks waiting to be written",
            ),
            click_overflow: counter(
                &registry,
                "gitrev_click_queue_overflow_total",
                "Clicks dropped because the queue was full",
            ),
            click_lost: counter(
                &registry,
                "gitrev_clicks_lost_total",
                "Clicks that could not be written (database error past retries)",
            ),
            click_batch_size: histogram(
                &registry,
                "gitrev_click_batch_size",
                "Clicks per write",
                size_buckets(),
            ),
            click_flush_seconds: histogram(
                &registry,
                "gitrev_click_flush_duration_seconds",
                "Time to write one batch of clicks",
                latency_buckets(),
            ),
            user_group_size: histogram(
                &registry,
                "gitrev_user_batch_size",
                "Users inserted per grouped POST /users statement",
                size_buckets(),
            ),
            url_group_size: histogram(
                &registry,
                "gitrev_url_batch_size",
                "Urls inserted per grouped POST /urls statement",
                size_buckets(),
            ),
            event_group_size: histogram(
                &registry,
                "gitrev_event_batch_size",
                "Events inserted per grouped POST /events statement",
                size_buckets(),
            ),
        };
        Metrics {
            snapshot_links: gauge(
                &registry,
                "gitrev_snapshot_links_loaded",
                "Links the cache was warmed with from the snapshot at start",
            ),
            connections: gauge(
                &registry,
                "gitrev_http_connections",
                "Client connections open now (at most GITREV_MAX_CONNECTIONS)",
            ),
            pool_connections: gauge(
                &registry,
                "gitrev_db_pool_connections",
                "Open PostgreSQL connections in the pool",
            ),
            pool_idle: gauge(
                &registry,
                "gitrev_db_pool_idle_connections",
                "Idle PostgreSQL connections in the pool",
            ),
            pool_in_use: gauge(
                &registry,
                "gitrev_db_pool_in_use_connections",
                "PostgreSQL connections checked out of the pool",
            ),
            pool_waiting: gauge(
                &registry,
                "gitrev_db_pool_waiters",
                "Requests waiting for a PostgreSQL connection from the pool",
            ),
            pool_max_connections: gauge(
                &registry,
                "gitrev_db_pool_max_connections",
                "Most PostgreSQL connections the pool opens (GITREV_POOL_SIZE)",
            ),
            cache_entries: gauge(
                &registry,
                "gitrev_link_cache_entries",
                "Entries in the link cache",
            ),
            db_deadlines_passed: counter(
                &registry,
                "gitrev_db_deadlines_passed_total",
                "Database operations abandoned at their client-side deadline (GITREV_STATEMENT_TIMEOUT_MS + GITREV_DB_DEADLINE_MARGIN_MS): each closes its connection and discards the pool's",
            ),
            listen_connected: gauge(
                &registry,
                "gitrev_link_listen_connected",
                "1 while the LISTEN connection for link invalidations is up, else 0",
            ),
            registry,
            requests,
            latency,
            batch,
        }
    }
}

impl Metrics {
    /// Counts one served request.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let code = StatusLabel::new(status);
        self.requests
            .with_label_values(&[route, method, code.as_str()])
            .inc();
        self.latency.with_label_values(&[route]).observe(seconds);
    }

    /// The Prometheus text exposition and its content type.
    pub fn render(&self) -> (String, String) {
        let encoder = TextEncoder::new();
        let mut out = Vec::new();
        encoder
            .encode(&self.registry.gather(), &mut out)
            .expect("writing to a Vec cannot fail");
        (
            String::from_utf8(out).expect("the text format is UTF-8"),
            encoder.format_type().to_owned(),
        )
    }
}

/// A status code as a label value, formatted on the stack.
struct StatusLabel([u8; 3]);

impl StatusLabel {
    fn new(status: u16) -> StatusLabel {
        let s = status.min(999);
        StatusLabel([
            b'0' + (s / 100) as u8,
            b'0' + (s / 10 % 10) as u8,
            b'0' + (s % 10) as u8,
        ])
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII digits")
    }
}
