//! The command line: `serve` (the default), `migrate`, `seed`, `fix-sequences`, `check-schema`,
//! `keys` and `reset`. Each finds its database the same way: `DATABASE_URL`, or the embedded cluster in
//! the data directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use gitrev_core::model::{check_key_name, ADMIN_UNBOUND};
use gitrev_core::retry::{self, Retryable};
use gitrev_embedded::EmbeddedPostgres;
use gitrev_links::snapshot;
use gitrev_store::keys::{KeyLimit, Scope};
use gitrev_store::seed::{self, SeedReport, SeedSource};
use gitrev_store::{migrate, schema, sequences, Store, StoreError};
use gitrev_telemetry as telemetry;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::{self, Environment, Settings};
use crate::service;

#[derive(Debug, Parser)]
#[command(name = "gitrev", version, about = "A high-performance link service", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Load a users/urls/events CSV set (idempotent, keeps ids), then move id sequences past it.
    Seed {
        /// Directory with users.csv, urls.csv, events.csv (default: GITREV_SEED_DIR, else the
        /// built-in reference set).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Required to seed when GITREV_ENV=production.
        #[arg(long)]
        allow_production: bool,
    },
    /// Move every id sequence past the largest id in its table.
    FixSequences,
    /// Drop the click partitions past retention now and print what was freed (the service does
    /// it on its own every ten minutes).
    PruneClicks {
        /// Days of clicks to keep (default: GITREV_CLICK_RETENTION_DAYS; 0 keeps every click).
        #[arg(long)]
        days: Option<u32>,
    },
    /// Write the link tier (every link in one memory-mapped file; issue #12) from the database
    /// and print what it holds. It never migrates: the schema must be this build's already.
    BuildTier {
        /// Where to write it (default: `<data dir>/links.tier`). Written beside and renamed over.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Compare the live schema with the migrations; exit non-zero naming every drift.
    CheckSchema,
    /// API keys: make one (printed once, never again), list them, revoke one.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Empty every table and reload the seed set (refused in production).
    Reset {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the settings (variable, default, meaning) as a Markdown table, from the command
    /// line's own definitions: the README's table is this output.
    Settings {
        /// The settings table (the default).
        #[arg(long, conflicts_with = "metrics")]
        markdown: bool,
        /// Every metric the service exports (name, meaning) instead.
        #[arg(long)]
        metrics: bool,
    },
    /// Ask the server at GITREV_LISTEN for /health; exit 0 when it answers 200 (for container
    /// HEALTHCHECKs: the runtime image has no curl).
    Healthcheck {
        /// Check /ready (database and schema) instead of /health.
        #[arg(long)]
        ready: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Make a key and print it (only its digest is stored: it cannot be shown again).
    Create {
        /// What the key is for (1 to 100 characters), shown in lists.
        #[arg(long)]
        name: String,
        /// read (every GET), write (also changes to users, urls, events) or admin (also keys and
        /// bulk imports).
        #[arg(long, value_parser = ["read", "write", "admin"])]
        scope: String,
        /// Bind the key to this user: it sees and changes only that user, their urls and their
        /// events (not with --scope admin).
        #[arg(long)]
        user: Option<i64>,
        /// This key's own rate limit, requests per second (default: GITREV_KEY_RATE).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        rate: Option<u32>,
        /// This key's own burst (default: GITREV_KEY_BURST).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        burst: Option<u32>,
    },
    /// List the keys not revoked (id, prefix, scope, bound user, name, rate, burst, created, last
    /// used).
    List,
    /// Revoke a key: it stops working on every replica at once.
    Revoke { id: i64 },
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(Command::Settings { metrics, .. }) = cli.command {
        use clap::CommandFactory;
        print!(
            "{}",
            if metrics {
                config::metrics_markdown(&telemetry::Metrics::default())
            } else {
                config::settings_markdown(&Cli::command())
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let settings = cli.settings;
    let _log_guard = telemetry::init_logging(&settings.log, settings.log_format.into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async move {
        let command = cli.command.unwrap_or(Command::Serve);
        if let Command::Healthcheck { ready } = command {
            let path = if ready { "/ready" } else { "/health" };
            return healthcheck(settings.listen, path).await;
        }
        let mut database = Database::open(&settings).await?;
        let result = run_command(command, &settings, &database.url).await;
        database.close().await;
        result
    });
    // Don't wait for blocking tasks that cannot be cancelled (the stdin watcher's read).
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The database a command works on, and the embedded server behind it if there is one.
struct Database {
    url: String,
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    async fn open(settings: &Settings) -> anyhow::Result<Database> {
        match &settings.database_url {
            Some(url) => Ok(Database {
                url: url.expose().to_owned(),
                embedded: None,
            }),
            None => {
                let embedded = EmbeddedPostgres::start(
                    &settings.data_dir,
                    settings.pg_bin.as_deref(),
                    settings.pg_shared_buffers_mb,
                )
                .await?;
                Ok(Database {
                    url: embedded.database_url(),
                    embedded: Some(embedded),
                })
            }
        }
    }

    async fn close(&mut self) {
        if let Some(embedded) = &mut self.embedded {
            embedded.stop().await;
        }
    }
}

async fn run_command(command: Command, settings: &Settings, url: &str) -> anyhow::Result<ExitCode> {
    let store = Store::new(url, &settings.store_settings())?;
    let result = run_on(command, settings, &store, url).await;
    // Every connection closed and its driver joined before the database may be stopped.
    store.close().await;
    result
}

async fn run_on(
    command: Command,
    settings: &Settings,
    store: &Store,
    url: &str,
) -> anyhow::Result<ExitCode> {
    let store = store.clone();
    match command {
        Command::Serve => serve(settings, store, url).await,
        Command::Migrate => {
            let applied = run_migrations(&store).await?;
            println!(
                "schema at migration {} ({} applied now)",
                migrate::latest_version(),
                applied.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Seed {
            dir,
            allow_production,
        } => {
            if settings.environment == Environment::Production && !allow_production {
                bail!("refusing to seed a production database; pass --allow-production if you mean it");
            }
            run_migrations(&store).await?;
            let report = load_seed(&store, settings, dir.as_deref()).await?;
            print_seed_report(&report);
            Ok(ExitCode::SUCCESS)
        }
        Command::FixSequences => {
            run_migrations(&store).await?;
            let client = store.maintenance_client().await?;
            let fixed = store
                .bounded_maintenance(sequences::fix(&client, sequences::TABLES))
                .await?;
            for (table, next) in fixed {
                println!("{table}: next id {next}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::BuildTier { out } => {
            // Reads only, so it checks the schema rather than migrating: a serving replica runs it
            // as a child at every rebuild, and a migration takes the lock every other replica's
            // start and every other command waits for (a rebuild cut off by a partition would
            // hold it until its session died).
            check_schema_current(&store).await?;
            let path = match out {
                Some(path) => path,
                None => {
                    std::fs::create_dir_all(&settings.data_dir)?;
                    crate::tier::path_in(&settings.data_dir)
                }
            };
            let started = std::time::Instant::now();
            let builder = store.tier_builder().await?;
            let read = started.elapsed();
            let target = path.clone();
            let built = tokio::task::spawn_blocking(move || builder.write(&target)).await??;
            println!(
                "{}: {} links, {} bytes ({:.1} per link beside the urls' text); read in {:.2} s, built and written in {:.2} s",
                path.display(),
                built.links,
                built.file_bytes,
                built.bytes_per_link(),
                read.as_secs_f64(),
                (started.elapsed() - read).as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::PruneClicks { days } => {
            run_migrations(&store).await?;
            let days = days.unwrap_or(settings.click_retention_days);
            let pruned = store.bounded_maintenance(store.prune_clicks(days)).await?;
            if days == 0 {
                println!("retention is 0 days (every click is kept): nothing to drop");
            }
            println!(
                "dropped {} partition(s), {} click(s), {} bytes{}",
                pruned.partitions.len(),
                pruned.clicks,
                pruned.bytes,
                if pruned.partitions.is_empty() {
                    String::new()
                } else {
                    format!(": {}", pruned.partitions.join(", "))
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckSchema => {
            let mut client = store.maintenance_client().await?;
            let drifts = store
                .bounded_maintenance(schema::check(&mut client))
                .await?;
            if drifts.is_empty() {
                println!(
                    "schema matches migrations 1..={}",
                    migrate::latest_version()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!("schema drift ({} problem(s)):", drifts.len());
                for drift in &drifts {
                    println!("- {drift}");
                }
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Keys { action } => {
            run_migrations(&store).await?;
            keys_command(&store, action).await
        }
        Command::Healthcheck { .. } | Command::Settings { .. } => {
            unreachable!("answered before opening the database")
        }
        Command::Reset { dir } => {
            if settings.environment == Environment::Production {
                bail!("refusing to reset a production database");
            }
            run_migrations(&store).await?;
            let client = store.maintenance_client().await?;
            store.bounded_maintenance(seed::truncate(&client)).await?;
            let report = load_seed(&store, settings, dir.as_deref()).await?;
            print_seed_report(&report);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn keys_command(store: &Store, action: KeysAction) -> anyhow::Result<ExitCode> {
    match action {
        KeysAction::Create {
            name,
            scope,
            user,
            rate,
            burst,
        } => {
            check_key_name(&name).map_err(|why| anyhow::anyhow!("--name {why}"))?;
            let name = name.trim();
            let scope = Scope::parse(&scope).context("--scope must be read, write or admin")?;
            if user.is_some() && scope == Scope::Admin {
                bail!("{ADMIN_UNBOUND} (--user)");
            }
            let (key, secret) = store
                .create_key(name, scope, user, KeyLimit { rate, burst })
                .await
                .map_err(|err| match err {
                    StoreError::NotFound(_) => anyhow::anyhow!("no user {}", user.unwrap_or(0)),
                    err => err.into(),
                })?;
            eprintln!(
                "key {} ({}, scope {}) made; it is shown once, below, and cannot be shown again:",
                key.id, key.prefix, key.scope
            );
            println!("{}", secret.expose());
        }
        KeysAction::List => {
            println!("id\tprefix\tscope\tuser\tname\trate\tburst\tcreated_at\tlast_used_at");
            let or_default = |n: Option<u32>| n.map_or("default".to_owned(), |n| n.to_string());
            for key in store.list_keys().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    key.id,
                    key.prefix,
                    key.scope,
                    key.user_id.map_or("-".to_owned(), |u| u.to_string()),
                    key.name,
                    or_default(key.limit.rate),
                    or_default(key.limit.burst),
                    key.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    key.last_used_at.map_or("-".to_owned(), |t| t
                        .format("%Y-%m-%dT%H:%M:%SZ")
                        .to_string())
                );
            }
        }
        KeysAction::Revoke { id } => match store.revoke_key(id).await {
            Ok(()) => println!("key {id} revoked"),
            Err(StoreError::NotFound(_)) => bail!("no key {id} (or it was already revoked)"),
            Err(err) => return Err(err.into()),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// How long a command waits for a database that is still coming up.
const DATABASE_WAIT: Duration = Duration::from_secs(60);
/// How long `serve` waits for the database before serving from the link snapshot without it.
const SNAPSHOT_START_WAIT: Duration = Duration::from_secs(3);

/// How often a command (or `serve`, from its snapshot) asks again for a database that is not
/// there yet.
const DATABASE_RETRY: Duration = Duration::from_secs(1);

/// A connection outside the pool, waiting up to `wait` for a database that is still coming up.
async fn wait_for_database(
    store: &Store,
    wait: Duration,
) -> Result<tokio_postgres::Client, StoreError> {
    let started = Instant::now();
    (|| store.maintenance_client())
        .retry(retry::backoff(DATABASE_RETRY, DATABASE_RETRY))
        .when(|err| matches!(err, StoreError::Unavailable(_)) && started.elapsed() < wait)
        .notify(|err, _| warn!(reason = %err, "database not reachable yet; retrying"))
        .await
}

/// Applies migrations, waiting (bounded) for a database that is still coming up.
async fn run_migrations(store: &Store) -> anyhow::Result<Vec<i32>> {
    let mut client = wait_for_database(store, DATABASE_WAIT).await?;
    Ok(store
        .bounded_maintenance(migrate::migrate(&mut client))
        .await?)
}

/// Fails, naming the difference, unless the schema holds every migration this build knows
/// (newer ones are fine: migrations are additive). Waits (bounded) for a database coming up.
async fn check_schema_current(store: &Store) -> anyhow::Result<()> {
    let client = wait_for_database(store, DATABASE_WAIT).await?;
    match store
        .bounded_maintenance(migrate::check_current(&client))
        .await
    {
        Ok(()) => Ok(()),
        Err(migrate::MigrateError::Store(err)) => Err(err.into()),
        Err(schema) => bail!("{schema}; run `gitrev migrate` first"),
    }
}

/// Why the migration after an outage has not happened yet.
enum NotBack {
    /// No connection yet (the outage goes on: not worth a log line every second).
    Unreachable,
    /// Connected, but migrating failed.
    Failed(migrate::MigrateError),
}

/// Serving from the snapshot without a database: migrate once it answers (until then `/ready`
/// says why not and writes answer 503). Runs until it succeeds; the caller aborts it at stop.
async fn migrate_when_back(store: Store) {
    let migrated = (|| async {
        let mut client = store
            .maintenance_client()
            .await
            .map_err(|_| NotBack::Unreachable)?;
        store
            .bounded_maintenance(migrate::migrate(&mut client))
            .await
            .map_err(NotBack::Failed)
    })
    .retry(retry::backoff(DATABASE_RETRY, DATABASE_RETRY))
    .notify(|why, _| {
        if let NotBack::Failed(err) = why {
            warn!(error = %err, "migrating after the database came back failed; retrying");
        }
    })
    .await;
    if let Ok(applied) = migrated {
        info!(?applied, "the database is back; migrations checked");
    }
}

async fn load_seed(
    store: &Store,
    settings: &Settings,
    dir: Option<&Path>,
) -> anyhow::Result<SeedReport> {
    let dir = dir.or(settings.seed_dir.as_deref());
    let source = dir.map_or(SeedSource::BuiltIn, SeedSource::Dir);
    let mut client = store.maintenance_client().await?;
    Ok(store
        .bounded_maintenance(seed::seed(&mut client, &source))
        .await?)
}

fn print_seed_report(report: &SeedReport) {
    for (name, part) in [
        ("users", &report.users),
        ("urls", &report.urls),
        ("events", &report.events),
    ] {
        println!(
            "{name}: {} written, {} skipped",
            part.written,
            part.errors.len()
        );
        for err in part.errors.iter().take(20) {
            println!("  line {}: {}", err.line, err.error);
        }
        if part.errors.len() > 20 {
            println!("  … and {} more", part.errors.len() - 20);
        }
    }
}

async fn serve(settings: &Settings, store: Store, url: &str) -> anyhow::Result<ExitCode> {
    // With a link snapshot to serve from, a database that does not answer soon is no reason not
    // to start: cached redirects work without it.
    let have_snapshot =
        settings.snapshot_secs > 0 && snapshot::path_in(&settings.data_dir).exists();
    let wait = if have_snapshot {
        SNAPSHOT_START_WAIT
    } else {
        DATABASE_WAIT
    };
    // The migration after an outage, when serving starts without the database: owned here, ended
    // at stop (it would otherwise retry for as long as the database stays away), and aborted
    // with the set on any early return.
    let mut migrating = tokio::task::JoinSet::new();
    let migrated = match wait_for_database(&store, wait).await {
        Ok(mut client) => {
            let applied = store
                .bounded_maintenance(migrate::migrate(&mut client))
                .await?;
            if !applied.is_empty() {
                info!(?applied, "migrations applied");
            }
            true
        }
        Err(StoreError::Unavailable(reason)) if have_snapshot => {
            warn!(%reason, "the database is unreachable: starting from the link snapshot");
            migrating.spawn(migrate_when_back(store.clone()));
            false
        }
        Err(err) => return Err(err.into()),
    };
    if migrated
        && settings.environment == Environment::Development
        && store
            .bounded_maintenance(seed::is_empty(&store.maintenance_client().await?))
            .await?
    {
        info!("first start in development: loading the demo seed data");
        let report = load_seed(&store, settings, None).await?;
        info!(
            users = report.users.written,
            urls = report.urls.written,
            events = report.events.written,
            "demo data loaded"
        );
    }
    if migrated
        && settings.environment == Environment::Production
        && settings.api_token.is_none()
        && store.list_keys().await?.is_empty()
    {
        bail!(
            "refusing to serve in production with no API key: anyone could use the API. Make an \
             admin key with `gitrev keys create --name NAME --scope admin` (against this same \
             database), or set GITREV_API_TOKEN to a token from your secret store"
        );
    }
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let ready_file = settings.ready_file.clone();
    let environment = settings.environment;
    let stop_on_stdin_eof = settings.stop_on_stdin_eof;
    let mut ready_error = None;
    let served = service::run(
        settings.clone(),
        store,
        url.to_owned(),
        listener,
        shutdown_signal(stop_on_stdin_eof),
        |local| {
            if let Some(path) = &ready_file {
                if let Err(err) = write_ready_file(path, &local.to_string(), url) {
                    ready_error = Some(err);
                }
            }
            info!(listen = %local, env = environment.as_str(), "gitrev serving");
        },
    )
    .await;
    migrating.abort_all();
    while migrating.join_next().await.is_some() {}
    served?;
    if let Some(err) = ready_error {
        return Err(err);
    }
    Ok(ExitCode::SUCCESS)
}

/// One plain HTTP/1.1 GET on a fresh connection; success when the status is 200.
async fn healthcheck(listen: std::net::SocketAddr, path: &str) -> anyhow::Result<ExitCode> {
    use tokio::io::AsyncWriteExt;
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(Ok(head)) if head.starts_with(b"HTTP/1.1 200") => {
            println!("healthy: {path} answered 200");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(head)) => {
            println!(
                "unhealthy: {path} answered {}",
                String::from_utf8_lossy(&head)
            );
            Ok(ExitCode::FAILURE)
        }
        Ok(Err(err)) => {
            println!("unhealthy: {addr}: {err}");
            Ok(ExitCode::FAILURE)
        }
        Err(_) => {
            println!("unhealthy: {addr} did not answer within 3 s");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The ready file holds the database URL, password included: readable by this user alone (0600),
/// from its creation on (never a moment world-readable).
fn write_ready_file(path: &Path, listen: &str, database_url: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let body = serde_json::json!({"listen": listen, "database_url": database_url});
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| file.write_all(body.to_string().as_bytes()))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Completes on SIGINT, SIGTERM or (when asked) the end of standard input.
async fn shutdown_signal(stop_on_stdin_eof: bool) {
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        let stdin_closed = async {
            if !stop_on_stdin_eof {
                return std::future::pending::<()>().await;
            }
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 256];
            while let Ok(n) = stdin.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!(signal = "SIGINT", "shutting down"),
            _ = term.recv() => info!(signal = "SIGTERM", "shutting down"),
            () = stdin_closed => info!("standard input closed; shutting down"),
        }
    }
}
