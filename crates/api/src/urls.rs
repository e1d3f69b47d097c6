//! `/urls`, `/urls/{id}` and `/urls/{id}/stats`.

use gitrev_core::model::{NewUrl, UrlChanges};
use gitrev_http::query::Query;
use gitrev_http::response;
use gitrev_store::urls::UrlFilter;
use hyper::StatusCode;
use serde_json::{Map, Value};

use super::{list_response, AppState, HandlerResult};

pub async fn create(state: &AppState, body: Map<String, Value>) -> HandlerResult {
    let new = NewUrl::from_json(&body)?;
    let custom = new.short_code.is_some();
    let writer = state.writers.as_ref().map(|w| &w.urls);
    let url = super::write(writer, new, |new| async move {
        state.store.create_url(&new).await
    })
    .await?;
    if custom {
        state.links.invalidate(&url.short_code).await;
    }
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
