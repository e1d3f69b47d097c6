//! `/events` and `/events/{id}`.

use gitrev_core::model::NewEvent;
use gitrev_http::query::Query;
use gitrev_http::response;
use gitrev_store::events::EventFilter;
use hyper::StatusCode;
use serde_json::{Map, Value};

use super::{list_response, AppState, HandlerResult};

pub async fn create(state: &AppState, body: Map<String, Value>) -> HandlerResult {
    let new = NewEvent::from_json(&body)?;
    let writer = state.writers.as_ref().map(|w| &w.events);
    let event = super::write(writer, new, |new| async move {
        state.store.create_event(&new).await
    })
    .await?;
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
    let event = state.store.get_event(id).await?;
    Ok(response::json(StatusCode::OK, &event))
}
