//! Health (liveness), readiness, metrics and the OpenAPI description.

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::json;

use super::{AppState, HandlerResult};
use crate::http::response;

/// The OpenAPI 3.1 description of the API (`openapi.json` at the crate root), built into the binary.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// Liveness: the process serves. Never touches the database.
pub fn health() -> HandlerResult {
    Ok(response::json(StatusCode::OK, &json!({"status": "ok"})))
}

/// Readiness: the database answers and the schema is at the expected migration.
pub async fn ready(state: &AppState) -> HandlerResult {
    Ok(match state.store.readiness().await {
        Ok(()) => response::json(StatusCode::OK, &json!({"status": "ready"})),
        Err(reason) => response::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unavailable", "reason": reason}),
        ),
    })
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
