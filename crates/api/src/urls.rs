//! `/urls`, `/urls/{id}` and `/urls/{id}/stats`.

use hyper::StatusCode;
use serde_json::{Map, Value};

use super::{list_response, AppState, HandlerResult};
use crate::error::ApiError;
use crate::http::query::Query;
use crate::http::response;
use crate::model::{NewUrl, UrlChanges};
use crate::store::urls::UrlFilter;
use crate::store::StoreError;

fn url_error(err: StoreError) -> ApiError {
    match err {
        StoreError::Conflict("short_code") => ApiError::Conflict {
            field: "short_code".into(),
            message: "short_code is already taken".into(),
        },
        StoreError::NotFound(what) => ApiError::not_found(what),
        other => other.into(),
    }
}

pub async fn create(state: &AppState, body: Map<String, Value>) -> HandlerResult {
    let new = NewUrl::from_json(&body)?;
    let custom = new.short_code.is_some();
    let writer = state.writers.as_ref().map(|w| &w.urls);
    let url = super::write(writer, new, |new| async move {
        state.store.create_url(&new).await
    })
    .await
    .map_err(url_error)?;
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
    };
    let pagination = query.pagination(state.settings.list_cap);
    query.finish()?;
    let (urls, total) = state.store.list_urls(filter, pagination.page()).await?;
    Ok(list_response("/urls", &query, pagination, &urls, total))
}

pub async fn get(state: &AppState, id: i64) -> HandlerResult {
    let url = state.store.get_url(id).await.map_err(url_error)?;
    Ok(response::json(StatusCode::OK, &url))
}

pub async fn update(state: &AppState, id: i64, body: Map<String, Value>) -> HandlerResult {
    let changes = UrlChanges::from_json(&body)?;
    let url = state
        .store
        .update_url(id, &changes)
        .await
        .map_err(url_error)?;
    state.links.invalidate(&url.short_code).await;
    Ok(response::json(StatusCode::OK, &url))
}

pub async fn delete(state: &AppState, id: i64) -> HandlerResult {
    let code = state.store.delete_url(id).await.map_err(url_error)?;
    state.links.invalidate(&code).await;
    Ok(response::no_content())
}

pub async fn stats(state: &AppState, id: i64) -> HandlerResult {
    let stats = state.store.url_stats(id).await.map_err(url_error)?;
    Ok(response::json(StatusCode::OK, &stats))
}
