//! `/keys` and `/keys/{id}` (admin scope): make a key (shown once, in the 201; bound to one user
//! if asked), list the keys (never the key itself), revoke one.

use gitrev_core::model::{render_timestamp, NewKey};
use gitrev_store::keys::{ApiKey, KeyLimit, Scope};
use hyper::StatusCode;
use serde_json::{json, Map, Value};

use super::{AppState, HandlerResult};
use gitrev_http::response;

fn key_json(key: &ApiKey) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "scope": key.scope.as_str(),
        "prefix": key.prefix,
        "user_id": key.user_id,
        "rate": key.limit.rate,
        "burst": key.limit.burst,
        "created_at": render_timestamp(&key.created_at),
        "last_used_at": key.last_used_at.as_ref().map(render_timestamp),
    })
}

pub async fn create(state: &AppState, body: Map<String, Value>) -> HandlerResult {
    let new = NewKey::from_json(&body)?;
    // `from_json` admits the three scopes only.
    let scope = Scope::parse(&new.scope).unwrap_or(Scope::Read);
    let limit = KeyLimit {
        rate: new.rate,
        burst: new.burst,
    };
    let (key, secret) = state
        .store
        .create_key(&new.name, scope, new.user_id, limit)
        .await?;
    // This replica knows at once (the first key closes an open API here before its NOTIFY is back).
    state.keyring.changed();
    let mut body = key_json(&key);
    body["key"] = Value::String(secret.expose().to_owned());
    Ok(response::json(StatusCode::CREATED, &body))
}

pub async fn list(state: &AppState) -> HandlerResult {
    let keys: Vec<Value> = state
        .store
        .list_keys()
        .await?
        .iter()
        .map(key_json)
        .collect();
    Ok(response::json(StatusCode::OK, &keys))
}

pub async fn revoke(state: &AppState, id: i64) -> HandlerResult {
    state.store.revoke_key(id).await?;
    // This replica stops trusting what it holds at once, without waiting for its own NOTIFY.
    state.keyring.changed();
    Ok(response::no_content())
}
