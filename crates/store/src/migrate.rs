//! Migrations: the numbered files in `sql/`, built into the binary, applied in order under an
//! advisory lock (so twenty replicas starting at once apply each file exactly once) and recorded
//! with a SHA-256 checksum (so an edited applied migration is caught, not silently skipped).

use sha2::{Digest, Sha256};
use tokio_postgres::Client;
use tracing::info;

use super::StoreError;

/// One migration file.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. A unit test checks this list against the files in `sql/`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init.sql",
        sql: include_str!("../../../sql/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_clicks.sql",
        sql: include_str!("../../../sql/0002_clicks.sql"),
    },
    Migration {
        version: 3,
        name: "0003_keys.sql",
        sql: include_str!("../../../sql/0003_keys.sql"),
    },
    Migration {
        version: 4,
        name: "0004_links.sql",
        sql: include_str!("../../../sql/0004_links.sql"),
    },
    Migration {
        version: 5,
        name: "0005_click_runs.sql",
        sql: include_str!("../../../sql/0005_click_runs.sql"),
    },
    Migration {
        version: 6,
        name: "0006_link_changes.sql",
        sql: include_str!("../../../sql/0006_link_changes.sql"),
    },
    Migration {
        version: 7,
        name: "0007_large_changes.sql",
        sql: include_str!("../../../sql/0007_large_changes.sql"),
    },
    Migration {
        version: 8,
        name: "0008_search_halves.sql",
        sql: include_str!("../../../sql/0008_search_halves.sql"),
    },
];

/// Arbitrary but fixed: the advisory lock every gitrev process takes while migrating.
const LOCK_KEY: i64 = 0x6769_7472_6576; // "gitrev"

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
)";

pub fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration {name} was edited after it was applied (checksum {applied} in the database, {file} in the file)")]
    Edited {
        name: String,
        applied: String,
        file: String,
    },
    #[error(
        "the database has migration {0}, which this build does not know (a newer build applied it)"
    )]
    Unknown(i32),
    #[error("the schema is at migration {current}, this build expects {expected}")]
    Behind { current: i32, expected: i32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(err: tokio_postgres::Error) -> MigrateError {
        MigrateError::Store(StoreError::classify(err))
    }
}

/// An applied migration as the ledger records it.
pub struct Applied {
    pub version: i32,
    pub name: String,
    pub checksum: String,
}

pub async fn applied(client: &Client) -> Result<Vec<Applied>, tokio_postgres::Error> {
    let exists = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?
        .get::<_, bool>(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get(0),
            name: r.get(1),
            checksum: r.get(2),
        })
        .collect())
}

/// Problems with the ledger itself: edited or unknown migrations.
pub fn ledger_problems(applied: &[Applied]) -> Vec<MigrateError> {
    applied
        .iter()
        .filter_map(
            |a| match MIGRATIONS.iter().find(|m| m.version == a.version) {
                None => Some(MigrateError::Unknown(a.version)),
                Some(m) if checksum(m.sql) != a.checksum => Some(MigrateError::Edited {
                    name: m.name.to_owned(),
                    applied: a.checksum.clone(),
                    file: checksum(m.sql),
                }),
                Some(_) => None,
            },
        )
        .collect()
}

/// Applies every pending migration; returns the versions applied by this call.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = migrate_locked(client).await;
    // The lock is session-scoped; if unlocking fails the connection is going away anyway.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

async fn migrate_locked(client: &mut Client) -> Result<Vec<i32>, MigrateError> {
    client.batch_execute(CREATE_LEDGER).await?;
    let done = applied(client).await?;
    for problem in ledger_problems(&done) {
        match problem {
            // A newer build migrated already (a rolling upgrade, a rollback): migrations are
            // additive, so this build runs on that schema.
            MigrateError::Unknown(version) => {
                info!(
                    version,
                    "the database has a newer migration than this build"
                )
            }
            other => return Err(other),
        }
    }
    let mut newly = Vec::new();
    for m in MIGRATIONS {
        if done.iter().any(|a| a.version == m.version) {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &checksum(m.sql)],
        )
        .await?;
        tx.commit().await?;
        info!(version = m.version, name = m.name, "applied migration");
        newly.push(m.version);
    }
    Ok(newly)
}

/// Readiness: every migration this build knows is applied, unedited. Newer migrations (applied by
/// a newer build during a rolling upgrade or before a rollback) are fine: migrations are additive.
pub async fn check_current(client: &Client) -> Result<(), MigrateError> {
    let done = applied(client).await?;
    if let Some(problem) = ledger_problems(&done)
        .into_iter()
        .find(|p| !matches!(p, MigrateError::Unknown(_)))
    {
        return Err(problem);
    }
    if let Some(missing) = MIGRATIONS
        .iter()
        .find(|m| !done.iter().any(|a| a.version == m.version))
    {
        return Err(MigrateError::Behind {
            current: missing.version - 1,
            expected: latest_version(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sql_file_is_listed_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sql");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("sql/ exists")
            .map(|e| {
                e.expect("readable entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(files, listed);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "versions are 1..n in order");
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
    }

    #[test]
    fn checksum_changes_with_the_text() {
        assert_eq!(checksum("a").len(), 64);
        assert_ne!(
            checksum("CREATE TABLE a ()"),
            checksum("CREATE TABLE a ( )")
        );
    }
}
