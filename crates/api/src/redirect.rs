//! `GET|HEAD /{short_code}`: the hot path.
//!
//! An active link answers with its redirect status (else the configured one) and its target —
//! with the request's query appended when it forwards queries; GET records a `click` (HEAD does
//! not: link-preview bots and crawlers send HEAD). Unknown and inactive codes are a 404 with
//! nothing recorded; an expired link (by time or by `max_clicks`) goes to its `expired_url` with
//! 302, or is a 404 `expired`, with nothing recorded. The answer comes from the link cache (see
//! `gitrev_links::lifecycle` for expiry and limits); the click goes to the click queue. Neither
//! puts a database query on the request's path.

use gitrev_http::response;
use gitrev_links::cache::{CachedLink, Verdict};
use gitrev_store::clicks::{self, Click};
use hyper::header::{REFERER, USER_AGENT};
use hyper::{HeaderMap, StatusCode};

use super::{AppState, HandlerResult};
use crate::error::ApiError;

/// A request header as text for the click's details (bounded: a header is at most what the
/// server accepted).
fn header_text(headers: &HeaderMap, name: hyper::header::HeaderName) -> Option<Box<str>> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into())
}

fn click(link: &CachedLink, headers: &HeaderMap, at: i64) -> Click {
    Click {
        url_id: link.url_id,
        user_id: link.user_id,
        at,
        short_code: Some(link.short_code.clone()),
        original_url: Some(link.original_url()),
        referrer: header_text(headers, REFERER),
        user_agent: header_text(headers, USER_AGENT),
        extra: None,
        limited: link.is_limited(),
    }
}

pub async fn redirect(
    state: &AppState,
    code: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    count_click: bool,
) -> HandlerResult {
    let entry = match state.links.peek(code).await {
        Some(entry) => {
            state.metrics.batch.cache_hits.inc();
            entry
        }
        None => {
            state.metrics.batch.cache_misses.inc();
            state
                .links
                .get(code, &state.store)
                .await
                .map_err(|err| ApiError::Unavailable(err.to_string()))?
        }
    };
    let link = entry.ok_or_else(|| ApiError::not_found("short code"))?;
    let now = clicks::now_micros();
    match link.decide(now, query, count_click) {
        Verdict::Go(location) => {
            if count_click && !state.clicks.record(click(&link, headers, now)) {
                link.release_click();
            }
            Ok(response::redirect(
                link.status.unwrap_or(state.redirect_status),
                location,
            ))
        }
        Verdict::Fallback(location) => Ok(response::redirect(StatusCode::FOUND, location)),
        Verdict::Expired => Err(ApiError::Expired),
    }
}
