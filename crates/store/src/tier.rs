//! What the link tier reads from the database (issue #12): every link at one snapshot, the
//! database's identity, and which codes changed since a snapshot (`sql/0006_link_changes.sql`).
//!
//! A tier built from [`Store::tier_builder`] holds every link as of its snapshot. Once
//! [`Store::links_changed_since`] has answered for that snapshot, the tier may be trusted for every
//! code not in the answer. For the changes made after that answer, the caller relies on the
//! announcements (LISTEN must already be running when it asks).

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::TryStreamExt;
use gitrev_tier::{Builder, LinkRef, Origin};
use tokio_postgres::GenericClient;

use super::{Store, StoreError};

/// The empty code in the change log stands for every link (`urls` was truncated).
pub const EVERY_LINK: &str = "";

/// How long the change log keeps a change. A tier built longer ago than this cannot be told what
/// changed since, so it must be rebuilt, never trusted.
pub const CHANGES_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Codes changed after a snapshot, and the snapshot the answer is complete up to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes {
    /// Codes created, changed or deleted by transactions the earlier snapshot did not see.
    pub codes: BTreeSet<String>,
    /// Every link changed (`urls` was truncated): nothing from before can be trusted.
    pub everything: bool,
    /// The snapshot this answer was read at: ask with it next time.
    pub snapshot: String,
}

const LINKS: &str = "SELECT short_code, id, user_id, original_url, is_active,
        (EXTRACT(EPOCH FROM expires_at) * 1000000)::bigint, expired_url, redirect_status,
        forward_query, max_clicks IS NOT NULL
    FROM urls";

/// The cluster's system identifier and the database's name, asked on `client` (the LISTEN
/// connection asks on its own).
pub async fn identity(client: &impl GenericClient) -> Result<(u64, String), StoreError> {
    let row = client
        .query_one(
            "SELECT system_identifier, current_database()::text FROM pg_control_system()",
            &[],
        )
        .await?;
    // A bigint in PostgreSQL; an identifier is an unsigned 64-bit number.
    Ok((row.get::<_, i64>(0) as u64, row.get(1)))
}

impl Store {
    /// The database's identity: its cluster's system identifier and its name. A tier answers only
    /// for the database it was built from.
    pub async fn database_identity(&self) -> Result<(u64, String), StoreError> {
        let conn = self.conn().await?;
        identity(&conn.client).await
    }

    /// Every link, read at one snapshot and streamed into a tier [`Builder`] row by row: the
    /// rows are never all held at once, only what the file will hold. Runs on a maintenance
    /// connection, under the maintenance deadline.
    pub async fn tier_builder(&self) -> Result<Builder, StoreError> {
        self.bounded_maintenance(async {
            let mut client = self.maintenance_client().await?;
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            // The first statement fixes the transaction's snapshot: the same one the rows are
            // read at.
            let snapshot: String = tx
                .query_one("SELECT pg_current_snapshot()::text", &[])
                .await?
                .get(0);
            let (system_id, database) = identity(&tx).await?;
            let mut builder = Builder::new(Origin {
                system_id,
                database,
                built_at_us: chrono::Utc::now().timestamp_micros(),
                snapshot,
            });
            let rows = tx
                .query_raw(
                    LINKS,
                    std::iter::empty::<&(dyn tokio_postgres::types::ToSql + Sync)>(),
                )
                .await?;
            futures_util::pin_mut!(rows);
            while let Some(r) = rows.try_next().await? {
                builder
                    .push(LinkRef {
                        code: r.get(0),
                        url_id: r.get(1),
                        user_id: r.get(2),
                        target: r.get(3),
                        active: r.get(4),
                        expires_at_us: r.get(5),
                        expired_url: r.get(6),
                        redirect_status: r.get(7),
                        forward_query: r.get(8),
                        limited: r.get(9),
                    })
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
            }
            tx.commit().await?;
            Ok(builder)
        })
        .await
    }

    /// Which codes were changed by transactions that `since` (a snapshot from
    /// [`Store::tier_builder`] or an earlier answer) did not see, in one query.
    pub async fn links_changed_since(&self, since: &str) -> Result<Changes, StoreError> {
        let conn = self.conn().await?;
        changed_since(&conn.client, since).await
    }

    /// Forgets changes every snapshot newer than `oldest` has seen: those older than any tier
    /// still in use. Returns how many rows went.
    pub async fn prune_link_changes(&self, oldest: &str) -> Result<u64, StoreError> {
        let conn = self.conn().await?;
        Ok(conn
            .client
            .execute(
                "DELETE FROM link_changes WHERE xid < pg_snapshot_xmin($1::text::pg_snapshot)",
                &[&oldest],
            )
            .await?)
    }

    /// Forgets changes made more than `kept` ago (the maintenance pass, with [`CHANGES_KEPT`]).
    /// Returns how many rows went.
    pub async fn prune_old_link_changes(&self, kept: Duration) -> Result<u64, StoreError> {
        let conn = self.conn().await?;
        Ok(conn
            .client
            .execute(
                "DELETE FROM link_changes
                 WHERE changed_at < (now() AT TIME ZONE 'UTC') - make_interval(secs => $1)",
                &[&kept.as_secs_f64()],
            )
            .await?)
    }
}

/// [`Store::links_changed_since`], asked on `client` (the LISTEN connection catches up on its own).
pub async fn changed_since(
    client: &impl GenericClient,
    since: &str,
) -> Result<Changes, StoreError> {
    let row = client
        .query_one(
            "SELECT pg_current_snapshot()::text,
                    ARRAY(SELECT DISTINCT short_code FROM link_changes
                          WHERE xid >= pg_snapshot_xmin($1::text::pg_snapshot)
                            AND NOT pg_visible_in_snapshot(xid, $1::text::pg_snapshot))",
            &[&since],
        )
        .await
        .map_err(|e| match e.code() {
            Some(code) if code.code().starts_with("22") => {
                StoreError::Internal(format!("not a database snapshot: {since:?}"))
            }
            _ => e.into(),
        })?;
    let mut codes: BTreeSet<String> = row.get::<_, Vec<String>>(1).into_iter().collect();
    let everything = codes.remove(EVERY_LINK);
    Ok(Changes {
        codes,
        everything,
        snapshot: row.get(0),
    })
}
