//! Bodies that are not a JSON object: 400 `invalid_body` on every POST, PUT and PATCH, never a 500,
//! whatever the content type says. And the other way round: a JSON object is accepted whatever the
//! content type says.

use reqwest::Method;
use serde_json::json;

use crate::common::{
    assert_error, assert_invalid_field, client, create_url, create_user, fresh_database, id_of,
    server, start_server_on, unique, unique_email, unique_original_url,
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let base = &server().base;
    let addr = base
        .strip_prefix("http://")
        .expect("the base is plain http");
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting to the server");
    let (mut reader, mut writer) = stream.into_split();
    const SIZE: usize = 64 * 1024 * 1024;
    let writing = tokio::spawn(async move {
        let head = format!(
            "POST /users HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             content-length: {SIZE}\r\nconnection: close\r\n\r\n"
        );
        if writer.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..SIZE / chunk.len() {
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => {
                assert!(
                    !answer.is_empty(),
                    "connection failed before any answer: {e}"
                );
                break;
            }
        }
        if complete_response(&answer) {
            break;
        }
    }
    writing.abort();
    let text = String::from_utf8_lossy(&answer).to_string();
    let status_line = text.lines().next().unwrap_or("");
    assert!(
        status_line.starts_with("HTTP/1.1 413"),
        "expected 413 for a 64 MiB body, got {status_line:?}\n{text}"
    );
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/json"),
        "413 is JSON: {text}"
    );
    assert!(text.contains("payload_too_large"), "413 code: {text}");
}

/// Whether `bytes` hold a whole HTTP response with a `content-length` body.
fn complete_response(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    match length {
        Some(length) => body.len() >= length,
        None => false,
    }
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
    for query in ["short_code=%00", "event_type=a%00b"] {
        let path = if query.starts_with("short") {
            "/urls"
        } else {
            "/events"
        };
        let reply = srv.get(&c, &format!("{path}?{query}")).await;
        assert_eq!(reply.status, 422, "{path}?{query}: {}", reply.text);
    }
    let csv = "username,email\na\u{0}b,nul@example.com\n";
    let reply = crate::common::read_reply(
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
