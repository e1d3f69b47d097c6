//! Databases and the command line. A test that needs exact counts or ids makes a database of its own
//! on the shared cluster ([`fresh_database`], [`migrated_database`], [`seeded_database`]), drives the
//! CLI against it ([`gitrev`]) and reads it directly ([`connect`], [`count_rows`], [`click_events`]).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use super::fixtures::unique;
use super::poll::poll;
use super::server::{bare_gitrev_command, server};

/// Creates an empty database on the shared cluster and returns its URL.
pub async fn fresh_database(name_prefix: &str) -> String {
    let shared = &server().database_url;
    let admin = connect(&with_database(shared, "postgres")).await;
    let name = unique(name_prefix).to_lowercase();
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    with_database(shared, &name)
}

/// A fresh database that `gitrev migrate` brought to this build's schema.
pub async fn migrated_database(name_prefix: &str) -> String {
    let url = fresh_database(name_prefix).await;
    assert_cli_ok(&gitrev(&["migrate"], &url), "gitrev migrate");
    url
}

/// A fresh database, migrated and seeded with the named set through the CLI.
pub async fn seeded_database(set: &str) -> String {
    let url = migrated_database("seeded").await;
    let dir = seed_dir(set);
    let dir = dir.to_str().expect("the seed path is UTF-8");
    assert_cli_ok(&gitrev(&["seed", "--dir", dir], &url), "gitrev seed");
    url
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let (server, _) = base
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("no database name in {url}"));
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// The database name in `url`.
pub fn database_name(url: &str) -> &str {
    let base = url.split_once('?').map_or(url, |(base, _)| base);
    base.rsplit_once('/')
        .map(|(_, name)| name)
        .unwrap_or_else(|| panic!("no database name in {url}"))
}

/// A plain connection, its driver running on the calling test's runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

pub async fn count_rows(database_url: &str, table: &str) -> i64 {
    let db = connect(database_url).await;
    let row = db
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap_or_else(|e| panic!("counting {table}: {e}"));
    row.get(0)
}

/// The `click` events stored for `url_id`.
pub async fn click_events(database_url: &str, url_id: i64) -> i64 {
    connect(database_url)
        .await
        .query_one(
            "SELECT count(*) FROM event_log WHERE url_id = $1 AND event_type = 'click'",
            &[&url_id],
        )
        .await
        .unwrap_or_else(|e| panic!("counting the clicks of url {url_id}: {e}"))
        .get(0)
}

/// The click counter `url_stats` keeps for `url_id` (0 without a row).
pub async fn stats_clicks(database_url: &str, url_id: i64) -> i64 {
    connect(database_url)
        .await
        .query_opt("SELECT clicks FROM url_stats WHERE url_id = $1", &[&url_id])
        .await
        .unwrap_or_else(|e| panic!("reading the url_stats of url {url_id}: {e}"))
        .map_or(0, |row| row.get(0))
}

/// Renames a database away (terminating its sessions until the rename goes through), so a server on
/// it can no longer connect: an outage that refuses at once.
pub async fn rename_database(admin: &tokio_postgres::Client, from: &str, to: &str) {
    let rename = format!("ALTER DATABASE \"{from}\" RENAME TO \"{to}\"");
    let rename = rename.as_str();
    let renamed = poll(
        Duration::from_secs(60),
        || async move {
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&from],
                )
                .await
                .expect("terminating the sessions on the database");
            admin.batch_execute(rename).await
        },
        Result::is_ok,
    )
    .await;
    if let Err(Err(e)) = renamed {
        panic!("renaming {from} to {to}: {e}");
    }
}

/// Runs `gitrev <args>` against `database_url` in the test environment.
pub fn gitrev(args: &[&str], database_url: &str) -> Output {
    gitrev_with_env(args, database_url, &[])
}

pub fn gitrev_with_env(args: &[&str], database_url: &str, extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = bare_gitrev_command();
    cmd.args(args)
        .env("DATABASE_URL", database_url)
        .env("GITREV_ENV", "test")
        .env("GITREV_LOG", "warn")
        .stdin(Stdio::null());
    for (key, value) in extra_env {
        cmd.env(key, value);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("running gitrev {args:?}: {e}"))
}

/// stdout and stderr together, for messages and for looking for a name.
pub fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn assert_cli_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} exited with {}:\n{}",
        output.status,
        output_text(output)
    );
}

/// A seed set of the repository: `gitrev` is the built-in reference set (`seed/`), the others live
/// under `tests/fixtures/seed-data/` (see its README).
pub fn seed_dir(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = match name {
        "gitrev" => root.join("seed"),
        other => root.join("tests/fixtures/seed-data").join(other),
    };
    assert!(
        dir.join("users.csv").is_file(),
        "no seed set at {}",
        dir.display()
    );
    dir
}
