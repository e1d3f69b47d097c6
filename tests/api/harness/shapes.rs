//! The shapes of what the API answers: the fields of a user, a url and an event, the timestamp
//! format, the error body (`{"error", "code", "details"?}`) and the JSON content type.

use std::collections::BTreeSet;

use reqwest::Client;
use serde_json::Value;

use super::http::{client, Reply};
use super::server::{server, TestServer};

pub fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, got {value}"))
        .keys()
        .cloned()
        .collect()
}

pub fn assert_keys(value: &Value, expected: &[&str]) {
    let expected: BTreeSet<String> = expected.iter().map(|k| k.to_string()).collect();
    assert_eq!(keys(value), expected, "fields of {value}");
}

/// `YYYY-MM-DDTHH:MM:SS`: a `T`, no zone, no fraction.
pub fn is_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 19
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            _ => b.is_ascii_digit(),
        })
}

pub fn assert_timestamp(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} must be a string, got {value}"));
    assert!(
        is_timestamp(text),
        "{what} must look like YYYY-MM-DDTHH:MM:SS, got {text:?}"
    );
}

pub fn is_base62_code(code: &str) -> bool {
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub fn assert_user(user: &Value) {
    assert_keys(user, &["id", "username", "email", "created_at"]);
    assert!(user["id"].is_i64(), "user id must be an integer: {user}");
    assert!(user["username"].is_string(), "username: {user}");
    assert!(user["email"].is_string(), "email: {user}");
    assert_timestamp(&user["created_at"], "user created_at");
}

pub fn assert_url(url: &Value) {
    assert_keys(
        url,
        &[
            "id",
            "user_id",
            "short_code",
            "original_url",
            "title",
            "is_active",
            "created_at",
            "updated_at",
            "expires_at",
            "max_clicks",
            "expired_url",
            "redirect_status",
            "forward_query",
            "tags",
        ],
    );
    assert!(
        url["expires_at"].is_null() || url["expires_at"].as_str().is_some_and(is_timestamp),
        "expires_at: {url}"
    );
    for nullable_int in ["max_clicks", "redirect_status"] {
        assert!(
            url[nullable_int].is_null() || url[nullable_int].is_i64(),
            "{nullable_int}: {url}"
        );
    }
    assert!(
        url["expired_url"].is_null() || url["expired_url"].is_string(),
        "expired_url: {url}"
    );
    assert!(url["forward_query"].is_boolean(), "forward_query: {url}");
    assert!(
        url["tags"]
            .as_array()
            .is_some_and(|t| t.iter().all(Value::is_string)),
        "tags: {url}"
    );
    assert!(url["id"].is_i64(), "url id must be an integer: {url}");
    assert!(
        url["user_id"].is_i64() || url["user_id"].is_null(),
        "user_id: {url}"
    );
    assert!(url["short_code"].is_string(), "short_code: {url}");
    assert!(url["original_url"].is_string(), "original_url: {url}");
    assert!(
        url["title"].is_string() || url["title"].is_null(),
        "title: {url}"
    );
    assert!(url["is_active"].is_boolean(), "is_active: {url}");
    assert_timestamp(&url["created_at"], "url created_at");
    assert_timestamp(&url["updated_at"], "url updated_at");
}

pub fn assert_event(event: &Value) {
    assert_keys(
        event,
        &[
            "id",
            "url_id",
            "user_id",
            "event_type",
            "timestamp",
            "details",
        ],
    );
    assert!(event["id"].is_i64(), "event id must be an integer: {event}");
    assert!(
        event["url_id"].is_i64() || event["url_id"].is_null(),
        "url_id: {event}"
    );
    assert!(
        event["user_id"].is_i64() || event["user_id"].is_null(),
        "user_id: {event}"
    );
    assert!(event["event_type"].is_string(), "event_type: {event}");
    assert_timestamp(&event["timestamp"], "event timestamp");
    assert!(
        event["details"].is_object(),
        "details must be a JSON object, never a string: {event}"
    );
}

pub fn assert_json_content_type(reply: &Reply) {
    let content_type = reply.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "content-type must be application/json, got {content_type:?} (status {}, body {})",
        reply.status,
        reply.text
    );
}

/// Checks an error answer: the status, a JSON body with a non-empty `error` message and the `code`.
pub fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(
        reply.status, status,
        "expected {status} {code}, got {} with body {}",
        reply.status, reply.text
    );
    assert_json_content_type(reply);
    let message = reply.json["error"].as_str().unwrap_or("");
    assert!(
        !message.is_empty(),
        "an error needs a human message in `error`: {}",
        reply.text
    );
    assert_eq!(
        reply.json["code"].as_str(),
        Some(code),
        "error code in {}",
        reply.text
    );
}

/// Checks a 422 whose `details` names `field`.
pub fn assert_invalid_field(reply: &Reply, field: &str) {
    assert_error(reply, 422, "validation_failed");
    assert!(
        reply.json["details"].get(field).is_some(),
        "details must name {field:?}: {}",
        reply.text
    );
}

/// `GET path` on the shared server is a JSON 404 `not_found`.
pub async fn assert_not_found(path: &str) {
    assert_error(&server().get(&client(), path).await, 404, "not_found");
}

/// `GET path` on `srv` is a redirect (the configured status, 302 by default) to `target`.
pub async fn assert_redirects(srv: &TestServer, c: &Client, path: &str, target: &str) {
    let reply = srv.get(c, path).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (302, Some(target)),
        "GET {path} redirects to {target}: {}",
        reply.text
    );
}
