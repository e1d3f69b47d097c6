//! The database: a bb8 pool of tokio-postgres connections, each with its own cache of prepared
//! statements, and one file per table or concern (`users`, `urls`, `events`, `migrate`, `seed`,
//! `sequences`, `schema`), and [`announce`]: the channel link changes are announced on. No HTTP
//! types here (the crate does not depend on any): callers get rows or a [`StoreError`].
//!
//! No caller waits on the database without a limit, and the limits are ours, not only the
//! server's: every pooled connection carries the configured `statement_timeout` (enforced by the
//! server), and every checkout — the wait for a connection and the statements on it together —
//! is bounded on our side by a deadline (the statement timeout plus a margin, see [`deadline`]),
//! because a server that never receives a query (a network partition, a failover that moved the
//! address) cannot time it out. A deadline that passes closes that connection, discards every
//! connection opened before it (they lead to the same silent peer) and tells the fail-fast prober
//! ([`Reachability`]) the database is down. New connections are bounded as a whole (TCP connect
//! and startup handshake), and every socket has TCP keepalives and `tcp_user_timeout`, so the
//! kernel also notices a silent peer within seconds with no query in flight.

pub mod announce;
pub mod clicks;
pub mod deadline;
pub mod events;
pub mod keys;
pub mod migrate;
pub mod schema;
pub mod seed;
pub mod sequences;
pub mod tier;
pub mod urls;
pub mod users;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};
use tracing::warn;

pub use gitrev_core::Page;

/// What went wrong, as far as a caller needs to know.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row (or a row it refers to) does not exist; the string names what is missing.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness conflict on the named field.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The database cannot be reached or is not answering in time; worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Internal(String),
}

impl StoreError {
    /// Sorts a driver error into what callers act on.
    pub fn classify(err: tokio_postgres::Error) -> StoreError {
        let Some(db) = err.as_db_error() else {
            // No server answer at all: a closed connection, a refused or timed-out connect.
            return StoreError::Unavailable(err.to_string());
        };
        let code = db.code();
        if *code == SqlState::UNIQUE_VIOLATION {
            return StoreError::Conflict(match db.constraint() {
                Some("users_email_key") => "email",
                Some("urls_short_code_key") => "short_code",
                _ => "id",
            });
        }
        if *code == SqlState::FOREIGN_KEY_VIOLATION {
            return StoreError::NotFound(match db.constraint() {
                Some("urls_user_id_fkey" | "api_keys_user_id_fkey") => "user",
                _ => "referenced row",
            });
        }
        let transient = code.code().starts_with("08")
            || code.code().starts_with("53")
            || code.code().starts_with("57")
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::READ_ONLY_SQL_TRANSACTION;
        if transient {
            StoreError::Unavailable(db.message().to_owned())
        } else {
            StoreError::Internal(format!("{}: {}", code.code(), db.message()))
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> StoreError {
        StoreError::classify(err)
    }
}

impl From<bb8::RunError<StoreError>> for StoreError {
    fn from(err: bb8::RunError<StoreError>) -> StoreError {
        match err {
            bb8::RunError::User(e) => e,
            bb8::RunError::TimedOut => {
                StoreError::Unavailable("timed out waiting for a database connection".into())
            }
        }
    }
}

/// A pooled connection and the statements already prepared on it.
pub struct Conn {
    pub client: Client,
    statements: HashMap<String, Statement>,
    /// The pool's generation when this connection was opened; a passed deadline moves the pool's
    /// generation, and a connection of an older one is discarded instead of reused.
    generation: u64,
    watchdog: Arc<deadline::Watchdog>,
}

impl Conn {
    /// The prepared form of `sql` on this connection, preparing it on first use.
    pub async fn prepared(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(sql).await?;
        self.statements.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }
}

/// Opens connections for the pool.
pub struct Manager {
    config: tokio_postgres::Config,
    reachability: Arc<Reachability>,
    /// Bounds a whole new connection (TCP connect and startup handshake).
    connect_timeout: Duration,
    /// How often each connection's driver looks at its watchdog.
    tick: Duration,
    drivers: Arc<Drivers>,
}

/// Whether the database answered the last connection attempt, so that while it is down requests
/// fail at once instead of each waiting out the pool timeout: one request per probe interval
/// still goes through and tries to connect, and the first success lets everyone through again.
#[derive(Debug)]
pub struct Reachability {
    clock: std::time::Instant,
    /// Milliseconds (since `clock`) of the first failed attempt of the current outage; 0: up.
    down_since: AtomicU64,
    /// Milliseconds (since `clock`) before which no further probe is let through.
    next_probe: AtomicU64,
    /// The outage began with a connection that went silent (a passed deadline), not a refused
    /// connect: connections at hand are no evidence the database answers, so every request but
    /// the probe fails fast until a connection is opened again.
    silent: AtomicBool,
    /// Moves when a deadline passes: pooled connections of an older generation are discarded.
    generation: AtomicU64,
    /// Deadlines passed since start (for /metrics).
    deadlines_passed: AtomicU64,
}

/// How often a request is let through to try the database while it is down.
const PROBE_INTERVAL_MS: u64 = 250;

impl Reachability {
    fn new() -> Reachability {
        Reachability {
            clock: std::time::Instant::now(),
            down_since: AtomicU64::new(0),
            next_probe: AtomicU64::new(0),
            silent: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            deadlines_passed: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        // +1: 0 means "up".
        self.clock.elapsed().as_millis() as u64 + 1
    }

    /// `at` on the same scale as [`Reachability::now_ms`].
    fn ms_at(&self, at: std::time::Instant) -> u64 {
        at.saturating_duration_since(self.clock).as_millis() as u64 + 1
    }

    fn failed(&self) {
        let now = self.now_ms();
        let _ = self
            .down_since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.next_probe
            .store(now + PROBE_INTERVAL_MS, Ordering::Relaxed);
    }

    /// A deadline passed on an open connection: the database (or the way to it) went silent.
    fn deadline_passed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.deadlines_passed.fetch_add(1, Ordering::Relaxed);
        self.silent.store(true, Ordering::Relaxed);
        self.failed();
        warn!("the database did not answer within the deadline; discarding its connections");
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn succeeded(&self) {
        // A load first: this runs on every checkout, and is almost always a no-op.
        if self.down_since.load(Ordering::Relaxed) != 0
            && self.down_since.swap(0, Ordering::Relaxed) != 0
        {
            self.silent.store(false, Ordering::Relaxed);
            tracing::info!("the database answers again");
        }
    }

    fn is_down(&self) -> bool {
        self.down_since.load(Ordering::Relaxed) != 0
    }

    fn is_silent(&self) -> bool {
        self.silent.load(Ordering::Relaxed)
    }

    /// `Some(why)` when this request should not wait for a connection.
    fn refuse(&self) -> Option<String> {
        let down_since = self.down_since.load(Ordering::Relaxed);
        if down_since == 0 {
            return None;
        }
        let now = self.now_ms();
        let probe_at = self.next_probe.load(Ordering::Relaxed);
        if now >= probe_at
            && self
                .next_probe
                .compare_exchange(
                    probe_at,
                    now + PROBE_INTERVAL_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return None; // this one probes
        }
        Some(format!(
            "the database has been unreachable for {} ms",
            now.saturating_sub(down_since)
        ))
    }
}

/// The tasks driving the store's connections (pooled and maintenance), owned by the store:
/// [`Store::close`] tells each to drop its connection (closing the socket) and joins them.
struct Drivers {
    tasks: std::sync::Mutex<JoinSet<()>>,
    closing: watch::Sender<bool>,
}

impl Default for Drivers {
    fn default() -> Drivers {
        Drivers {
            tasks: std::sync::Mutex::default(),
            closing: watch::channel(false).0,
        }
    }
}

impl Drivers {
    /// Drives a connection until it ends by itself or the store closes. Connections are opened
    /// rarely, so reaping the finished drivers here keeps the set to the live ones.
    fn spawn(&self, driver: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut closing = self.closing.subscribe();
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            tokio::select! {
                () = driver => {}
                _ = closing.wait_for(|closing| *closing) => {}
            }
        });
    }

    /// How many drivers are running.
    fn running(&self) -> usize {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.len()
    }

    async fn close(&self) {
        self.closing.send_replace(true);
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        while let Some(ended) = tasks.join_next().await {
            if let Err(err) = ended {
                warn!(error = %err, "a database connection's driver panicked");
            }
        }
    }
}

/// Drives a connection opened with [`open`] until it ends, logging how it ended.
async fn drive_plain(connection: Connection) {
    if let Err(err) = connection.await {
        warn!(error = %err, "database connection closed");
    }
}

pub type Connection =
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>;

/// Opens one connection, leaving the driving to the caller. The whole of it (TCP connect and
/// startup handshake) is bounded by `within`: tokio-postgres's own connect timeout covers only
/// the TCP connect, and a peer that accepts but never answers would hold the caller forever.
pub async fn open(
    config: &tokio_postgres::Config,
    within: Duration,
) -> Result<(Client, Connection), StoreError> {
    match tokio::time::timeout(within, config.connect(NoTls)).await {
        Ok(connected) => Ok(connected?),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no connection to the database within {} ms",
            within.as_millis()
        ))),
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = Conn;
    type Error = StoreError;

    async fn connect(&self) -> Result<Conn, StoreError> {
        // Read before connecting: a deadline passing meanwhile makes this connection suspect too.
        let generation = self.reachability.generation();
        match open(&self.config, self.connect_timeout).await {
            Ok((client, connection)) => {
                let watchdog = Arc::<deadline::Watchdog>::default();
                self.drivers.spawn(deadline::drive(
                    connection,
                    watchdog.clone(),
                    self.reachability.clone(),
                    self.tick,
                ));
                self.reachability.succeeded();
                Ok(Conn {
                    client,
                    statements: HashMap::new(),
                    generation,
                    watchdog,
                })
            }
            Err(err) => {
                // A refusal by a live server (bad password, too many connections) still means
                // the database is not usable; either way requests should not queue for it.
                self.reachability.failed();
                Err(err)
            }
        }
    }

    async fn is_valid(&self, conn: &mut Conn) -> Result<(), StoreError> {
        conn.client.simple_query("").await.map(|_| ())?;
        Ok(())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.client.is_closed() || conn.generation != self.reachability.generation()
    }
}

pub type Pool = bb8::Pool<Manager>;

/// The pool's connections and the callers waiting for one.
#[derive(Clone, Copy, Debug)]
pub struct PoolState {
    pub open: u32,
    pub idle: u32,
    pub waiting: u32,
}

/// The service's handle on the database.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// Callers waiting in [`Store::conn`] for a connection (bb8 does not count them).
    waiting: Arc<AtomicU32>,
    reachability: Arc<Reachability>,
    /// The client-side bound of one checkout (statement timeout + margin), in milliseconds.
    deadline_ms: u64,
    connect_timeout: Duration,
    /// Connection settings for long maintenance work (migrations, seeding), with its own
    /// statement timeout; `maintenance_deadline` bounds such work on our side.
    maintenance: tokio_postgres::Config,
    maintenance_deadline: Duration,
    /// Connection settings without any statement timeout (the LISTEN connection).
    side: tokio_postgres::Config,
    /// Every connection's driver task, joined by [`Store::close`].
    drivers: Arc<Drivers>,
    /// Click dictionary ids already known to this process.
    dictionaries: Arc<clicks::Dictionaries>,
    click_retention_days: u32,
    searches: Arc<urls::SearchCounts>,
}

/// TCP keepalive and `tcp_user_timeout` of every database socket: an idle connection whose peer
/// went silent is found after about `KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_RETRIES`
/// (8 s), one with unacknowledged data in flight after `TCP_USER_TIMEOUT`, even with no deadline
/// of ours running (the LISTEN connection between heartbeats, a long migration).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_RETRIES: u32 = 3;
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(8);

/// What the store takes from the service's settings: the pool and its timeouts.
#[derive(Clone, Copy, Debug)]
pub struct StoreSettings {
    /// Most connections in the pool.
    pub pool_size: u32,
    /// PostgreSQL `statement_timeout` of every pooled connection.
    pub statement_timeout_ms: u64,
    /// How long a caller waits for a pooled connection.
    pub pool_timeout_ms: u64,
    /// Longest a new connection may take (TCP connect and startup handshake).
    pub connect_timeout_ms: u64,
    /// The client-side deadline of a checkout is the statement timeout plus this.
    pub db_deadline_margin_ms: u64,
    /// Statement timeout and client-side bound of maintenance work (migrations, seeding).
    pub maintenance_timeout_ms: u64,
    /// Raw clicks older than this many days are no longer listed or exported (0: kept).
    pub click_retention_days: u32,
}

impl StoreSettings {
    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    pub fn pool_timeout(&self) -> Duration {
        Duration::from_millis(self.pool_timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The client-side bound of one checkout (the wait for a connection and the statements).
    pub fn db_deadline(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms + self.db_deadline_margin_ms)
    }

    /// PostgreSQL's `idle_in_transaction_session_timeout` on every connection: twice the
    /// deadline. Between a transaction's statements the service only builds the next one, so a
    /// transaction idle that long has lost its client. Our sockets notice a silent peer within
    /// seconds (keepalives below), but the server's may not for hours (its own keepalive settings,
    /// the kernel's two hours by default); behind a partition such a transaction would keep its
    /// row locks (a url mid-PATCH, a click batch's marker) and hold back vacuum's horizon. This
    /// ends it on the server's side.
    pub fn idle_in_transaction_timeout(&self) -> Duration {
        self.db_deadline() * 2
    }

    pub fn maintenance_timeout(&self) -> Duration {
        Duration::from_millis(self.maintenance_timeout_ms)
    }
}

/// Connection settings for `database_url` with the service's timeouts applied.
pub fn client_config(
    database_url: &str,
    settings: &StoreSettings,
    statement_timeout: Option<Duration>,
) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = database_url
        .parse()
        .map_err(|e: tokio_postgres::Error| StoreError::Internal(format!("DATABASE_URL: {e}")))?;
    config.connect_timeout(settings.connect_timeout());
    config.keepalives(true);
    config.keepalives_idle(KEEPALIVE_IDLE);
    config.keepalives_interval(KEEPALIVE_INTERVAL);
    config.keepalives_retries(KEEPALIVE_RETRIES);
    config.tcp_user_timeout(TCP_USER_TIMEOUT);
    if config.get_application_name().is_none() {
        config.application_name("gitrev");
    }
    let mut options = config.get_options().unwrap_or("").to_owned();
    if let Some(timeout) = statement_timeout {
        options.push_str(&format!(" -c statement_timeout={}", timeout.as_millis()));
    }
    options.push_str(&format!(
        " -c idle_in_transaction_session_timeout={}",
        settings.idle_in_transaction_timeout().as_millis()
    ));
    config.options(options.trim());
    Ok(config)
}

impl Store {
    /// Builds the pool without connecting: the first request (or [`Store::ping`]) connects.
    pub fn new(database_url: &str, settings: &StoreSettings) -> Result<Store, StoreError> {
        let config = client_config(database_url, settings, Some(settings.statement_timeout()))?;
        let maintenance =
            client_config(database_url, settings, Some(settings.maintenance_timeout()))?;
        let side = client_config(database_url, settings, None)?;
        let reachability = Arc::new(Reachability::new());
        let drivers = Arc::<Drivers>::default();
        let deadline = settings.db_deadline();
        let pool = bb8::Pool::builder()
            .max_size(settings.pool_size)
            // The wait for a connection counts against the deadline too.
            .connection_timeout(settings.pool_timeout().min(deadline))
            // A broken connection is noticed by `has_broken` (the driver closes it, or a deadline
            // moved the generation); a liveness round trip before every checkout would double
            // the latency of every query.
            .test_on_check_out(false)
            .build_unchecked(Manager {
                config,
                reachability: reachability.clone(),
                connect_timeout: settings.connect_timeout(),
                tick: deadline::tick(deadline),
                drivers: drivers.clone(),
            });
        Ok(Store {
            pool,
            waiting: Arc::default(),
            reachability,
            deadline_ms: deadline.as_millis() as u64,
            connect_timeout: settings.connect_timeout(),
            maintenance,
            maintenance_deadline: settings.maintenance_timeout()
                + Duration::from_millis(settings.db_deadline_margin_ms),
            side,
            drivers,
            dictionaries: Arc::default(),
            click_retention_days: settings.click_retention_days,
            searches: Arc::default(),
        })
    }

    /// Runs maintenance work (migrations, seeding) under the maintenance deadline.
    pub async fn bounded_maintenance<T, E>(
        &self,
        operation: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        match tokio::time::timeout(self.maintenance_deadline, operation).await {
            Ok(result) => result,
            Err(_) => {
                self.reachability.deadline_passed();
                Err(StoreError::Unavailable(format!(
                    "the database did not finish maintenance work within {} ms",
                    self.maintenance_deadline.as_millis()
                ))
                .into())
            }
        }
    }

    /// How many checkouts were abandoned at their deadline since start.
    pub fn deadlines_passed(&self) -> u64 {
        self.reachability.deadlines_passed.load(Ordering::Relaxed)
    }

    /// A pooled connection, its deadline armed: from now, the wait for it and everything done on
    /// it until the checkout is dropped must fit in the deadline, or the connection is closed
    /// under the caller (whose statement then fails as unavailable).
    pub async fn conn(&self) -> Result<Checkout<'_>, StoreError> {
        /// Uncounts the waiter however the wait ends (answered, timed out or dropped).
        struct Waiter<'a>(&'a AtomicU32);
        impl Drop for Waiter<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let started = deadline::started().unwrap_or_else(std::time::Instant::now);
        let until_at = started + Duration::from_millis(self.deadline_ms);
        let until = self.reachability.ms_at(until_at);
        // With an idle connection at hand there is nothing to wait for; the next checkout of a
        // live connection (below) ends the outage, so a passing connect failure while the
        // database is up (too many clients, say) costs at most a probe interval. A silent outage
        // (a passed deadline) refuses even then: those connections lead to the same silent peer.
        // (The atomic first: `pool.state()` takes the pool's lock, not worth it on every checkout.)
        if self.reachability.is_down()
            && (self.reachability.is_silent() || self.pool.state().idle_connections == 0)
        {
            if let Some(why) = self.reachability.refuse() {
                return Err(StoreError::Unavailable(why));
            }
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiter = Waiter(&self.waiting);
        loop {
            // Free when a connection is idle: the timer is registered only if the wait is real.
            let conn = tokio::time::timeout_at(until_at.into(), self.pool.get())
                .await
                .map_err(|_| {
                    StoreError::Unavailable("no database connection was free in time".into())
                })??;
            if conn.generation != self.reachability.generation() {
                // Opened before a deadline passed: dropping it discards it (`has_broken`).
                continue;
            }
            // Too little of the deadline left to use it: a busy pool, not a silent database.
            if self.reachability.now_ms() + MIN_DEADLINE_LEFT_MS > until {
                return Err(StoreError::Unavailable(
                    "no database connection was free in time".into(),
                ));
            }
            if !conn.client.is_closed() && !self.reachability.is_silent() {
                self.reachability.succeeded();
            }
            conn.watchdog.arm(until);
            return Ok(Checkout { conn });
        }
    }

    /// A connection outside the pool for migrations and imports: the maintenance statement
    /// timeout, connecting bounded like the pool's. Run the work in [`Store::bounded_maintenance`].
    pub async fn maintenance_client(&self) -> Result<Client, StoreError> {
        let (client, connection) = open(&self.maintenance, self.connect_timeout).await?;
        self.drivers.spawn(drive_plain(connection));
        Ok(client)
    }

    /// Ends every connection of this store (every clone of it): each driver drops its connection,
    /// closing the socket, and is joined. Statements in flight fail as unavailable, and a
    /// connection opened afterwards is closed at once. For the end of the process.
    pub async fn close(&self) {
        self.drivers.close().await;
    }

    /// Connection drivers running now (pooled and maintenance connections).
    pub fn connections_driven(&self) -> usize {
        self.drivers.running()
    }

    /// Connection settings for long-lived side connections (the LISTEN connection): no
    /// statement timeout, the same keepalives.
    pub fn side_config(&self) -> tokio_postgres::Config {
        self.side.clone()
    }

    /// How long a new connection may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The client-side bound of one checkout.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// How the pool stands right now.
    pub fn pool_state(&self) -> PoolState {
        let state = self.pool.state();
        PoolState {
            open: state.connections,
            idle: state.idle_connections,
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }

    /// The database answers and is at the expected migration; otherwise why not (in full, for
    /// the log: the API tells clients only which condition failed).
    pub async fn readiness(&self) -> Result<(), migrate::MigrateError> {
        // Bounded like any checkout: a silent database answers 503 within the deadline.
        let conn = self.conn().await?;
        migrate::check_current(&conn.client).await
    }
}

/// Least of the deadline a checkout must have left to be handed out.
const MIN_DEADLINE_LEFT_MS: u64 = 100;

/// A pooled connection checked out with its deadline armed; dropping it disarms the deadline and
/// gives the connection back (or discards it, if the deadline closed it).
pub struct Checkout<'a> {
    conn: bb8::PooledConnection<'a, Manager>,
}

impl std::ops::Deref for Checkout<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl std::ops::DerefMut for Checkout<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        self.conn.watchdog.disarm();
    }
}

/// Runs `stmt`; when it collides with an imported id (the id sequence fell behind rows written
/// with explicit ids), moves the sequences of `tables` past their largest ids once and runs it
/// again.
pub(crate) async fn query_fixing_sequences(
    client: &Client,
    stmt: &Statement,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    tables: &[&str],
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let mut repaired = false;
    loop {
        match client
            .query(stmt, params)
            .await
            .map_err(StoreError::classify)
        {
            Ok(rows) => return Ok(rows),
            Err(StoreError::Conflict("id")) if !repaired => {
                sequences::fix(client, tables).await?;
                repaired = true;
            }
            Err(err) => return Err(err),
        }
    }
}

/// One answer per request of a grouped write. `grouped` is the group statement's outcome: an
/// answer per request, where `None` asks for that request to be retried `alone`. When the
/// database is unavailable every request gets that answer; when the statement failed for any
/// other reason (and so wrote nothing) every request is retried alone, so one bad row fails only
/// its own request.
pub(crate) async fn answer_group<'a, R, T, Fut>(
    group: &'a [R],
    grouped: Result<Vec<Option<Result<T, StoreError>>>, StoreError>,
    alone: impl Fn(&'a R) -> Fut,
) -> Vec<Result<T, StoreError>>
where
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let answers = match grouped {
        Ok(answers) if answers.len() == group.len() => answers,
        // The statement committed something we cannot match to requests: retrying alone could
        // write rows twice, so every request is told it failed (and may retry itself).
        Ok(answers) => {
            return group
                .iter()
                .map(|_| {
                    Err(StoreError::Internal(format!(
                        "a grouped insert answered {} rows for {} requests",
                        answers.len(),
                        group.len()
                    )))
                })
                .collect()
        }
        Err(StoreError::Unavailable(reason)) => {
            return group
                .iter()
                .map(|_| Err(StoreError::Unavailable(reason.clone())))
                .collect()
        }
        Err(_) => group.iter().map(|_| None).collect(),
    };
    let mut results = Vec::with_capacity(group.len());
    for (request, answer) in group.iter().zip(answers) {
        results.push(match answer {
            Some(result) => result,
            None => alone(request).await,
        });
    }
    results
}

/// Runs a set of independent statements back to back on one connection without waiting for
/// each answer (tokio-postgres pipelines queries issued concurrently on one client), keeping
/// their order and each one's own result.
pub async fn pipelined<'a, T, F, Fut>(items: &'a [T], run: F) -> Vec<Fut::Output>
where
    F: Fn(&'a T) -> Fut,
    Fut: std::future::Future,
{
    futures_util::future::join_all(items.iter().map(run)).await
}

/// Filters on a list, combined with AND. Column names and clauses are fixed strings from the
/// callers; values always travel as parameters.
#[derive(Default)]
pub struct Filter {
    /// Each clause with `$?` where its parameter goes.
    clauses: Vec<String>,
    values: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>>,
}

impl Filter {
    pub fn eq<T>(self, column: &'static str, value: Option<T>) -> Filter
    where
        T: tokio_postgres::types::ToSql + Sync + Send + 'static,
    {
        self.clause(&format!("{column} = $?"), value)
    }

    /// A clause of the caller's own, with `$?` for its one parameter.
    pub fn clause<T>(mut self, clause: &str, value: Option<T>) -> Filter
    where
        T: tokio_postgres::types::ToSql + Sync + Send + 'static,
    {
        if let Some(value) = value {
            self.clauses.push(clause.to_owned());
            self.values.push(Box::new(value));
        }
        self
    }

    /// A clause without a parameter.
    pub fn and(mut self, clause: &str) -> Filter {
        self.clauses.push(clause.to_owned());
        self
    }

    /// The clauses' parameters, in their order (a page's `LIMIT` and `OFFSET` go after them).
    fn params(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        self.values
            .iter()
            .map(|v| v.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect()
    }

    fn where_clause(&self) -> String {
        if self.clauses.is_empty() {
            return String::new();
        }
        let mut n = 0;
        let parts: Vec<String> = self
            .clauses
            .iter()
            .map(|c| {
                if c.contains("$?") {
                    n += 1;
                    c.replace("$?", &format!("${n}"))
                } else {
                    c.clone()
                }
            })
            .collect();
        format!(" WHERE {}", parts.join(" AND "))
    }
}

impl Store {
    /// One page of `table` ordered by id, and the number of rows matching the filter.
    /// The two queries are pipelined on one connection.
    pub(crate) async fn list(
        &self,
        table: &'static str,
        columns: &'static str,
        filter: Filter,
        page: Page,
    ) -> Result<(Vec<tokio_postgres::Row>, i64), StoreError> {
        self.list_then(table, columns, None, filter, page).await
    }

    /// Like [`Store::list`]; with `then`, the page's rows are chosen first (the CTE `page`) and
    /// `then` (a query over `page`, ordered by id) makes what is answered of them: what costs per
    /// row is paid for the page's rows only, not for every row sorted.
    pub(crate) async fn list_then(
        &self,
        table: &'static str,
        columns: &'static str,
        then: Option<&'static str>,
        filter: Filter,
        page: Page,
    ) -> Result<(Vec<tokio_postgres::Row>, i64), StoreError> {
        let mut conn = self.conn().await?;
        let wheres = filter.where_clause();
        let n = filter.values.len();
        let mut rows_sql = format!(
            "SELECT {columns} FROM {table}{wheres} ORDER BY id LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        if let Some(then) = then {
            rows_sql = format!("WITH page AS MATERIALIZED ({rows_sql}) {then}");
        }
        let count_sql = format!("SELECT count(*) FROM {table}{wheres}");
        let rows_stmt = conn.prepared(&rows_sql).await?;
        let count_stmt = conn.prepared(&count_sql).await?;
        let mut params = filter.params();
        let count_params = params.clone();
        params.push(&page.limit);
        params.push(&page.offset);
        let (rows, count) = tokio::try_join!(
            conn.client.query(&rows_stmt, &params),
            conn.client.query_one(&count_stmt, &count_params),
        )?;
        Ok((rows, count.get(0)))
    }
}

impl Store {
    /// Like [`Store::list`], in one pass over the matching rows, for filters whose matches are
    /// costly to find (a trigram search) and must not be found twice: their ids are gathered once
    /// (a bitmap scan: nothing asks for them in order, so the planner — even with a generic plan,
    /// blind to the search term — never walks the primary key hoping to meet a page's rows early,
    /// a full scan when a term matches nothing), counted, and the page's rows fetched by id. Only a
    /// page past the last match (no row to carry the count) costs a second query. On `conn`.
    pub(crate) async fn list_in_one_pass(
        conn: &mut Checkout<'_>,
        table: &'static str,
        columns: &'static str,
        filter: Filter,
        page: Page,
    ) -> Result<(Vec<tokio_postgres::Row>, i64), StoreError> {
        let wheres = filter.where_clause();
        let n = filter.values.len();
        let rows_sql = format!(
            "WITH m AS MATERIALIZED (SELECT id FROM {table}{wheres}),
                  page AS (SELECT id FROM m ORDER BY id LIMIT ${} OFFSET ${})
             SELECT {columns}, (SELECT count(*) FROM m) FROM {table}
             WHERE id IN (SELECT id FROM page) ORDER BY id",
            n + 1,
            n + 2
        );
        let rows_stmt = conn.prepared(&rows_sql).await?;
        let mut params = filter.params();
        let count_params = params.clone();
        params.push(&page.limit);
        params.push(&page.offset);
        let rows = conn.client.query(&rows_stmt, &params).await?;
        let total = match rows.first() {
            Some(row) => row.get(row.len() - 1),
            None if page.offset == 0 => 0,
            None => {
                let count_stmt = conn
                    .prepared(&format!("SELECT count(*) FROM {table}{wheres}"))
                    .await?;
                conn.client
                    .query_one(&count_stmt, &count_params)
                    .await?
                    .get(0)
            }
        };
        Ok((rows, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closing_ends_every_driver_and_joins_it() {
        let drivers = Drivers::default();
        let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel::<()>();
        for _ in 0..3 {
            let ended_tx = ended_tx.clone();
            drivers.spawn(async move {
                // A connection that would run forever; dropping the future is closing it.
                struct Dropped(tokio::sync::mpsc::UnboundedSender<()>);
                impl Drop for Dropped {
                    fn drop(&mut self) {
                        let _ = self.0.send(());
                    }
                }
                let _dropped = Dropped(ended_tx);
                std::future::pending::<()>().await
            });
        }
        drivers.spawn(async {}); // one that ends by itself
        tokio::task::yield_now().await;
        assert_eq!(drivers.running(), 3, "a finished driver is reaped");
        tokio::time::timeout(Duration::from_secs(5), drivers.close())
            .await
            .expect("closing is prompt");
        drop(ended_tx);
        let mut dropped = 0;
        while ended.recv().await.is_some() {
            dropped += 1;
        }
        assert_eq!(dropped, 3, "every connection was dropped");
        assert_eq!(drivers.running(), 0);
        // After the close, a new connection is closed at once.
        drivers.spawn(std::future::pending());
        tokio::time::timeout(Duration::from_secs(5), drivers.close())
            .await
            .expect("a late driver ends at once too");
    }
}
