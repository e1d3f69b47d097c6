//! Bodies that are not a JSON object: 400 `invalid_body` on every POST, PUT and PATCH, never a 500,
//! whatever the content type says. And the other way round: a JSON object is accepted whatever the
//! content type says.

use reqwest::Method;
use serde_json::json;

use crate::harness::{
    assert_error, assert_invalid_field, client, create_url, create_user, fresh_database, id_of,
    read_reply, server, start_server_on, unique, unique_email, unique_original_url,
};

/// Every kind of non-object body, each with the content type a client would plausibly send it with.
fn bad_bodies() -> Vec<(&'static str, Vec<u8>, Option<&'static str>)> {
    let json = Some("application/json");
    vec![
        ("empty, no content type", Vec::new(), None),
        ("empty JSON", Vec::new(), json),
        ("whitespace", b"  \n ".to_vec(), json),
        ("plain text", b"hello there".to_vec(), Some("text/plain")),
        (
            "form-encoded",
            b"username=a&email=b%40example.com".to_vec(),
            Some("application/x-www-form-urlencoded"),
        ),
        (
            "form-encoded sent as JSON",
            b"username=a&email=b".to_vec(),
            json,
        ),
        ("JSON string", b"\"str\"".to_vec(), json),
        ("JSON array", b"[1]".to_vec(), json),
        ("empty JSON array", b"[]".to_vec(), json),
        (
            "array of an object",
            b"[{\"username\":\"a\"}]".to_vec(),
            json,
        ),
        ("JSON number", b"42".to_vec(), json),
        ("JSON null", b"null".to_vec(), json),
        ("JSON true", b"true".to_vec(), json),
        ("malformed", b"{broken".to_vec(), json),
        ("trailing comma", b"{\"username\": \"a\",}".to_vec(), json),
        (
            "object then garbage",
            b"{\"username\": \"a\"} x".to_vec(),
            json,
        ),
        (
            "invalid UTF-8",
            b"{\"username\": \"\xff\xfe\"}".to_vec(),
            json,
        ),
    ]
}

async fn assert_all_rejected(method: Method, path: &str) {
    let c = client();
    for (what, body, content_type) in bad_bodies() {
        let reply = server()
            .send(&c, method.clone(), path, content_type, Some(body))
            .await;
        assert_eq!(
            reply.status, 400,
            "{method} {path} with {what}: expected 400, got {} {}",
            reply.status, reply.text
        );
        assert_error(&reply, 400, "invalid_body");
    }
}

#[tokio::test]
async fn post_users() {
    assert_all_rejected(Method::POST, "/users").await;
}

#[tokio::test]
async fn put_and_patch_users() {
    let c = client();
    let user = create_user(&c).await;
    let path = format!("/users/{}", id_of(&user));
    assert_all_rejected(Method::PUT, &path).await;
    assert_all_rejected(Method::PATCH, &path).await;
    let read = server().get(&c, &path).await.expect(200, "GET");
    assert_eq!(read.json, user, "rejected bodies change nothing");
}

#[tokio::test]
async fn post_urls() {
    assert_all_rejected(Method::POST, "/urls").await;
}

#[tokio::test]
async fn put_and_patch_urls() {
    let c = client();
    let user = create_user(&c).await;
    let url = create_url(&c, id_of(&user)).await;
    let path = format!("/urls/{}", id_of(&url));
    assert_all_rejected(Method::PUT, &path).await;
    assert_all_rejected(Method::PATCH, &path).await;
    let read = server().get(&c, &path).await.expect(200, "GET");
    assert_eq!(read.json, url, "rejected bodies change nothing");
}

#[tokio::test]
async fn post_events() {
    assert_all_rejected(Method::POST, "/events").await;
}

#[tokio::test]
async fn a_json_object_is_accepted_whatever_the_content_type() {
    let c = client();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=utf-8"),
    ] {
        let body = json!({"username": unique("ct"), "email": unique_email()});
        let reply = server()
            .send(
                &c,
                Method::POST,
                "/users",
                content_type,
                Some(body.to_string().into_bytes()),
            )
            .await;
        assert_eq!(
            reply.status, 201,
            "POST /users with content type {content_type:?}: {}",
            reply.text
        );
        assert_eq!(reply.json["email"], body["email"]);
    }
    let body = json!({"original_url": unique_original_url()});
    let reply = server()
        .send(
            &c,
            Method::POST,
            "/urls",
            Some("text/plain"),
            Some(body.to_string().into_bytes()),
        )
        .await;
    assert_eq!(
        reply.status, 201,
        "POST /urls as text/plain: {}",
        reply.text
    );
}

/// Sends `POST /users` declaring and streaming a body far over any sensible limit, reading the answer
/// while the body is still being written (a server may answer before reading it all, and close).
#[tokio::test]
async fn oversized_body_is_413() {
    let reply = server()
        .send_oversized(
            &Method::POST,
            "/users",
            "application/json",
            64 * 1024 * 1024,
        )
        .await;
    assert_error(&reply, 413, "payload_too_large");
}

#[tokio::test]
async fn the_body_limit_is_configurable() {
    let url = fresh_database("limit").await;
    let srv = start_server_on(&url, &[("GITREV_MAX_BODY_BYTES", "1024")]);
    let c = client();
    let over = json!({"username": "x".repeat(2000), "email": unique_email()});
    let reply = srv.post(&c, "/users", &over).await;
    assert_error(&reply, 413, "payload_too_large");
    let under = json!({"username": "x".repeat(600), "email": unique_email()});
    let reply = srv.post(&c, "/users", &under).await;
    assert_invalid_field(&reply, "username");
    let fits = json!({"username": "x".repeat(200), "email": unique_email()});
    srv.post(&c, "/users", &fits)
        .await
        .expect(201, "a body under the limit");
}

/// PostgreSQL text cannot hold U+0000: every way of sending one is a 422 naming the field, never a
/// 500 (found by Schemathesis).
#[tokio::test]
async fn nul_characters_are_refused_by_field() {
    let c = client();
    let srv = server();
    let user = create_user(&c).await;
    let link = create_url(&c, id_of(&user)).await;
    let url_id = id_of(&link);
    let cases = [
        (
            "/users",
            json!({"username": "a\u{0}b", "email": unique_email()}),
            "username",
        ),
        (
            "/urls",
            json!({"original_url": unique_original_url(), "title": "t\u{0}"}),
            "title",
        ),
        (
            "/events",
            json!({"event_type": "x\u{0}", "url_id": url_id}),
            "event_type",
        ),
        (
            "/events",
            json!({"event_type": "x", "url_id": url_id, "details": {"k\u{0}": 1}}),
            "details",
        ),
        (
            "/events",
            json!({"event_type": "x", "url_id": url_id, "details": {"k": ["v\u{0}"]}}),
            "details",
        ),
    ];
    for (path, body, field) in cases {
        let reply = srv.post(&c, path, &body).await;
        assert_invalid_field(&reply, field);
    }
    for (path, field, value) in [
        ("/urls", "short_code", "%00"),
        ("/events", "event_type", "a%00b"),
    ] {
        let reply = srv.get(&c, &format!("{path}?{field}={value}")).await;
        assert_invalid_field(&reply, field);
    }
    let csv = "username,email\na\u{0}b,nul@example.com\n";
    let reply = read_reply(
        c.post(srv.url("/users/bulk"))
            .header("content-type", "text/csv")
            .body(csv),
    )
    .await
    .expect(201, "a bulk import with a NUL row");
    assert_eq!(
        reply.json["skipped"], 1,
        "the NUL row is skipped: {}",
        reply.text
    );
}
