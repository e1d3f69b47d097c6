//! Click analytics: `/urls/{id}/stats/timeseries`, `/urls/{id}/stats/breakdown` and
//! `/urls/{id}/clicks.csv`. Timeseries and breakdowns read the rollups the click writer keeps
//! (never the raw clicks); the export streams the raw clicks in short chunks.

use bytes::Bytes;
use chrono::{Duration as Span, NaiveDate, NaiveDateTime, Timelike};
use gitrev_core::model::{parse_instant, render_timestamp};
use gitrev_http::query::Query;
use gitrev_http::{response, Body, Response};
use gitrev_store::clicks::{self, ExportedClick};
use hyper::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE};
use hyper::StatusCode;
use serde::Serialize;
use tracing::warn;

use super::{AppState, HandlerResult};
use crate::error::ApiError;

/// Most buckets one timeseries answers.
pub const MAX_BUCKETS: i64 = 10_000;
/// Rows of the export fetched per query.
const EXPORT_CHUNK: i64 = 5_000;

#[derive(Serialize)]
struct Point {
    start: String,
    clicks: i64,
}

#[derive(Serialize)]
struct Timeseries {
    url_id: i64,
    interval: &'static str,
    from: String,
    to: String,
    points: Vec<Point>,
}

#[derive(Serialize)]
struct BreakdownRow {
    value: String,
    clicks: i64,
}

#[derive(Serialize)]
struct Breakdown {
    url_id: i64,
    by: &'static str,
    from: String,
    to: String,
    rows: Vec<BreakdownRow>,
}

fn now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// The earliest moment the API speaks of (`0000-01-01T00:00:00`: four-digit years only); a
/// default window reaching before it starts there.
fn earliest() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(0, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// `at - span`, no earlier than [`earliest`].
fn back(at: NaiveDateTime, span: Span) -> NaiveDateTime {
    at.checked_sub_signed(span)
        .map_or_else(earliest, |t| t.max(earliest()))
}

/// Reads `from` and `to` (UTC moments); `from` after `to` is a 422.
fn range(
    query: &mut Query<'_>,
) -> Result<(Option<NaiveDateTime>, Option<NaiveDateTime>), ApiError> {
    let mut errors = Vec::new();
    let mut moment = |name: &str| match query.string(name) {
        None => None,
        Some(text) => match parse_instant(&text) {
            Some(at) => Some(at),
            None => {
                errors.push((
                    name.to_owned(),
                    "must be a UTC time, YYYY-MM-DDTHH:MM:SS or YYYY-MM-DD".to_owned(),
                ));
                None
            }
        },
    };
    let from = moment("from");
    let to = moment("to");
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(ApiError::Validation(vec![(
                "from".into(),
                "must not be after `to`".into(),
            )]));
        }
    }
    Ok((from, to))
}

/// `bots=include|exclude` (default include): whether bot clicks count.
fn bots(query: &mut Query<'_>) -> Result<bool, ApiError> {
    match query.string("bots").as_deref() {
        None | Some("include") => Ok(true),
        Some("exclude") => Ok(false),
        Some(_) => Err(ApiError::Validation(vec![(
            "bots".into(),
            "must be include or exclude".into(),
        )])),
    }
}

fn truncate(at: NaiveDateTime, hourly: bool) -> NaiveDateTime {
    let hour = if hourly { at.hour() } else { 0 };
    at.date().and_hms_opt(hour, 0, 0).unwrap_or(at)
}

pub async fn timeseries(state: &AppState, id: i64, query: Option<&str>) -> HandlerResult {
    let mut query = Query::parse(query);
    let hourly = match query.string("interval").as_deref() {
        None | Some("hour") => true,
        Some("day") => false,
        Some(_) => {
            return Err(ApiError::Validation(vec![(
                "interval".into(),
                "must be hour or day".into(),
            )]))
        }
    };
    let (from, to) = range(&mut query)?;
    let bots = bots(&mut query)?;
    query.finish()?;
    let unit = if hourly {
        Span::hours(1)
    } else {
        Span::days(1)
    };
    // Defaults: 24 buckets by hour, 30 by day, ending with the one holding `to` (or now).
    let to = to.unwrap_or_else(|| from.map_or_else(now, |f| f.max(now())));
    let from = from.unwrap_or_else(|| back(to, unit * if hourly { 23 } else { 29 }));
    let (first, last) = (truncate(from, hourly), truncate(to, hourly));
    let buckets = (last - first).num_seconds() / unit.num_seconds() + 1;
    if buckets > MAX_BUCKETS {
        return Err(ApiError::Validation(vec![(
            "from".into(),
            format!("the range holds {buckets} buckets; at most {MAX_BUCKETS}"),
        )]));
    }
    let counts = state
        .store
        .click_timeseries(id, hourly, from, to, bots)
        .await?
        .ok_or_else(|| ApiError::not_found("url"))?;
    let mut counts = counts.into_iter().peekable();
    let mut points = Vec::with_capacity(buckets as usize);
    let mut start = first;
    while start <= last {
        let mut clicks = 0;
        while let Some((bucket, n)) = counts.peek() {
            if *bucket < start {
                counts.next();
            } else {
                if *bucket == start {
                    clicks = *n;
                }
                break;
            }
        }
        points.push(Point {
            start: render_timestamp(&start),
            clicks,
        });
        start += unit;
    }
    Ok(response::json(
        StatusCode::OK,
        &Timeseries {
            url_id: id,
            interval: if hourly { "hour" } else { "day" },
            from: render_timestamp(&from),
            to: render_timestamp(&to),
            points,
        },
    ))
}

pub async fn breakdown(state: &AppState, id: i64, query: Option<&str>) -> HandlerResult {
    let mut query = Query::parse(query);
    let by = query.string("by");
    let (by, dimension) = match by.as_deref().and_then(clicks::dimension) {
        Some(found) => found,
        None => {
            return Err(ApiError::Validation(vec![(
                "by".into(),
                "must be referrer, browser, os or device".into(),
            )]))
        }
    };
    let (from, to) = range(&mut query)?;
    let bots = bots(&mut query)?;
    let limit = match query.int("limit") {
        None => 20,
        Some(n) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::Validation(vec![(
                "limit".into(),
                "must be an integer from 1 to 1000".into(),
            )]))
        }
    };
    query.finish()?;
    // Breakdowns are kept by UTC day: the range is widened to whole days, and the answer says so.
    let to = to.unwrap_or_else(|| from.map_or_else(now, |f| f.max(now())));
    let from = from.unwrap_or_else(|| back(to, Span::days(29)));
    let (first, last): (NaiveDate, NaiveDate) = (from.date(), to.date());
    let rows = state
        .store
        .click_breakdown(id, dimension, first, last, bots, limit)
        .await?
        .ok_or_else(|| ApiError::not_found("url"))?;
    let day_end = last.and_hms_opt(23, 59, 59).unwrap_or(to);
    Ok(response::json(
        StatusCode::OK,
        &Breakdown {
            url_id: id,
            by,
            from: render_timestamp(&first.and_hms_opt(0, 0, 0).unwrap_or(from)),
            to: render_timestamp(&day_end),
            rows: rows
                .into_iter()
                .map(|(value, clicks)| BreakdownRow { value, clicks })
                .collect(),
        },
    ))
}

const CSV_HEADER: &[u8] = b"id,timestamp,referrer,user_agent,browser,os,device,bot\n";

fn csv_rows(rows: &[ExportedClick]) -> Bytes {
    let mut out = csv::WriterBuilder::new()
        .has_headers(false)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::with_capacity(rows.len() * 160));
    for row in rows {
        // Writing to a Vec cannot fail.
        let _ = out.write_record([
            row.id.to_string().as_str(),
            render_timestamp(&row.at).as_str(),
            row.referrer.as_deref().unwrap_or(""),
            row.user_agent.as_deref().unwrap_or(""),
            &row.browser,
            &row.os,
            &row.device,
            if row.bot { "true" } else { "false" },
        ]);
    }
    Bytes::from(out.into_inner().unwrap_or_default())
}

/// `GET /urls/{id}/clicks.csv`: the url's clicks within retention and `[from, to]` (to the
/// second), oldest first. The first chunk is read before answering (so a missing url is a 404
/// and a database that is down a 503); the rest is streamed by a task, one short query per chunk,
/// through a channel of two chunks: memory stays flat however many clicks the url has.
pub async fn export(state: &AppState, id: i64, query: Option<&str>) -> HandlerResult {
    let mut query = Query::parse(query);
    let (from, to) = range(&mut query)?;
    query.finish()?;
    let floor = NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default();
    // Both ends to the second, as timestamps are shown: `from=…:00.5` keeps a click at `…:00.25`.
    let mut from = from.map_or(floor, truncate_second);
    if let Some(cutoff) = state.store.click_retention_cutoff() {
        from = from.max(cutoff);
    }
    let to = to.map_or(NaiveDateTime::MAX, |t| {
        truncate_second(t) + Span::seconds(1)
    });
    let to = to.min(
        NaiveDate::from_ymd_opt(9999, 12, 31)
            .and_then(|d| d.and_hms_opt(23, 59, 59))
            .unwrap_or_default(),
    );
    let links = state
        .store
        .click_links_of(id)
        .await?
        .ok_or_else(|| ApiError::not_found("url"))?;
    let store = state.store.clone();
    let first = store
        .export_clicks(&links, 0, from, to, EXPORT_CHUNK)
        .await?;
    let (tx, body) = Body::channel(2);
    tokio::spawn(async move {
        let mut chunk = first;
        let mut head = Some(CSV_HEADER);
        loop {
            let mut bytes = head.take().map(|h| h.to_vec()).unwrap_or_default();
            bytes.extend_from_slice(&csv_rows(&chunk));
            if tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                return; // the client went away
            }
            if (chunk.len() as i64) < EXPORT_CHUNK {
                return;
            }
            let after = chunk.last().map_or(0, |c| c.id);
            chunk = match store
                .export_clicks(&links, after, from, to, EXPORT_CHUNK)
                .await
            {
                Ok(chunk) => chunk,
                Err(err) => {
                    warn!(error = %err, url_id = id, "click export failed midway");
                    let _ = tx
                        .send(Err(std::io::Error::other(
                            "the export could not be completed",
                        )))
                        .await;
                    return;
                }
            };
        }
    });
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(disposition) =
        HeaderValue::try_from(format!("attachment; filename=\"url-{id}-clicks.csv\""))
    {
        headers.insert(CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}

fn truncate_second(at: NaiveDateTime) -> NaiveDateTime {
    at.with_nanosecond(0).unwrap_or(at)
}
