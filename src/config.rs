//! Settings: every knob comes from an environment variable and has a flag of the same meaning.
//!
//! The struct is parsed once by clap (flags win over the environment), then [`Settings::validate`]
//! rejects values that would only fail later, so a bad setting stops the process at start with a
//! message naming the variable. Each crate gets its own settings struct, cut from these at the
//! bottom of this file; none of them sees the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{builder::BoolishValueParser, Args, ValueEnum};
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
    /// PostgreSQL connection URL. Unset: start the embedded PostgreSQL under the data directory.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Address the HTTP server listens on (port 0 picks a free port).
    #[arg(long, env = "GITREV_LISTEN", default_value = DEFAULT_LISTEN, global = true)]
    pub listen: SocketAddr,

    /// Directory for the embedded PostgreSQL cluster and other local state.
    #[arg(long, env = "GITREV_DATA_DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    pub data_dir: PathBuf,

    /// development, test or production. Demo data is loaded on first start only in development;
    /// production refuses to seed or reset unless told explicitly.
    #[arg(
        long = "env",
        env = "GITREV_ENV",
        value_enum,
        default_value = "development",
        global = true
    )]
    pub environment: Environment,

    /// Directory with users.csv, urls.csv and events.csv. Unset: the reference set built into the binary.
    #[arg(long, env = "GITREV_SEED_DIR", global = true)]
    pub seed_dir: Option<PathBuf>,

    /// Directory holding the PostgreSQL server binaries (initdb, postgres) for the embedded
    /// database. Unset: search PATH, then /usr/lib/postgresql/*/bin (newest first).
    #[arg(long, env = "GITREV_PG_BIN", global = true)]
    pub pg_bin: Option<PathBuf>,

    /// Maximum number of PostgreSQL connections in the pool.
    #[arg(long, env = "GITREV_POOL_SIZE", default_value_t = DEFAULT_POOL_SIZE, global = true)]
    pub pool_size: u32,

    /// PostgreSQL statement_timeout for every pooled connection, in milliseconds.
    #[arg(long, env = "GITREV_STATEMENT_TIMEOUT_MS", default_value_t = DEFAULT_STATEMENT_TIMEOUT_MS, global = true)]
    pub statement_timeout_ms: u64,

    /// How much longer than the statement timeout we wait for the database's answer before giving
    /// up on our side, in milliseconds. The statement timeout is enforced by the server, so it cannot
    /// end a wait on a server that never got the query (a network partition, a failover that moved
    /// the address): this client-side deadline (statement timeout + margin) bounds every database
    /// operation, pool checkout included; on expiry the connection is discarded and the request gets 503.
    #[arg(long, env = "GITREV_DB_DEADLINE_MARGIN_MS", default_value_t = DEFAULT_DB_DEADLINE_MARGIN_MS, global = true)]
    pub db_deadline_margin_ms: u64,

    /// Server-side statement timeout and client-side deadline of maintenance work (migrations,
    /// seeding, fixing sequences, the schema check), in milliseconds.
    #[arg(long, env = "GITREV_MAINTENANCE_TIMEOUT_MS", default_value_t = DEFAULT_MAINTENANCE_TIMEOUT_MS, global = true)]
    pub maintenance_timeout_ms: u64,

    /// How long a request waits for a pooled connection before answering 503, in milliseconds.
    #[arg(long, env = "GITREV_POOL_TIMEOUT_MS", default_value_t = DEFAULT_POOL_TIMEOUT_MS, global = true)]
    pub pool_timeout_ms: u64,

    /// Longest a new PostgreSQL connection may take, TCP connect, TLS and the startup handshake
    /// included, in milliseconds.
    #[arg(long, env = "GITREV_CONNECT_TIMEOUT_MS", default_value_t = DEFAULT_CONNECT_TIMEOUT_MS, global = true)]
    pub connect_timeout_ms: u64,

    /// Status code of the redirect: 301, 302, 307 or 308.
    #[arg(
        long,
        env = "GITREV_REDIRECT_STATUS",
        default_value_t = 302,
        global = true
    )]
    pub redirect_status: u16,

    /// Most rows a list returns when neither page nor per_page is given (a multiple of 1000).
    #[arg(long, env = "GITREV_LIST_CAP", default_value_t = DEFAULT_LIST_CAP, global = true)]
    pub list_cap: u32,

    /// Largest JSON request body, in bytes (413 above it).
    #[arg(long, env = "GITREV_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES, global = true)]
    pub max_body_bytes: usize,

    /// Largest CSV upload to POST /users/bulk, in bytes (413 above it).
    #[arg(long, env = "GITREV_MAX_UPLOAD_BYTES", default_value_t = DEFAULT_MAX_UPLOAD_BYTES, global = true)]
    pub max_upload_bytes: usize,

    /// How long a client may take to send a request's headers, and how long an idle keep-alive
    /// connection stays open, in milliseconds (0: no limit).
    #[arg(
        long,
        env = "GITREV_HEADER_READ_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub header_read_timeout_ms: u64,

    /// Largest request head (request line and headers), in bytes; above it the connection is
    /// answered 431 and closed.
    #[arg(long, env = "GITREV_MAX_HEADER_BYTES", default_value_t = DEFAULT_MAX_HEADER_BYTES, global = true)]
    pub max_header_bytes: usize,

    /// Most headers in one request; above it the connection is answered 431 and closed.
    #[arg(long, env = "GITREV_MAX_HEADERS", default_value_t = DEFAULT_MAX_HEADERS, global = true)]
    pub max_headers: usize,

    /// Longest a request body may stall (no bytes arriving) once its headers are in, in
    /// milliseconds (0: no limit); then 408.
    #[arg(
        long,
        env = "GITREV_BODY_READ_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub body_read_timeout_ms: u64,

    /// Most client connections served at once; further ones wait in the listen backlog until
    /// one closes.
    #[arg(long, env = "GITREV_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS, global = true)]
    pub max_connections: usize,

    /// When set, every write (POST, PUT, PATCH, DELETE) needs `authorization: Bearer <token>`;
    /// reads and redirects stay open.
    #[arg(long, env = "GITREV_API_TOKEN", global = true, hide_env_values = true)]
    pub api_token: Option<Secret>,

    /// How often the cached links are written to the snapshot (`<data dir>/links.snapshot`) that a
    /// restart warms its cache from, in seconds; it is also written at shutdown. 0: no snapshot
    /// (none written, none read).
    #[arg(
        long,
        env = "GITREV_SNAPSHOT_SECS",
        default_value_t = 60,
        global = true
    )]
    pub snapshot_secs: u64,

    /// How long a stopping server waits for in-flight requests, in milliseconds.
    #[arg(long, env = "GITREV_SHUTDOWN_GRACE_MS", default_value_t = DEFAULT_SHUTDOWN_GRACE_MS, global = true)]
    pub shutdown_grace_ms: u64,

    /// Group concurrent POST /users into one insert (`on`) or insert each alone (`off`).
    #[arg(long, env = "GITREV_USER_BATCH", value_parser = BoolishValueParser::new(),
          default_value = "on", global = true)]
    pub user_batch: bool,

    /// Most users inserted by one grouped statement.
    #[arg(
        long,
        env = "GITREV_USER_BATCH_MAX",
        default_value_t = 512,
        global = true
    )]
    pub user_batch_max: usize,

    /// Links kept in the redirect cache.
    #[arg(
        long,
        env = "GITREV_CACHE_CAPACITY",
        default_value_t = 1_000_000,
        global = true
    )]
    pub cache_capacity: u64,

    /// Longest a cached link is served without being reloaded, in seconds (a last resort: changes
    /// are announced to every replica at once).
    #[arg(
        long,
        env = "GITREV_CACHE_TTL_SECS",
        default_value_t = 300,
        global = true
    )]
    pub cache_ttl_secs: u64,

    /// How long an unknown or inactive code is remembered as such, in milliseconds.
    #[arg(
        long,
        env = "GITREV_NEGATIVE_TTL_MS",
        default_value_t = 1_000,
        global = true
    )]
    pub negative_ttl_ms: u64,

    /// Clicks waiting to be written at most; beyond it clicks are dropped and counted.
    #[arg(
        long,
        env = "GITREV_CLICK_QUEUE",
        default_value_t = 100_000,
        global = true
    )]
    pub click_queue: usize,

    /// Most clicks written by one statement.
    #[arg(
        long,
        env = "GITREV_CLICK_BATCH",
        default_value_t = 1_000,
        global = true
    )]
    pub click_batch: usize,

    /// Longest a click waits before its batch is written, in milliseconds.
    #[arg(
        long,
        env = "GITREV_CLICK_FLUSH_MS",
        default_value_t = 100,
        global = true
    )]
    pub click_flush_ms: u64,

    /// How long a stopping service keeps trying to write queued clicks to a database that is
    /// down, in milliseconds; clicks still queued after that are counted as lost.
    #[arg(
        long,
        env = "GITREV_CLICK_DRAIN_MS",
        default_value_t = 15_000,
        global = true
    )]
    pub click_drain_ms: u64,

    /// Log filter, in tracing's EnvFilter syntax (e.g. `info`, `gitrev=debug`).
    #[arg(
        long,
        env = "GITREV_LOG",
        default_value = "info,tokio_postgres=warn",
        global = true
    )]
    pub log: String,

    /// Access log: all, errors (5xx only) or off. Request counts and latencies are always in
    /// /metrics.
    #[arg(
        long,
        env = "GITREV_ACCESS_LOG",
        value_enum,
        default_value = "errors",
        global = true
    )]
    pub access_log: AccessLog,

    /// Log format: auto (JSON unless stderr is a terminal), json or text.
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

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// A setting that cannot work, named by its environment variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {name}: {reason}")]
pub struct SettingError {
    pub name: &'static str,
    pub reason: String,
}

fn invalid(name: &'static str, reason: impl Into<String>) -> SettingError {
    SettingError {
        name,
        reason: reason.into(),
    }
}

impl Settings {
    /// Rejects values that are well-typed but unusable.
    pub fn validate(&self) -> Result<(), SettingError> {
        if !(1..=1000).contains(&self.pool_size) {
            return Err(invalid("GITREV_POOL_SIZE", "must be between 1 and 1000"));
        }
        for (name, value) in [
            ("GITREV_STATEMENT_TIMEOUT_MS", self.statement_timeout_ms),
            ("GITREV_POOL_TIMEOUT_MS", self.pool_timeout_ms),
            ("GITREV_CONNECT_TIMEOUT_MS", self.connect_timeout_ms),
            ("GITREV_DB_DEADLINE_MARGIN_MS", self.db_deadline_margin_ms),
            ("GITREV_MAINTENANCE_TIMEOUT_MS", self.maintenance_timeout_ms),
        ] {
            if value == 0 {
                return Err(invalid(name, "must be greater than 0"));
            }
        }
        if ![301, 302, 307, 308].contains(&self.redirect_status) {
            return Err(invalid(
                "GITREV_REDIRECT_STATUS",
                "must be 301, 302, 307 or 308",
            ));
        }
        if self.list_cap == 0 || self.list_cap % MAX_PER_PAGE != 0 {
            return Err(invalid(
                "GITREV_LIST_CAP",
                format!("must be a positive multiple of {MAX_PER_PAGE}"),
            ));
        }
        if self.max_body_bytes == 0 || self.max_upload_bytes == 0 {
            return Err(invalid(
                "GITREV_MAX_BODY_BYTES / GITREV_MAX_UPLOAD_BYTES",
                "must be greater than 0",
            ));
        }
        for (name, value) in [
            ("GITREV_USER_BATCH_MAX", self.user_batch_max as u64),
            ("GITREV_CACHE_CAPACITY", self.cache_capacity),
            ("GITREV_CACHE_TTL_SECS", self.cache_ttl_secs),
            ("GITREV_NEGATIVE_TTL_MS", self.negative_ttl_ms),
            ("GITREV_CLICK_QUEUE", self.click_queue as u64),
            ("GITREV_CLICK_BATCH", self.click_batch as u64),
            ("GITREV_CLICK_FLUSH_MS", self.click_flush_ms),
        ] {
            if value == 0 {
                return Err(invalid(name, "must be greater than 0"));
            }
        }
        if self.max_header_bytes < 1024 {
            return Err(invalid("GITREV_MAX_HEADER_BYTES", "must be at least 1024"));
        }
        if !(1..=10_000).contains(&self.max_headers) {
            return Err(invalid("GITREV_MAX_HEADERS", "must be between 1 and 10000"));
        }
        if self.max_connections == 0 {
            return Err(invalid("GITREV_MAX_CONNECTIONS", "must be greater than 0"));
        }
        if let Some(token) = &self.api_token {
            let token = token.expose();
            if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(
                    "GITREV_API_TOKEN",
                    "must be at least 16 visible ASCII characters",
                ));
            }
        }
        if let Some(url) = &self.database_url {
            url.parse::<tokio_postgres::Config>()
                .map_err(|e| invalid("DATABASE_URL", e.to_string()))?;
        }
        Ok(())
    }

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
        }
    }

    pub fn api_settings(&self) -> ApiSettings {
        ApiSettings {
            list_cap: self.list_cap,
            max_body_bytes: self.max_body_bytes,
            max_upload_bytes: self.max_upload_bytes,
            body_read_timeout_ms: self.body_read_timeout_ms,
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

    #[test]
    fn the_api_token_never_prints() {
        let s = parse(&["--api-token", "a-very-secret-token-value"]);
        s.validate().expect("a long visible token is fine");
        let printed = format!("{s:?}");
        assert!(!printed.contains("a-very-secret"), "{printed}");
        assert!(printed.contains("Secret(***)"));
    }

    #[test]
    fn defaults_are_valid() {
        let s = parse(&[]);
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.redirect_status, 302);
        s.validate().expect("defaults validate");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = parse(&["--redirect-status", "200"]).validate().unwrap_err();
        assert_eq!(err.name, "GITREV_REDIRECT_STATUS");
        let err = parse(&["--list-cap", "1500"]).validate().unwrap_err();
        assert_eq!(err.name, "GITREV_LIST_CAP");
        let err = parse(&["--pool-size", "0"]).validate().unwrap_err();
        assert_eq!(err.name, "GITREV_POOL_SIZE");
        let err = parse(&["--api-token", "short"]).validate().unwrap_err();
        assert_eq!(err.name, "GITREV_API_TOKEN");
        let err = parse(&["--max-header-bytes", "100"])
            .validate()
            .unwrap_err();
        assert_eq!(err.name, "GITREV_MAX_HEADER_BYTES");
        let err = parse(&["--max-connections", "0"]).validate().unwrap_err();
        assert_eq!(err.name, "GITREV_MAX_CONNECTIONS");
        let err = parse(&["--database-url", "not a url"])
            .validate()
            .unwrap_err();
        assert_eq!(err.name, "DATABASE_URL");
    }
}
