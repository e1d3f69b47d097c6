//! Keys bound to one user (docs/api.md, "Access control"): such a key sees and changes only that
//! user, that user's urls and their events. Everything else answers 404, as if it did not exist,
//! and every list is filtered to them. Applied here, once, between the access check and the
//! handlers ([`crate::dispatch`]): a handler never knows whether its key was bound.
//!
//! "Their events" are the events whose `user_id` is the user: a click carries the owner of its url,
//! and an event the bound key posts without a `user_id` is given the user's.

use gitrev_http::router::Route;
use hyper::Method;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::AppState;

/// An id no row has: a list asked about another user's rows answers empty, with the list's usual
/// shape and validation.
const NOBODY: i64 = i64::MAX;

/// Refuses (404, or 403 for creating users) what `user`'s key may not reach, before any handler
/// runs. Single resources are looked up (one query) to find their owner.
pub async fn check(
    state: &AppState,
    route: Route<'_>,
    method: &Method,
    user: i64,
) -> Result<(), ApiError> {
    match route {
        Route::User(id) if id != user => Err(ApiError::not_found("user")),
        Route::Users if *method == Method::POST => Err(ApiError::BoundKey(
            "this API key is bound to one user: it cannot create users",
        )),
        Route::Url(id)
        | Route::UrlStats(id)
        | Route::UrlTimeseries(id)
        | Route::UrlBreakdown(id)
        | Route::UrlClicksCsv(id)
        | Route::UrlQrSvg(id)
        | Route::UrlQrPng(id) => owns_url(state, id, user).await,
        Route::Event(id) => match state.store.get_event(id).await?.user_id {
            Some(owner) if owner == user => Ok(()),
            _ => Err(ApiError::not_found("event")),
        },
        _ => Ok(()),
    }
}

async fn owns_url(state: &AppState, id: i64, user: i64) -> Result<(), ApiError> {
    match state.store.get_url(id).await?.user_id {
        Some(owner) if owner == user => Ok(()),
        _ => Err(ApiError::not_found("url")),
    }
}

/// The query string of a list, filtered to `user` (`user_id` first; a `user_id` the client gave
/// for someone else matches nothing). Lists other than urls and events are left alone.
pub fn list_query(route: Route<'_>, query: Option<&str>, user: i64) -> Option<String> {
    if !matches!(route, Route::Urls | Route::Events) {
        return None;
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let others = pairs
        .iter()
        .any(|(k, v)| k == "user_id" && v.trim() != user.to_string());
    let mut out = form_urlencoded::Serializer::new(String::new());
    out.append_pair("user_id", &if others { NOBODY } else { user }.to_string());
    for (k, v) in pairs.iter().filter(|(k, _)| k != "user_id") {
        out.append_pair(k, v);
    }
    Some(out.finish())
}

/// A body creating or changing a url or an event (each element of `POST /urls/bulk` is checked
/// as one `POST /urls`), made to stay within `user`: a missing
/// `user_id` becomes the user's, another user's is 404, and an event's url must be theirs.
pub async fn body(
    state: &AppState,
    route: Route<'_>,
    user: i64,
    body: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let creating = matches!(route, Route::Urls | Route::Events);
    if !creating && !matches!(route, Route::Url(_)) {
        return Ok(());
    }
    match body.get("user_id") {
        None | Some(Value::Null) if creating => {
            body.insert("user_id".into(), Value::from(user));
        }
        None => {}
        // Detaching a url from its user would put it out of the key's reach: not the key's to do.
        Some(Value::Null) => {
            return Err(ApiError::field(
                "user_id",
                "a key bound to one user cannot detach a url from that user",
            ))
        }
        Some(value) if value.as_i64() == Some(user) => {}
        // Not a number at all: the handler's validation says so.
        Some(value) if value.as_i64().is_none() => {}
        Some(_) => return Err(ApiError::not_found("user")),
    }
    if route == Route::Events {
        if let Some(url) = body.get("url_id").and_then(Value::as_i64) {
            return owns_url(state, url, user).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_filtered_to_the_user() {
        let q = |query| list_query(Route::Urls, query, 7);
        assert_eq!(q(None).as_deref(), Some("user_id=7"));
        assert_eq!(q(Some("page=2")).as_deref(), Some("user_id=7&page=2"));
        assert_eq!(
            q(Some("user_id=7&page=2")).as_deref(),
            Some("user_id=7&page=2")
        );
        assert_eq!(
            q(Some("user_id=8")).as_deref(),
            Some("user_id=9223372036854775807")
        );
        assert_eq!(
            q(Some("user_id=7&user_id=8")).as_deref(),
            Some("user_id=9223372036854775807")
        );
        assert_eq!(list_query(Route::Users, Some("page=1"), 7), None);
    }
}
