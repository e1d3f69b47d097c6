//! The service's link tier (issue #12): opened at start, rebuilt in the background.
//!
//! The file is `GITREV_DATA_DIR/links.tier`. At start it is opened and checked (a file that fails
//! its checks is logged and left for the rebuild to replace; the service serves from the database
//! meanwhile). It is not trusted until the LISTEN task has checked that it was built from this
//! database and read what changed since (`gitrev_links::cache::listen`).
//!
//! A rebuild runs `gitrev build-tier` in a process of its own: reading every link takes memory in
//! proportion to the links (866 MB peak for a million), which a child process gives back to the
//! system when it exits, where the serving process's allocator would keep it. The child writes
//! the new file beside the old one and renames it over; the serving process keeps the old file
//! mapped until it swaps the new one in, so it never pauses.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use gitrev_links::tier::TierState;
use gitrev_store::Store;
use gitrev_tier::Tier;
use tokio::sync::watch;
use tracing::{info, warn};

/// How often the rebuild task looks at the tier.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// The longest a failed rebuild waits before the next try (it starts at [`CHECK_EVERY`] and
/// doubles).
const RETRY_AT_MOST: Duration = Duration::from_secs(600);

/// The tier file in `data_dir`.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(gitrev_tier::FILE_NAME)
}

/// The tier in `data_dir` as a state the cache can use: empty when there is no file or the file
/// is refused (logged).
pub async fn open(data_dir: &Path) -> TierState {
    let path = path_in(data_dir);
    let shown = path.display().to_string();
    match tokio::task::spawn_blocking(move || Tier::open(&path)).await {
        Ok(Ok(Some(tier))) => {
            info!(path = %shown, links = tier.len(), "link tier opened");
            TierState::with_tier(tier)
        }
        Ok(Ok(None)) => TierState::default(),
        Ok(Err(err)) => {
            warn!(path = %shown, error = %err, "the link tier is refused; serving from the database until it is rebuilt");
            TierState::default()
        }
        Err(err) => {
            warn!(error = %err, "opening the link tier failed");
            TierState::default()
        }
    }
}

/// When the rebuild task rebuilds.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub every: Duration,
    pub max_changed: usize,
}

/// Whether the tier described by `status` is due for a rebuild at `now_us`.
fn due(status: &gitrev_links::tier::Status, schedule: &Schedule, now_us: i64) -> bool {
    match &status.origin {
        None => true,
        Some(origin) => {
            status.changed >= schedule.max_changed
                || now_us.saturating_sub(origin.built_at_us) >= schedule.every.as_micros() as i64
        }
    }
}

/// Removes a rebuild's temporary file if one is there (logged: it means a rebuild did not finish).
fn remove_leftover(tmp: &Path) {
    match std::fs::remove_file(tmp) {
        Ok(()) => info!(path = %tmp.display(), "removed an unfinished tier rebuild's file"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            warn!(path = %tmp.display(), error = %err, "cannot remove an unfinished tier rebuild's file")
        }
    }
}

/// The tier's gauges (brought up to date every [`CHECK_EVERY`] and after a rebuild).
fn show(metrics: &gitrev_telemetry::Metrics, status: &gitrev_links::tier::Status) {
    metrics.tier_links.set(status.links as i64);
    metrics.tier_changed.set(status.changed as i64);
    metrics.tier_trusted.set(i64::from(status.trusted));
}

/// Rebuilds the tier whenever it is due (none yet, too many changes, too old), until `stop`.
pub async fn keep(
    tier: std::sync::Arc<TierState>,
    metrics: std::sync::Arc<gitrev_telemetry::Metrics>,
    store: Store,
    database_url: String,
    data_dir: PathBuf,
    schedule: Schedule,
    mut stop: watch::Receiver<bool>,
) {
    // A schedule shorter than the check looks as often as it asks.
    let check = CHECK_EVERY.min(schedule.every);
    // How long to wait after the next failure: `check`, doubling to RETRY_AT_MOST.
    let mut backoff = check;
    // A rebuild that did not finish (killed with a process stopped hard, or at a stop, below)
    // leaves the child's temporary file: a tier's size of disk.
    let leftover = gitrev_tier::temporary_path(&path_in(&data_dir));
    remove_leftover(&leftover);
    loop {
        let status = tier.status();
        show(&metrics, &status);
        let mut pause = check;
        if due(&status, &schedule, chrono::Utc::now().timestamp_micros()) {
            let rebuilt = tokio::select! {
                rebuilt = rebuild(&tier, &store, &database_url, &data_dir) => rebuilt,
                _ = stop.wait_for(|stopping| *stopping) => {
                    // Dropping the rebuild killed the child (`kill_on_drop`).
                    tier.rebuild_failed();
                    remove_leftover(&leftover);
                    return;
                }
            };
            let result = if rebuilt.is_ok() { "ok" } else { "failed" };
            metrics.tier_rebuilds.with_label_values(&[result]).inc();
            match rebuilt {
                Ok(()) => {
                    show(&metrics, &tier.status());
                    backoff = check;
                }
                Err(err) => {
                    remove_leftover(&leftover);
                    pause = backoff;
                    backoff = (backoff * 2).min(RETRY_AT_MOST);
                    warn!(error = format!("{err:#}"), retry_in = ?pause, "could not rebuild the link tier");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// One rebuild: the child writes the file; this process opens it, checks it is this database's,
/// reads what changed since its snapshot and swaps it in.
async fn rebuild(
    tier: &TierState,
    store: &Store,
    database_url: &str,
    data_dir: &Path,
) -> anyhow::Result<()> {
    tier.rebuild_begins();
    let result = async {
        let path = path_in(data_dir);
        let started = std::time::Instant::now();
        let exe = std::env::current_exe().context("finding the gitrev executable")?;
        let status = tokio::process::Command::new(exe)
            .arg("build-tier")
            .arg("--out")
            .arg(&path)
            .env("DATABASE_URL", database_url)
            .env_remove("GITREV_READY_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .context("running gitrev build-tier")?;
        if !status.success() {
            bail!("gitrev build-tier failed ({status})");
        }
        let opened = path.clone();
        let new = tokio::task::spawn_blocking(move || Tier::open(&opened))
            .await??
            .with_context(|| format!("{} is missing after the rebuild", path.display()))?;
        let (system_id, database) = store.database_identity().await?;
        if !new.is_from(system_id, &database) {
            bail!("the rebuilt tier is not this database's");
        }
        let changes = store.links_changed_since(&new.origin().snapshot).await?;
        info!(
            links = new.len(),
            changed_since = changes.codes.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "link tier rebuilt"
        );
        Ok((new, changes))
    }
    .await;
    match result {
        Ok((new, changes)) => {
            tier.rebuilt(new, &changes);
            Ok(())
        }
        Err(err) => {
            tier.rebuild_failed();
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitrev_links::tier::Status;
    use gitrev_tier::Origin;

    fn status(built_at_us: Option<i64>, changed: usize) -> Status {
        Status {
            origin: built_at_us.map(|built_at_us| Origin {
                system_id: 1,
                database: "gitrev".into(),
                built_at_us,
                snapshot: "1:1:".into(),
            }),
            links: 10,
            changed,
            trusted: true,
        }
    }

    #[test]
    fn a_tier_is_rebuilt_when_missing_too_changed_or_too_old() {
        let schedule = Schedule {
            every: Duration::from_secs(60),
            max_changed: 100,
        };
        let now = 1_000_000_000_000;
        assert!(due(&status(None, 0), &schedule, now), "no tier");
        assert!(!due(&status(Some(now - 59_000_000), 99), &schedule, now));
        assert!(due(&status(Some(now - 59_000_000), 100), &schedule, now));
        assert!(due(&status(Some(now - 60_000_000), 0), &schedule, now));
    }
}
