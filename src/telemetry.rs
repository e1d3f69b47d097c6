//! Logs and metrics.
//!
//! Logs go through `tracing`: JSON lines when stderr is not a terminal (or when asked), readable
//! text in a terminal. Metrics live in one prometheus-client registry owned by the app state and
//! rendered by `GET /metrics` in the OpenMetrics text format.

use std::io::IsTerminal;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, Settings};

/// Installs the global subscriber; later calls (tests) are ignored.
pub fn init_logging(settings: &Settings) {
    let filter = EnvFilter::try_new(&settings.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match settings.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Metrics of the cache and the grouped writers (cheap to clone: handles onto shared values).
#[derive(Clone)]
pub struct BatchMetrics {
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub click_queue_depth: Gauge,
    pub click_overflow: Counter,
    pub click_lost: Counter,
    pub click_batch_size: Histogram,
    pub click_flush_seconds: Histogram,
    pub user_group_size: Histogram,
}

fn size_histogram() -> Histogram {
    // 1 .. 4096
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub pool_connections: Gauge,
    pub pool_idle: Gauge,
    pub cache_entries: Gauge,
    pub batch: BatchMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("gitrev");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by route, method and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response, by route",
            latency.clone(),
        );
        let pool_connections = Gauge::default();
        registry.register(
            "db_pool_connections",
            "Open PostgreSQL connections in the pool",
            pool_connections.clone(),
        );
        let pool_idle = Gauge::default();
        registry.register(
            "db_pool_idle_connections",
            "Idle PostgreSQL connections in the pool",
            pool_idle.clone(),
        );
        let batch = BatchMetrics {
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            click_queue_depth: Gauge::default(),
            click_overflow: Counter::default(),
            click_lost: Counter::default(),
            click_batch_size: size_histogram(),
            click_flush_seconds: latency_histogram(),
            user_group_size: size_histogram(),
        };
        registry.register(
            "link_cache_hits",
            "Redirect lookups answered by the cache",
            batch.cache_hits.clone(),
        );
        registry.register(
            "link_cache_misses",
            "Redirect lookups that went to the database",
            batch.cache_misses.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register(
            "link_cache_entries",
            "Entries in the link cache",
            cache_entries.clone(),
        );
        registry.register(
            "click_queue_depth",
            "Clicks waiting to be written",
            batch.click_queue_depth.clone(),
        );
        registry.register(
            "click_queue_overflow",
            "Clicks dropped because the queue was full",
            batch.click_overflow.clone(),
        );
        registry.register(
            "clicks_lost",
            "Clicks that could not be written (database error past retries)",
            batch.click_lost.clone(),
        );
        registry.register(
            "click_batch_size",
            "Clicks per write",
            batch.click_batch_size.clone(),
        );
        registry.register(
            "click_flush_duration_seconds",
            "Time to write one batch of clicks",
            batch.click_flush_seconds.clone(),
        );
        registry.register(
            "user_group_size",
            "Users inserted per grouped POST /users statement",
            batch.user_group_size.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            pool_connections,
            pool_idle,
            cache_entries,
            batch,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// A method name with a static lifetime, for labels.
pub fn method_label(method: &hyper::Method) -> &'static str {
    match *method {
        hyper::Method::GET => "GET",
        hyper::Method::HEAD => "HEAD",
        hyper::Method::POST => "POST",
        hyper::Method::PUT => "PUT",
        hyper::Method::PATCH => "PATCH",
        hyper::Method::DELETE => "DELETE",
        hyper::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
