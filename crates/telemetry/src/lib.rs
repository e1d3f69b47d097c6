//! Logs and metrics.
//!
//! Logs go through `tracing`: JSON lines when stderr is not a terminal (or when asked), readable
//! text in a terminal. Metrics live in one `prometheus` registry owned by the app state (with the
//! crate's process collector for CPU, memory and file descriptors) and are rendered by
//! `GET /metrics` in the Prometheus text format (0.0.4).

use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};

use tracing::Level;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::writer::{MakeWriterExt, OrElse, WithMaxLevel};

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

/// Lines a log writer holds before it falls behind: beyond this, lines below WARN are dropped
/// (and counted), warnings and errors wait.
const LOG_BUFFER_LINES: usize = 128_000;

/// Log lines below WARN dropped so far because the log writer fell behind, once logging is set up.
static DROPPED_LINES: OnceLock<ErrorCounter> = OnceLock::new();

/// Keeps logging's writer threads alive; dropping it (at exit) flushes what is left.
pub struct LogGuard {
    _lossless: WorkerGuard,
    _lossy: WorkerGuard,
}

/// Where log lines go: warnings and errors through a writer that never drops a line (when its
/// buffer is full the logging thread waits), everything else — access lines, the bulk — through
/// one that drops a line rather than wait, and counts it.
pub type LogWriter = OrElse<WithMaxLevel<NonBlocking>, NonBlocking>;

/// The two writers over `important` (WARN and ERROR) and `rest`, each on its own thread with a
/// buffer of `lines`; the counter counts what `rest` dropped.
pub fn log_writer<A, B>(important: A, rest: B, lines: usize) -> (LogWriter, LogGuard, ErrorCounter)
where
    A: std::io::Write + Send + 'static,
    B: std::io::Write + Send + 'static,
{
    let (lossless, lossless_guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(lines)
        .thread_name("gitrev-log-warn")
        .finish(important);
    let (lossy, lossy_guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(lines)
        .thread_name("gitrev-log")
        .finish(rest);
    let dropped = lossy.error_counter();
    let writer = lossless.with_max_level(Level::WARN).or_else(lossy);
    let guard = LogGuard {
        _lossless: lossless_guard,
        _lossy: lossy_guard,
    };
    (writer, guard, dropped)
}

/// Installs the global subscriber; later calls (tests) are ignored. Lines are written by
/// background threads, so a slow stderr never blocks a request on an access line; warnings and
/// errors are never dropped (see [`log_writer`]). Keep the returned guard alive until exit, when
/// it flushes what is left. `filter` is in tracing's EnvFilter syntax.
pub fn init_logging(filter: &str, format: LogFormat) -> LogGuard {
    let (writer, guard, dropped) =
        log_writer(std::io::stderr(), std::io::stderr(), LOG_BUFFER_LINES);
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
    if installed.is_ok() {
        let _ = DROPPED_LINES.set(dropped);
    }
    guard
}

/// Log lines dropped so far because the log writer fell behind (0 before logging is set up).
pub fn log_lines_dropped() -> u64 {
    DROPPED_LINES
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
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
    /// Clicks of urls deleted while they waited in the queue: dropped, not stored.
    pub clicks_url_gone: IntCounter,
    /// Batches found already written when retried (their first commit's answer was lost).
    pub click_batches_repeated: IntCounter,
    /// Batches whose write ran out of time before its commit, written again in halves.
    pub click_batches_split: IntCounter,
    /// The most clicks the next batch may hold (follows how long writes take).
    pub click_batch_limit: IntGauge,
    /// The most distinct urls one write of clicks may hold (follows how long writes take).
    pub click_batch_url_limit: IntGauge,
    /// Clicks handed to the click queue (queued or, when full, dropped).
    pub clicks_received: IntCounter,
    /// A low-water mark over the received clicks: every one up to it is written, lost or dropped.
    pub clicks_settled: IntCounter,
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
    /// `?q=` searches, by how they ran.
    pub url_searches: IntCounterVec,
    /// 1 while the LISTEN connection for link invalidations is up.
    pub listen_connected: IntGauge,
    /// Redirect lookups the cache did not hold, by what the link tier answered.
    pub tier_answers: IntCounterVec,
    /// Links in the link tier in use (0: none).
    pub tier_links: IntGauge,
    /// Codes changed since the tier was built (answered without it).
    pub tier_changed: IntGauge,
    /// 1 while the tier is trusted.
    pub tier_trusted: IntGauge,
    /// Tier rebuilds, by result.
    pub tier_rebuilds: IntCounterVec,
    /// Round trips on the LISTEN connection made for requests the tier did not know (the fence).
    pub tier_fence_trips: IntCounter,
    /// Requests the fence let through unchecked, over its budget.
    pub tier_fence_skipped: IntCounter,
    /// Requests refused (429) by an API key's rate limit, by key id (never the key).
    pub key_rate_limited: IntCounterVec,
    /// Log lines below WARN dropped because the log writer fell behind (brought up to date from
    /// the writer's own count at every render).
    pub log_lines_dropped: IntCounter,
    /// Serializes bringing `log_lines_dropped` up to date (two renders at once would add twice).
    log_sync: Mutex<()>,
    /// Every metric's name and help, in registration order.
    described: Vec<(String, String)>,
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

/// The registry being filled, remembering every metric's name and help as it goes.
#[derive(Default)]
struct Registrar {
    registry: Registry,
    described: std::cell::RefCell<Vec<(String, String)>>,
}

impl Registrar {
    fn register(&self, collector: Box<dyn prometheus::core::Collector>) -> prometheus::Result<()> {
        self.described.borrow_mut().extend(
            collector
                .desc()
                .into_iter()
                .map(|desc| (desc.fq_name.clone(), desc.help.clone())),
        );
        self.registry.register(collector)
    }
}

/// Registers a metric built from fixed, valid options.
fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registrar,
    metric: M,
) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and valid");
    metric
}

fn counter(registry: &Registrar, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help).expect("valid metric"))
}

fn gauge(registry: &Registrar, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).expect("valid metric"))
}

fn histogram(registry: &Registrar, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    register(
        registry,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
            .expect("valid metric"),
    )
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registrar::default();
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
                "Redirect lookups the cache did not hold (answered by the link tier or the database: gitrev_link_tier_answers_total)",
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
            clicks_url_gone: counter(
                &registry,
                "gitrev_clicks_url_gone_total",
                "Clicks dropped because their url was deleted while they waited in the queue",
            ),
            click_batches_repeated: counter(
                &registry,
                "gitrev_click_batches_repeated_total",
                "Click batches retried after a lost commit answer and found already written (not written twice)",
            ),
            click_batches_split: counter(
                &registry,
                "gitrev_click_batches_split_total",
                "Click batches whose write ran out of time before its commit, written again in halves",
            ),
            click_batch_limit: gauge(
                &registry,
                "gitrev_click_batch_limit",
                "The most clicks the next click batch may hold: smaller while writes take longer than their target",
            ),
            click_batch_url_limit: gauge(
                &registry,
                "gitrev_click_batch_url_limit",
                "The most distinct urls one write of clicks may hold (a batch over more is written in pieces): follows how long writes take",
            ),
            clicks_received: counter(
                &registry,
                "gitrev_clicks_received_total",
                "Clicks handed to the click queue by redirects and events (queued, or dropped when full)",
            ),
            clicks_settled: counter(
                &registry,
                "gitrev_clicks_settled_total",
                "Received clicks settled in order: every click up to this count is written, lost or dropped (equal to gitrev_clicks_received_total when nothing waits)",
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
            url_searches: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "gitrev_url_searches_total",
                        "GET /urls?q= searches, by plan: halves (the two halves of the urls searched at once on two connections), whole (one statement: no second connection was free, or a page past the first 10,000 matches)",
                    ),
                    &["plan"],
                )
                .expect("valid metric"),
            ),
            listen_connected: gauge(
                &registry,
                "gitrev_link_listen_connected",
                "1 while the LISTEN connection for link invalidations is up, else 0",
            ),
            tier_answers: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "gitrev_link_tier_answers_total",
                        "Redirect lookups the cache did not hold, by the link tier's answer: link (served from it), absent (no such link, no query), database (asked the database)",
                    ),
                    &["answer"],
                )
                .expect("valid metric"),
            ),
            tier_links: gauge(
                &registry,
                "gitrev_link_tier_links",
                "Links in the link tier in use (0: none yet)",
            ),
            tier_changed: gauge(
                &registry,
                "gitrev_link_tier_changed",
                "Codes changed since the link tier was built, answered without it until the next rebuild",
            ),
            tier_trusted: gauge(
                &registry,
                "gitrev_link_tier_trusted",
                "1 while the link tier answers (LISTEN up and caught up with the change log), else 0",
            ),
            tier_fence_trips: counter(
                &registry,
                "gitrev_link_tier_fence_trips_total",
                "Empty queries on the LISTEN connection made so that codes the link tier does not know are answered only after every earlier creation was heard (each serves every request waiting; at most 100 a second)",
            ),
            tier_fence_skipped: counter(
                &registry,
                "gitrev_link_tier_fence_skipped_total",
                "Codes the link tier does not know answered without the fence because its budget was spent (a flood of unknown codes): a link created on another replica in the last milliseconds may be answered 404",
            ),
            tier_rebuilds: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "gitrev_link_tier_rebuilds_total",
                        "Link tier rebuilds, by result (ok, failed)",
                    ),
                    &["result"],
                )
                .expect("valid metric"),
            ),
            key_rate_limited: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "gitrev_key_rate_limited_total",
                        "Requests refused with 429 by an API key's rate limit, by key id (0: GITREV_API_TOKEN); never the key itself",
                    ),
                    &["key_id"],
                )
                .expect("valid metric"),
            ),
            log_lines_dropped: counter(
                &registry,
                "gitrev_log_lines_dropped_total",
                "Log lines below WARN (access lines and the like) dropped because the log writer fell behind; warnings and errors are never dropped",
            ),
            log_sync: Mutex::new(()),
            described: registry.described.into_inner(),
            registry: registry.registry,
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

    /// Every metric's name and help, in registration order (for `gitrev settings --metrics`).
    pub fn describe(&self) -> &[(String, String)] {
        &self.described
    }

    /// The Prometheus text exposition and its content type.
    pub fn render(&self) -> (String, String) {
        {
            let _one_at_a_time = self.log_sync.lock().unwrap_or_else(|e| e.into_inner());
            let dropped = log_lines_dropped();
            let counted = self.log_lines_dropped.get();
            if dropped > counted {
                self.log_lines_dropped.inc_by(dropped - counted);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Condvar};
    use std::time::Duration;

    /// A sink that takes no line until its gate opens (a stderr nobody reads), then keeps them.
    #[derive(Clone, Default)]
    struct GatedSink {
        gate: Arc<(Mutex<bool>, Condvar)>,
        lines: Arc<Mutex<Vec<u8>>>,
    }

    impl GatedSink {
        fn open(&self) {
            *self.gate.0.lock().unwrap() = true;
            self.gate.1.notify_all();
        }

        fn count(&self, needle: &str) -> usize {
            String::from_utf8_lossy(&self.lines.lock().unwrap())
                .matches(needle)
                .count()
        }
    }

    impl Write for GatedSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut open = self.gate.0.lock().unwrap();
            while !*open {
                open = self.gate.1.wait(open).unwrap();
            }
            self.lines.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn warnings_and_errors_wait_for_a_slow_writer_other_lines_are_dropped_and_counted() {
        let important = GatedSink::default();
        let gate = important.gate.clone();
        let rest = GatedSink {
            gate,
            ..GatedSink::default()
        };
        let (writer, guard, dropped) = log_writer(important.clone(), rest.clone(), 4);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_max_level(Level::INFO)
            .finish();
        let dispatch = tracing::Dispatch::new(subscriber);

        // The writers are stuck: access lines beyond the buffer are dropped, never waited for.
        tracing::dispatcher::with_default(&dispatch, || {
            for n in 0..100 {
                tracing::info!(n, "access line");
            }
        });
        assert!(dropped.dropped_lines() >= 90, "{}", dropped.dropped_lines());

        // Warnings and errors wait for room instead.
        let logging = std::thread::spawn({
            let dispatch = dispatch.clone();
            move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for n in 0..50 {
                        tracing::warn!(n, "warning line");
                        tracing::error!(n, "error line");
                    }
                })
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(!logging.is_finished(), "a full buffer holds warnings back");
        important.open();
        logging.join().expect("the logging thread");
        drop(guard); // flushes both writers
        assert_eq!(important.count("warning line"), 50);
        assert_eq!(important.count("error line"), 50);
        assert_eq!(important.count("access line"), 0);
        assert_eq!(
            rest.count("access line") + dropped.dropped_lines(),
            100,
            "every access line is written or counted as dropped"
        );
    }

    #[test]
    fn every_metric_is_described_and_dropped_log_lines_are_exported() {
        let metrics = Metrics::default();
        let names: Vec<&str> = metrics.describe().iter().map(|(n, _)| n.as_str()).collect();
        for name in [
            "gitrev_http_requests_total",
            "gitrev_link_cache_evictions_total",
            "gitrev_log_lines_dropped_total",
            "gitrev_click_queue_depth",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        assert!(metrics.describe().iter().all(|(_, help)| !help.is_empty()));
        let (text, _) = metrics.render();
        assert!(text.contains("gitrev_log_lines_dropped_total 0"), "{text}");
    }
}
