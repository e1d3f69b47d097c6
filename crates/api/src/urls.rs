//! `/urls`, `/urls/bulk`, `/urls/{id}`, `/urls/{id}/stats` and `/urls/{id}/qr.{svg,png}`.

use gitrev_core::model::{NewUrl, Url, UrlChanges};
use gitrev_http::query::Query;
use gitrev_http::{body, response};
use gitrev_store::urls::UrlFilter;
use gitrev_store::StoreError;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, HOST};
use hyper::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{bound, list_response, qr, AppState, HandlerResult};
use crate::ApiError;

/// Most urls one `POST /urls/bulk` may hold.
pub const MAX_BULK: usize = 1_000;

pub async fn create(state: &AppState, body: Map<String, Value>) -> HandlerResult {
    let new = NewUrl::from_json(&body)?;
    let writer = state.writers.as_ref().map(|w| &w.urls);
    let url = super::write(writer, new, |new| async move {
        state.store.create_url(&new).await
    })
    .await?;
    // Known here at once (the tier and a cached "no such code" included), before the answer: the
    // other replicas hear of it from the database's announcement.
    state.links.created(&url.short_code).await;
    Ok(response::json(StatusCode::CREATED, &url))
}

pub async fn list(state: &AppState, query: Option<&str>) -> HandlerResult {
    let mut query = Query::parse(query);
    let filter = UrlFilter {
        user_id: query.int("user_id"),
        is_active: query.boolean("is_active"),
        short_code: query.string("short_code"),
        tags: query.tags("tag"),
        q: query.search("q"),
        expired: query.boolean("expired"),
    };
    let pagination = query.pagination(state.settings.list_cap);
    query.finish()?;
    let (urls, total) = state.store.list_urls(filter, pagination.page()).await?;
    Ok(list_response("/urls", &query, pagination, &urls, total))
}

pub async fn get(state: &AppState, id: i64) -> HandlerResult {
    let url = state.store.get_url(id).await?;
    Ok(response::json(StatusCode::OK, &url))
}

pub async fn update(state: &AppState, id: i64, body: Map<String, Value>) -> HandlerResult {
    let changes = UrlChanges::from_json(&body)?;
    let url = state.store.update_url(id, &changes).await?;
    state.links.invalidate(&url.short_code).await;
    Ok(response::json(StatusCode::OK, &url))
}

pub async fn delete(state: &AppState, id: i64) -> HandlerResult {
    let code = state.store.delete_url(id).await?;
    state.links.invalidate(&code).await;
    Ok(response::no_content())
}

pub async fn stats(state: &AppState, id: i64) -> HandlerResult {
    let stats = state.store.url_stats(id).await?;
    Ok(response::json(StatusCode::OK, &stats))
}

/// `POST /urls/bulk`: a JSON array of up to [`MAX_BULK`] `POST /urls` bodies, each checked on its
/// own; the valid ones are written in one statement. 201 `{"created": [url…], "errors": [{"index",
/// "error", "code", "details"?}]}`, both in the array's order. The body may be as large as a CSV
/// upload (`GITREV_MAX_UPLOAD_BYTES`): a thousand urls do not fit the JSON limit.
pub async fn bulk(
    state: &AppState,
    headers: &HeaderMap,
    incoming: Incoming,
    user: Option<i64>,
) -> HandlerResult {
    let bytes = super::upload(state, headers, incoming).await?;
    let items = body::json_array(&bytes)?;
    if items.len() > MAX_BULK {
        return Err(ApiError::TooManyItems(MAX_BULK));
    }
    let mut errors: Vec<(usize, ApiError)> = Vec::new();
    let mut valid: Vec<(usize, NewUrl)> = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let Value::Object(mut obj) = item else {
            errors.push((
                index,
                ApiError::InvalidBody("each element must be a JSON object".into()),
            ));
            continue;
        };
        if let Some(user) = user {
            if let Err(err) =
                bound::body(state, gitrev_http::router::Route::Urls, user, &mut obj).await
            {
                errors.push((index, err));
                continue;
            }
        }
        match NewUrl::from_json(&obj) {
            Ok(new) => valid.push((index, new)),
            Err(err) => errors.push((index, err.into())),
        }
    }
    let group: Vec<NewUrl> = valid.iter().map(|(_, new)| new.clone()).collect();
    let results = if group.is_empty() {
        Vec::new()
    } else {
        state.store.create_urls(&group).await
    };
    // The database could take none of them: the whole request is a 503, nothing was made.
    if !results.is_empty()
        && results
            .iter()
            .all(|r| matches!(r, Err(StoreError::Unavailable(_))))
    {
        if let Some(Err(err)) = results.into_iter().next() {
            return Err(err.into());
        }
        return Err(ApiError::Unavailable("the database is unavailable".into()));
    }
    let mut created = Vec::with_capacity(results.len());
    for ((index, _), result) in valid.iter().zip(results) {
        match result {
            Ok(url) => {
                state.links.created(&url.short_code).await;
                created.push(url);
            }
            Err(err) => {
                let err = ApiError::from(err);
                if err.status().is_server_error() {
                    tracing::error!(index, error = %err, "a bulk url could not be written");
                }
                errors.push((*index, err));
            }
        }
    }
    errors.sort_by_key(|(index, _)| *index);
    let errors: Vec<Value> = errors
        .into_iter()
        .map(|(index, err)| {
            let mut body = err.body();
            if let Value::Object(map) = &mut body {
                map.insert("index".into(), json!(index));
            }
            body
        })
        .collect();
    Ok(response::json(
        StatusCode::CREATED,
        &BulkReply {
            created: &created,
            errors: &errors,
        },
    ))
}

/// The body of a `POST /urls/bulk` answer, serialized straight from the urls (through a
/// `serde_json::Value` first, a thousand urls took two and a half times as long: `cargo bench --bench
/// hot_paths -- json/bulk`).
#[derive(Serialize)]
pub struct BulkReply<'a> {
    pub created: &'a [Url],
    pub errors: &'a [Value],
}

/// The picture `GET /urls/{id}/qr.*` answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QrFormat {
    Svg,
    Png,
}

/// `GET /urls/{id}/qr.svg` and `qr.png?size=` (64..2048 pixels, default 512): the QR code of the
/// short link, whose origin is `GITREV_PUBLIC_URL`, else `http://` and the request's `host`.
pub async fn qr(
    state: &AppState,
    id: i64,
    headers: &HeaderMap,
    query: Option<&str>,
    format: QrFormat,
) -> HandlerResult {
    let mut params = Query::parse(query);
    let size = match format {
        QrFormat::Png => params.ranged("size", qr::MIN_PNG_SIZE, qr::MAX_PNG_SIZE),
        QrFormat::Svg => None,
    };
    params.finish()?;
    let origin = match &state.settings.public_url {
        Some(origin) => origin.clone(),
        None => format!("http://{}", request_host(headers)?),
    };
    let url = state.store.get_url(id).await?;
    let link = format!("{origin}/{}", url.short_code);
    let (content_type, bytes) = match format {
        QrFormat::Svg => ("image/svg+xml", qr::svg(&link).map(String::into_bytes)),
        QrFormat::Png => ("image/png", qr::png(&link, size.unwrap_or(512))),
    };
    let bytes = bytes.map_err(|err| ApiError::field("size", err.to_string()))?;
    let mut response = response::text(StatusCode::OK, content_type.into(), bytes);
    // A short code never changes; the origin might (a setting), so not forever.
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(response)
}

/// The request's `host` when it is a plain `host[:port]` (no user info, path or odd bytes: it is
/// written into the code as sent).
fn request_host(headers: &HeaderMap) -> Result<&str, ApiError> {
    const PROBLEM: &str = "a QR code needs the short link's origin: send a valid host header or set GITREV_PUBLIC_URL";
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::trim)
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        })
        .ok_or_else(|| ApiError::field("host", PROBLEM))?;
    Ok(host)
}
