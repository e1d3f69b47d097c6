//! The link tier: every link of the database in one file, memory-mapped and looked up by code,
//! costing the serving process no heap (issue #12).
//!
//! The file is a 64-byte header (magic, format version, payload length, xxh3-64 of the payload)
//! followed by an rkyv archive of [`Data`]:
//!
//! - `records`: one fixed-size [`Record`] per link (48 bytes: ids, expiry, status, flags, and where
//!   its code, target and fallback sit in `text`);
//! - `fingerprints`: 32 bits of each code's xxh3 hash, in record order;
//! - `starts`: a bucket index over the top bits of the same hash, about eight links per bucket.
//!   Records are sorted by (bucket, fingerprint), so a lookup reads one `starts` pair, scans the
//!   bucket's fingerprints (one cache line) and only then touches a record and its text. A code
//!   that is not there usually costs two cache lines and no record;
//! - `text`: each link's code, target and fallback URL, back to back.
//!
//! That is 48 + 4 + 0.5 bytes per link plus the text. The file is checked once when it is opened
//! (header, length, checksum, rkyv's bytecheck, the index's invariants) and never written in place:
//! a new tier is written beside it and renamed over it, so a mapping never changes under a reader.
//! Every lookup still bounds-checks what it slices, so even a file that passed the checks with
//! wrong contents could only give a wrong answer, never read outside the mapping.
//!
//! The tier also records where it came from (the database's system identifier and name) and the
//! database snapshot it was read at, for the service to decide whether to trust it.

use std::fs;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rkyv::rancor;
use rkyv::ser::writer::IoWriter;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// The tier's file name in a data directory.
pub const FILE_NAME: &str = "links.tier";

const MAGIC: &[u8; 8] = b"GITREVTR";
const VERSION: u64 = 1;
/// Header bytes before the archive: a multiple of the archive's alignment.
const HEADER: usize = 64;
/// Links per bucket of the index, on average (a bucket's fingerprints fit one cache line).
const BUCKET_LINKS: usize = 8;
/// The longest code a record can hold (its length is one byte).
pub const MAX_CODE_BYTES: usize = u8::MAX as usize;

const ACTIVE: u8 = 1;
const FORWARD_QUERY: u8 = 2;
const LIMITED: u8 = 4;
const HAS_EXPIRED_URL: u8 = 8;
const HAS_USER: u8 = 16;
const HAS_EXPIRY: u8 = 32;
const HAS_STATUS: u8 = 64;

/// One link as the builder is given it: what a redirect decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub code: String,
    pub url_id: i64,
    pub user_id: Option<i64>,
    /// The target as stored.
    pub target: String,
    pub active: bool,
    /// `expires_at` in microseconds since the Unix epoch (UTC).
    pub expires_at_us: Option<i64>,
    pub expired_url: Option<String>,
    pub redirect_status: Option<i16>,
    pub forward_query: bool,
    /// `max_clicks` is set: whether the link is used up is only known from the database.
    pub limited: bool,
}

/// A link borrowed: as found in the tier (from the mapping), or as given to a [`Builder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkRef<'a> {
    pub code: &'a str,
    pub url_id: i64,
    pub user_id: Option<i64>,
    pub target: &'a str,
    pub active: bool,
    pub expires_at_us: Option<i64>,
    pub expired_url: Option<&'a str>,
    pub redirect_status: Option<i16>,
    pub forward_query: bool,
    pub limited: bool,
}

impl Link {
    pub fn as_ref(&self) -> LinkRef<'_> {
        LinkRef {
            code: &self.code,
            url_id: self.url_id,
            user_id: self.user_id,
            target: &self.target,
            active: self.active,
            expires_at_us: self.expires_at_us,
            expired_url: self.expired_url.as_deref(),
            redirect_status: self.redirect_status,
            forward_query: self.forward_query,
            limited: self.limited,
        }
    }
}

impl LinkRef<'_> {
    /// The owned [`Link`] this was built from.
    pub fn to_link(&self) -> Link {
        Link {
            code: self.code.to_owned(),
            url_id: self.url_id,
            user_id: self.user_id,
            target: self.target.to_owned(),
            active: self.active,
            expires_at_us: self.expires_at_us,
            expired_url: self.expired_url.map(str::to_owned),
            redirect_status: self.redirect_status,
            forward_query: self.forward_query,
            limited: self.limited,
        }
    }
}

/// Where a tier was built from, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The database cluster's system identifier (`pg_control_system()`).
    pub system_id: u64,
    /// The database's name.
    pub database: String,
    /// Microseconds since the Unix epoch.
    pub built_at_us: i64,
    /// The database snapshot the build read at (`pg_current_snapshot()` as text): a change made
    /// by a transaction this snapshot does not see is newer than the tier.
    pub snapshot: String,
}

/// The archived payload.
#[derive(rkyv::Archive, rkyv::Serialize)]
struct Data {
    system_id: u64,
    database: String,
    built_at_us: i64,
    snapshot: String,
    /// `starts` has `2^bucket_bits + 1` entries.
    bucket_bits: u32,
    starts: Vec<u32>,
    fingerprints: Vec<u32>,
    records: Vec<Record>,
    text: Vec<u8>,
}

/// One link: 48 bytes archived.
#[derive(rkyv::Archive, rkyv::Serialize)]
struct Record {
    url_id: i64,
    user_id: i64,
    expires_at_us: i64,
    /// Where the code starts in `text`; the target follows it, then the fallback URL.
    text_at: u64,
    target_len: u32,
    expired_len: u32,
    redirect_status: i16,
    code_len: u8,
    flags: u8,
}

/// Why a tier could not be built or opened.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0} is not a gitrev link tier (bad header or format version)")]
    BadHeader(PathBuf),
    #[error("{0} is truncated or padded ({1} payload bytes announced, {2} present)")]
    BadLength(PathBuf, u64, usize),
    #[error("{0} is corrupt (checksum mismatch)")]
    BadChecksum(PathBuf),
    #[error("{0} does not hold a valid tier: {1}")]
    BadArchive(PathBuf, String),
    #[error("the code {0:?} is given twice")]
    DuplicateCode(String),
    #[error("the code {0:?} is longer than {MAX_CODE_BYTES} bytes")]
    LongCode(String),
    #[error("the link {0:?} holds more than 4 GiB of text")]
    LongText(String),
    #[error("too many links for one tier ({0})")]
    TooMany(usize),
}

/// What a build produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Built {
    pub links: usize,
    pub file_bytes: u64,
    /// The bytes of targets and fallback URLs (everything else is the per-link cost).
    pub url_text_bytes: u64,
}

impl Built {
    /// File bytes per link beyond the text of its target and fallback URL.
    pub fn bytes_per_link(&self) -> f64 {
        (self.file_bytes - self.url_text_bytes) as f64 / self.links.max(1) as f64
    }
}

fn bucket_bits_for(links: usize) -> u32 {
    let buckets = links.div_ceil(BUCKET_LINKS).max(1);
    buckets.next_power_of_two().trailing_zeros()
}

fn bucket_of(hash: u64, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        (hash >> (64 - bits)) as usize
    }
}

fn hash(code: &[u8]) -> u64 {
    xxh3_64(code)
}

/// The file's bytes for `links` (any order; codes unique).
pub fn build(origin: &Origin, links: Vec<Link>) -> Result<(Vec<u8>, Built), TierError> {
    Builder::with_links(origin, links)?.into_bytes()
}

/// Builds the tier from `links` and writes it to `path` (see [`Builder::write`]).
pub fn write(path: &Path, origin: &Origin, links: Vec<Link>) -> Result<Built, TierError> {
    Builder::with_links(origin, links)?.write(path)
}

/// A tier being built, one link at a time, holding only what the file will hold: a record per
/// link (48 bytes) and the text, so that reading ten million links from the database never
/// holds them as rows or strings. [`Builder::write`] sorts the records in place and streams the
/// archive to the file.
pub struct Builder {
    origin: Origin,
    records: Vec<Record>,
    text: Vec<u8>,
    url_text_bytes: u64,
}

impl Builder {
    pub fn new(origin: Origin) -> Builder {
        Builder {
            origin,
            records: Vec::new(),
            text: Vec::new(),
            url_text_bytes: 0,
        }
    }

    /// A builder holding `links` (dropped once copied in).
    fn with_links(origin: &Origin, links: Vec<Link>) -> Result<Builder, TierError> {
        let mut builder = Builder::new(origin.clone());
        for link in &links {
            builder.push(link.as_ref())?;
        }
        Ok(builder)
    }

    /// Adds a link (any order; a code given twice fails the build).
    pub fn push(&mut self, link: LinkRef<'_>) -> Result<(), TierError> {
        if self.records.len() >= u32::MAX as usize - 1 {
            return Err(TierError::TooMany(self.records.len() + 1));
        }
        self.records.push(record(&link, &mut self.text)?);
        self.url_text_bytes += (link.target.len() + link.expired_url.map_or(0, str::len)) as u64;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Sorts the records by (bucket, fingerprint, code), checks the codes are unique, and makes
    /// the index.
    fn into_data(self) -> Result<(Data, u64), TierError> {
        let Builder {
            origin,
            mut records,
            text,
            url_text_bytes,
        } = self;
        let bits = bucket_bits_for(records.len());
        let code = |r: &Record| &text[r.text_at as usize..r.text_at as usize + r.code_len as usize];
        // The hash of each record's code, beside its index: 16 bytes a link while sorting.
        let mut order: Vec<(u64, u32)> = records
            .iter()
            .enumerate()
            .map(|(i, r)| (hash(code(r)), i as u32))
            .collect();
        let key = |&(h, i): &(u64, u32)| (bucket_of(h, bits), h as u32, code(&records[i as usize]));
        order.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
        if let Some(w) = order.windows(2).find(|w| key(&w[0]) == key(&w[1])) {
            let twice = String::from_utf8_lossy(code(&records[w[0].1 as usize])).into_owned();
            return Err(TierError::DuplicateCode(twice));
        }
        let buckets = 1usize << bits;
        let mut starts = vec![0u32; buckets + 1];
        for &(h, _) in &order {
            starts[bucket_of(h, bits) + 1] += 1;
        }
        for b in 0..buckets {
            starts[b + 1] += starts[b];
        }
        let fingerprints = order.iter().map(|&(h, _)| h as u32).collect();
        // Puts the records in that order in place, following each cycle of the permutation.
        let mut placed: Vec<u32> = order.into_iter().map(|(_, i)| i).collect();
        for start in 0..placed.len() {
            let mut at = start;
            while placed[at] as usize != start {
                let from = placed[at] as usize;
                records.swap(at, from);
                placed[at] = at as u32;
                at = from;
            }
            placed[at] = at as u32;
        }
        let data = Data {
            system_id: origin.system_id,
            database: origin.database,
            built_at_us: origin.built_at_us,
            snapshot: origin.snapshot,
            bucket_bits: bits,
            starts,
            fingerprints,
            records,
            text,
        };
        Ok((data, url_text_bytes))
    }

    /// The file's bytes.
    pub fn into_bytes(self) -> Result<(Vec<u8>, Built), TierError> {
        let (data, url_text_bytes) = self.into_data()?;
        let mut out = Hashing::new(vec![0u8; HEADER]);
        serialize(&data, &mut out, Path::new(""))?;
        let (mut bytes, payload_len, checksum) = out.finish();
        bytes[..HEADER].copy_from_slice(&header(payload_len, checksum));
        let built = Built {
            links: data.records.len(),
            file_bytes: bytes.len() as u64,
            url_text_bytes,
        };
        Ok((bytes, built))
    }

    /// Writes the tier to `path` atomically (a temporary file beside it, fsync, rename), so a
    /// process that has the old one mapped keeps reading the old one. The archive goes straight
    /// to the file: nothing but the records and the text is held in memory.
    ///
    /// A write that fails removes its temporary file: a tier's size of disk (a gigabyte at ten
    /// million links) is not left behind, least of all when the disk filled up.
    pub fn write(self, path: &Path) -> Result<Built, TierError> {
        let tmp = temporary_path(path);
        let written = self.write_via(path, &tmp);
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    fn write_via(self, path: &Path, tmp: &Path) -> Result<Built, TierError> {
        let io = |e| TierError::Io(path.to_owned(), e);
        let (data, url_text_bytes) = self.into_data()?;
        let mut file = fs::File::create(tmp).map_err(io)?;
        // The header's place, filled in once the payload's length and checksum are known.
        file.write_all(&[0u8; HEADER]).map_err(io)?;
        let mut out = Hashing::new(std::io::BufWriter::with_capacity(1 << 20, file));
        serialize(&data, &mut out, path)?;
        let (buffered, payload_len, checksum) = out.finish();
        let mut file = buffered.into_inner().map_err(|e| io(e.into_error()))?;
        file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&header(payload_len, checksum)).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(tmp, path).map_err(io)?;
        Ok(Built {
            links: data.records.len(),
            file_bytes: HEADER as u64 + payload_len,
            url_text_bytes,
        })
    }
}

/// Where [`Builder::write`] writes the tier for `path` before renaming it over `path`. A writer
/// killed meanwhile leaves it behind; whoever runs the writer removes it (see the service's
/// rebuilds).
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Archives `data` into `out` (the payload, after the header).
fn serialize<W: Write>(data: &Data, out: &mut Hashing<W>, path: &Path) -> Result<(), TierError> {
    rkyv::api::high::to_bytes_in::<_, rancor::Error>(data, IoWriter::new(out))
        .map_err(|e| TierError::BadArchive(path.to_owned(), e.to_string()))?;
    Ok(())
}

fn header(payload_len: u64, checksum: u64) -> [u8; HEADER] {
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&payload_len.to_le_bytes());
    header[24..32].copy_from_slice(&checksum.to_le_bytes());
    header
}

/// A writer that hashes and counts what goes through it (the payload's checksum and length).
struct Hashing<W> {
    inner: W,
    hasher: Xxh3,
    len: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            hasher: Xxh3::new(),
            len: 0,
        }
    }

    /// The writer, the bytes written through it and their xxh3-64.
    fn finish(self) -> (W, u64, u64) {
        (self.inner, self.len, self.hasher.digest())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn record(link: &LinkRef<'_>, text: &mut Vec<u8>) -> Result<Record, TierError> {
    if link.code.len() > MAX_CODE_BYTES {
        return Err(TierError::LongCode(link.code.to_owned()));
    }
    let expired = link.expired_url.unwrap_or("");
    let long = || TierError::LongText(link.code.to_owned());
    let target_len = u32::try_from(link.target.len()).map_err(|_| long())?;
    let expired_len = u32::try_from(expired.len()).map_err(|_| long())?;
    let text_at = text.len() as u64;
    text.extend_from_slice(link.code.as_bytes());
    text.extend_from_slice(link.target.as_bytes());
    text.extend_from_slice(expired.as_bytes());
    let flag = |on: bool, bit: u8| if on { bit } else { 0 };
    Ok(Record {
        url_id: link.url_id,
        user_id: link.user_id.unwrap_or(0),
        expires_at_us: link.expires_at_us.unwrap_or(0),
        text_at,
        target_len,
        expired_len,
        redirect_status: link.redirect_status.unwrap_or(0),
        code_len: link.code.len() as u8,
        flags: flag(link.active, ACTIVE)
            | flag(link.forward_query, FORWARD_QUERY)
            | flag(link.limited, LIMITED)
            | flag(link.expired_url.is_some(), HAS_EXPIRED_URL)
            | flag(link.user_id.is_some(), HAS_USER)
            | flag(link.expires_at_us.is_some(), HAS_EXPIRY)
            | flag(link.redirect_status.is_some(), HAS_STATUS),
    })
}

/// An opened, checked tier.
pub struct Tier {
    map: Mmap,
    path: PathBuf,
}

impl std::fmt::Debug for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tier")
            .field("path", &self.path)
            .field("links", &self.len())
            .finish()
    }
}

impl Tier {
    /// Maps and checks the tier at `path`; `Ok(None)` when there is none.
    pub fn open(path: &Path) -> Result<Option<Tier>, TierError> {
        let file = match fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(TierError::Io(path.to_owned(), e)),
        };
        // SAFETY: the tier is this service's own file in its private data directory, only ever
        // replaced by rename and never written in place, so the mapped bytes do not change.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| TierError::Io(path.to_owned(), e))?;
        check(&map, path)?;
        Ok(Some(Tier {
            map,
            path: path.to_owned(),
        }))
    }

    fn data(&self) -> &ArchivedData {
        // SAFETY: `open` validated these bytes as an `ArchivedData` (rkyv's bytecheck) and the
        // mapping is immutable for the life of `self`.
        unsafe { rkyv::access_unchecked::<ArchivedData>(&self.map[HEADER..]) }
    }

    pub fn len(&self) -> usize {
        self.data().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file's size in bytes.
    pub fn file_bytes(&self) -> usize {
        self.map.len()
    }

    pub fn origin(&self) -> Origin {
        let d = self.data();
        Origin {
            system_id: d.system_id.to_native(),
            database: d.database.as_str().to_owned(),
            built_at_us: d.built_at_us.to_native(),
            snapshot: d.snapshot.as_str().to_owned(),
        }
    }

    /// Whether the tier was built from this database (its cluster's system identifier and name).
    pub fn is_from(&self, system_id: u64, database: &str) -> bool {
        let d = self.data();
        d.system_id.to_native() == system_id && d.database.as_str() == database
    }

    /// The link with this code, if the tier holds it.
    pub fn get(&self, code: &str) -> Option<LinkRef<'_>> {
        let d = self.data();
        let h = hash(code.as_bytes());
        let bucket = bucket_of(h, d.bucket_bits.to_native());
        let lo = d.starts.get(bucket)?.to_native() as usize;
        let hi = d.starts.get(bucket + 1)?.to_native() as usize;
        let fp = h as u32;
        let fingerprints = d.fingerprints.get(lo..hi)?;
        for (i, candidate) in fingerprints.iter().enumerate() {
            let candidate = candidate.to_native();
            if candidate < fp {
                continue;
            }
            if candidate > fp {
                return None;
            }
            let found = found(d, d.records.get(lo + i)?)?;
            if found.code == code {
                return Some(found);
            }
        }
        None
    }

    /// Every link, in the tier's order.
    pub fn iter(&self) -> impl Iterator<Item = LinkRef<'_>> + '_ {
        let d = self.data();
        d.records.iter().filter_map(move |r| found(d, r))
    }
}

fn found<'a>(d: &'a ArchivedData, r: &'a ArchivedRecord) -> Option<LinkRef<'a>> {
    let at = usize::try_from(r.text_at.to_native()).ok()?;
    let code_end = at.checked_add(r.code_len as usize)?;
    let target_end = code_end.checked_add(r.target_len.to_native() as usize)?;
    let expired_end = target_end.checked_add(r.expired_len.to_native() as usize)?;
    let text = d.text.as_slice();
    let str_at = |a: usize, b: usize| std::str::from_utf8(text.get(a..b)?).ok();
    let flags = r.flags;
    let has = |bit: u8| flags & bit != 0;
    Some(LinkRef {
        code: str_at(at, code_end)?,
        url_id: r.url_id.to_native(),
        user_id: has(HAS_USER).then(|| r.user_id.to_native()),
        target: str_at(code_end, target_end)?,
        active: has(ACTIVE),
        expires_at_us: has(HAS_EXPIRY).then(|| r.expires_at_us.to_native()),
        expired_url: if has(HAS_EXPIRED_URL) {
            Some(str_at(target_end, expired_end)?)
        } else {
            None
        },
        redirect_status: has(HAS_STATUS).then(|| r.redirect_status.to_native()),
        forward_query: has(FORWARD_QUERY),
        limited: has(LIMITED),
    })
}

/// The checks `Tier::open` makes before anything in the file is used.
fn check(bytes: &[u8], path: &Path) -> Result<(), TierError> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC || bytes[8..16] != VERSION.to_le_bytes() {
        return Err(TierError::BadHeader(path.to_owned()));
    }
    let announced = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let payload = &bytes[HEADER..];
    if announced != payload.len() as u64 {
        return Err(TierError::BadLength(
            path.to_owned(),
            announced,
            payload.len(),
        ));
    }
    if xxh3_64(payload).to_le_bytes() != bytes[24..32] {
        return Err(TierError::BadChecksum(path.to_owned()));
    }
    // The mapping is page-aligned and the header a multiple of 16 bytes, so the archive is
    // aligned as rkyv requires.
    let bad = |why: String| TierError::BadArchive(path.to_owned(), why);
    let d = rkyv::access::<ArchivedData, rancor::Error>(payload).map_err(|e| bad(e.to_string()))?;
    let bits = d.bucket_bits.to_native();
    if bits > 32 || d.starts.len() != (1usize << bits) + 1 {
        return Err(bad(format!(
            "{} bucket starts for {bits} bits",
            d.starts.len()
        )));
    }
    let n = d.records.len();
    if d.fingerprints.len() != n {
        return Err(bad(format!(
            "{} fingerprints for {n} records",
            d.fingerprints.len()
        )));
    }
    let starts = d.starts.as_slice();
    if starts[0].to_native() != 0
        || starts[starts.len() - 1].to_native() as usize != n
        || starts
            .windows(2)
            .any(|w| w[0].to_native() > w[1].to_native())
    {
        return Err(bad("the bucket index is out of order".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
