//! Writing imported rows: seeding a users/urls/events set, bulk user import, and reset.
//!
//! Rows with an id are upserted by id, so loading the same file twice leaves the same table;
//! users without an id are upserted by email. Each row is its own statement (pipelined on one
//! connection), so a row the database refuses (an email owned by another id, a url whose user is
//! missing) is reported by line and never takes the others down. Afterwards every id sequence is
//! moved past the largest id.

use std::path::Path;

use gitrev_core::import::{self, EventRow, ImportError, Parsed, RowError, UrlRow, UserRow};
use tokio_postgres::Client;

use super::clicks::{self, Click, Counting};
use super::{sequences, StoreError};

/// Rows go to the database in chunks of this many pipelined statements.
const CHUNK: usize = 1_000;

/// What an import wrote and what it skipped.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub written: u64,
    pub errors: Vec<RowError>,
}

impl ImportReport {
    fn absorb(&mut self, parsed_errors: Vec<RowError>) {
        self.errors.extend(parsed_errors);
        self.errors.sort_by_key(|e| e.line);
    }
}

/// How one row's statement failed.
enum RowFailure {
    /// The database refused this row; the rest go on.
    Row(String),
    /// The database itself is failing; the import stops.
    Fatal(StoreError),
}

/// How a refused row is described in the report, which a bulk import sends to its client: the
/// database's own message (an `Internal` error's) goes to the log only, never into the report.
fn refused(line: u64, err: &StoreError) -> String {
    match err {
        StoreError::Internal(detail) => {
            tracing::warn!(line, %detail, "the database refused an imported row");
            "the database refused this row".to_owned()
        }
        other => other.to_string(),
    }
}

/// Sorts a driver error into a row problem (described by `describe`) or a fatal one.
fn row_failure(err: tokio_postgres::Error, describe: impl Fn(&StoreError) -> String) -> RowFailure {
    match StoreError::classify(err) {
        err @ StoreError::Unavailable(_) => RowFailure::Fatal(err),
        other => RowFailure::Row(describe(&other)),
    }
}

/// Executes one statement per row, pipelined, collecting each refused row as a row error.
///
/// Each row commits on its own, so the rows commit asynchronously (no WAL flush each) and one
/// synchronous commit at the end flushes them all before the import reports success: the WAL is
/// sequential, so that flush covers every earlier commit.
async fn write_rows<'a, T, F, Fut>(
    client: &Client,
    rows: &'a [T],
    line: fn(&T) -> u64,
    run: F,
) -> Result<ImportReport, StoreError>
where
    F: Fn(&'a T) -> Fut,
    Fut: std::future::Future<Output = Result<(), RowFailure>>,
{
    client
        .batch_execute("SET synchronous_commit TO off")
        .await?;
    let result = async {
        let mut report = ImportReport::default();
        for chunk in rows.chunks(CHUNK) {
            let results = futures_util::future::join_all(chunk.iter().map(&run)).await;
            for (row, result) in chunk.iter().zip(results) {
                match result {
                    Ok(()) => report.written += 1,
                    Err(RowFailure::Fatal(err)) => return Err(err),
                    Err(RowFailure::Row(error)) => report.errors.push(RowError {
                        line: line(row),
                        error,
                    }),
                }
            }
        }
        Ok(report)
    }
    .await;
    // txid_current() gives the barrier transaction an id, so its commit is written and flushed.
    client
        .batch_execute("RESET synchronous_commit; SELECT txid_current()")
        .await?;
    result
}

pub async fn import_users(client: &Client, rows: &[UserRow]) -> Result<ImportReport, StoreError> {
    let by_id = client
        .prepare(
            "INSERT INTO users (id, username, email, created_at)
             VALUES ($1, $2, $3, COALESCE($4, now() AT TIME ZONE 'UTC'))
             ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username,
                 email = EXCLUDED.email,
                 created_at = COALESCE($4, users.created_at)",
        )
        .await?;
    let by_email = client
        .prepare(
            "INSERT INTO users (username, email, created_at)
             VALUES ($1, $2, COALESCE($3, now() AT TIME ZONE 'UTC'))
             ON CONFLICT ((lower(email))) DO UPDATE SET username = EXCLUDED.username,
                 created_at = COALESCE($3, users.created_at)",
        )
        .await?;
    let report = write_rows(
        client,
        rows,
        |r| r.line,
        |r| {
            let (by_id, by_email) = (&by_id, &by_email);
            async move {
                let result = match r.id {
                    Some(id) => {
                        client
                            .execute(by_id, &[&id, &r.username, &r.email, &r.created_at])
                            .await
                    }
                    None => {
                        client
                            .execute(by_email, &[&r.username, &r.email, &r.created_at])
                            .await
                    }
                };
                result.map(|_| ()).map_err(|e| {
                    row_failure(e, |err| match err {
                        StoreError::Conflict(_) => {
                            format!("email {} already belongs to another user", r.email)
                        }
                        other => refused(r.line, other),
                    })
                })
            }
        },
    )
    .await?;
    sequences::fix(client, &["users"]).await?;
    Ok(report)
}

pub async fn import_urls(client: &Client, rows: &[UrlRow]) -> Result<ImportReport, StoreError> {
    let stmt = client
        .prepare(
            "INSERT INTO urls (id, user_id, short_code, original_url, title, is_active,
                               created_at, updated_at)
             VALUES (COALESCE($1, nextval(pg_get_serial_sequence('urls', 'id'))), $2, $3, $4, $5, $6,
                     COALESCE($7, now() AT TIME ZONE 'UTC'),
                     COALESCE($8, $7, now() AT TIME ZONE 'UTC'))
             ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id,
                 short_code = EXCLUDED.short_code, original_url = EXCLUDED.original_url,
                 title = EXCLUDED.title, is_active = EXCLUDED.is_active,
                 created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at",
        )
        .await?;
    let report = write_rows(
        client,
        rows,
        |r| r.line,
        |r| {
            let stmt = &stmt;
            async move {
                client
                    .execute(
                        stmt,
                        &[
                            &r.id,
                            &r.user_id,
                            &r.short_code,
                            &r.original_url,
                            &r.title,
                            &r.is_active,
                            &r.created_at,
                            &r.updated_at,
                        ],
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        row_failure(e, |err| match err {
                            StoreError::Conflict(_) => {
                                format!(
                                    "short_code {} already belongs to another url",
                                    r.short_code
                                )
                            }
                            StoreError::NotFound(_) => {
                                format!("user_id {} does not exist", r.user_id.unwrap_or_default())
                            }
                            other => refused(r.line, other),
                        })
                    })
            }
        },
    )
    .await?;
    sequences::fix(client, &["urls"]).await?;
    Ok(report)
}

pub async fn import_events(
    client: &mut Client,
    rows: &[EventRow],
) -> Result<ImportReport, StoreError> {
    let (click_rows, rows): (Vec<&EventRow>, Vec<&EventRow>) =
        rows.iter().partition(|r| r.event_type == "click");
    let mut report = import_clicks(client, &click_rows).await?;
    let client = &*client;
    // The event log has no foreign keys (it outlives what it describes), so an import checks
    // that the url exists itself: a seed event about a url that never existed is bad data.
    let stmt = client
        .prepare(
            "INSERT INTO events (id, url_id, user_id, event_type, timestamp, details)
             SELECT COALESCE($1, nextval(pg_get_serial_sequence('events', 'id'))), $2, $3, $4,
                    COALESCE($5, now() AT TIME ZONE 'UTC'), $6
             WHERE EXISTS (SELECT 1 FROM urls WHERE id = $2)
             ON CONFLICT (id) DO UPDATE SET url_id = EXCLUDED.url_id, user_id = EXCLUDED.user_id,
                 event_type = EXCLUDED.event_type, timestamp = EXCLUDED.timestamp,
                 details = EXCLUDED.details",
        )
        .await?;
    let others = write_rows(
        client,
        &rows,
        |r| r.line,
        |r| {
            let stmt = &stmt;
            async move {
                match client
                    .execute(
                        stmt,
                        &[
                            &r.id,
                            &r.url_id,
                            &r.user_id,
                            &r.event_type,
                            &r.timestamp,
                            &r.details,
                        ],
                    )
                    .await
                {
                    Ok(0) => Err(RowFailure::Row(format!(
                        "url_id {} does not exist",
                        r.url_id
                    ))),
                    Ok(_) => Ok(()),
                    Err(e) => Err(row_failure(e, |err| err.to_string())),
                }
            }
        },
    )
    .await?;
    sequences::fix(client, &["events"]).await?;
    report.written += others.written;
    report.absorb(others.errors);
    Ok(report)
}

/// Imported click events go to the click log like any other click, with their ids and times,
/// counted in the rollups. A click whose id is already stored is left as it is (importing a file
/// twice counts nothing twice); one whose url does not exist is refused, like any event.
async fn import_clicks(
    client: &mut Client,
    rows: &[&EventRow],
) -> Result<ImportReport, StoreError> {
    let mut report = ImportReport::default();
    if rows.is_empty() {
        return Ok(report);
    }
    let ids: Vec<i64> = rows.iter().filter_map(|r| r.id).collect();
    let url_ids: Vec<i64> = rows.iter().map(|r| r.url_id).collect();
    let lowest = ids.iter().copied().min().unwrap_or_default();
    let highest = ids.iter().copied().max().unwrap_or_default();
    let stored: std::collections::HashSet<i64> = client
        .query(
            &format!(
                "SELECT id FROM click_log WHERE {} AND id = ANY($1)",
                crate::clicks::runs_holding("$2", "$3")
            ),
            &[&ids, &lowest, &highest],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let urls: std::collections::HashSet<i64> = client
        .query("SELECT id FROM urls WHERE id = ANY($1)", &[&url_ids])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let now = chrono::Utc::now().naive_utc();
    let mut clicks = Vec::new();
    for row in rows {
        if !urls.contains(&row.url_id) {
            report.errors.push(RowError {
                line: row.line,
                error: format!("url_id {} does not exist", row.url_id),
            });
            continue;
        }
        report.written += 1;
        if row.id.is_some_and(|id| stored.contains(&id)) {
            continue;
        }
        let details = match &row.details {
            serde_json::Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        clicks.push(Click::from_details(
            row.url_id,
            row.user_id,
            row.timestamp.unwrap_or(now),
            row.id,
            details,
        ));
    }
    let dictionaries = clicks::Dictionaries::default();
    let statements = clicks::BatchStatements::prepare(client).await?;
    for chunk in clicks.chunks(CHUNK * 10) {
        clicks::write_clicks(
            client,
            &statements,
            &dictionaries,
            chunk,
            None,
            Counting::New,
        )
        .await?;
    }
    Ok(report)
}

/// Where a seed set comes from.
#[derive(Clone, Debug)]
pub enum SeedSource<'a> {
    /// The reference set compiled into the binary.
    BuiltIn,
    Dir(&'a Path),
}

/// The three files of a seed set.
struct SeedFiles {
    users: Vec<u8>,
    urls: Vec<u8>,
    events: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    File {
        file: &'static str,
        source: ImportError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for SeedError {
    fn from(err: tokio_postgres::Error) -> SeedError {
        SeedError::Store(StoreError::classify(err))
    }
}

fn read_files(source: &SeedSource<'_>) -> Result<SeedFiles, SeedError> {
    match source {
        SeedSource::BuiltIn => Ok(SeedFiles {
            users: include_bytes!("../../../seed/users.csv").to_vec(),
            urls: include_bytes!("../../../seed/urls.csv").to_vec(),
            events: include_bytes!("../../../seed/events.csv").to_vec(),
        }),
        SeedSource::Dir(dir) => {
            let read = |name: &str| {
                let path = dir.join(name);
                std::fs::read(&path).map_err(|source| SeedError::Read {
                    path: path.display().to_string(),
                    source,
                })
            };
            Ok(SeedFiles {
                users: read("users.csv")?,
                urls: read("urls.csv")?,
                events: read("events.csv")?,
            })
        }
    }
}

/// What a seed run did, per file.
#[derive(Debug, Default)]
pub struct SeedReport {
    pub users: ImportReport,
    pub urls: ImportReport,
    pub events: ImportReport,
}

fn parsed<T>(
    file: &'static str,
    result: Result<Parsed<T>, ImportError>,
) -> Result<Parsed<T>, SeedError> {
    result.map_err(|source| SeedError::File { file, source })
}

/// Loads a seed set: users, then urls, then events, each upserted by id; then fixes sequences.
/// Every file is parsed before anything is written, so a file that cannot be read changes nothing.
pub async fn seed(client: &mut Client, source: &SeedSource<'_>) -> Result<SeedReport, SeedError> {
    let files = read_files(source)?;
    let users = parsed("users.csv", import::parse_users(&files.users))?;
    let urls = parsed("urls.csv", import::parse_urls(&files.urls))?;
    let events = parsed("events.csv", import::parse_events(&files.events))?;
    let mut report = SeedReport {
        users: import_users(client, &users.rows).await?,
        ..SeedReport::default()
    };
    report.users.absorb(users.errors);
    report.urls = import_urls(client, &urls.rows).await?;
    report.urls.absorb(urls.errors);
    report.events = import_events(client, &events.rows).await?;
    report.events.absorb(events.errors);
    sequences::fix(client, sequences::TABLES).await?;
    Ok(report)
}

/// True when users, urls and events are all empty (a first start).
pub async fn is_empty(client: &Client) -> Result<bool, StoreError> {
    let row = client
        .query_one(
            "SELECT NOT EXISTS (SELECT 1 FROM users) AND NOT EXISTS (SELECT 1 FROM urls)
                    AND NOT EXISTS (SELECT 1 FROM events)",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Empties every table (API keys and the click log included) and restarts the id sequences, and
/// tells every running replica to drop its keys, in the same transaction, so the announcement
/// comes with the change (the trigger on `urls` announces `*`, which drops every link cache).
///
/// The click dictionaries are emptied without restarting their ids: a replica still running
/// holds dictionary ids in memory, and a click it writes under a forgotten id then joins no link
/// (it is lost) instead of landing on another link that reused the id.
pub async fn truncate(client: &Client) -> Result<(), StoreError> {
    client
        .batch_execute(&format!(
            "BEGIN;
             TRUNCATE url_stats, click_hours, click_breakdowns, click_batches, clicks, click_runs,
                      events, api_keys, urls, users RESTART IDENTITY;
             TRUNCATE click_links, click_contexts;
             SELECT pg_notify('{}', 'TRUNCATE');
             COMMIT;",
            crate::keys::CHANNEL
        ))
        .await?;
    Ok(())
}
