//! `GET|HEAD /{short_code}`: the hot path.
//!
//! An active link answers with the configured redirect status and its target; GET records a
//! `click` (HEAD does not: link-preview bots and crawlers send HEAD). Unknown and inactive codes
//! are a 404 with nothing recorded.

use hyper::header::{HeaderValue, REFERER, USER_AGENT};
use hyper::HeaderMap;
use serde_json::{Map, Value};

use super::{AppState, HandlerResult};
use crate::error::ApiError;
use crate::http::response;
use crate::store::urls::Click;

/// The `location` value for a stored target: the URL in its normalized ASCII form (punycode
/// host, percent-encoded path), which is always a valid header value.
pub fn location(original_url: &str) -> Option<HeaderValue> {
    let normalized = url::Url::parse(original_url).ok()?;
    HeaderValue::from_str(normalized.as_str()).ok()
}

fn header_text(headers: &HeaderMap, name: hyper::header::HeaderName) -> Option<Value> {
    headers
        .get(name)
        .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
}

pub async fn redirect(
    state: &AppState,
    code: &str,
    headers: &HeaderMap,
    count_click: bool,
) -> HandlerResult {
    let link = state
        .store
        .find_link(code)
        .await?
        .filter(|link| link.is_active)
        .ok_or_else(|| ApiError::not_found("short code"))?;
    let location = location(&link.original_url)
        .ok_or_else(|| ApiError::Internal(format!("url {} has an unusable target", link.url_id)))?;
    if count_click {
        let mut details = Map::new();
        details.insert("short_code".into(), Value::String(code.to_owned()));
        details.insert(
            "original_url".into(),
            Value::String(link.original_url.clone()),
        );
        if let Some(referrer) = header_text(headers, REFERER) {
            details.insert("referrer".into(), referrer);
        }
        if let Some(agent) = header_text(headers, USER_AGENT) {
            details.insert("user_agent".into(), agent);
        }
        let click = Click {
            url_id: link.url_id,
            user_id: link.user_id,
            details: Value::Object(details),
        };
        state
            .store
            .record_clicks(std::slice::from_ref(&click))
            .await?;
    }
    Ok(response::redirect(state.redirect_status, location))
}
