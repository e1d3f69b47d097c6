//! `/keys` and `/keys/{id}` (admin scope): make a key (shown once, in the 201; bound to one user
//! if asked), list the keys (never the key itself), revoke one.

use gitrev_core::model::render_timestamp;
use gitrev_store::keys::{ApiKey, KeyLimit, Scope};
use hyper::StatusCode;
use serde_json::{json, Map, Value};

use super::{AppState, HandlerResult};
use crate::error::ApiError;
use gitrev_http::response;

/// The largest `rate` (per second) or `burst` a key may be given.
const MAX_LIMIT: u64 = 1_000_000;

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
    let mut problems = Vec::new();
    let name = match body.get("name") {
        Some(Value::String(name)) if (1..=100).contains(&name.trim().chars().count()) => {
            Some(name.trim())
        }
        Some(Value::String(_)) => {
            problems.push(("name".to_owned(), "must be 1 to 100 characters".to_owned()));
            None
        }
        Some(_) => {
            problems.push(("name".to_owned(), "must be a string".to_owned()));
            None
        }
        None => {
            problems.push(("name".to_owned(), "is required".to_owned()));
            None
        }
    };
    let scope = match body.get("scope") {
        Some(Value::String(scope)) => Scope::parse(scope).or_else(|| {
            problems.push((
                "scope".to_owned(),
                "must be read, write or admin".to_owned(),
            ));
            None
        }),
        Some(_) => {
            problems.push(("scope".to_owned(), "must be a string".to_owned()));
            None
        }
        None => {
            problems.push(("scope".to_owned(), "is required".to_owned()));
            None
        }
    };
    let user_id = match body.get("user_id") {
        None | Some(Value::Null) => None,
        Some(value) => {
            let id = value.as_i64().filter(|id| *id >= 1);
            if id.is_none() {
                problems.push((
                    "user_id".to_owned(),
                    "must be a positive integer".to_owned(),
                ));
            } else if scope == Some(Scope::Admin) {
                problems.push((
                    "user_id".to_owned(),
                    "an admin key covers every user: it cannot be bound to one".to_owned(),
                ));
            }
            id
        }
    };
    let mut limit_field = |field: &str| match body.get(field) {
        None | Some(Value::Null) => None,
        Some(value) => {
            let limit = value.as_u64().filter(|n| (1..=MAX_LIMIT).contains(n));
            if limit.is_none() {
                problems.push((
                    field.to_owned(),
                    format!("must be an integer from 1 to {MAX_LIMIT}"),
                ));
            }
            limit.and_then(|n| u32::try_from(n).ok())
        }
    };
    let limit = KeyLimit {
        rate: limit_field("rate"),
        burst: limit_field("burst"),
    };
    let (Some(name), Some(scope), true) = (name, scope, problems.is_empty()) else {
        return Err(ApiError::Validation(problems));
    };
    let (key, secret) = state.store.create_key(name, scope, user_id, limit).await?;
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
