//! `/events` and `/events/{id}`.

use hyper::StatusCode;
use serde_json::{Map, Value};

use super::{list_response, AppState, HandlerResult};
use crate::error::ApiError;
use crate::http::query::Query;
use crate::http::response;
use crate::model::NewEvent;
use crate::store::events::EventFilter;
use crate::store::StoreError;

fn event_error(err: StoreError) -> ApiError {
    match err {
        StoreError::NotFound(what) => ApiError::not_found(what),
        other => other.into(),
    }
}

pub async fn create(state: &AppState, body: Map<String, Value>) -> HandlerResult {
    let new = NewEvent::from_json(&body)?;
    let writer = state.writers.as_ref().map(|w| &w.events);
    let event = super::write(writer, new, |new| async move {
        state.store.create_event(&new).await
    })
    .await
    .map_err(event_error)?;
    Ok(response::json(StatusCode::CREATED, &event))
}

pub async fn list(state: &AppState, query: Option<&str>) -> HandlerResult {
    let mut query = Query::parse(query);
    let filter = EventFilter {
        url_id: query.int("url_id"),
        user_id: query.int("user_id"),
        event_type: query.string("event_type"),
    };
    let pagination = query.pagination(state.settings.list_cap);
    query.finish()?;
    let (events, total) = state.store.list_events(filter, pagination.page()).await?;
    Ok(list_response("/events", &query, pagination, &events, total))
}

pub async fn get(state: &AppState, id: i64) -> HandlerResult {
    let event = state.store.get_event(id).await.map_err(event_error)?;
    Ok(response::json(StatusCode::OK, &event))
}
