//! Settings: every knob comes from an environment variable and has a flag of the same meaning.
//!
//! The struct is parsed once by clap (flags win over the environment), and each value's parser
//! rejects what would only fail later (ranges, sets, multiples, a malformed URL), so a bad setting
//! stops the process at start with a message naming the variable and its flag (see [`Named`]).
//! No rule spans two settings, so there is no second validation pass. Each crate gets its own settings struct, cut from these at the
//! bottom of this file; none of them sees the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::ffi::OsStr;

use clap::builder::{BoolishValueParser, RangedU64ValueParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::{value_parser, Args, ValueEnum};
use gitrev_api::ApiSettings;
use gitrev_http::server::ServerSettings;
use gitrev_links::batch::ClickQueueConfig;
use gitrev_links::cache::CacheConfig;
use gitrev_store::StoreSettings;

/// `per_page` may not exceed this; the list cap must be a multiple of it so the `next` link of a
/// capped list lines up with a real page.
pub use gitrev_http::query::MAX_PER_PAGE;
/// hyper's own default: any other value makes it allocate the header array per request.
pub use gitrev_http::server::DEFAULT_MAX_HEADERS;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./.gitrev";
pub const DEFAULT_POOL_SIZE: u32 = 16;
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 2_500;
pub const DEFAULT_DB_DEADLINE_MARGIN_MS: u64 = 500;
/// A click batch's write should take at most this share of the statement timeout (a quarter).
const CLICK_FLUSH_SHARE: u64 = 4;
pub const DEFAULT_MAINTENANCE_TIMEOUT_MS: u64 = 600_000;
pub const DEFAULT_POOL_TIMEOUT_MS: u64 = 2_000;
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
pub const DEFAULT_LIST_CAP: u32 = 10_000;
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 32 << 20;
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 << 10;
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Where the service runs; decides whether demo data may be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    Development,
    Test,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Test => "test",
            Environment::Production => "production",
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, human-readable when it is.
    Auto,
    Json,
    Text,
}

/// Which requests get an access log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AccessLog {
    /// Every request (one line each: costly at redirect rates).
    All,
    /// Only requests answered with a 5xx.
    Errors,
    Off,
}

#[derive(Clone, Debug, Args)]
pub struct Settings {
    /// PostgreSQL connection URL (`postgres://user:pass@host:5432/db`). Unset: the embedded
    /// PostgreSQL under the data directory.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true,
          value_parser = named(database_url as Parse<Secret>))]
    pub database_url: Option<Secret>,

    /// HTTP listen address (port 0 picks a free one).
    #[arg(long, env = "GITREV_LISTEN", default_value = DEFAULT_LISTEN, global = true,
          value_parser = named(socket_addr as Parse<SocketAddr>))]
    pub listen: SocketAddr,

    /// Embedded cluster (`pg/`, its password, its log) and other local state.
    #[arg(long, env = "GITREV_DATA_DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    pub data_dir: PathBuf,

    /// `development`, `test` or `production`. Demo data loads on the first start (empty database)
    /// only in development; production refuses `seed` without `--allow-production` and always
    /// refuses `reset`.
    #[arg(
        long = "env",
        env = "GITREV_ENV",
        value_enum,
        default_value = "development",
        global = true
    )]
    pub environment: Environment,

    /// Seed set (`users.csv`, `urls.csv`, `events.csv`) for `seed`, `reset` and the development
    /// first start. Unset: the reference set built into the binary.
    #[arg(long, env = "GITREV_SEED_DIR", global = true)]
    pub seed_dir: Option<PathBuf>,

    /// Directory of `initdb` and `postgres` for the embedded database. Unset: search `PATH`, then
    /// `/usr/lib/postgresql/*/bin` (newest first).
    #[arg(long, env = "GITREV_PG_BIN", global = true)]
    pub pg_bin: Option<PathBuf>,

    /// `shared_buffers` of the embedded database, in MB (16 to 65536). Unset: a quarter of the
    /// memory gitrev may use (its cgroup's limit, else the machine's), between 128 and 1024.
    #[arg(long, env = "GITREV_PG_SHARED_BUFFERS_MB", global = true,
          value_parser = named(value_parser!(u32).range(16..=65536)))]
    pub pg_shared_buffers_mb: Option<u32>,

    /// PostgreSQL connections in the pool (1 to 1000).
    #[arg(long, env = "GITREV_POOL_SIZE", default_value_t = DEFAULT_POOL_SIZE, global = true,
          value_parser = named(value_parser!(u32).range(1..=1000)))]
    pub pool_size: u32,

    /// `statement_timeout` of every pooled connection (enforced by the server), in milliseconds.
    #[arg(long, env = "GITREV_STATEMENT_TIMEOUT_MS", default_value_t = DEFAULT_STATEMENT_TIMEOUT_MS,
          global = true, value_parser = named(value_parser!(u64).range(1..)))]
    pub statement_timeout_ms: u64,

    /// The client-side deadline of every database checkout is the statement timeout plus this, in
    /// milliseconds: it bounds the wait on a server that never got the query (partition,
    /// failover); then 503 with `retry-after` and the connections are discarded
    /// ([operations](docs/operations.md#database-bounds-partitions-and-failovers)).
    #[arg(long, env = "GITREV_DB_DEADLINE_MARGIN_MS", default_value_t = DEFAULT_DB_DEADLINE_MARGIN_MS,
          global = true, value_parser = named(value_parser!(u64).range(1..)))]
    pub db_deadline_margin_ms: u64,

    /// Statement timeout and client-side bound of migrations, seeding and the other maintenance
    /// commands, in milliseconds.
    #[arg(long, env = "GITREV_MAINTENANCE_TIMEOUT_MS", default_value_t = DEFAULT_MAINTENANCE_TIMEOUT_MS,
          global = true, value_parser = named(value_parser!(u64).range(1..)))]
    pub maintenance_timeout_ms: u64,

    /// Longest wait for a pooled connection (within the deadline), in milliseconds; then 503 with
    /// `retry-after`.
    #[arg(long, env = "GITREV_POOL_TIMEOUT_MS", default_value_t = DEFAULT_POOL_TIMEOUT_MS,
          global = true, value_parser = named(value_parser!(u64).range(1..)))]
    pub pool_timeout_ms: u64,

    /// Longest a new PostgreSQL connection may take, TCP connect and startup handshake included,
    /// in milliseconds.
    #[arg(long, env = "GITREV_CONNECT_TIMEOUT_MS", default_value_t = DEFAULT_CONNECT_TIMEOUT_MS,
          global = true, value_parser = named(value_parser!(u64).range(1..)))]
    pub connect_timeout_ms: u64,

    /// Redirect status: 301, 302, 307 or 308.
    #[arg(long, env = "GITREV_REDIRECT_STATUS", default_value_t = 302, global = true,
          value_parser = named(redirect_status as Parse<u16>))]
    pub redirect_status: u16,

    /// The short links' origin in QR codes (e.g. `https://go.example.com`); unset: the request's
    /// `host`, over http.
    #[arg(long, env = "GITREV_PUBLIC_URL", global = true,
          value_parser = named(public_url as Parse<String>))]
    pub public_url: Option<String>,

    /// Rows a list returns without `page`/`per_page` (a positive multiple of 1000).
    #[arg(long, env = "GITREV_LIST_CAP", default_value_t = DEFAULT_LIST_CAP, global = true,
          value_parser = named(list_cap as Parse<u32>))]
    pub list_cap: u32,

    /// Largest JSON body, in bytes (413 above).
    #[arg(long, env = "GITREV_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES,
          global = true, value_parser = at_least::<usize>(1))]
    pub max_body_bytes: usize,

    /// Largest CSV upload to `POST /users/bulk`, and largest `POST /urls/bulk`, in bytes (413
    /// above).
    #[arg(long, env = "GITREV_MAX_UPLOAD_BYTES", default_value_t = DEFAULT_MAX_UPLOAD_BYTES,
          global = true, value_parser = at_least::<usize>(1))]
    pub max_upload_bytes: usize,

    /// Longest a client may take to send request headers, and longest an idle keep-alive
    /// connection stays open, in milliseconds (0: no limit).
    #[arg(
        long,
        env = "GITREV_HEADER_READ_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub header_read_timeout_ms: u64,

    /// Largest request head (request line and headers), in bytes, at least 1024 (431 and close
    /// above it).
    #[arg(long, env = "GITREV_MAX_HEADER_BYTES", default_value_t = DEFAULT_MAX_HEADER_BYTES,
          global = true, value_parser = at_least::<usize>(1024))]
    pub max_header_bytes: usize,

    /// Most headers in a request, 1 to 10000 (431 and close above it).
    #[arg(long, env = "GITREV_MAX_HEADERS", default_value_t = DEFAULT_MAX_HEADERS, global = true,
          value_parser = named(RangedU64ValueParser::<usize>::new().range(1..=10_000)))]
    pub max_headers: usize,

    /// Longest a request body may stall with no bytes arriving once its headers are in, in
    /// milliseconds (408; 0: no limit).
    #[arg(
        long,
        env = "GITREV_BODY_READ_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub body_read_timeout_ms: u64,

    /// Client connections served at once; more wait in the listen backlog (idle keep-alive
    /// connections hold a slot until `GITREV_HEADER_READ_TIMEOUT_MS` closes them, so don't set
    /// that to 0 on a public port).
    #[arg(long, env = "GITREV_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS,
          global = true, value_parser = at_least::<usize>(1))]
    pub max_connections: usize,

    /// Requests per second each API key may make (a GCRA bucket per key, per replica; a key's own
    /// `rate` overrides it). Over it: 429 with `retry-after`.
    #[arg(long, env = "GITREV_KEY_RATE", default_value_t = 100, global = true,
          value_parser = named(value_parser!(u32).range(1..=1_000_000)))]
    pub key_rate: u32,

    /// Requests an API key may make at once above its rate (the bucket's size; a key's own `burst`
    /// overrides it).
    #[arg(long, env = "GITREV_KEY_BURST", default_value_t = 200, global = true,
          value_parser = named(value_parser!(u32).range(1..=1_000_000)))]
    pub key_burst: u32,

    /// An admin API key from your secret store (16+ visible ASCII characters): when set, the API
    /// needs a key (`authorization: Bearer <key>`; 401 otherwise), as it does once any key exists
    /// (`gitrev keys create`). Redirects, /health, /ready, /metrics stay open. Never logged.
    #[arg(long, env = "GITREV_API_TOKEN", global = true, hide_env_values = true,
          value_parser = named(api_token as Parse<Secret>))]
    pub api_token: Option<Secret>,

    /// When set (16+ visible ASCII characters), GET /metrics needs `authorization: Bearer
    /// <token>` (401 otherwise): for scrapers. Unset, /metrics is public. Never logged.
    #[arg(long, env = "GITREV_METRICS_TOKEN", global = true, hide_env_values = true,
          value_parser = named(api_token as Parse<Secret>))]
    pub metrics_token: Option<Secret>,

    /// How often the cached links are written to `GITREV_DATA_DIR/links.snapshot` (also at
    /// shutdown), which a restart warms its cache from, in seconds; 0: no snapshot (none
    /// written, none read).
    #[arg(
        long,
        env = "GITREV_SNAPSHOT_SECS",
        default_value_t = 60,
        global = true
    )]
    pub snapshot_secs: u64,

    /// Serve redirects from the link tier (`GITREV_DATA_DIR/links.tier`, every link in one
    /// memory-mapped file, rebuilt in the background) between the cache and the database.
    #[arg(long, env = "GITREV_TIER", value_parser = BoolishValueParser::new(),
          default_value = "on", global = true)]
    pub tier: bool,

    /// Rebuild the link tier at least this often, in seconds.
    #[arg(long, env = "GITREV_TIER_REBUILD_SECS", default_value_t = 3_600, global = true,
          value_parser = at_least::<u64>(1))]
    pub tier_rebuild_secs: u64,

    /// Rebuild the link tier as soon as this many codes changed since it was built (they are
    /// answered from the cache and the database meanwhile).
    #[arg(long, env = "GITREV_TIER_MAX_CHANGED", default_value_t = 100_000, global = true,
          value_parser = at_least::<usize>(1))]
    pub tier_max_changed: usize,

    /// How long a stopping server lets in-flight requests finish, in milliseconds.
    #[arg(long, env = "GITREV_SHUTDOWN_GRACE_MS", default_value_t = DEFAULT_SHUTDOWN_GRACE_MS, global = true)]
    pub shutdown_grace_ms: u64,

    /// Group concurrent `POST /users` (and `POST /urls`, `POST /events`) into one insert per group
    /// (`off`: one insert per request, for comparison).
    #[arg(long, env = "GITREV_USER_BATCH", value_parser = BoolishValueParser::new(),
          default_value = "on", global = true)]
    pub user_batch: bool,

    /// Most rows per grouped insert.
    #[arg(long, env = "GITREV_USER_BATCH_MAX", default_value_t = 512, global = true,
          value_parser = at_least::<usize>(1))]
    pub user_batch_max: usize,

    /// Links kept in the redirect cache (the hot set: the link tier holds every link).
    #[arg(long, env = "GITREV_CACHE_CAPACITY", default_value_t = 50_000, global = true,
          value_parser = at_least::<u64>(1))]
    pub cache_capacity: u64,

    /// Longest a cached link lives, in seconds (changes are announced to every replica at once;
    /// this is the last resort).
    #[arg(long, env = "GITREV_CACHE_TTL_SECS", default_value_t = 300, global = true,
          value_parser = at_least::<u64>(1))]
    pub cache_ttl_secs: u64,

    /// How long an unknown or inactive code is remembered as such, in milliseconds.
    #[arg(long, env = "GITREV_NEGATIVE_TTL_MS", default_value_t = 1_000, global = true,
          value_parser = at_least::<u64>(1))]
    pub negative_ttl_ms: u64,

    /// Clicks waiting to be written at most; beyond it a click is dropped, counted
    /// (`gitrev_click_queue_overflow_total`) and logged.
    #[arg(long, env = "GITREV_CLICK_QUEUE", default_value_t = 100_000, global = true,
          value_parser = at_least::<usize>(1))]
    pub click_queue: usize,

    /// Most clicks per write (one transaction: the rows by COPY and the rollups of the urls they
    /// touch, so larger batches cost the database less per click). Fewer while a write takes
    /// longer than a quarter of the statement timeout (`gitrev_click_batch_limit`).
    #[arg(long, env = "GITREV_CLICK_BATCH", default_value_t = 50_000, global = true,
          value_parser = at_least::<usize>(1))]
    pub click_batch: usize,

    /// Longest a click waits before its batch is written, in milliseconds. Each batch upserts
    /// the rollup rows of every url it touches, so a longer wait (a larger batch) costs the
    /// database less per click; stats lag by at most this much.
    #[arg(long, env = "GITREV_CLICK_FLUSH_MS", default_value_t = 1_000, global = true,
          value_parser = at_least::<u64>(1))]
    pub click_flush_ms: u64,

    /// How long a stopping service keeps retrying to write queued clicks to a database that is
    /// down, in milliseconds; clicks still queued after that are counted as lost.
    #[arg(
        long,
        env = "GITREV_CLICK_DRAIN_MS",
        default_value_t = 15_000,
        global = true
    )]
    pub click_drain_ms: u64,

    /// Days raw clicks are kept; older ones stop being listed or exported and their daily
    /// partitions are dropped whole by a background job (`gitrev prune-clicks` does it on demand).
    /// Counters, timeseries and breakdowns keep counting them. 0 keeps every click.
    #[arg(
        long,
        env = "GITREV_CLICK_RETENTION_DAYS",
        default_value_t = 0,
        global = true
    )]
    pub click_retention_days: u32,

    /// Log filter, in tracing's `EnvFilter` syntax (e.g. `info`, `gitrev=debug`).
    #[arg(
        long,
        env = "GITREV_LOG",
        default_value = "info,tokio_postgres=warn",
        global = true
    )]
    pub log: String,

    /// Access log lines: `all` (one per request: costly at redirect rates), `errors` (5xx only)
    /// or `off`; counts and latencies are always in `/metrics`. Under a log writer that falls
    /// behind, access lines are dropped and counted (`gitrev_log_lines_dropped_total`); warnings
    /// and errors never are.
    #[arg(
        long,
        env = "GITREV_ACCESS_LOG",
        value_enum,
        default_value = "errors",
        global = true
    )]
    pub access_log: AccessLog,

    /// Log format: `json`, `text`, or `auto` (JSON unless stderr is a terminal).
    #[arg(
        long,
        env = "GITREV_LOG_FORMAT",
        value_enum,
        default_value = "auto",
        global = true
    )]
    pub log_format: LogFormat,

    /// Once listening and migrated, write `{"listen": …, "database_url": …}` to this file
    /// (for supervisors and the test harness).
    #[arg(long, env = "GITREV_READY_FILE", global = true, hide = true)]
    pub ready_file: Option<PathBuf>,

    /// Shut down gracefully when standard input closes (the test harness's parent-death signal).
    #[arg(long, env = "GITREV_STOP_ON_STDIN_EOF", value_parser = BoolishValueParser::new(),
          default_value = "false", global = true, hide = true)]
    pub stop_on_stdin_eof: bool,
}

/// A value parser written as a function.
type Parse<T> = fn(&str) -> Result<T, String>;

/// Wraps a value parser so that a bad value fails at parse with a message naming its
/// environment variable and its flag, and never repeats a secret (`hide_env_values`) back.
#[derive(Clone)]
pub struct Named<P>(P);

fn named<P: TypedValueParser>(parser: P) -> Named<P> {
    Named(parser)
}

/// A whole number of at least `min`.
fn at_least<T>(min: u64) -> Named<RangedU64ValueParser<T>>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
    <T as TryFrom<u64>>::Error: Send + Sync + 'static + std::error::Error + ToString,
{
    named(RangedU64ValueParser::<T>::new().range(min..))
}

impl<P: TypedValueParser> TypedValueParser for Named<P> {
    type Value = P::Value;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<P::Value, clap::Error> {
        self.0.parse_ref(cmd, arg, value).map_err(|err| {
            let Some(arg) = arg else { return err };
            let flag = arg.get_long().map(|l| format!("--{l}")).unwrap_or_default();
            let name = match arg.get_env() {
                Some(var) => format!("{} ({flag})", var.to_string_lossy()),
                None => flag,
            };
            let shown = if arg.is_hide_env_values_set() {
                "(not shown)".to_owned()
            } else {
                format!("'{}'", value.to_string_lossy())
            };
            let reason = std::error::Error::source(&err)
                .map_or_else(|| err.kind().to_string(), ToString::to_string);
            cmd.clone().error(
                ErrorKind::ValueValidation,
                format!("invalid value {shown} for {name}: {reason}"),
            )
        })
    }
}

/// A connection URL, kept as a [`Secret`]: it carries the password.
fn database_url(value: &str) -> Result<Secret, String> {
    value
        .parse::<tokio_postgres::Config>()
        .map(|_| Secret(value.to_owned()))
        .map_err(|e| e.to_string())
}

fn socket_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|e: std::net::AddrParseError| e.to_string())
}

fn redirect_status(value: &str) -> Result<u16, String> {
    match value.parse::<u16>() {
        Ok(status @ (301 | 302 | 307 | 308)) => Ok(status),
        _ => Err("must be 301, 302, 307 or 308".to_owned()),
    }
}

/// An absolute http(s) URL with a host and nothing after it but a path of `/`; kept without the
/// trailing slash.
fn public_url(value: &str) -> Result<String, String> {
    const PROBLEM: &str = "must be an http(s) origin such as https://go.example.com";
    let url = url::Url::parse(value.trim()).map_err(|_| PROBLEM.to_owned())?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !bare {
        return Err(PROBLEM.to_owned());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn list_cap(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(cap) if cap > 0 && cap % MAX_PER_PAGE == 0 => Ok(cap),
        _ => Err(format!("must be a positive multiple of {MAX_PER_PAGE}")),
    }
}

fn api_token(value: &str) -> Result<Secret, String> {
    if value.len() < 16 || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be at least 16 visible ASCII characters".to_owned());
    }
    Ok(Secret(value.to_owned()))
}

/// A setting that must never be printed (the API token): `Debug` shows only that it is set.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Settings {
    pub fn header_read_timeout(&self) -> Option<Duration> {
        (self.header_read_timeout_ms > 0)
            .then(|| Duration::from_millis(self.header_read_timeout_ms))
    }

    pub fn body_read_timeout(&self) -> Option<Duration> {
        (self.body_read_timeout_ms > 0).then(|| Duration::from_millis(self.body_read_timeout_ms))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// Each crate's own settings, cut from the command line's.
impl Settings {
    pub fn store_settings(&self) -> StoreSettings {
        StoreSettings {
            pool_size: self.pool_size,
            statement_timeout_ms: self.statement_timeout_ms,
            pool_timeout_ms: self.pool_timeout_ms,
            connect_timeout_ms: self.connect_timeout_ms,
            db_deadline_margin_ms: self.db_deadline_margin_ms,
            maintenance_timeout_ms: self.maintenance_timeout_ms,
            click_retention_days: self.click_retention_days,
        }
    }

    pub fn api_settings(&self) -> ApiSettings {
        ApiSettings {
            list_cap: self.list_cap,
            max_body_bytes: self.max_body_bytes,
            max_upload_bytes: self.max_upload_bytes,
            body_read_timeout_ms: self.body_read_timeout_ms,
            public_url: self.public_url.clone(),
            access_log: self.access_log.into(),
        }
    }

    pub fn server_settings(&self) -> ServerSettings {
        ServerSettings {
            max_connections: self.max_connections,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            header_read_timeout: self.header_read_timeout(),
        }
    }

    pub fn cache_config(&self) -> CacheConfig {
        CacheConfig {
            capacity: self.cache_capacity,
            ttl: Duration::from_secs(self.cache_ttl_secs),
            negative_ttl: Duration::from_millis(self.negative_ttl_ms),
        }
    }

    pub fn click_queue_config(&self) -> ClickQueueConfig {
        ClickQueueConfig {
            capacity: self.click_queue,
            max_batch: self.click_batch,
            flush_interval: Duration::from_millis(self.click_flush_ms),
            flush_target: Duration::from_millis(self.statement_timeout_ms / CLICK_FLUSH_SHARE),
        }
    }
}

impl From<AccessLog> for gitrev_api::AccessLog {
    fn from(access_log: AccessLog) -> gitrev_api::AccessLog {
        match access_log {
            AccessLog::All => gitrev_api::AccessLog::All,
            AccessLog::Errors => gitrev_api::AccessLog::Errors,
            AccessLog::Off => gitrev_api::AccessLog::Off,
        }
    }
}

impl From<LogFormat> for gitrev_telemetry::LogFormat {
    fn from(format: LogFormat) -> gitrev_telemetry::LogFormat {
        match format {
            LogFormat::Auto => gitrev_telemetry::LogFormat::Auto,
            LogFormat::Json => gitrev_telemetry::LogFormat::Json,
            LogFormat::Text => gitrev_telemetry::LogFormat::Text,
        }
    }
}

/// The settings as a Markdown table (variable, default, meaning), from clap's own definitions of
/// `cmd`'s arguments: every one with an environment variable, hidden ones left out. The README's
/// table is this output (`gitrev settings --markdown`; a test keeps them equal).
pub fn settings_markdown(cmd: &clap::Command) -> String {
    let mut out = String::from("| variable | default | meaning |\n| --- | --- | --- |\n");
    for arg in cmd.get_arguments().filter(|arg| !arg.is_hide_set()) {
        let Some(var) = arg.get_env() else { continue };
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() {
            "unset".to_owned()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        out.push_str(&format!(
            "| `{}` | {default} | {} |\n",
            var.to_string_lossy(),
            table_cell(&help)
        ));
    }
    out
}

/// Every metric the service exports as a Markdown table (name, meaning), from the registry.
pub fn metrics_markdown(metrics: &gitrev_telemetry::Metrics) -> String {
    let mut out = String::from("| metric | meaning |\n| --- | --- |\n");
    for (name, help) in metrics.describe() {
        out.push_str(&format!("| `{name}` | {} |\n", table_cell(help)));
    }
    out
}

/// Text on one line, with the table's separator escaped.
fn table_cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        settings: Settings,
    }

    fn parse(args: &[&str]) -> Settings {
        let mut full = vec!["gitrev"];
        full.extend_from_slice(args);
        Wrapper::try_parse_from(full).expect("valid flags").settings
    }

    fn parse_err(args: &[&str]) -> String {
        let mut full = vec!["gitrev"];
        full.extend_from_slice(args);
        match Wrapper::try_parse_from(full) {
            Ok(_) => panic!("{args:?} should not parse"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn no_secret_setting_prints() {
        let s = parse(&[
            "--api-token",
            "a-very-secret-token-value",
            "--metrics-token",
            "a-scraper-secret-value",
            "--database-url",
            "postgres://gitrev:db-password-4711@db:5432/gitrev",
        ]);
        let printed = format!("{s:?}");
        assert!(!printed.contains("a-very-secret"), "{printed}");
        assert!(!printed.contains("a-scraper-secret"), "{printed}");
        assert!(!printed.contains("db-password-4711"), "{printed}");
        assert_eq!(printed.matches("Secret(***)").count(), 3, "{printed}");
    }

    #[test]
    fn defaults_parse() {
        let s = parse(&[]);
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.redirect_status, 302);
        assert_eq!(s.list_cap, DEFAULT_LIST_CAP);
        assert_eq!(s.max_headers, DEFAULT_MAX_HEADERS);
        assert!(s.api_token.is_none() && s.database_url.is_none());
    }

    #[test]
    fn bad_values_fail_at_parse_naming_their_variable_and_flag() {
        for (args, variable, flag, why) in [
            (
                &["--redirect-status", "200"][..],
                "GITREV_REDIRECT_STATUS",
                "--redirect-status",
                "301, 302, 307 or 308",
            ),
            (
                &["--list-cap", "1500"],
                "GITREV_LIST_CAP",
                "--list-cap",
                "multiple of 1000",
            ),
            (
                &["--list-cap", "0"],
                "GITREV_LIST_CAP",
                "--list-cap",
                "multiple of 1000",
            ),
            (
                &["--pool-size", "0"],
                "GITREV_POOL_SIZE",
                "--pool-size",
                "1..=1000",
            ),
            (
                &["--pool-size", "1001"],
                "GITREV_POOL_SIZE",
                "--pool-size",
                "1..=1000",
            ),
            (
                &["--pool-size", "many"],
                "GITREV_POOL_SIZE",
                "--pool-size",
                "invalid digit",
            ),
            (
                &["--statement-timeout-ms", "0"],
                "GITREV_STATEMENT_TIMEOUT_MS",
                "--statement-timeout-ms",
                "not in 1..",
            ),
            (
                &["--db-deadline-margin-ms", "0"],
                "GITREV_DB_DEADLINE_MARGIN_MS",
                "--db-deadline-margin-ms",
                "not in 1..",
            ),
            (
                &["--max-body-bytes", "0"],
                "GITREV_MAX_BODY_BYTES",
                "--max-body-bytes",
                "not in 1..",
            ),
            (
                &["--max-header-bytes", "100"],
                "GITREV_MAX_HEADER_BYTES",
                "--max-header-bytes",
                "not in 1024..",
            ),
            (
                &["--max-headers", "10001"],
                "GITREV_MAX_HEADERS",
                "--max-headers",
                "1..=10000",
            ),
            (
                &["--max-connections", "0"],
                "GITREV_MAX_CONNECTIONS",
                "--max-connections",
                "not in 1..",
            ),
            (
                &["--click-batch", "0"],
                "GITREV_CLICK_BATCH",
                "--click-batch",
                "not in 1..",
            ),
            (
                &["--cache-ttl-secs", "0"],
                "GITREV_CACHE_TTL_SECS",
                "--cache-ttl-secs",
                "not in 1..",
            ),
            (
                &["--listen", "nowhere"],
                "GITREV_LISTEN",
                "--listen",
                "invalid socket address",
            ),
            (
                &["--api-token", "short"],
                "GITREV_API_TOKEN",
                "--api-token",
                "at least 16 visible",
            ),
            (
                &["--database-url", "not a url"],
                "DATABASE_URL",
                "--database-url",
                "invalid",
            ),
        ] {
            let err = parse_err(args);
            assert!(err.contains(variable), "{args:?}: {err}");
            assert!(err.contains(flag), "{args:?}: {err}");
            assert!(err.contains(why), "{args:?}: {err}");
        }
    }

    #[test]
    fn a_secret_that_fails_to_parse_is_not_repeated() {
        let err = parse_err(&["--api-token", "short secret"]);
        assert!(!err.contains("short secret"), "{err}");
        let err = parse_err(&["--database-url", "postgres://u:hunter2@h:notaport/db"]);
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn the_settings_table_lists_every_visible_setting_with_its_default() {
        use clap::CommandFactory;
        let table = settings_markdown(&crate::cli::Cli::command());
        assert!(
            table.contains(
                "| `GITREV_POOL_SIZE` | `16` | PostgreSQL connections in the pool (1 to 1000)"
            ),
            "{table}"
        );
        assert!(table.contains("| `DATABASE_URL` | unset |"), "{table}");
        assert!(
            !table.contains("GITREV_READY_FILE"),
            "hidden settings stay out"
        );
        // One row per setting, each a variable, a default and a meaning.
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert_eq!(rows.len(), 45, "{table}");
        assert!(
            rows.iter().all(|row| row.matches(" | ").count() == 2),
            "{table}"
        );
    }

    #[test]
    fn the_readme_settings_table_is_the_commands_output() {
        use clap::CommandFactory;
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let (begin, end) = (README_BEGIN, README_END);
        let start = readme.find(begin).expect("the README has the begin marker") + begin.len();
        let stop = readme[start..]
            .find(end)
            .expect("the README has the end marker")
            + start;
        let expected = settings_markdown(&crate::cli::Cli::command());
        assert!(
            readme[start..stop].trim() == expected.trim(),
            "README.md's settings table is not `gitrev settings --markdown`; paste its output between the markers"
        );
    }

    const README_BEGIN: &str = "<!-- settings:begin: generated by `gitrev settings --markdown` -->";
    const README_END: &str = "<!-- settings:end -->";

    #[test]
    fn the_metrics_table_names_every_metric() {
        let table = metrics_markdown(&gitrev_telemetry::Metrics::default());
        assert!(
            table.contains("| `gitrev_log_lines_dropped_total` |"),
            "{table}"
        );
        assert!(
            table.contains("| `gitrev_http_requests_total` |"),
            "{table}"
        );
    }
}
