//! `GET|HEAD /{short_code}`: the hot path.
//!
//! An active link answers with the configured redirect status and its target; GET records a
//! `click` (HEAD does not: link-preview bots and crawlers send HEAD). Unknown and inactive codes
//! are a 404 with nothing recorded. The answer comes from the link cache; the click goes to the
//! click queue. Neither puts a database write on the request's path.

use gitrev_http::response;
use gitrev_links::cache::CachedLink;
use gitrev_store::clicks::{self, Click};
use hyper::header::{REFERER, USER_AGENT};
use hyper::HeaderMap;

use super::{AppState, HandlerResult};
use crate::error::ApiError;

/// A request header as text for the click's details (bounded: a header is at most what the
/// server accepted).
fn header_text(headers: &HeaderMap, name: hyper::header::HeaderName) -> Option<Box<str>> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into())
}

fn click(link: &CachedLink, headers: &HeaderMap) -> Click {
    Click {
        url_id: link.url_id,
        user_id: link.user_id,
        at: clicks::now_micros(),
        short_code: Some(link.short_code.clone()),
        original_url: Some(link.original_url()),
        referrer: header_text(headers, REFERER),
        user_agent: header_text(headers, USER_AGENT),
        extra: None,
    }
}

pub async fn redirect(
    state: &AppState,
    code: &str,
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
    if count_click {
        state.clicks.record(click(&link, headers));
    }
    Ok(response::redirect(
        state.redirect_status,
        link.location.clone(),
    ))
}
