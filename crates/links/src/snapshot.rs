//! The link snapshot: the cache's links written to disk as an rkyv archive, so a restarted replica
//! serves its first redirects without a query — and can serve them while the database is down.
//!
//! The file (`<data dir>/links.snapshot`) is a 64-byte header — magic, format version, payload
//! length, SHA-256 of the payload — followed by the rkyv archive of [`Snapshot`]. It is written to a
//! temporary file, synced and renamed over the old one, so a reader never sees half a file; on
//! start it is memory-mapped, its header and checksum checked and the archive validated (rkyv's
//! bytecheck) before anything in it is used. A file that fails any check is rejected with a log
//! line and the service starts cold.
//!
//! A link switched off after the snapshot was taken must never be served, so the snapshot is not
//! trusted blindly: when the database answers at start, [`reconcile`] compares every snapshot link
//! with its row in one query and drops the ones that changed, before the service takes traffic.
//! When the database is down at start the snapshot is served as it is (nothing better is known),
//! and the first LISTEN connection after the database returns clears the cache anyway (see
//! `cache::listen`), so nothing stale outlives the outage.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gitrev_core::model::LinkOptions;
use gitrev_store::clicks;
use gitrev_store::urls::{KnownLink, Link};
use gitrev_store::{Store, StoreError};
use rkyv::rancor;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::cache::{CachedLink, LinkCache};

const MAGIC: &[u8; 8] = b"GITREVLS";
/// 2: links carry their redirect options (a version-1 file is refused, and the replica starts
/// cold once).
const VERSION: u64 = 2;
/// Header bytes before the archive; a multiple of the archive's alignment.
const HEADER: usize = 64;

/// What the file holds.
#[derive(Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Snapshot {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub taken_at_ms: i64,
    pub links: Vec<SnapshotLink>,
}

/// One active link, as a redirect needs it.
#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SnapshotLink {
    pub code: String,
    pub url_id: i64,
    pub user_id: Option<i64>,
    /// The target as stored.
    pub target: String,
    /// `expires_at` in microseconds since the Unix epoch (UTC).
    pub expires_at: Option<i64>,
    pub expired_url: Option<String>,
    pub redirect_status: Option<i16>,
    pub forward_query: bool,
}

impl SnapshotLink {
    fn options(&self) -> LinkOptions {
        LinkOptions {
            expires_at: self.expires_at.map(clicks::micros_to_datetime),
            max_clicks: None,
            expired_url: self.expired_url.clone(),
            redirect_status: self.redirect_status,
            forward_query: self.forward_query,
            tags: Vec::new(),
        }
    }
}

/// Why a snapshot file was not used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0} is not a gitrev link snapshot (bad header)")]
    BadHeader(PathBuf),
    #[error("{0} is truncated or padded ({1} payload bytes announced, {2} present)")]
    BadLength(PathBuf, u64, usize),
    #[error("{0} is corrupt (checksum mismatch)")]
    BadChecksum(PathBuf),
    #[error("{0} does not hold a valid archive: {1}")]
    BadArchive(PathBuf, String),
}

/// The snapshot file in `data_dir`.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join("links.snapshot")
}

/// The links cached now, as a snapshot. Links with a `max_clicks` are left out: whether one is
/// used up is known only from the database, so they are loaded on their first redirect.
pub fn take(cache: &LinkCache) -> Snapshot {
    let links = cache
        .links()
        .filter(|link| !link.is_limited())
        .map(|link| {
            let options = link.options();
            SnapshotLink {
                code: link.short_code.to_string(),
                url_id: link.url_id,
                user_id: link.user_id,
                target: link.original_url().as_str().to_owned(),
                expires_at: options.expires_at.map(|at| at.and_utc().timestamp_micros()),
                expired_url: options.expired_url,
                redirect_status: options.redirect_status,
                forward_query: options.forward_query,
            }
        })
        .collect();
    Snapshot {
        taken_at_ms: chrono::Utc::now().timestamp_millis(),
        links,
    }
}

/// Writes `snapshot` to `path` atomically (temporary file, fsync, rename).
pub fn write(path: &Path, snapshot: &Snapshot) -> Result<(), SnapshotError> {
    let io = |e| SnapshotError::Io(path.to_owned(), e);
    let payload = rkyv::to_bytes::<rancor::Error>(snapshot)
        .map_err(|e| SnapshotError::BadArchive(path.to_owned(), e.to_string()))?;
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    header[24..56].copy_from_slice(&Sha256::digest(&payload));
    let tmp = path.with_extension("snapshot.tmp");
    let mut file = fs::File::create(&tmp).map_err(io)?;
    file.write_all(&header).map_err(io)?;
    file.write_all(&payload).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// Reads and checks the snapshot at `path`; `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<Snapshot>, SnapshotError> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SnapshotError::Io(path.to_owned(), e)),
    };
    // SAFETY: the file is this service's own, in its private data directory, and is only ever
    // replaced by rename, never written in place, so the mapped bytes do not change under us.
    let map =
        unsafe { memmap2::Mmap::map(&file) }.map_err(|e| SnapshotError::Io(path.to_owned(), e))?;
    let bytes: &[u8] = &map;
    if bytes.len() < HEADER || &bytes[..8] != MAGIC || bytes[8..16] != VERSION.to_le_bytes() {
        return Err(SnapshotError::BadHeader(path.to_owned()));
    }
    let announced = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let payload = &bytes[HEADER..];
    if announced != payload.len() as u64 {
        return Err(SnapshotError::BadLength(
            path.to_owned(),
            announced,
            payload.len(),
        ));
    }
    if Sha256::digest(payload).as_slice() != &bytes[24..56] {
        return Err(SnapshotError::BadChecksum(path.to_owned()));
    }
    // The mapping is page-aligned and the header a multiple of 16 bytes, so the archive is
    // aligned as rkyv requires.
    let archived = rkyv::access::<ArchivedSnapshot, rancor::Error>(payload)
        .map_err(|e| SnapshotError::BadArchive(path.to_owned(), e.to_string()))?;
    Ok(Some(Snapshot {
        taken_at_ms: archived.taken_at_ms.to_native(),
        links: archived
            .links
            .iter()
            .map(|l| SnapshotLink {
                code: l.code.as_str().to_owned(),
                url_id: l.url_id.to_native(),
                user_id: l.user_id.as_ref().map(|id| id.to_native()),
                target: l.target.as_str().to_owned(),
                expires_at: l.expires_at.as_ref().map(|at| at.to_native()),
                expired_url: l.expired_url.as_ref().map(|u| u.as_str().to_owned()),
                redirect_status: l.redirect_status.as_ref().map(|s| s.to_native()),
                forward_query: l.forward_query,
            })
            .collect(),
    }))
}

/// Reads the snapshot, logging (and otherwise ignoring) one that cannot be used.
pub fn load(path: &Path) -> Option<Snapshot> {
    match read(path) {
        Ok(Some(snapshot)) => {
            info!(links = snapshot.links.len(), path = %path.display(), "read the link snapshot");
            Some(snapshot)
        }
        Ok(None) => None,
        Err(err) => {
            warn!(error = %err, "link snapshot rejected; starting with a cold cache");
            None
        }
    }
}

/// The snapshot links whose row has not changed since (deleted, deactivated, retargeted,
/// re-owned), found in one query. On failure the links come back with the error, unchecked.
pub async fn reconcile(
    store: &Store,
    links: Vec<SnapshotLink>,
) -> Result<Vec<SnapshotLink>, (StoreError, Vec<SnapshotLink>)> {
    let options: Vec<LinkOptions> = links.iter().map(SnapshotLink::options).collect();
    let known: Vec<KnownLink<'_>> = links
        .iter()
        .zip(&options)
        .map(|(l, options)| KnownLink {
            code: &l.code,
            url_id: l.url_id,
            user_id: l.user_id,
            target: &l.target,
            options,
        })
        .collect();
    let stale = match store.stale_links(&known).await {
        Ok(stale) => stale,
        Err(err) => return Err((err, links)),
    };
    if !stale.is_empty() {
        info!(
            stale = stale.len(),
            "dropping links changed since the snapshot"
        );
    }
    Ok(links
        .into_iter()
        .filter(|l| !stale.contains(&l.code))
        .collect())
}

/// Puts `links` in the cache; returns how many went in.
pub async fn warm(cache: &LinkCache, links: &[SnapshotLink]) -> usize {
    let mut warmed = 0;
    for l in links {
        let link = Link {
            url_id: l.url_id,
            user_id: l.user_id,
            original_url: l.target.clone(),
            is_active: true,
            options: l.options(),
            clicks: 0,
        };
        if let Some(cached) = CachedLink::new(Arc::from(l.code.as_str()), &link, &cache.limits) {
            cache.insert(cached).await;
            warmed += 1;
        }
    }
    warmed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            taken_at_ms: 1_700_000_000_000,
            links: vec![
                SnapshotLink {
                    code: "abc123".into(),
                    url_id: 7,
                    user_id: Some(3),
                    target: "https://example.com/a?b=c".into(),
                    expires_at: None,
                    expired_url: None,
                    redirect_status: None,
                    forward_query: false,
                },
                SnapshotLink {
                    code: "custom-code".into(),
                    url_id: 8,
                    user_id: None,
                    target: "https://bücher.example/ä".into(),
                    expires_at: Some(1_800_000_000_000_000),
                    expired_url: Some("https://example.com/gone".into()),
                    redirect_status: Some(308),
                    forward_query: true,
                },
            ],
        }
    }

    #[test]
    fn a_written_snapshot_reads_back() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = path_in(dir.path());
        assert!(read(&path).expect("no file is fine").is_none());
        write(&path, &sample()).expect("writing");
        assert_eq!(read(&path).expect("reading"), Some(sample()));
    }

    #[test]
    fn damaged_files_are_rejected() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = path_in(dir.path());
        write(&path, &sample()).expect("writing");
        let good = fs::read(&path).expect("the file");

        fs::write(&path, &good[..good.len() - 3]).expect("truncating");
        assert!(matches!(read(&path), Err(SnapshotError::BadLength(..))));

        fs::write(&path, &good[..20]).expect("truncating into the header");
        assert!(matches!(read(&path), Err(SnapshotError::BadHeader(..))));

        let mut flipped = good.clone();
        let last = flipped.len() - 5;
        flipped[last] ^= 0x55;
        fs::write(&path, &flipped).expect("corrupting");
        assert!(matches!(read(&path), Err(SnapshotError::BadChecksum(..))));

        // A payload whose checksum matches but which is no archive of ours.
        let junk = vec![0xAB_u8; 48];
        let mut forged = good[..HEADER].to_vec();
        forged[16..24].copy_from_slice(&(junk.len() as u64).to_le_bytes());
        forged[24..56].copy_from_slice(&Sha256::digest(&junk));
        forged.extend_from_slice(&junk);
        fs::write(&path, &forged).expect("forging");
        assert!(matches!(read(&path), Err(SnapshotError::BadArchive(..))));

        fs::write(&path, b"not a snapshot at all, just text").expect("garbage");
        assert!(matches!(read(&path), Err(SnapshotError::BadHeader(..))));
        assert!(load(&path).is_none(), "load logs and starts cold");
    }
}
