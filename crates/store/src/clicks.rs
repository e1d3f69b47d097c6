//! Clicks: the narrow, day-partitioned click log, its two dictionaries and its rollups.
//!
//! A batch of clicks is written in one transaction: the batch's marker (so a batch retried after a
//! lost commit is not written twice), its clicks by binary `COPY` as runs (one row per link
//! version and day, up to [`RUN_CLICKS`] clicks each: see [`Run`]), and the rollups (`url_stats`,
//! `click_hours`, `click_breakdowns`) computed here from the batch, one upsert statement for all.
//! What repeats (link versions, user agents and referrers with their classification) is resolved
//! to dictionary ids before the transaction, mostly from memory.
//!
//! Nothing here counts raw clicks to answer a request: stats, timeseries and breakdowns read the
//! rollups. See docs/decisions.md ("Click storage") for the layout and what it was measured against.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration as Span, NaiveDate, NaiveDateTime};
use futures_util::pin_mut;
use gitrev_classify::classifier;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, GenericClient, Statement};
use tracing::info;

use super::urls::ClickTarget;
use super::{Store, StoreError};

/// A click to record, from any source: a redirect, `POST /events`, an import, or an old `events`
/// row being moved. Kept compact (it may wait in a queue of 100k): a redirect's code and target
/// are shared with the cache entry.
#[derive(Clone, Debug)]
pub struct Click {
    pub url_id: i64,
    pub user_id: Option<i64>,
    /// When it happened: microseconds since the Unix epoch, UTC.
    pub at: i64,
    /// The code and target it went through (a posted click has neither).
    pub short_code: Option<Arc<str>>,
    pub original_url: Option<ClickTarget>,
    pub referrer: Option<Box<str>>,
    pub user_agent: Option<Box<str>>,
    /// A posted or imported click's own id and the rest of its `details`.
    pub extra: Option<Box<ClickExtra>>,
    /// It took one of its url's `max_clicks` on this replica (a redirect's click): the click
    /// writer tells the replica's limits when it is written or lost.
    pub limited: bool,
}

#[derive(Clone, Debug, Default)]
pub struct ClickExtra {
    pub id: Option<i64>,
    /// `details` without the keys stored in their own columns.
    pub details: Map<String, Value>,
}

/// Now, as a click's `at`.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

pub fn micros_to_datetime(micros: i64) -> NaiveDateTime {
    DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .naive_utc()
}

pub fn datetime_to_micros(at: NaiveDateTime) -> i64 {
    at.and_utc().timestamp_micros()
}

impl Click {
    /// A click given as an event's `details` (posted, imported or moved from `events`):
    /// `short_code`, `original_url`, `referrer` and `user_agent`, when they are strings, go to
    /// their own columns; every other key is kept as given.
    pub fn from_details(
        url_id: i64,
        user_id: Option<i64>,
        at: NaiveDateTime,
        id: Option<i64>,
        mut details: Map<String, Value>,
    ) -> Click {
        let mut text = |key: &str| match details.get(key) {
            Some(Value::String(_)) => match details.remove(key) {
                Some(Value::String(s)) => Some(s.into_boxed_str()),
                _ => None,
            },
            _ => None,
        };
        let referrer = text("referrer");
        let user_agent = text("user_agent");
        let short_code = text("short_code").map(Arc::from);
        let original_url = text("original_url").map(|t| ClickTarget::Stored(Arc::from(t)));
        // `bot` is always the classification; a posted one is not kept.
        details.remove("bot");
        Click {
            url_id,
            user_id,
            at: datetime_to_micros(at),
            short_code,
            original_url,
            referrer,
            user_agent,
            extra: Some(Box::new(ClickExtra { id, details })),
            limited: false,
        }
    }

    fn id(&self) -> Option<i64> {
        self.extra.as_ref().and_then(|e| e.id)
    }
}

/// How a context (user agent, referrer) was classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    pub bot: bool,
    pub browser: Arc<str>,
    pub os: Arc<str>,
    pub device: Arc<str>,
    pub referrer_host: Arc<str>,
}

/// The dictionary ids already known to this process. Bounded: cleared when full (a miss costs one
/// statement per batch for all of its misses, and the rows stay in the database).
#[derive(Default)]
pub struct Dictionaries {
    /// By url and [`fingerprint`] of the rest of a link version: 16 bytes a link instead of its
    /// texts, and no allocation per lookup.
    links: Mutex<HashMap<(i64, u64), i32>>,
    contexts: Mutex<ContextCache>,
}

const DICTIONARY_CAP: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct LinkKey {
    url_id: i64,
    user_id: Option<i64>,
    short_code: Option<Arc<str>>,
    original_url: Option<Box<str>>,
}

/// Contexts by user agent, then referrer (absent: [`ABSENT`], which no header value can be): a
/// lookup borrows the click's own text. Only clicks without `extra` details are cached (a posted
/// click's details are rare and may be large).
/// A context's dictionary id and classification.
type Resolved = (i32, Arc<Classified>);

#[derive(Default)]
struct ContextCache {
    by_agent: HashMap<Box<str>, HashMap<Box<str>, Resolved>>,
    len: usize,
}

const ABSENT: &str = "\0";

impl ContextCache {
    fn get(&self, agent: Option<&str>, referrer: Option<&str>) -> Option<&(i32, Arc<Classified>)> {
        self.by_agent
            .get(agent.unwrap_or(ABSENT))?
            .get(referrer.unwrap_or(ABSENT))
    }

    fn insert(
        &mut self,
        agent: Option<&str>,
        referrer: Option<&str>,
        value: (i32, Arc<Classified>),
    ) {
        if self.len >= DICTIONARY_CAP {
            self.by_agent.clear();
            self.len = 0;
        }
        let previous = self
            .by_agent
            .entry(agent.unwrap_or(ABSENT).into())
            .or_default()
            .insert(referrer.unwrap_or(ABSENT).into(), value);
        if previous.is_none() {
            self.len += 1;
        }
    }
}

impl LinkKey {
    /// Where the dictionary in memory keeps this link version's id.
    fn slot(&self) -> (i64, u64) {
        let fingerprint = fingerprint(
            self.user_id,
            self.short_code.as_deref(),
            self.original_url.as_deref(),
        );
        (self.url_id, fingerprint)
    }

    /// Where the dictionary in memory keeps the id of the link version `click` went through.
    fn slot_of(click: &Click) -> (i64, u64) {
        let fingerprint = fingerprint(
            click.user_id,
            click.short_code.as_deref(),
            click.original_url.as_ref().map(ClickTarget::as_str),
        );
        (click.url_id, fingerprint)
    }
}

/// A link version's fields beside its url, hashed (xxh3, 64 bits). The dictionary in memory keys
/// on (url, this) rather than holding the texts. Two versions of one url (a url has a few: one per
/// change of its code, target or owner) would share an id only if their fingerprints collided:
/// about one chance in 2^64 per pair. The database's dictionary keys on the SHA-256 digest.
fn fingerprint(user_id: Option<i64>, code: Option<&str>, target: Option<&str>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    match user_id {
        Some(user) => {
            h.update(&[1]);
            h.update(&user.to_le_bytes());
        }
        None => h.update(&[0]),
    }
    for text in [code, target] {
        match text {
            Some(text) => {
                h.update(&[1]);
                h.update(&(text.len() as u64).to_le_bytes());
                h.update(text.as_bytes());
            }
            None => h.update(&[0]),
        }
    }
    h.digest()
}

impl LinkKey {
    fn of(click: &Click) -> LinkKey {
        LinkKey {
            url_id: click.url_id,
            user_id: click.user_id,
            short_code: click.short_code.clone(),
            original_url: click.original_url.as_ref().map(|t| t.as_str().into()),
        }
    }

    fn digest(&self) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(self.url_id.to_le_bytes());
        digest_opt(&mut h, self.user_id.map(|u| u.to_le_bytes()).as_ref());
        digest_opt(&mut h, self.short_code.as_deref().map(str::as_bytes));
        digest_opt(&mut h, self.original_url.as_deref().map(str::as_bytes));
        h.finalize().to_vec()
    }
}

fn digest_opt(h: &mut Sha256, part: Option<&(impl AsRef<[u8]> + ?Sized)>) {
    match part {
        None => h.update([0u8]),
        Some(bytes) => {
            let bytes = bytes.as_ref();
            h.update([1u8]);
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
    }
}

/// The contexts of a batch: those this process knows, and the others, classified.
pub struct ContextPlan {
    known: Vec<Option<(i32, Arc<Classified>)>>,
    missing: HashMap<Vec<u8>, (ContextInput, Vec<usize>)>,
    classified: HashMap<Vec<u8>, Classified>,
}

/// A context to resolve: its text, its extra details and (for the digest) their JSON.
struct ContextInput {
    user_agent: Option<Box<str>>,
    referrer: Option<Box<str>>,
    extra: Option<Value>,
    digest: Vec<u8>,
}

impl ContextInput {
    fn of(click: &Click) -> ContextInput {
        let extra = click
            .extra
            .as_ref()
            .filter(|e| !e.details.is_empty())
            .map(|e| Value::Object(e.details.clone()));
        let mut h = Sha256::new();
        digest_opt(&mut h, click.user_agent.as_deref().map(str::as_bytes));
        digest_opt(&mut h, click.referrer.as_deref().map(str::as_bytes));
        let extra_text = extra.as_ref().map(|v| v.to_string());
        digest_opt(&mut h, extra_text.as_deref().map(str::as_bytes));
        ContextInput {
            user_agent: click.user_agent.clone(),
            referrer: click.referrer.clone(),
            extra,
            digest: h.finalize().to_vec(),
        }
    }
}

/// Classifies a context once, when it is first recorded.
pub fn classify(user_agent: Option<&str>, referrer: Option<&str>) -> Classified {
    let agent = classifier().agent(user_agent);
    Classified {
        bot: agent.bot,
        browser: agent.browser.into(),
        os: agent.os.into(),
        device: agent.device.as_str().into(),
        referrer_host: gitrev_classify::referrer_host(referrer).into(),
    }
}

/// Builds the classifier now rather than on the first click (it compiles its patterns).
pub fn warm_up() {
    let _ = classifier();
}

/// What a batch write did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Click rows stored.
    pub stored: u64,
    /// Clicks of urls deleted meanwhile, dropped (a redirect's click only).
    pub dropped: u64,
    /// The batch had already been written (a retry after a lost commit): nothing was done.
    pub duplicate: bool,
    /// The click totals, after this batch, of its urls that have a `max_clicks`: (url id, clicks).
    pub limited: Vec<(i64, i64)>,
}

/// A batch's marker (16 random bytes per batch, the same on every retry, so a retry after a lost
/// commit is a no-op), and how far the current attempt at writing the batch got.
#[derive(Clone, Copy, Debug)]
pub struct BatchMark {
    pub marker: [u8; 16],
    pub reached: Reached,
}

impl BatchMark {
    /// A new attempt at writing the batch of `marker`.
    pub fn attempt(marker: [u8; 16]) -> BatchMark {
        BatchMark {
            marker,
            reached: Reached::Start,
        }
    }
}

/// How far an attempt at writing a marked batch got: what its failure says of the batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reached {
    /// Its transaction had not taken the marker: nothing of this attempt is written. An earlier
    /// attempt whose COMMIT was sent may still have written the batch under the same marker.
    #[default]
    Start,
    /// Its transaction took the marker, so no earlier attempt wrote the batch, and COMMIT was not
    /// sent: nothing of the batch is written, nor ever will be under this attempt.
    Marked,
    /// COMMIT was sent: the batch may be written.
    Commit,
}

/// How the counters of `url_stats` take a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counting {
    /// New clicks: every counter moves.
    New,
    /// Clicks moved from `events`, already in `url_stats.clicks`: only the rest moves.
    Moved,
}

/// One click of a batch, as stored: its id (`None` until drawn from the events sequence), instant
/// (microseconds), link version and context.
struct Row {
    id: Option<i64>,
    at: i64,
    link: i32,
    context: i32,
}

/// Clicks of one link version, one UTC day and one batch, stored as one row of `click_runs`
/// (`sql/0005_click_runs.sql`): the index entry, tuple header and link of a run are paid once for
/// up to [`RUN_CLICKS`] clicks. Its ids ascend and span less than [`RUN_SPAN`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub link: i32,
    pub ids: Vec<i64>,
    pub ats: Vec<NaiveDateTime>,
    pub contexts: Vec<i32>,
}

/// A click of a run being formed: id, instant (microseconds), context.
type RunClick = (i64, i64, i32);

/// The most clicks in one run: 64 keep a run's row (~1.4 kB) under PostgreSQL's TOAST threshold
/// (2 kB), so it is stored inline, uncompressed.
pub const RUN_CLICKS: usize = 64;

/// A run's `last_id - first_id` stays below this (the schema checks it): readers looking for ids
/// past a point start that far before it.
pub const RUN_SPAN: i64 = 65_536;

/// A day in microseconds.
const DAY_MICROS: i64 = 24 * HOUR_MICROS;

/// The condition that narrows `click_log` to the runs that may hold ids in `[lo, hi]` (SQL
/// expressions, e.g. parameters): those starting at most [`RUN_SPAN`] before `lo` and no later
/// than `hi`, and ending at or after `lo`: a range of the `(first_id) INCLUDE (last_id)` index.
pub fn runs_holding(lo: &str, hi: &str) -> String {
    format!("first_id <= {hi} AND first_id > {lo}::bigint - {RUN_SPAN} AND last_id >= {lo}")
}

impl Run {
    fn first_id(&self) -> i64 {
        self.ids.first().copied().unwrap_or_default()
    }

    fn last_id(&self) -> i64 {
        self.ids.last().copied().unwrap_or_default()
    }

    /// Its earliest click (the partition key: every click of a run has its day).
    fn at(&self) -> NaiveDateTime {
        self.ats.iter().min().copied().unwrap_or_default()
    }
}

type BreakdownKey = (i64, i8, NaiveDate, Arc<str>);

/// What the rollups gain from one batch.
#[derive(Default)]
struct Rollup {
    stats: BTreeMap<i64, (i64, i64, NaiveDateTime)>,
    hours: BTreeMap<(i64, NaiveDateTime), (i64, i64)>,
    /// (url, dimension, day, value) → (clicks, bot clicks).
    breakdowns: BTreeMap<BreakdownKey, (i64, i64)>,
}

/// The dimensions of `click_breakdowns`, as stored.
pub const DIMENSIONS: [(&str, i8); 4] = [
    ("referrer", b'r' as i8),
    ("browser", b'b' as i8),
    ("os", b'o' as i8),
    ("device", b'd' as i8),
];

/// An hour in microseconds.
const HOUR_MICROS: i64 = 3_600_000_000;

impl Rollup {
    /// Adds `n` clicks of one url, context and hour (`hour` in hours since the epoch), the latest
    /// at `last`.
    fn add(
        &mut self,
        url_id: i64,
        hour: i64,
        classified: &Classified,
        n: i64,
        last: NaiveDateTime,
    ) {
        let bots = if classified.bot { n } else { 0 };
        let stat = self.stats.entry(url_id).or_insert((0, 0, last));
        stat.0 += n;
        stat.1 += bots;
        stat.2 = stat.2.max(last);
        let hour = micros_to_datetime(hour * HOUR_MICROS);
        let h = self.hours.entry((url_id, hour)).or_default();
        h.0 += n;
        h.1 += bots;
        let c = classified;
        for (dimension, value) in [
            (DIMENSIONS[0].1, &c.referrer_host),
            (DIMENSIONS[1].1, &c.browser),
            (DIMENSIONS[2].1, &c.os),
            (DIMENSIONS[3].1, &c.device),
        ] {
            let b = self
                .breakdowns
                .entry((url_id, dimension, hour.date(), value.clone()))
                .or_default();
            b.0 += n;
            b.1 += bots;
        }
    }
}

/// All three rollups in one statement; each upsert in key order, so concurrent batches wait on
/// each other and never deadlock. The new totals of urls with a `max_clicks` (`$15`, as
/// [`LIVE_URLS`] found them) come back, and are announced on [`LIMITS_CHANNEL`] at the commit, so
/// every replica learns them.
const ROLLUP: &str = "WITH s AS (
        INSERT INTO url_stats AS s (url_id, clicks, bot_clicks, last_click_at)
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamp[])
        ORDER BY 1
        ON CONFLICT (url_id) DO UPDATE
           SET clicks = s.clicks + EXCLUDED.clicks,
               bot_clicks = s.bot_clicks + EXCLUDED.bot_clicks,
               last_click_at = GREATEST(s.last_click_at, EXCLUDED.last_click_at)
        RETURNING url_id, clicks),
    h AS (
        INSERT INTO click_hours AS h (url_id, hour, clicks, bot_clicks)
        SELECT * FROM unnest($5::bigint[], $6::timestamp[], $7::bigint[], $8::bigint[])
        ORDER BY 1, 2
        ON CONFLICT (url_id, hour) DO UPDATE
           SET clicks = h.clicks + EXCLUDED.clicks, bot_clicks = h.bot_clicks + EXCLUDED.bot_clicks),
    b AS (
        INSERT INTO click_breakdowns AS b (url_id, dimension, day, value, clicks, bot_clicks)
        SELECT * FROM unnest($9::bigint[], $10::\"char\"[], $11::date[], $12::text[],
                             $13::bigint[], $14::bigint[])
        ORDER BY 1, 2, 3, 4
        ON CONFLICT (url_id, dimension, day, value) DO UPDATE
           SET clicks = b.clicks + EXCLUDED.clicks, bot_clicks = b.bot_clicks + EXCLUDED.bot_clicks)
    SELECT s.url_id, s.clicks, pg_notify('gitrev_limits', s.url_id || ' ' || s.clicks)
    FROM s WHERE s.url_id = ANY($15::bigint[])";

/// Where the new click totals of urls with a `max_clicks` are announced (`<url id> <clicks>`).
pub const LIMITS_CHANNEL: &str = "gitrev_limits";

/// Resolves link versions to ids, inserting the new ones. Run outside any transaction, so the ids
/// remembered in memory always exist.
const RESOLVE_LINKS: &str = "WITH input AS (
        SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])
            AS i(digest, url_id, user_id, short_code, original_url)),
    ins AS (
        INSERT INTO click_links (digest, url_id, user_id, short_code, original_url)
        SELECT * FROM input ORDER BY digest
        ON CONFLICT (digest) DO NOTHING
        RETURNING id, digest)
    SELECT id, digest FROM ins
    UNION ALL
    SELECT l.id, l.digest FROM click_links l JOIN input USING (digest)";

const RESOLVE_CONTEXTS: &str = "WITH input AS (
        SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::jsonb[], $5::bool[],
                             $6::text[], $7::text[], $8::text[], $9::text[])
            AS i(digest, user_agent, referrer, extra, bot, browser, os, device, referrer_host)),
    ins AS (
        INSERT INTO click_contexts (digest, user_agent, referrer, extra, bot, browser, os, device,
                                    referrer_host)
        SELECT * FROM input ORDER BY digest
        ON CONFLICT (digest) DO NOTHING
        RETURNING id, digest, bot, browser, os, device, referrer_host)
    SELECT * FROM ins
    UNION ALL
    SELECT x.id, x.digest, x.bot, x.browser, x.os, x.device, x.referrer_host
    FROM click_contexts x JOIN input USING (digest)";

const MARK_BATCH: &str = "INSERT INTO click_batches (batch) VALUES ($1) ON CONFLICT DO NOTHING";

/// `$1` ids from the events sequence, ascending (one round trip, one row).
const FRESH_IDS: &str =
    "SELECT array_agg(nextval('events_id_seq')) FROM generate_series(1, $1::int)";

/// Locked against deletion until the commit, so a url's rollups never outlive it.
/// Also says which of them have a `max_clicks` (their totals are announced).
const LIVE_URLS: &str = "SELECT id, max_clicks IS NOT NULL FROM urls WHERE id = ANY($1)
    ORDER BY id FOR KEY SHARE";

/// The statements of a batch's transaction, prepared on its connection (cached with a pooled one).
pub struct BatchStatements {
    mark: Statement,
    live: Statement,
    ids: Statement,
    rollup: Statement,
}

impl BatchStatements {
    pub async fn prepare(client: &Client) -> Result<BatchStatements, tokio_postgres::Error> {
        Ok(BatchStatements {
            mark: client.prepare(MARK_BATCH).await?,
            live: client.prepare(LIVE_URLS).await?,
            ids: client.prepare(FRESH_IDS).await?,
            rollup: client.prepare(ROLLUP).await?,
        })
    }
}

/// The SQLSTATE of "no partition of relation found for row".
const NO_PARTITION: &str = "23514";

impl Store {
    /// Writes a batch of clicks with their rollups, in one transaction. `batch` (see [`BatchMark`])
    /// makes a retry after a lost commit a no-op, and says how far the attempt got. A redirect's
    /// click whose url was deleted meanwhile is dropped and counted; a posted, imported or moved
    /// click is always stored (the log outlives what it describes) and counts in the rollups of
    /// urls that still exist.
    pub async fn record_clicks(
        &self,
        clicks: &[Click],
        batch: Option<&mut BatchMark>,
        counting: Counting,
    ) -> Result<Written, StoreError> {
        if clicks.is_empty() {
            return Ok(Written::default());
        }
        let plan = self.dictionaries.plan_contexts(clicks).await;
        let mut conn = self.conn().await?;
        let statements = BatchStatements {
            mark: conn.prepared(MARK_BATCH).await?,
            live: conn.prepared(LIVE_URLS).await?,
            ids: conn.prepared(FRESH_IDS).await?,
            rollup: conn.prepared(ROLLUP).await?,
        };
        let (links, contexts) = self
            .dictionaries
            .resolve_planned(&conn.client, clicks, plan)
            .await?;
        write_resolved(
            &mut conn.client,
            &statements,
            clicks,
            (&links, &contexts),
            batch,
            counting,
        )
        .await
    }
}

/// [`Store::record_clicks`] on a connection of the caller's (an import's).
pub async fn write_clicks(
    client: &mut Client,
    statements: &BatchStatements,
    dictionaries: &Dictionaries,
    clicks: &[Click],
    batch: Option<&mut BatchMark>,
    counting: Counting,
) -> Result<Written, StoreError> {
    if clicks.is_empty() {
        return Ok(Written::default());
    }
    let (links, contexts) = dictionaries.resolve(client, clicks).await?;
    write_resolved(
        client,
        statements,
        clicks,
        (&links, &contexts),
        batch,
        counting,
    )
    .await
}

/// Writes a batch whose dictionary ids are known; makes a missing partition as a last resort.
async fn write_resolved(
    client: &mut Client,
    statements: &BatchStatements,
    clicks: &[Click],
    (links, contexts): (&[i32], &[(i32, Arc<Classified>)]),
    mut batch: Option<&mut BatchMark>,
    counting: Counting,
) -> Result<Written, StoreError> {
    let mut ensured = false;
    loop {
        let mark = batch.as_deref_mut();
        match write_batch(client, statements, clicks, links, contexts, mark, counting).await {
            Err(err) if !ensured && is_missing_partition(&err) => {
                ensured = true;
                let days: HashSet<NaiveDate> = clicks
                    .iter()
                    .map(|c| micros_to_datetime(c.at).date())
                    .collect();
                ensure_partitions(&*client, &days.into_iter().collect::<Vec<_>>()).await?;
            }
            Err(err) => return Err(StoreError::classify(err)),
            Ok(written) => return Ok(written),
        }
    }
}

impl Dictionaries {
    /// Dictionary ids for every click of `clicks`, in order.
    pub async fn resolve(
        &self,
        client: &Client,
        clicks: &[Click],
    ) -> Result<(Vec<i32>, Vec<(i32, Arc<Classified>)>), StoreError> {
        let plan = self.plan_contexts(clicks).await;
        self.resolve_planned(client, clicks, plan).await
    }

    /// [`Dictionaries::resolve`] with the contexts already planned.
    pub async fn resolve_planned(
        &self,
        client: &Client,
        clicks: &[Click],
        plan: ContextPlan,
    ) -> Result<(Vec<i32>, Vec<(i32, Arc<Classified>)>), StoreError> {
        let links = self.resolve_links(client, clicks).await?;
        let contexts = self.resolve_contexts(client, plan).await?;
        Ok((links, contexts))
    }

    async fn resolve_links(
        &self,
        client: &Client,
        clicks: &[Click],
    ) -> Result<Vec<i32>, StoreError> {
        let mut ids: Vec<Option<i32>> = Vec::with_capacity(clicks.len());
        let mut missing: HashMap<LinkKey, Vec<usize>> = HashMap::new();
        {
            let known = lock(&self.links);
            for (i, click) in clicks.iter().enumerate() {
                match known.get(&LinkKey::slot_of(click)) {
                    Some(id) => ids.push(Some(*id)),
                    None => {
                        ids.push(None);
                        missing.entry(LinkKey::of(click)).or_default().push(i);
                    }
                }
            }
        }
        if !missing.is_empty() {
            let keys: Vec<(LinkKey, Vec<u8>)> =
                missing.keys().map(|k| (k.clone(), k.digest())).collect();
            let digests: Vec<&[u8]> = keys.iter().map(|(_, d)| d.as_slice()).collect();
            let url_ids: Vec<i64> = keys.iter().map(|(k, _)| k.url_id).collect();
            let user_ids: Vec<Option<i64>> = keys.iter().map(|(k, _)| k.user_id).collect();
            let codes: Vec<Option<&str>> =
                keys.iter().map(|(k, _)| k.short_code.as_deref()).collect();
            let targets: Vec<Option<&str>> = keys
                .iter()
                .map(|(k, _)| k.original_url.as_deref())
                .collect();
            let params: [&(dyn ToSql + Sync); 5] =
                [&digests, &url_ids, &user_ids, &codes, &targets];
            let mut found: HashMap<Vec<u8>, i32> = HashMap::new();
            // A digest inserted by another writer after this statement's snapshot is neither
            // inserted nor seen; the next round sees it.
            for _ in 0..3 {
                for row in client.query(RESOLVE_LINKS, &params).await? {
                    found.insert(row.get(1), row.get(0));
                }
                if found.len() >= keys.len() {
                    break;
                }
            }
            let mut known = lock(&self.links);
            if known.len() + keys.len() > DICTIONARY_CAP {
                known.clear();
            }

            for (key, digest) in keys {
                let id = *found.get(&digest).ok_or_else(|| {
                    StoreError::Internal("a click link could not be resolved".into())
                })?;
                for &i in &missing[&key] {
                    ids[i] = Some(id);
                }
                known.insert(key.slot(), id);
            }
        }
        Ok(ids.into_iter().map(|id| id.unwrap_or_default()).collect())
    }

    /// The clicks' contexts as far as this process knows them, and the rest classified (off the
    /// runtime's threads: the first classification builds the classifier, which compiles its
    /// patterns). Done before a connection is taken, so no checkout waits for it.
    pub async fn plan_contexts(&self, clicks: &[Click]) -> ContextPlan {
        let mut known_ids: Vec<Option<(i32, Arc<Classified>)>> = Vec::with_capacity(clicks.len());
        // Misses by digest: the input and the clicks waiting for it.
        let mut missing: HashMap<Vec<u8>, (ContextInput, Vec<usize>)> = HashMap::new();
        {
            let known = lock(&self.contexts);
            for (i, click) in clicks.iter().enumerate() {
                let cacheable = click.extra.as_ref().is_none_or(|e| e.details.is_empty());
                let hit = cacheable
                    .then(|| known.get(click.user_agent.as_deref(), click.referrer.as_deref()))
                    .flatten();
                match hit {
                    Some(found) => known_ids.push(Some(found.clone())),
                    None => {
                        known_ids.push(None);
                        let input = ContextInput::of(click);
                        missing
                            .entry(input.digest.clone())
                            .or_insert_with(|| (input, Vec::new()))
                            .1
                            .push(i);
                    }
                }
            }
        }
        let classified = if missing.is_empty() {
            HashMap::new()
        } else {
            type Texts = Vec<(Vec<u8>, Option<Box<str>>, Option<Box<str>>)>;
            let texts: Texts = missing
                .iter()
                .map(|(d, (input, _))| {
                    (d.clone(), input.user_agent.clone(), input.referrer.clone())
                })
                .collect();
            let classify_all = move || {
                texts
                    .into_iter()
                    .map(|(d, agent, referrer)| {
                        (d, classify(agent.as_deref(), referrer.as_deref()))
                    })
                    .collect::<HashMap<_, _>>()
            };
            match tokio::runtime::Handle::try_current() {
                Ok(_) => tokio::task::spawn_blocking(classify_all)
                    .await
                    .unwrap_or_default(),
                Err(_) => classify_all(),
            }
        };
        ContextPlan {
            known: known_ids,
            missing,
            classified,
        }
    }

    async fn resolve_contexts(
        &self,
        client: &Client,
        plan: ContextPlan,
    ) -> Result<Vec<(i32, Arc<Classified>)>, StoreError> {
        let ContextPlan {
            known: mut out,
            missing,
            classified,
        } = plan;
        if !missing.is_empty() {
            let inputs: Vec<(Vec<u8>, &Classified)> = classified
                .iter()
                .map(|(digest, c)| (digest.clone(), c))
                .collect();
            if inputs.len() != missing.len() {
                return Err(StoreError::Internal(
                    "a click context was not classified".into(),
                ));
            }
            let digests: Vec<&[u8]> = inputs.iter().map(|(d, _)| d.as_slice()).collect();
            let agents: Vec<Option<&str>> = inputs
                .iter()
                .map(|(d, _)| missing[d].0.user_agent.as_deref())
                .collect();
            let referrers: Vec<Option<&str>> = inputs
                .iter()
                .map(|(d, _)| missing[d].0.referrer.as_deref())
                .collect();
            let extras: Vec<Option<&Value>> = inputs
                .iter()
                .map(|(d, _)| missing[d].0.extra.as_ref())
                .collect();
            let bots: Vec<bool> = inputs.iter().map(|(_, c)| c.bot).collect();
            let browsers: Vec<&str> = inputs.iter().map(|(_, c)| &*c.browser).collect();
            let oses: Vec<&str> = inputs.iter().map(|(_, c)| &*c.os).collect();
            let devices: Vec<&str> = inputs.iter().map(|(_, c)| &*c.device).collect();
            let hosts: Vec<&str> = inputs.iter().map(|(_, c)| &*c.referrer_host).collect();
            let params: [&(dyn ToSql + Sync); 9] = [
                &digests, &agents, &referrers, &extras, &bots, &browsers, &oses, &devices, &hosts,
            ];
            let mut found: HashMap<Vec<u8>, (i32, Arc<Classified>)> = HashMap::new();
            // A digest inserted by another writer after this statement's snapshot is neither
            // inserted nor seen; the next round sees it.
            for _ in 0..3 {
                for row in client.query(RESOLVE_CONTEXTS, &params).await? {
                    let digest: Vec<u8> = row.get(1);
                    let classified = Classified {
                        bot: row.get(2),
                        browser: row.get::<_, String>(3).into(),
                        os: row.get::<_, String>(4).into(),
                        device: row.get::<_, String>(5).into(),
                        referrer_host: row.get::<_, String>(6).into(),
                    };
                    found.insert(digest, (row.get(0), Arc::new(classified)));
                }
                if found.len() >= missing.len() {
                    break;
                }
            }
            let mut known = lock(&self.contexts);
            for (digest, (input, waiting)) in missing {
                let resolved = found.get(&digest).cloned().ok_or_else(|| {
                    StoreError::Internal("a click context could not be resolved".into())
                })?;
                for i in waiting {
                    out[i] = Some(resolved.clone());
                }
                if input.extra.is_none() {
                    known.insert(
                        input.user_agent.as_deref(),
                        input.referrer.as_deref(),
                        resolved,
                    );
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|c| c.expect("every click was resolved"))
            .collect())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn is_missing_partition(err: &tokio_postgres::Error) -> bool {
    err.as_db_error()
        .is_some_and(|db| db.code().code() == NO_PARTITION && db.message().contains("partition"))
}

/// The batch's transaction: marker, rows, rollups.
async fn write_batch(
    client: &mut Client,
    statements: &BatchStatements,
    clicks: &[Click],
    links: &[i32],
    contexts: &[(i32, Arc<Classified>)],
    mut batch: Option<&mut BatchMark>,
    counting: Counting,
) -> Result<Written, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    if let Some(batch) = batch.as_deref_mut() {
        // Waits for a transaction of an earlier attempt that holds the marker uncommitted.
        let fresh = tx
            .execute(&statements.mark, &[&batch.marker.as_slice()])
            .await?;
        if fresh == 0 {
            tx.rollback().await?;
            return Ok(Written {
                duplicate: true,
                ..Written::default()
            });
        }
        batch.reached = Reached::Marked;
    }
    let written = write_in(&tx, statements, clicks, links, contexts, counting).await?;
    if let Some(batch) = batch {
        batch.reached = Reached::Commit;
    }
    tx.commit().await?;
    Ok(written)
}

/// Within the caller's transaction: locks the batch's urls against deletion, copies the rows
/// (a redirect's click of a url that is gone left out) and upserts the rollups of the live urls.
async fn write_in(
    tx: &tokio_postgres::Transaction<'_>,
    statements: &BatchStatements,
    clicks: &[Click],
    links: &[i32],
    contexts: &[(i32, Arc<Classified>)],
    counting: Counting,
) -> Result<Written, tokio_postgres::Error> {
    let mut url_ids: Vec<i64> = clicks.iter().map(|c| c.url_id).collect();
    url_ids.sort_unstable();
    url_ids.dedup();
    let rows = tx.query(&statements.live, &[&url_ids]).await?;
    let live: HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    let limited: Vec<i64> = rows
        .iter()
        .filter(|r| r.get::<_, bool>(1))
        .map(|r| r.get(0))
        .collect();
    let prepared = Prepared::new(clicks, links, contexts, &live);
    let needed = prepared.ids_needed();
    let fresh: Vec<i64> = if needed == 0 {
        Vec::new()
    } else {
        let n = i32::try_from(needed).unwrap_or(i32::MAX);
        let mut fresh: Vec<i64> = tx.query_one(&statements.ids, &[&n]).await?.get(0);
        fresh.sort_unstable();
        fresh
    };
    copy_runs(tx, &prepared.runs(&fresh)).await?;
    let limited =
        write_rollup(tx, &statements.rollup, &prepared.rollup, counting, &limited).await?;
    Ok(Written {
        stored: prepared.rows.len() as u64,
        dropped: prepared.dropped,
        duplicate: false,
        limited,
    })
}

/// A batch made ready to write: its rows and what the rollups gain. The in-process part of the
/// writer (measured by the `click_writer` bench).
pub struct Prepared {
    rows: Vec<Row>,
    rollup: Rollup,
    /// Clicks of urls deleted meanwhile, left out (a redirect's click only).
    pub dropped: u64,
}

impl Prepared {
    /// `links` and `contexts` are the clicks' dictionary ids, in order; `live` the urls that
    /// still exist.
    pub fn new(
        clicks: &[Click],
        links: &[i32],
        contexts: &[(i32, Arc<Classified>)],
        live: &HashSet<i64>,
    ) -> Prepared {
        let mut prepared = Prepared {
            rows: Vec::with_capacity(clicks.len()),
            rollup: Rollup::default(),
            dropped: 0,
        };
        // Counted by (url, hour, context) first, one hash per click; each group then rolls up
        // once, whatever its size.
        let mut groups: HashMap<(i64, i64, i32), (i64, i64, usize)> = HashMap::new();
        for (i, click) in clicks.iter().enumerate() {
            let is_live = live.contains(&click.url_id);
            if !is_live && click.extra.is_none() {
                prepared.dropped += 1;
                continue;
            }
            if is_live {
                let key = (
                    click.url_id,
                    click.at.div_euclid(HOUR_MICROS),
                    contexts[i].0,
                );
                let group = groups.entry(key).or_insert((0, click.at, i));
                group.0 += 1;
                group.1 = group.1.max(click.at);
            }
            prepared.rows.push(Row {
                id: click.id(),
                at: click.at,
                link: links[i],
                context: contexts[i].0,
            });
        }
        for ((url_id, hour, _), (n, last, first)) in groups {
            prepared.rollup.add(
                url_id,
                hour,
                &contexts[first].1,
                n,
                micros_to_datetime(last),
            );
        }
        prepared
    }

    /// How many of its clicks need an id from the events sequence (a redirect's; a posted,
    /// imported or moved click has its own).
    pub fn ids_needed(&self) -> usize {
        self.rows.iter().filter(|r| r.id.is_none()).count()
    }

    /// The batch as runs, first ids ascending. `fresh` holds [`Prepared::ids_needed`] ids from the
    /// events sequence, ascending: the clicks without an id take them in batch order (the order
    /// they were recorded in).
    pub fn runs(&self, fresh: &[i64]) -> Vec<Run> {
        let mut fresh = fresh.iter().copied();
        // By (link version, day): (id, instant, context), batch order.
        let mut groups: HashMap<(i32, i64), Vec<RunClick>> = HashMap::new();
        for row in &self.rows {
            // `fresh` has one id per click without one (`generate_series(1, n)` gives n).
            let Some(id) = row.id.or_else(|| fresh.next()) else {
                continue;
            };
            groups
                .entry((row.link, row.at.div_euclid(DAY_MICROS)))
                .or_default()
                .push((id, row.at, row.context));
        }
        let mut runs = Vec::new();
        for ((link, _), mut clicks) in groups {
            // Already ascending for fresh ids; a posted or imported click's may come in any order.
            clicks.sort_unstable_by_key(|c| c.0);
            let mut run: Option<Run> = None;
            for (id, at, context) in clicks {
                if run
                    .as_ref()
                    .is_some_and(|r| r.ids.len() == RUN_CLICKS || id - r.first_id() >= RUN_SPAN)
                {
                    runs.extend(run.take());
                }
                let r = run.get_or_insert_with(|| Run {
                    link,
                    ids: Vec::new(),
                    ats: Vec::new(),
                    contexts: Vec::new(),
                });
                r.ids.push(id);
                r.ats.push(micros_to_datetime(at));
                r.contexts.push(context);
            }
            runs.extend(run);
        }
        runs.sort_unstable_by_key(Run::first_id);
        runs
    }
}

/// Binary `COPY` of the runs.
async fn copy_runs(
    tx: &tokio_postgres::Transaction<'_>,
    runs: &[Run],
) -> Result<(), tokio_postgres::Error> {
    if runs.is_empty() {
        return Ok(());
    }
    let sink = tx
        .copy_in(
            "COPY click_runs (first_id, last_id, at, link_id, ids, ats, contexts) FROM STDIN BINARY",
        )
        .await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::INT8,
            Type::INT8,
            Type::TIMESTAMP,
            Type::INT4,
            Type::INT8_ARRAY,
            Type::TIMESTAMP_ARRAY,
            Type::INT4_ARRAY,
        ],
    );
    pin_mut!(writer);
    for run in runs {
        writer
            .as_mut()
            .write(&[
                &run.first_id(),
                &run.last_id(),
                &run.at(),
                &run.link,
                &run.ids,
                &run.ats,
                &run.contexts,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

async fn write_rollup(
    tx: &tokio_postgres::Transaction<'_>,
    stmt: &Statement,
    rollup: &Rollup,
    counting: Counting,
    limited: &[i64],
) -> Result<Vec<(i64, i64)>, tokio_postgres::Error> {
    if rollup.stats.is_empty() {
        return Ok(Vec::new());
    }
    let moved = counting == Counting::Moved;
    let s_url: Vec<i64> = rollup.stats.keys().copied().collect();
    let s_clicks: Vec<i64> = rollup
        .stats
        .values()
        .map(|s| if moved { 0 } else { s.0 })
        .collect();
    let s_bots: Vec<i64> = rollup.stats.values().map(|s| s.1).collect();
    let s_last: Vec<NaiveDateTime> = rollup.stats.values().map(|s| s.2).collect();
    let h_url: Vec<i64> = rollup.hours.keys().map(|k| k.0).collect();
    let h_hour: Vec<NaiveDateTime> = rollup.hours.keys().map(|k| k.1).collect();
    let h_clicks: Vec<i64> = rollup.hours.values().map(|v| v.0).collect();
    let h_bots: Vec<i64> = rollup.hours.values().map(|v| v.1).collect();
    let b_url: Vec<i64> = rollup.breakdowns.keys().map(|k| k.0).collect();
    let b_dim: Vec<i8> = rollup.breakdowns.keys().map(|k| k.1).collect();
    let b_day: Vec<NaiveDate> = rollup.breakdowns.keys().map(|k| k.2).collect();
    let b_value: Vec<&str> = rollup.breakdowns.keys().map(|k| &*k.3).collect();
    let b_clicks: Vec<i64> = rollup.breakdowns.values().map(|v| v.0).collect();
    let b_bots: Vec<i64> = rollup.breakdowns.values().map(|v| v.1).collect();
    let totals = tx
        .query(
            stmt,
            &[
                &s_url, &s_clicks, &s_bots, &s_last, &h_url, &h_hour, &h_clicks, &h_bots, &b_url,
                &b_dim, &b_day, &b_value, &b_clicks, &b_bots, &limited,
            ],
        )
        .await?;
    Ok(totals.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Arbitrary but fixed: the advisory lock taken while partitions are made or dropped.
const PARTITION_LOCK: i64 = 0x6769_7472_6563; // "gitrec"

pub fn partition_name(day: NaiveDate) -> String {
    format!("click_runs_p{}", day.format("%Y%m%d"))
}

fn partition_day(name: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(name.strip_prefix("click_runs_p")?, "%Y%m%d").ok()
}

/// The days that have a partition, and those whose detach was interrupted.
async fn partitions(
    client: &impl GenericClient,
) -> Result<Vec<(NaiveDate, bool)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.relname::text, i.inhdetachpending FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'click_runs'::regclass",
            &[],
        )
        .await?;
    let mut days: Vec<(NaiveDate, bool)> = rows
        .iter()
        .filter_map(|r| Some((partition_day(r.get::<_, &str>(0))?, r.get(1))))
        .collect();
    days.sort();
    Ok(days)
}

/// Makes the partitions of `days` that do not exist yet, under an advisory lock so replicas
/// starting together make each exactly once. A partition is made empty and attached (which locks
/// the parent only against other schema changes, not against writers or readers). Answers the
/// partitions made.
pub async fn ensure_partitions(
    client: &impl GenericClient,
    days: &[NaiveDate],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let existing: HashSet<NaiveDate> = partitions(client).await?.into_iter().map(|p| p.0).collect();
    let mut made = Vec::new();
    let mut wanted: Vec<NaiveDate> = days
        .iter()
        .copied()
        .filter(|d| !existing.contains(d))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    for day in wanted {
        let name = partition_name(day);
        let next = day + Span::days(1);
        // One simple query is one implicit transaction: the lock is held to its end, and a
        // failure leaves nothing half made.
        client
            .batch_execute(&format!(
                "SELECT pg_advisory_xact_lock({PARTITION_LOCK});
                 CREATE TABLE IF NOT EXISTS {name}
                     (LIKE click_runs INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
                 DO $$ BEGIN
                   IF NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = '{name}'::regclass) THEN
                     ALTER TABLE click_runs ATTACH PARTITION {name}
                       FOR VALUES FROM ('{day}') TO ('{next}');
                   END IF;
                 END $$;"
            ))
            .await?;
        made.push(name);
    }
    Ok(made)
}

/// What `prune-clicks` freed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub partitions: Vec<String>,
    pub clicks: i64,
    pub bytes: i64,
}

/// A breakdown dimension by the name the API gives it: that name and its stored code.
pub fn dimension(by: &str) -> Option<(&'static str, i8)> {
    DIMENSIONS.iter().find(|(name, _)| *name == by).copied()
}

/// One row of `clicks.csv`.
#[derive(Clone, Debug)]
pub struct ExportedClick {
    pub id: i64,
    pub at: NaiveDateTime,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
    pub browser: String,
    pub os: String,
    pub device: String,
    pub bot: bool,
}

/// Runs read by one step of the export: their clicks up to the first id of the last of them are
/// all there is below it.
const EXPORT_RUNS: i64 = 64;

/// One step of the export of a url's link versions (`$5`…): the first id of the [`EXPORT_RUNS`]th
/// run starting after `$1` (the bound: no run not read holds an id at or below it; NULL when there
/// are fewer such runs, and then everything is read). One index scan per link version, merged
/// (the planner's Merge Append), so a step costs its own runs, not the url's. `$2` is the UTC day
/// holding `from`: a run's clicks all have its day, so runs of earlier days are passed over, and
/// partitions with them.
fn export_bound_sql(links: usize) -> String {
    let branches: Vec<String> = (0..links)
        .map(|i| {
            format!(
                "(SELECT first_id FROM click_runs WHERE link_id = ${} AND first_id > $1
                  AND at >= $2 AND at < $3 ORDER BY first_id LIMIT $4)",
                i + 5
            )
        })
        .collect();
    format!(
        "SELECT first_id FROM ({}) r ORDER BY first_id OFFSET $4 - 1 LIMIT 1",
        branches.join(" UNION ALL ")
    )
}

/// The clicks of a step: ids in `($1, $6]` and times in `[$2, $3)`, oldest first, up to `$4`; the
/// runs holding them start after `$1 - RUN_SPAN` and end after `$1` (`$5`: the day of `$2`). Clicks
/// stored one row each (`clicks`: before migration 5, or by a replica of the previous version) come
/// by its `(link_id, id)` index.
fn export_rows_sql(links: usize) -> String {
    let runs: Vec<String> = (0..links)
        .map(|i| {
            format!(
                "(SELECT ids, ats, contexts FROM click_runs WHERE link_id = ${}
                  AND first_id > $1::bigint - {RUN_SPAN} AND first_id <= $6 AND last_id > $1
                  AND at >= $5 AND at < $3)",
                i + 7
            )
        })
        .collect();
    let unmoved: Vec<String> = (0..links)
        .map(|i| {
            format!(
                "(SELECT id, at, context_id FROM clicks WHERE link_id = ${}
                  AND id > $1 AND id <= $6 AND at >= $2 AND at < $3 ORDER BY id LIMIT $4)",
                i + 7
            )
        })
        .collect();
    format!(
        "SELECT c.id, c.at, x.referrer, x.user_agent, x.browser, x.os, x.device, x.bot
         FROM (SELECT u.id, u.at, u.context_id FROM ({}) r
               CROSS JOIN LATERAL unnest(r.ids, r.ats, r.contexts) AS u(id, at, context_id)
               UNION ALL {}) c
         JOIN click_contexts x ON x.id = c.context_id
         WHERE c.id > $1 AND c.id <= $6 AND c.at >= $2 AND c.at < $3
         ORDER BY c.id LIMIT $4",
        runs.join(" UNION ALL "),
        unmoved.join(" UNION ALL ")
    )
}

impl Store {
    /// Clicks before this are past retention: no longer listed or exported (`None`: kept).
    pub fn click_retention_cutoff(&self) -> Option<NaiveDateTime> {
        (self.click_retention_days > 0).then(|| {
            chrono::Utc::now().naive_utc() - Span::days(i64::from(self.click_retention_days))
        })
    }

    /// Makes the partitions from yesterday to `ahead` days from now, and, with a retention,
    /// drops those past it. For the background job and for start-up.
    pub async fn prepare_partitions(&self, ahead: i64) -> Result<Vec<String>, StoreError> {
        let today = chrono::Utc::now().date_naive();
        let days: Vec<NaiveDate> = (-1..=ahead).map(|d| today + Span::days(d)).collect();
        // On a maintenance connection: making partitions waits for locks now and then, and a
        // pooled checkout that outlives its deadline would take the whole pool down with it.
        let client = self.maintenance_client().await?;
        self.bounded_maintenance(async {
            Ok::<_, StoreError>(ensure_partitions(&client, &days).await?)
        })
        .await
    }

    /// Drops the partitions whose every click is older than `retention_days` (whole chunks, never
    /// row by row) and forgets batch markers older than a day. Runs on a maintenance connection
    /// (a detach waits for the readers of the parent to finish) under an advisory lock, so one
    /// process at a time prunes; another answers with nothing pruned.
    pub async fn prune_clicks(&self, retention_days: u32) -> Result<Pruned, StoreError> {
        let client = self.maintenance_client().await?;
        let mut pruned = Pruned::default();
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&PARTITION_LOCK])
            .await?
            .get(0);
        if !locked {
            info!("another process is pruning clicks");
            return Ok(pruned);
        }
        client
            .execute(
                "DELETE FROM click_batches
                 WHERE written_at < (now() AT TIME ZONE 'UTC') - interval '1 day'",
                &[],
            )
            .await?;
        if retention_days > 0 {
            let cutoff = chrono::Utc::now().naive_utc() - Span::days(i64::from(retention_days));
            for (day, pending) in partitions(&client).await? {
                let name = partition_name(day);
                let end = (day + Span::days(1))
                    .and_hms_opt(0, 0, 0)
                    .unwrap_or_default();
                if end > cutoff {
                    continue;
                }
                let row = client
                    .query_one(
                        &format!(
                            "SELECT COALESCE(sum(cardinality(ids)), 0)::bigint,
                                    pg_total_relation_size('{name}') FROM {name}"
                        ),
                        &[],
                    )
                    .await?;
                let detach = if pending { "FINALIZE" } else { "CONCURRENTLY" };
                client
                    .batch_execute(&format!(
                        "ALTER TABLE click_runs DETACH PARTITION {name} {detach}"
                    ))
                    .await?;
                client.batch_execute(&format!("DROP TABLE {name}")).await?;
                info!(partition = %name, clicks = row.get::<_, i64>(0), "dropped a click partition");
                pruned.clicks += row.get::<_, i64>(0);
                pruned.bytes += row.get::<_, i64>(1);
                pruned.partitions.push(name);
            }
        }
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&PARTITION_LOCK])
            .await?;
        Ok(pruned)
    }

    /// Moves up to `chunk` click rows of the old `events` table into the click log, in one
    /// transaction (deleted there, written here, rollups kept; `url_stats.clicks` already counted
    /// them). Answers how many moved; 0 when none is left. Safe with several movers at once: a row
    /// is written by whoever deleted it.
    pub async fn move_old_clicks(&self, chunk: i64) -> Result<u64, StoreError> {
        // On a maintenance connection, like partition work: a chunk may take a while.
        let mut client = self.maintenance_client().await?;
        self.bounded_maintenance(self.move_old_clicks_on(&mut client, chunk))
            .await
    }

    async fn move_old_clicks_on(&self, client: &mut Client, chunk: i64) -> Result<u64, StoreError> {
        let rows = client
            .query(
                "SELECT id, url_id, user_id, timestamp, details FROM events
                 WHERE event_type = 'click' ORDER BY event_type, id LIMIT $1",
                &[&chunk],
            )
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let clicks: Vec<Click> = rows
            .iter()
            .map(|r| {
                let details = match r.get::<_, Value>(4) {
                    Value::Object(map) => map,
                    _ => Map::new(),
                };
                Click::from_details(r.get(1), r.get(2), r.get(3), Some(r.get(0)), details)
            })
            .collect();
        let days: HashSet<NaiveDate> = clicks
            .iter()
            .map(|c| micros_to_datetime(c.at).date())
            .collect();
        ensure_partitions(&*client, &days.into_iter().collect::<Vec<_>>()).await?;
        let (links, contexts) = self.dictionaries.resolve(client, &clicks).await?;
        let statements = BatchStatements::prepare(client).await?;
        let ids: Vec<i64> = clicks.iter().filter_map(Click::id).collect();
        let tx = client.transaction().await?;
        let deleted: HashSet<i64> = tx
            .query(
                "DELETE FROM events WHERE id = ANY($1) AND event_type = 'click' RETURNING id",
                &[&ids],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // Only the rows this transaction deleted (another mover may have taken the rest).
        let mut kept = (Vec::new(), Vec::new(), Vec::new());
        for (i, click) in clicks.iter().enumerate() {
            if click.id().is_some_and(|id| deleted.contains(&id)) {
                kept.0.push(click.clone());
                kept.1.push(links[i]);
                kept.2.push(contexts[i].clone());
            }
        }
        // Every moved click has an id (its `extra`), so it is stored whether its url lives or not.
        let written =
            write_in(&tx, &statements, &kept.0, &kept.1, &kept.2, Counting::Moved).await?;
        tx.commit().await?;
        Ok(written.stored)
    }

    /// Moves up to `chunk` clicks stored one row each (`clicks`: before migration 5, or by a replica
    /// of the previous version during a rolling upgrade) into runs,
    /// in one statement: deleted there, written here, in the order of the old `(link_id, id)`
    /// index, so that a link's neighbouring ids share runs of up to 64. The rollups counted them
    /// already. Answers how many moved; 0 when none is left. Safe with several movers at once: a
    /// row is written by whoever deleted it.
    pub async fn move_unrun_clicks(&self, chunk: i64) -> Result<u64, StoreError> {
        let client = self.maintenance_client().await?;
        self.bounded_maintenance(async {
            let days: Vec<NaiveDate> = client
                .query(
                    "SELECT DISTINCT at::date FROM (
                        SELECT at FROM clicks ORDER BY link_id, id LIMIT $1) s",
                    &[&chunk],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if days.is_empty() {
                return Ok(0);
            }
            ensure_partitions(&client, &days).await?;
            let moved = client
                .query_one(
                    "WITH moved AS (
                        DELETE FROM clicks c
                        USING (SELECT link_id, id FROM clicks ORDER BY link_id, id LIMIT $1) s
                        WHERE c.link_id = s.link_id AND c.id = s.id
                        RETURNING c.id, c.at, c.link_id, c.context_id),
                    runs AS (
                        INSERT INTO click_runs (first_id, last_id, at, link_id, ids, ats, contexts)
                        SELECT min(id), max(id), min(at), link_id, array_agg(id ORDER BY id),
                               array_agg(at ORDER BY id), array_agg(context_id ORDER BY id)
                        FROM moved GROUP BY link_id, date_trunc('day', at), id >> 6
                        RETURNING cardinality(ids) AS n)
                     SELECT COALESCE(sum(n), 0)::bigint FROM runs",
                    &[&chunk],
                )
                .await?
                .get::<_, i64>(0);
            Ok::<_, StoreError>(moved.max(0) as u64)
        })
        .await
    }

    /// Clicks per bucket (`hourly` or daily) from the bucket holding `from` to the one holding
    /// `to`, from the hourly rollup; buckets without clicks are left out (the caller fills them).
    /// `None` when the url does not exist.
    pub async fn click_timeseries(
        &self,
        url_id: i64,
        hourly: bool,
        from: NaiveDateTime,
        to: NaiveDateTime,
        bots: bool,
    ) -> Result<Option<Vec<(NaiveDateTime, i64)>>, StoreError> {
        let unit = if hourly { "hour" } else { "day" };
        let rows = self
            .rows_of_url(
                url_id,
                "SELECT date_trunc($2, hour) AS bucket,
                        (sum(clicks) - CASE WHEN $5 THEN 0 ELSE sum(bot_clicks) END)::bigint
                 FROM click_hours
                 WHERE url_id = $1 AND hour >= date_trunc($2, $3::timestamp)
                   AND hour < date_trunc($2, $4::timestamp)
                              + CASE WHEN $2 = 'hour' THEN interval '1 hour' ELSE interval '1 day' END
                 GROUP BY bucket ORDER BY bucket",
                &[&url_id, &unit, &from, &to, &bots],
            )
            .await?;
        Ok(rows.map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
    }

    /// The rows `sql` (whose `$1` is the url id) answers, or `None` when the url does not exist;
    /// both asked at once on one connection.
    async fn rows_of_url(
        &self,
        url_id: i64,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Vec<tokio_postgres::Row>>, StoreError> {
        let mut conn = self.conn().await?;
        let exists = conn
            .prepared("SELECT EXISTS (SELECT 1 FROM urls WHERE id = $1)")
            .await?;
        let stmt = conn.prepared(sql).await?;
        let exists_params: [&(dyn ToSql + Sync); 1] = [&url_id];
        let (exists, rows) = tokio::try_join!(
            conn.client.query_one(&exists, &exists_params),
            conn.client.query(&stmt, params),
        )?;
        Ok(exists.get::<_, bool>(0).then_some(rows))
    }

    /// The values of one dimension with their clicks from day `from` to day `to` (both
    /// included), most clicks first, ties by value. `None` when the url does not exist.
    pub async fn click_breakdown(
        &self,
        url_id: i64,
        dimension: i8,
        from: NaiveDate,
        to: NaiveDate,
        bots: bool,
        limit: i64,
    ) -> Result<Option<Vec<(String, i64)>>, StoreError> {
        let rows = self
            .rows_of_url(
                url_id,
                "SELECT value, n FROM (
                    SELECT value,
                           (sum(clicks) - CASE WHEN $5 THEN 0 ELSE sum(bot_clicks) END)::bigint AS n
                    FROM click_breakdowns
                    WHERE url_id = $1 AND dimension = $2 AND day >= $3 AND day <= $4
                    GROUP BY value) v
                 WHERE n > 0 ORDER BY n DESC, value LIMIT $6",
                &[&url_id, &dimension, &from, &to, &bots, &limit],
            )
            .await?;
        Ok(rows.map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
    }

    /// The link versions of a url's clicks (for the export), or `None` when the url does not
    /// exist.
    pub async fn click_links_of(&self, url_id: i64) -> Result<Option<Vec<i32>>, StoreError> {
        let rows = self
            .rows_of_url(
                url_id,
                "SELECT id FROM click_links WHERE url_id = $1 ORDER BY id",
                &[&url_id],
            )
            .await?;
        Ok(rows.map(|rows| rows.iter().map(|r| r.get(0)).collect()))
    }

    /// Up to `limit` clicks of `links` with an id above `after` and a time in `[from, to)`, oldest
    /// first (fewer: there are no more): one chunk of the export, in steps of two short queries.
    pub async fn export_clicks(
        &self,
        links: &[i32],
        after: i64,
        from: NaiveDateTime,
        to: NaiveDateTime,
        limit: i64,
    ) -> Result<Vec<ExportedClick>, StoreError> {
        let mut out: Vec<ExportedClick> = Vec::new();
        if links.is_empty() || limit <= 0 {
            return Ok(out);
        }
        let mut conn = self.conn().await?;
        let bound_stmt = conn.prepared(&export_bound_sql(links.len())).await?;
        let rows_stmt = conn.prepared(&export_rows_sql(links.len())).await?;
        let day = from.date().and_hms_opt(0, 0, 0).unwrap_or(from);
        let mut after = after;
        // Steps of at most EXPORT_RUNS runs each, until `limit` clicks or the last run.
        loop {
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&after, &day, &to, &EXPORT_RUNS];
            for link in links {
                params.push(link);
            }
            let bound: Option<i64> = conn
                .client
                .query_opt(&bound_stmt, &params)
                .await?
                .map(|r| r.get(0));
            let upto = bound.unwrap_or(i64::MAX);
            let want = limit - out.len() as i64;
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&after, &from, &to, &want, &day, &upto];
            for link in links {
                params.push(link);
            }
            let rows = conn.client.query(&rows_stmt, &params).await?;
            out.extend(rows.iter().map(|r| ExportedClick {
                id: r.get(0),
                at: r.get(1),
                referrer: r.get(2),
                user_agent: r.get(3),
                browser: r.get(4),
                os: r.get(5),
                device: r.get(6),
                bot: r.get(7),
            }));
            if out.len() as i64 >= limit {
                return Ok(out);
            }
            match bound {
                Some(bound) => after = bound,
                None => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    #[test]
    fn a_link_versions_fingerprint_tells_its_fields_apart() {
        let of = |user, code, target| fingerprint(user, code, target);
        let base = of(Some(1), Some("abc"), Some("https://a.example/"));
        assert_eq!(base, of(Some(1), Some("abc"), Some("https://a.example/")));
        for other in [
            of(None, Some("abc"), Some("https://a.example/")),
            of(Some(2), Some("abc"), Some("https://a.example/")),
            of(Some(1), None, Some("https://a.example/")),
            of(Some(1), Some("abd"), Some("https://a.example/")),
            of(Some(1), Some("abc"), Some("https://b.example/")),
            of(Some(1), Some("abc"), None),
        ] {
            assert_ne!(base, other);
        }
        // Lengths and absences are hashed: no two splits of one text meet.
        assert_ne!(
            of(None, Some("ab"), Some("c")),
            of(None, Some("a"), Some("bc"))
        );
        assert_ne!(of(None, Some(""), None), of(None, None, Some("")));
    }

    #[test]
    fn partition_names_round_trip() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 2).expect("a date");
        assert_eq!(partition_name(day), "click_runs_p20261202");
        assert_eq!(partition_day("click_runs_p20261202"), Some(day));
        assert_eq!(partition_day("clicks_p20261202"), None);
        assert_eq!(partition_day("clicks_default"), None);
    }

    #[test]
    fn details_keep_every_key_but_bot() {
        let details = serde_json::json!({"referrer": "https://a.example/", "user_agent": 7,
                                          "bot": false, "campaign": "x"});
        let Value::Object(map) = details else {
            unreachable!()
        };
        let at = micros_to_datetime(0);
        let click = Click::from_details(1, None, at, Some(9), map);
        assert_eq!(click.referrer.as_deref(), Some("https://a.example/"));
        assert_eq!(
            click.user_agent, None,
            "a user agent that is not a string stays in details"
        );
        let extra = click.extra.expect("extra");
        assert_eq!(extra.id, Some(9));
        assert_eq!(
            Value::Object(extra.details),
            serde_json::json!({"user_agent": 7, "campaign": "x"})
        );
    }

    fn click(url_id: i64, at: NaiveDateTime) -> Click {
        Click {
            url_id,
            user_id: None,
            at: datetime_to_micros(at),
            short_code: None,
            original_url: None,
            referrer: None,
            user_agent: None,
            extra: None,
            limited: false,
        }
    }

    fn classified(bot: bool, browser: &str, os: &str, device: &str, host: &str) -> Arc<Classified> {
        Arc::new(Classified {
            bot,
            browser: browser.into(),
            os: os.into(),
            device: device.into(),
            referrer_host: host.into(),
        })
    }

    proptest::proptest! {
        /// Any batch: the rollups equal the counts taken from the raw clicks one by one, and a
        /// redirect's click of a url that is gone is dropped, not counted.
        #[test]
        fn rollups_equal_raw_counts(
            raw in proptest::collection::vec((0i64..4, 0i64..3 * 86_400_000_000, 0usize..3), 0..300)
        ) {
            let kinds = [
                classified(false, "Chrome", "Windows", "desktop", "direct"),
                classified(true, "Googlebot", "Other", "bot", "direct"),
                classified(false, "Mobile Safari", "iOS", "mobile", "news.example.com"),
            ];
            let start = datetime_to_micros(
                NaiveDate::from_ymd_opt(2026, 11, 30).and_then(|d| d.and_hms_opt(0, 0, 0)).expect("a date"),
            );
            let live: HashSet<i64> = [0, 1, 2].into();
            let clicks: Vec<Click> = raw
                .iter()
                .map(|(url, offset, _)| click(*url, micros_to_datetime(start + offset)))
                .collect();
            let contexts: Vec<(i32, Arc<Classified>)> =
                raw.iter().map(|(_, _, k)| (*k as i32, kinds[*k].clone())).collect();
            let links = vec![1; clicks.len()];
            let prepared = Prepared::new(&clicks, &links, &contexts, &live);

            let mut stats: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
            let mut hours: BTreeMap<(i64, NaiveDateTime), (i64, i64)> = BTreeMap::new();
            let mut breakdowns: BTreeMap<BreakdownKey, (i64, i64)> = BTreeMap::new();
            let mut dropped = 0;
            for (url, offset, k) in &raw {
                if !live.contains(url) {
                    dropped += 1;
                    continue;
                }
                let at = micros_to_datetime(start + offset);
                let bot = i64::from(kinds[*k].bot);
                let s = stats.entry(*url).or_default();
                s.0 += 1;
                s.1 += bot;
                let hour = at.date().and_hms_opt(at.time().hour(), 0, 0).expect("an hour");
                let h = hours.entry((*url, hour)).or_default();
                h.0 += 1;
                h.1 += bot;
                let c = &kinds[*k];
                for (d, v) in [(b'r', &c.referrer_host), (b'b', &c.browser), (b'o', &c.os), (b'd', &c.device)] {
                    let b = breakdowns.entry((*url, d as i8, at.date(), v.clone())).or_default();
                    b.0 += 1;
                    b.1 += bot;
                }
            }
            let rolled: BTreeMap<i64, (i64, i64)> =
                prepared.rollup.stats.iter().map(|(k, v)| (*k, (v.0, v.1))).collect();
            proptest::prop_assert_eq!(rolled, stats);
            proptest::prop_assert_eq!(&prepared.rollup.hours, &hours);
            proptest::prop_assert_eq!(&prepared.rollup.breakdowns, &breakdowns);
            proptest::prop_assert_eq!(prepared.dropped, dropped);
            proptest::prop_assert_eq!(prepared.rows.len() as u64 + dropped, raw.len() as u64);
        }
    }

    proptest::proptest! {
        /// Any batch (fresh ids and given ones, several links and days): every click is in exactly
        /// one run with its own instant and context; a run is one link and one day, at most
        /// RUN_CLICKS clicks, ids ascending and spanning less than RUN_SPAN; fresh ids go to the
        /// clicks in batch order; runs come in order of their first id.
        #[test]
        fn runs_hold_every_click_once(
            raw in proptest::collection::vec(
                (0i64..3, 0i64..2 * 86_400_000_000, 0i32..4, proptest::option::of(0i64..200_000)),
                0..400,
            )
        ) {
            let live: HashSet<i64> = [0, 1, 2].into();
            let mut given = HashSet::new();
            let clicks: Vec<Click> = raw
                .iter()
                .map(|(url, at, _, id)| {
                    let mut c = click(*url, micros_to_datetime(1_790_000_000_000_000 + at));
                    // Ids are unique: a repeated one is left to the sequence.
                    if let Some(id) = id.filter(|id| given.insert(*id)) {
                        c.extra = Some(Box::new(ClickExtra { id: Some(id), details: Map::new() }));
                    }
                    c
                })
                .collect();
            let links: Vec<i32> = raw.iter().map(|(url, ..)| *url as i32 * 10).collect();
            let kind = classified(false, "Chrome", "Windows", "desktop", "direct");
            let contexts: Vec<(i32, Arc<Classified>)> =
                raw.iter().map(|(_, _, k, _)| (*k, kind.clone())).collect();
            let prepared = Prepared::new(&clicks, &links, &contexts, &live);
            let needed = prepared.ids_needed();
            let fresh: Vec<i64> = (0..needed as i64).map(|i| 1_000_000 + 3 * i).collect();
            let runs = prepared.runs(&fresh);

            let mut expected: Vec<(i64, NaiveDateTime, i32, i32)> = Vec::new();
            let mut next = fresh.iter();
            for (i, c) in clicks.iter().enumerate() {
                let id = c.id().or_else(|| next.next().copied()).expect("an id");
                expected.push((id, micros_to_datetime(c.at), links[i], contexts[i].0));
            }
            expected.sort_unstable();
            let mut stored: Vec<(i64, NaiveDateTime, i32, i32)> = Vec::new();
            for run in &runs {
                proptest::prop_assert!(!run.ids.is_empty() && run.ids.len() <= RUN_CLICKS);
                proptest::prop_assert_eq!(run.ats.len(), run.ids.len());
                proptest::prop_assert_eq!(run.contexts.len(), run.ids.len());
                proptest::prop_assert!(run.ids.windows(2).all(|w| w[0] < w[1]));
                proptest::prop_assert!(run.last_id() - run.first_id() < RUN_SPAN);
                proptest::prop_assert!(run.ats.iter().all(|a| a.date() == run.at().date()));
                for k in 0..run.ids.len() {
                    stored.push((run.ids[k], run.ats[k], run.link, run.contexts[k]));
                }
            }
            proptest::prop_assert!(runs.windows(2).all(|w| w[0].first_id() <= w[1].first_id()));
            stored.sort_unstable();
            proptest::prop_assert_eq!(stored, expected);
        }
    }

    #[test]
    fn fresh_ids_follow_the_batch_order_and_runs_split_at_64() {
        let live: HashSet<i64> = [7].into();
        let start = NaiveDate::from_ymd_opt(2026, 12, 2)
            .and_then(|d| d.and_hms_opt(8, 0, 0))
            .expect("a time");
        let clicks: Vec<Click> = (0..130)
            .map(|i| click(7, start + Span::seconds(i)))
            .collect();
        let kind = classified(false, "Chrome", "Windows", "desktop", "direct");
        let contexts = vec![(1, kind); clicks.len()];
        let prepared = Prepared::new(&clicks, &[4; 130], &contexts, &live);
        let fresh: Vec<i64> = (500..630).collect();
        let runs = prepared.runs(&fresh);
        let sizes: Vec<usize> = runs.iter().map(|r| r.ids.len()).collect();
        assert_eq!(sizes, [64, 64, 2]);
        assert_eq!(runs[0].ids[0], 500);
        assert_eq!(runs[0].ats[0], start, "the first click takes the first id");
        assert_eq!(runs[2].ids, [628, 629]);
        assert_eq!(runs[2].ats[1], start + Span::seconds(129));
    }

    #[test]
    fn a_batch_rolls_up_by_url_hour_and_day() {
        let human = Arc::new(Classified {
            bot: false,
            browser: "Chrome".into(),
            os: "Windows".into(),
            device: "desktop".into(),
            referrer_host: "direct".into(),
        });
        let bot = Arc::new(Classified {
            bot: true,
            browser: "Googlebot".into(),
            os: "Other".into(),
            device: "bot".into(),
            referrer_host: "direct".into(),
        });
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").expect("ts");
        let times = [
            ("2026-12-01T23:59:59.9", &human),
            ("2026-12-02T00:00:00.0", &bot),
            ("2026-12-02T00:30:00.0", &human),
        ];
        let clicks: Vec<Click> = times.iter().map(|(t, _)| click(5, at(t))).collect();
        let contexts: Vec<(i32, Arc<Classified>)> = times
            .iter()
            .map(|(_, c)| (if c.bot { 2 } else { 1 }, (*c).clone()))
            .collect();
        let live: HashSet<i64> = [5].into();
        let rollup = Prepared::new(&clicks, &[1, 1, 1], &contexts, &live).rollup;
        assert_eq!(rollup.stats[&5].0, 3);
        assert_eq!(rollup.stats[&5].1, 1);
        assert_eq!(rollup.hours[&(5, at("2026-12-01T23:00:00.0"))], (1, 0));
        assert_eq!(rollup.hours[&(5, at("2026-12-02T00:00:00.0"))], (2, 1));
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("day");
        assert_eq!(
            rollup.breakdowns[&(5, b'r' as i8, day("2026-12-02"), Arc::from("direct"))],
            (2, 1)
        );
        assert_eq!(
            rollup.breakdowns[&(5, b'd' as i8, day("2026-12-01"), Arc::from("desktop"))],
            (1, 0)
        );
    }
}
