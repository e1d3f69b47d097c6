//! Hostile clients: oversized heads, too many headers, slow headers (slowloris), bodies that never
//! arrive, more connections than allowed, and writes without the API token. Each limit is a
//! setting; each is driven here over a raw socket where an HTTP client would be too polite.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::harness::{
    assert_error, client, client_with_key, count_rows, fresh_database, id_of, read_raw_reply,
    read_reply, read_to_close, server, start_server_on, unique_email, unique_original_url,
};

/// Long enough for any answer on a loaded CI machine; a limit under test is far shorter.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test]
async fn an_oversized_request_head_is_refused_with_431() {
    let mut stream = server().connect_raw().await;
    let request = format!(
        "GET /health HTTP/1.1\r\nhost: x\r\nx-padding: {}\r\n\r\n",
        "a".repeat(32 * 1024)
    );
    let _ = stream.write_all(request.as_bytes()).await;
    let answer = read_to_close(&mut stream, ANSWER_WITHIN).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "a 32 KiB header: {answer:?}"
    );
}

#[tokio::test]
async fn too_many_headers_are_refused_with_431() {
    let mut stream = server().connect_raw().await;
    let mut request = String::from("GET /health HTTP/1.1\r\nhost: x\r\n");
    for i in 0..150 {
        request.push_str(&format!("x-h{i}: v\r\n"));
    }
    request.push_str("\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let answer = read_to_close(&mut stream, ANSWER_WITHIN).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "150 headers: {answer:?}"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let url = fresh_database("slowloris").await;
    let srv = start_server_on(&url, &[("GITREV_HEADER_READ_TIMEOUT_MS", "300")]);
    let mut stream = srv.connect_raw().await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .expect("writing half a head");
    // The server closes the connection once the header read timeout passes; the read ends well
    // before ANSWER_WITHIN instead of waiting for us forever.
    let started = Instant::now();
    let answer = read_to_close(&mut stream, ANSWER_WITHIN).await;
    assert!(
        started.elapsed() < ANSWER_WITHIN,
        "the half-sent head was never cut off"
    );
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    // The server is unharmed.
    srv.get(&client(), "/health")
        .await
        .expect(200, "GET /health");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let url = fresh_database("idle").await;
    let srv = start_server_on(&url, &[("GITREV_HEADER_READ_TIMEOUT_MS", "300")]);
    let mut stream = srv.connect_raw().await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("writing a request");
    read_raw_reply(&mut stream, ANSWER_WITHIN)
        .await
        .expect("an answer")
        .expect(200, "GET /health");
    // Kept alive, then left idle: the server closes it after the idle timeout.
    let started = Instant::now();
    let rest = read_to_close(&mut stream, ANSWER_WITHIN).await;
    assert!(
        started.elapsed() < ANSWER_WITHIN,
        "an idle keep-alive connection stayed open"
    );
    assert!(rest.is_empty(), "nothing more was sent: {rest:?}");
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408_json() {
    let url = fresh_database("slowbody").await;
    let srv = start_server_on(&url, &[("GITREV_BODY_READ_TIMEOUT_MS", "300")]);
    let answer = srv
        .raw_exchange(
            b"POST /users HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"username\":",
            ANSWER_WITHIN,
        )
        .await
        .expect("an answer before the client sends the rest");
    assert_error(&answer, 408, "request_timeout");
    assert_eq!(count_rows(&url, "users").await, 0, "nothing was written");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let url = fresh_database("maxconn").await;
    let srv = start_server_on(&url, &[("GITREV_MAX_CONNECTIONS", "2")]);
    let request = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut first = srv.connect_raw().await;
    let mut second = srv.connect_raw().await;
    for stream in [&mut first, &mut second] {
        stream.write_all(request).await.expect("writing");
        read_raw_reply(stream, ANSWER_WITHIN)
            .await
            .expect("an answer")
            .expect(200, "GET /health");
    }
    // Both slots are held by idle keep-alive connections: a third waits unanswered. How long it is
    // watched is the thing tested (nothing answers it, however long one waits); 800 ms is many
    // times what an answer to GET /health takes.
    let mut third = srv.connect_raw().await;
    third.write_all(request).await.expect("writing");
    let early = read_raw_reply(&mut third, Duration::from_millis(800)).await;
    assert!(
        early.is_none(),
        "a third connection was served while two of two slots were taken: {early:?}"
    );
    drop(first);
    read_raw_reply(&mut third, ANSWER_WITHIN)
        .await
        .expect("the waiting connection is served once a slot frees")
        .expect(200, "GET /health on the third connection");
}

const TOKEN: &str = "test-token-7d1f0c9a2b";

#[tokio::test]
async fn the_api_token_is_an_admin_key_and_the_api_needs_it() {
    let url = fresh_database("token").await;
    let srv = start_server_on(&url, &[("GITREV_API_TOKEN", TOKEN)]);
    let c = client();
    let body = json!({"username": "tok", "email": unique_email()});

    let refused = srv.post(&c, "/users", &body).await;
    assert_error(&refused, 401, "unauthorized");
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    for wrong in [
        "Bearer nope",
        "Basic dGVzdA==",
        &format!("Bearer {TOKEN}x"),
        TOKEN,
    ] {
        let reply = read_reply(
            c.post(srv.url("/users"))
                .header("authorization", wrong)
                .json(&body),
        )
        .await;
        assert_error(&reply, 401, "unauthorized");
    }
    assert_eq!(
        count_rows(&url, "users").await,
        0,
        "refused writes wrote nothing"
    );

    let created = read_reply(c.post(srv.url("/users")).bearer_auth(TOKEN).json(&body))
        .await
        .expect(201, "POST /users with the token");
    let id = id_of(&created.json);
    let url_row = read_reply(
        c.post(srv.url("/urls"))
            .bearer_auth(TOKEN)
            .json(&json!({"original_url": unique_original_url(), "user_id": id})),
    )
    .await
    .expect(201, "POST /urls with the token");

    // Reads need it too (the token is an admin key); redirects stay open; every other write
    // method is guarded.
    assert_error(
        &srv.get(&c, &format!("/users/{id}")).await,
        401,
        "unauthorized",
    );
    let keyed = client_with_key(TOKEN);
    srv.get(&keyed, &format!("/users/{id}"))
        .await
        .expect(200, "GET with the token");
    srv.get(&keyed, "/keys")
        .await
        .expect(200, "the token is an admin key");
    let code = url_row.json["short_code"]
        .as_str()
        .expect("a code")
        .to_owned();
    srv.get(&c, &format!("/{code}"))
        .await
        .expect(302, "redirect without a token");
    let put = srv
        .put(&c, &format!("/users/{id}"), &json!({"username": "x"}))
        .await;
    assert_error(&put, 401, "unauthorized");
    let delete = srv.delete(&c, &format!("/users/{id}")).await;
    assert_error(&delete, 401, "unauthorized");
    let event = srv
        .post(
            &c,
            "/events",
            &json!({"event_type": "x", "url_id": id_of(&url_row.json)}),
        )
        .await;
    assert_error(&event, 401, "unauthorized");
    srv.get(&keyed, &format!("/users/{id}"))
        .await
        .expect(200, "the user is still there");
}
