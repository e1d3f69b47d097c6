//! Health (liveness), readiness and metrics.

use hyper::StatusCode;
use serde_json::json;

use super::{AppState, HandlerResult};
use crate::http::response;

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
    let (open, idle) = state.store.pool_state();
    state.metrics.pool_connections.set(i64::from(open));
    state.metrics.pool_idle.set(i64::from(idle));
    state.links.sync().await;
    state
        .metrics
        .cache_entries
        .set(state.links.entry_count() as i64);
    let (body, content_type) = state.metrics.render();
    Ok(response::text(StatusCode::OK, content_type, body))
}
