//! Health (liveness), readiness, metrics and the OpenAPI description.

use bytes::Bytes;
use gitrev_http::response;
use hyper::StatusCode;
use serde_json::json;

use super::{AppState, HandlerResult};
use crate::error::ApiError;

/// The OpenAPI 3.1 description of the API (`openapi.json` at the crate root), built into the binary.
pub const OPENAPI_JSON: &str = include_str!("../../../openapi.json");

/// Liveness: the process serves. Never touches the database.
pub fn health() -> HandlerResult {
    Ok(response::json(StatusCode::OK, &json!({"status": "ok"})))
}

/// Readiness: the database answers and the schema is at the expected migration. When not, the
/// error edge answers 503 naming the condition (the cause goes to the log).
pub async fn ready(state: &AppState) -> HandlerResult {
    state.store.readiness().await.map_err(ApiError::NotReady)?;
    Ok(response::json(StatusCode::OK, &json!({"status": "ready"})))
}

pub async fn metrics(state: &AppState) -> HandlerResult {
    let pool = state.store.pool_state();
    let metrics = &state.metrics;
    metrics.pool_connections.set(i64::from(pool.open));
    metrics.pool_idle.set(i64::from(pool.idle));
    metrics
        .pool_in_use
        .set(i64::from(pool.open.saturating_sub(pool.idle)));
    metrics.pool_waiting.set(i64::from(pool.waiting));
    let passed = state.store.deadlines_passed();
    metrics
        .db_deadlines_passed
        .inc_by(passed.saturating_sub(metrics.db_deadlines_passed.get()));
    let (halves, whole) = state.store.searches();
    for (plan, count) in [("halves", halves), ("whole", whole)] {
        let counter = metrics.url_searches.with_label_values(&[plan]);
        counter.inc_by(count.saturating_sub(counter.get()));
    }
    state.links.sync().await;
    state
        .metrics
        .cache_entries
        .set(state.links.entry_count() as i64);
    let (body, content_type) = state.metrics.render();
    Ok(response::text(StatusCode::OK, content_type, body))
}

/// `GET /openapi.json`: the API's OpenAPI description, as built into this binary.
pub fn openapi() -> HandlerResult {
    Ok(response::text(
        StatusCode::OK,
        "application/json".to_owned(),
        Bytes::from_static(OPENAPI_JSON.as_bytes()),
    ))
}
