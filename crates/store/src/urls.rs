//! The `urls` table, its `created` / `updated` / `deleted` events and the click counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDateTime;
use futures_util::FutureExt;
use gitrev_core::model::{LinkOptions, NewUrl, Url, UrlChanges, UrlStats};
use gitrev_core::shortcode;
use serde_json::{json, Value};
use tokio_postgres::Row;

use super::{sequences, Filter, Page, Store, StoreError};

/// Every column of a url, in the order [`url_from_row`] reads them.
const COLUMNS: &str = "id, user_id, short_code, original_url, title, is_active, created_at, \
     updated_at, expires_at, max_clicks, expired_url, redirect_status, forward_query, tags";

pub fn url_from_row(row: &Row) -> Url {
    url_at(row, 0)
}

/// The url whose [`COLUMNS`] start at column `at` of `row`.
fn url_at(row: &Row, at: usize) -> Url {
    Url {
        id: row.get(at),
        user_id: row.get(at + 1),
        short_code: row.get(at + 2),
        original_url: row.get(at + 3),
        title: row.get(at + 4),
        is_active: row.get(at + 5),
        created_at: row.get(at + 6),
        updated_at: row.get(at + 7),
        options: LinkOptions {
            expires_at: row.get(at + 8),
            max_clicks: row.get(at + 9),
            expired_url: row.get(at + 10),
            redirect_status: row.get(at + 11),
            forward_query: row.get(at + 12),
            tags: row.get(at + 13),
        },
    }
}

/// What a redirect needs to know about a short code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub url_id: i64,
    pub user_id: Option<i64>,
    pub original_url: String,
    pub is_active: bool,
    /// The redirect's options (`tags` left empty: a redirect does not need them).
    pub options: LinkOptions,
    /// The url's stored clicks when it has a `max_clicks` (else 0, not read).
    pub clicks: i64,
}

/// Filters of `GET /urls`.
#[derive(Clone, Debug, Default)]
pub struct UrlFilter {
    pub user_id: Option<i64>,
    pub is_active: Option<bool>,
    pub short_code: Option<String>,
    /// Urls holding every one of these tags.
    pub tags: Vec<String>,
    /// A case-insensitive substring of the code, the target or the title.
    pub q: Option<String>,
    /// Expired (by time or by clicks) or not.
    pub expired: Option<bool>,
}

/// Whether a url row (`urls`, in a query over it) is expired now: by time or by its clicks.
pub const EXPIRED: &str =
    "((urls.expires_at IS NOT NULL AND urls.expires_at <= now() AT TIME ZONE 'UTC')
      OR (urls.max_clicks IS NOT NULL AND urls.max_clicks <= COALESCE(
          (SELECT s.clicks FROM url_stats s WHERE s.url_id = urls.id), 0)))";

/// The text `?q=` searches (the trigram index of sql/0004_links.sql is on exactly this).
const SEARCHED: &str =
    "(short_code || E'\\x1f' || original_url || E'\\x1f' || COALESCE(title, ''))";

/// The two halves of the urls `?q=` searches at once, each with its own trigram index over
/// [`SEARCHED`] (sql/0008_search_halves.sql): alternate blocks of 256 ids. A predicate here must
/// read exactly as its index's for the planner to use the index.
const SEARCH_HALVES: [&str; 2] = ["(id / 256) % 2 = 0", "(id / 256) % 2 = 1"];

/// Both halves in one statement (a BitmapOr of the two indexes).
const SEARCH_BOTH_HALVES: &str = "((id / 256) % 2 = 0 OR (id / 256) % 2 = 1)";

/// Past this many rows into the matches (a page's offset plus its limit), a search runs as one
/// statement: each half would send every id up to the page's end.
const SPLIT_SEARCH_PAGE_END: i64 = 10_000;

/// How `?q=` searches have run since start (`gitrev_url_searches_total`).
#[derive(Debug, Default)]
pub(crate) struct SearchCounts {
    /// Two statements at once, one per half, on two connections.
    halves: AtomicU64,
    /// One statement over both halves: no second connection was free, or the page was deep.
    whole: AtomicU64,
}

/// The ids of page `page` of the matches of two disjoint halves, each complete up to the page's
/// end (at most [`SPLIT_SEARCH_PAGE_END`] ids each: sorting them costs microseconds).
fn page_of_halves(a: &[i64], b: &[i64], page: Page) -> Vec<i64> {
    let mut ids = [a, b].concat();
    ids.sort_unstable();
    ids.into_iter()
        .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
        .take(usize::try_from(page.limit).unwrap_or(0))
        .collect()
}

/// `q` (which holds no control character) as a `LIKE` pattern matching it anywhere, its own `%`, `_` and `\\` taken literally.
pub fn substring_pattern(q: &str) -> String {
    let mut pattern = String::with_capacity(q.len() + 2);
    pattern.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A link's stored target as a click carries it: shared with the link cache's entry either way, no
/// copy per click. Plain bytes or text: the store knows no HTTP type.
#[derive(Clone, Debug)]
pub enum ClickTarget {
    /// The bytes of the cached `location` header (visible ASCII), when they are the stored target.
    Location(Bytes),
    Stored(Arc<str>),
}

impl ClickTarget {
    pub fn as_str(&self) -> &str {
        match self {
            // A location is visible ASCII by construction.
            ClickTarget::Location(bytes) => std::str::from_utf8(bytes).unwrap_or_default(),
            ClickTarget::Stored(stored) => stored,
        }
    }
}

/// A link as a replica remembers it (a link snapshot's row), to be checked against the table.
#[derive(Clone, Copy, Debug)]
pub struct KnownLink<'a> {
    pub code: &'a str,
    pub url_id: i64,
    pub user_id: Option<i64>,
    /// The target as stored.
    pub target: &'a str,
    /// Its redirect options (`tags` not compared).
    pub options: &'a LinkOptions,
}

const INSERT: &str = "WITH u AS (
        INSERT INTO urls (user_id, short_code, original_url, title, is_active, expires_at,
                          max_clicks, expired_url, redirect_status, forward_query, tags)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        RETURNING *),
    logged AS (
        INSERT INTO events (url_id, user_id, event_type, details)
        SELECT id, user_id, 'created',
               jsonb_build_object('short_code', short_code, 'original_url', original_url)
        FROM u)
    SELECT id, user_id, short_code, original_url, title, is_active, created_at, updated_at,
           expires_at, max_clicks, expired_url, redirect_status, forward_query, tags FROM u";

/// One statement for a group of urls (`POST /urls` requests, or one `POST /urls/bulk`), inserted
/// in arrival order: rows whose user is missing are left out, a code that is already taken is
/// skipped (`DO NOTHING`), and each inserted url gets its `created` event (the triggers on `urls`
/// announce it as `+code`, so a replica that cached "no such code" forgets it). Every request's
/// row comes back, in arrival order, with whether its user exists and, when it was inserted, its
/// url. Tags travel as one JSON array per url (SQL arrays cannot be ragged).
const INSERT_GROUP: &str = "WITH input AS (
        SELECT g.*, (g.user_id IS NULL OR EXISTS (SELECT 1 FROM users WHERE id = g.user_id)) AS user_ok
        FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bool[],
                    $6::timestamp[], $7::bigint[], $8::text[], $9::smallint[], $10::bool[],
                    $11::jsonb[])
             WITH ORDINALITY AS g(user_id, short_code, original_url, title, is_active, expires_at,
                                  max_clicks, expired_url, redirect_status, forward_query, tags,
                                  arrival)),
    u AS (
        INSERT INTO urls (user_id, short_code, original_url, title, is_active, expires_at,
                          max_clicks, expired_url, redirect_status, forward_query, tags)
        SELECT user_id, short_code, original_url, title, is_active, expires_at, max_clicks,
               expired_url, redirect_status, forward_query,
               ARRAY(SELECT jsonb_array_elements_text(tags))
        FROM input WHERE user_ok
        ORDER BY arrival
        ON CONFLICT (short_code) DO NOTHING
        RETURNING *),
    logged AS (
        INSERT INTO events (url_id, user_id, event_type, details)
        SELECT id, user_id, 'created',
               jsonb_build_object('short_code', short_code, 'original_url', original_url)
        FROM u ORDER BY id)
    SELECT input.user_ok, u.id, u.user_id, u.short_code, u.original_url, u.title, u.is_active,
           u.created_at, u.updated_at, u.expires_at, u.max_clicks, u.expired_url,
           u.redirect_status, u.forward_query, u.tags
    FROM input LEFT JOIN u ON u.short_code = input.short_code
    ORDER BY input.arrival";

/// Attempts at a fresh generated code before giving up (each collision has odds of 1 in 62^6
/// times the table's fill ratio).
const GENERATE_ATTEMPTS: usize = 8;

impl Store {
    /// Inserts a url with its `created` event. A taken custom code is `Conflict("short_code")`;
    /// a generated one that collides is drawn again.
    pub async fn create_url(&self, new: &NewUrl) -> Result<Url, StoreError> {
        let mut conn = self.conn().await?;
        let stmt = conn.prepared(INSERT).await?;
        let mut repaired = false;
        let mut attempts = 0;
        loop {
            let code = match &new.short_code {
                Some(code) => code.clone(),
                None => shortcode::generate(),
            };
            attempts += 1;
            let result = conn
                .client
                .query_one(
                    &stmt,
                    &[
                        &new.user_id,
                        &code,
                        &new.original_url,
                        &new.title,
                        &new.is_active,
                        &new.options.expires_at,
                        &new.options.max_clicks,
                        &new.options.expired_url,
                        &new.options.redirect_status,
                        &new.options.forward_query,
                        &new.options.tags,
                    ],
                )
                .await
                .map_err(StoreError::classify);
            match result {
                // Announced as `+code` by the triggers on `urls`, at commit.
                Ok(row) => return Ok(url_from_row(&row)),
                Err(StoreError::Conflict("short_code"))
                    if new.short_code.is_none() && attempts < GENERATE_ATTEMPTS => {}
                Err(StoreError::Conflict("id")) if !repaired => {
                    sequences::fix(&conn.client, &["urls", "events"]).await?;
                    repaired = true;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Inserts a group of urls (each with its `created` event) in one statement and answers each
    /// request with its own row or error: an unknown `user_id` is `NotFound("user")`, a custom
    /// code that is taken (or was claimed earlier in the same group) is `Conflict("short_code")`.
    /// A generated code that happened to collide, and any row of a group whose statement failed
    /// for a reason other than the database being down, is retried alone.
    pub async fn create_urls(&self, group: &[NewUrl]) -> Vec<Result<Url, StoreError>> {
        let grouped = self.insert_urls(group).await;
        super::answer_group(group, grouped, |new| self.create_url(new)).await
    }

    /// `None` for a request to retry alone.
    async fn insert_urls(
        &self,
        group: &[NewUrl],
    ) -> Result<Vec<Option<Result<Url, StoreError>>>, StoreError> {
        let codes: Vec<String> = group
            .iter()
            .map(|new| new.short_code.clone().unwrap_or_else(shortcode::generate))
            .collect();
        let user_ids: Vec<Option<i64>> = group.iter().map(|u| u.user_id).collect();
        let targets: Vec<&str> = group.iter().map(|u| u.original_url.as_str()).collect();
        let titles: Vec<Option<&str>> = group.iter().map(|u| u.title.as_deref()).collect();
        let active: Vec<bool> = group.iter().map(|u| u.is_active).collect();
        let options = group.iter().map(|u| &u.options);
        let expires: Vec<Option<NaiveDateTime>> = options.clone().map(|o| o.expires_at).collect();
        let max_clicks: Vec<Option<i64>> = options.clone().map(|o| o.max_clicks).collect();
        let expired_urls: Vec<Option<&str>> =
            options.clone().map(|o| o.expired_url.as_deref()).collect();
        let statuses: Vec<Option<i16>> = options.clone().map(|o| o.redirect_status).collect();
        let forward: Vec<bool> = options.clone().map(|o| o.forward_query).collect();
        let tags: Vec<Value> = options.map(|o| json!(o.tags)).collect();
        let mut conn = self.conn().await?;
        let stmt = conn.prepared(INSERT_GROUP).await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 11] = [
            &user_ids,
            &codes,
            &targets,
            &titles,
            &active,
            &expires,
            &max_clicks,
            &expired_urls,
            &statuses,
            &forward,
            &tags,
        ];
        let rows = super::query_fixing_sequences(&conn.client, &stmt, &params, &["urls", "events"])
            .await?;
        // Rows come back in arrival order; two requests for one code both see its row, and the
        // first one (inserted first) is the one that got it.
        let mut claimed = std::collections::HashSet::with_capacity(group.len());
        let answers = group
            .iter()
            .zip(&rows)
            .map(|(new, row)| {
                if !row.get::<_, bool>(0) {
                    return Some(Err(StoreError::NotFound("user")));
                }
                let inserted = row.get::<_, Option<i64>>(1).is_some();
                let code: Option<&str> = row.get(3);
                if inserted && code.is_some_and(|c| claimed.insert(c.to_owned())) {
                    return Some(Ok(url_at(row, 1)));
                }
                // A taken custom code is a conflict; a generated one that collided (`None`) is
                // drawn again, alone.
                new.short_code
                    .as_ref()
                    .map(|_| Err(StoreError::Conflict("short_code")))
            })
            .collect();
        Ok(answers)
    }

    /// The codes of `links` whose row no longer matches: gone, inactive, or with another id,
    /// owner, target or redirect option. One query, however many links.
    pub async fn stale_links(
        &self,
        links: &[KnownLink<'_>],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let codes: Vec<&str> = links.iter().map(|l| l.code).collect();
        let ids: Vec<i64> = links.iter().map(|l| l.url_id).collect();
        let owners: Vec<Option<i64>> = links.iter().map(|l| l.user_id).collect();
        let targets: Vec<&str> = links.iter().map(|l| l.target).collect();
        let expires: Vec<Option<NaiveDateTime>> =
            links.iter().map(|l| l.options.expires_at).collect();
        let max_clicks: Vec<Option<i64>> = links.iter().map(|l| l.options.max_clicks).collect();
        let expired_urls: Vec<Option<&str>> = links
            .iter()
            .map(|l| l.options.expired_url.as_deref())
            .collect();
        let statuses: Vec<Option<i16>> = links.iter().map(|l| l.options.redirect_status).collect();
        let forward: Vec<bool> = links.iter().map(|l| l.options.forward_query).collect();
        let mut conn = self.conn().await?;
        let stmt = conn
            .prepared(
                "SELECT s.code
                 FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::timestamp[],
                             $6::bigint[], $7::text[], $8::smallint[], $9::bool[])
                      AS s(code, id, user_id, target, expires_at, max_clicks, expired_url,
                           redirect_status, forward_query)
                 LEFT JOIN urls u ON u.short_code = s.code
                 WHERE u.id IS NULL OR NOT u.is_active OR u.id <> s.id
                    OR u.user_id IS DISTINCT FROM s.user_id OR u.original_url <> s.target
                    OR u.expires_at IS DISTINCT FROM s.expires_at
                    OR u.max_clicks IS DISTINCT FROM s.max_clicks
                    OR u.expired_url IS DISTINCT FROM s.expired_url
                    OR u.redirect_status IS DISTINCT FROM s.redirect_status
                    OR u.forward_query <> s.forward_query",
            )
            .await?;
        let rows = conn
            .client
            .query(
                &stmt,
                &[
                    &codes,
                    &ids,
                    &owners,
                    &targets,
                    &expires,
                    &max_clicks,
                    &expired_urls,
                    &statuses,
                    &forward,
                ],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn get_url(&self, id: i64) -> Result<Url, StoreError> {
        let mut conn = self.conn().await?;
        let stmt = conn
            .prepared(&format!("SELECT {COLUMNS} FROM urls WHERE id = $1"))
            .await?;
        let row = conn.client.query_opt(&stmt, &[&id]).await?;
        row.map(|r| url_from_row(&r))
            .ok_or(StoreError::NotFound("url"))
    }

    pub async fn list_urls(
        &self,
        filter: UrlFilter,
        page: Page,
    ) -> Result<(Vec<Url>, i64), StoreError> {
        let searching = filter.q.is_some();
        let tags = (!filter.tags.is_empty()).then_some(filter.tags);
        let filter = Filter::default()
            .eq("user_id", filter.user_id)
            .eq("is_active", filter.is_active)
            .eq("short_code", filter.short_code)
            .clause("tags @> $?", tags)
            // The joined text, through the trigram index. A search holds no control character
            // (the API refuses them), so no match can span the U+001F between two columns.
            .clause(
                &format!("{SEARCHED} ILIKE $?"),
                filter.q.as_deref().map(substring_pattern),
            )
            .clause(&format!("{EXPIRED} = $?"), filter.expired);
        if searching {
            return self.search_urls(filter, page).await;
        }
        let (rows, total) = self.list("urls", COLUMNS, filter, page).await?;
        Ok((rows.iter().map(url_from_row).collect(), total))
    }

    /// A `?q=` search. Its cost is rechecking every match on its heap page, and one statement runs
    /// on one core: with a second connection free at once, the two halves of the urls
    /// ([`SEARCH_HALVES`]) are searched at the same time, each counting its matches and sending
    /// its first ids up to the page's end, and the page's rows are fetched by id. The halves read
    /// two snapshots, so a url created or deleted meanwhile may be counted in one and not the
    /// other, as between two pages of any list. Otherwise (a busy pool, a deep page) one
    /// statement searches both halves.
    async fn search_urls(&self, filter: Filter, page: Page) -> Result<(Vec<Url>, i64), StoreError> {
        let end = page.offset.saturating_add(page.limit);
        let mut first = self.conn().await?;
        // Never waited for: a search holding one connection while waiting for another could
        // starve with others doing the same.
        let second = if end <= SPLIT_SEARCH_PAGE_END {
            self.conn().now_or_never().and_then(Result::ok)
        } else {
            None
        };
        let Some(mut second) = second else {
            self.searches.whole.fetch_add(1, Ordering::Relaxed);
            let filter = filter.and(SEARCH_BOTH_HALVES);
            let (rows, total) =
                Store::list_in_one_pass(&mut first, "urls", COLUMNS, filter, page).await?;
            return Ok((rows.iter().map(url_from_row).collect(), total));
        };
        self.searches.halves.fetch_add(1, Ordering::Relaxed);
        let wheres = filter.where_clause();
        let params = filter.params();
        let n = params.len();
        let half = |k: usize| {
            format!(
                "WITH m AS MATERIALIZED (SELECT id FROM urls{wheres} AND {})
                 SELECT (SELECT count(*) FROM m), ARRAY(SELECT id FROM m ORDER BY id LIMIT ${})",
                SEARCH_HALVES[k],
                n + 1
            )
        };
        let mut params = params;
        params.push(&end);
        let (a, b) = tokio::try_join!(
            async {
                let stmt = first.prepared(&half(0)).await?;
                first.client.query_one(&stmt, &params).await
            },
            async {
                let stmt = second.prepared(&half(1)).await?;
                second.client.query_one(&stmt, &params).await
            },
        )?;
        drop(second);
        let total = a.get::<_, i64>(0) + b.get::<_, i64>(0);
        let ids = page_of_halves(&a.get::<_, Vec<i64>>(1), &b.get::<_, Vec<i64>>(1), page);
        if ids.is_empty() {
            return Ok((Vec::new(), total));
        }
        let stmt = first
            .prepared(&format!(
                "SELECT {COLUMNS} FROM urls WHERE id = ANY($1) ORDER BY id"
            ))
            .await?;
        let rows = first.client.query(&stmt, &[&ids]).await?;
        Ok((rows.iter().map(url_from_row).collect(), total))
    }

    /// How `?q=` searches have run since start: (in two halves at once, in one statement).
    pub fn searches(&self) -> (u64, u64) {
        (
            self.searches.halves.load(Ordering::Relaxed),
            self.searches.whole.load(Ordering::Relaxed),
        )
    }

    /// Applies the changes; records one `updated` event per field whose value changed and moves
    /// `updated_at` only if something changed. Announces the change to every replica's link cache.
    pub async fn update_url(&self, id: i64, changes: &UrlChanges) -> Result<Url, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.client.transaction().await?;
        let row = tx
            .query_opt(
                &format!("SELECT {COLUMNS} FROM urls WHERE id = $1 FOR UPDATE"),
                &[&id],
            )
            .await?
            .ok_or(StoreError::NotFound("url"))?;
        let old = url_from_row(&row);
        let (new, changed) = old.apply(changes);
        if changed.is_empty() {
            return Ok(old);
        }
        let o = &new.options;
        let row = tx
            .query_one(
                &format!(
                    "UPDATE urls SET title = $2, is_active = $3, original_url = $4,
                        expires_at = $5, max_clicks = $6, expired_url = $7, redirect_status = $8,
                        forward_query = $9, tags = $10,
                        updated_at = GREATEST(now() AT TIME ZONE 'UTC', updated_at)
                     WHERE id = $1 RETURNING {COLUMNS}"
                ),
                &[
                    &id,
                    &new.title,
                    &new.is_active,
                    &new.original_url,
                    &o.expires_at,
                    &o.max_clicks,
                    &o.expired_url,
                    &o.redirect_status,
                    &o.forward_query,
                    &o.tags,
                ],
            )
            .await?;
        let url = url_from_row(&row);
        let fields: Vec<&str> = changed.iter().map(|(f, _)| *f).collect();
        let values: Vec<Value> = changed.into_iter().map(|(_, v)| v).collect();
        tx.execute(
            "INSERT INTO events (url_id, user_id, event_type, details)
             SELECT $1, $2, 'updated', jsonb_build_object('field', f, 'new_value', v)
             FROM unnest($3::text[], $4::jsonb[]) WITH ORDINALITY AS c(f, v, n) ORDER BY n",
            &[&url.id, &url.user_id, &fields, &values],
        )
        .await?;
        tx.commit().await?;
        Ok(url)
    }

    /// Deletes a url, records its `deleted` event and announces it to every replica's link
    /// cache; returns its short code.
    pub async fn delete_url(&self, id: i64) -> Result<String, StoreError> {
        let mut conn = self.conn().await?;
        let stmt = conn
            .prepared(
                "WITH gone AS (DELETE FROM urls WHERE id = $1
                               RETURNING id, user_id, short_code, original_url),
                      logged AS (INSERT INTO events (url_id, user_id, event_type, details)
                                 SELECT id, user_id, 'deleted',
                                        jsonb_build_object('short_code', short_code,
                                                           'original_url', original_url)
                                 FROM gone)
                 SELECT short_code FROM gone",
            )
            .await?;
        let row = conn.client.query_opt(&stmt, &[&id]).await?;
        row.map(|r| r.get(0)).ok_or(StoreError::NotFound("url"))
    }

    pub async fn url_stats(&self, id: i64) -> Result<UrlStats, StoreError> {
        let mut conn = self.conn().await?;
        let stmt = conn
            .prepared(
                "SELECT u.id, COALESCE(s.clicks, 0), COALESCE(s.bot_clicks, 0), s.last_click_at
                 FROM urls u LEFT JOIN url_stats s ON s.url_id = u.id WHERE u.id = $1",
            )
            .await?;
        let row = conn.client.query_opt(&stmt, &[&id]).await?;
        row.map(|r| UrlStats {
            url_id: r.get(0),
            clicks: r.get(1),
            bot_clicks: r.get(2),
            last_click_at: r.get(3),
        })
        .ok_or(StoreError::NotFound("url"))
    }

    /// The link behind a short code, active or not, with its stored clicks when it has a
    /// `max_clicks`.
    pub async fn find_link(&self, code: &str) -> Result<Option<Link>, StoreError> {
        let mut conn = self.conn().await?;
        let stmt = conn
            .prepared(
                "SELECT u.id, u.user_id, u.original_url, u.is_active, u.expires_at, u.max_clicks,
                        u.expired_url, u.redirect_status, u.forward_query,
                        CASE WHEN u.max_clicks IS NULL THEN 0 ELSE COALESCE(
                            (SELECT s.clicks FROM url_stats s WHERE s.url_id = u.id), 0) END
                 FROM urls u WHERE u.short_code = $1",
            )
            .await?;
        let row = conn.client.query_opt(&stmt, &[&code]).await?;
        Ok(row.map(|r| Link {
            url_id: r.get(0),
            user_id: r.get(1),
            original_url: r.get(2),
            is_active: r.get(3),
            options: LinkOptions {
                expires_at: r.get(4),
                max_clicks: r.get(5),
                expired_url: r.get(6),
                redirect_status: r.get(7),
                forward_query: r.get(8),
                tags: Vec::new(),
            },
            clicks: r.get(9),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn a_page_of_two_halves_is_cut_from_their_merge() {
        let page = |offset, limit| Page { offset, limit };
        let (a, b) = ([1, 2, 300, 301], [256, 257, 600]);
        assert_eq!(page_of_halves(&a, &b, page(0, 3)), [1, 2, 256]);
        assert_eq!(page_of_halves(&a, &b, page(3, 3)), [257, 300, 301]);
        assert_eq!(page_of_halves(&a, &b, page(6, 3)), [600]);
        assert!(page_of_halves(&a, &b, page(7, 3)).is_empty());
        assert_eq!(page_of_halves(&[], &b, page(1, 5)), [257, 600]);
        assert_eq!(page_of_halves(&a, &[], page(0, 2)), [1, 2]);
        assert!(page_of_halves(&a, &b, page(0, 0)).is_empty());
    }

    #[test]
    fn both_halves_are_the_two_halves() {
        assert_eq!(
            SEARCH_BOTH_HALVES,
            format!("({} OR {})", SEARCH_HALVES[0], SEARCH_HALVES[1])
        );
    }

    proptest::proptest! {
        /// Any split of a set of ids between the halves, any page: the page of the whole, when each
        /// half sends its ids up to the page's end, as the halves' statements do.
        #[test]
        fn a_page_of_two_halves_is_the_page_of_the_whole(
            ids in proptest::collection::btree_set(1i64..5_000, 0..300),
            halves in proptest::collection::vec(proptest::bool::ANY, 300),
            offset in 0i64..320,
            limit in 0i64..120,
        ) {
            let (a, b): (BTreeSet<i64>, BTreeSet<i64>) = {
                let mut sides = (BTreeSet::new(), BTreeSet::new());
                for (i, id) in ids.iter().enumerate() {
                    if halves[i] { sides.0.insert(*id); } else { sides.1.insert(*id); }
                }
                sides
            };
            let end = usize::try_from(offset + limit).unwrap();
            let a: Vec<i64> = a.into_iter().take(end).collect();
            let b: Vec<i64> = b.into_iter().take(end).collect();
            let whole: Vec<i64> = ids
                .iter()
                .copied()
                .skip(offset as usize)
                .take(limit as usize)
                .collect();
            proptest::prop_assert_eq!(page_of_halves(&a, &b, Page { offset, limit }), whole);
        }
    }
}
