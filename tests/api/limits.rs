//! Hostile clients: oversized heads, too many headers, slow headers (slowloris), bodies that never
//! arrive, more connections than allowed, and writes without the API token. Each limit is a
//! setting; each is driven here over a raw socket where an HTTP client would be too polite.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{
    assert_error, client, count_rows, fresh_database, id_of, server, start_server_on, unique_email,
    unique_original_url, TestServer,
};

/// Long enough for any answer on a loaded CI machine; a limit under test is far shorter.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

async fn connect(srv: &TestServer) -> TcpStream {
    TcpStream::connect(srv.listen_addr())
        .await
        .expect("connecting to the server")
}

/// Everything the server sends until it closes the connection (or `ANSWER_WITHIN` passes).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(ANSWER_WITHIN, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The first response on the connection: reads until the head and a `content-length` body are in.
async fn read_response(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return Some(());
            }
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    return Some(());
                }
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()??;
    (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn an_oversized_request_head_is_refused_with_431() {
    let mut stream = connect(server()).await;
    let request = format!(
        "GET /health HTTP/1.1\r\nhost: x\r\nx-padding: {}\r\n\r\n",
        "a".repeat(32 * 1024)
    );
    let _ = stream.write_all(request.as_bytes()).await;
    let answer = read_to_close(&mut stream).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "a 32 KiB header: {answer:?}"
    );
}

#[tokio::test]
async fn too_many_headers_are_refused_with_431() {
    let mut stream = connect(server()).await;
    let mut request = String::from("GET /health HTTP/1.1\r\nhost: x\r\n");
    for i in 0..150 {
        request.push_str(&format!("x-h{i}: v\r\n"));
    }
    request.push_str("\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let answer = read_to_close(&mut stream).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "150 headers: {answer:?}"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let url = fresh_database("slowloris").await;
    let srv = start_server_on(&url, &[("GITREV_HEADER_READ_TIMEOUT_MS", "300")]);
    let mut stream = connect(&srv).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .expect("writing half a head");
    // The server closes the connection once the header read timeout passes; the read ends well
    // before ANSWER_WITHIN instead of waiting for us forever.
    let started = std::time::Instant::now();
    let answer = read_to_close(&mut stream).await;
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
    let mut stream = connect(&srv).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("writing a request");
    let answer = read_response(&mut stream, ANSWER_WITHIN)
        .await
        .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    // Kept alive, then left idle: the server closes it after the idle timeout.
    let started = std::time::Instant::now();
    let rest = read_to_close(&mut stream).await;
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
    let mut stream = connect(&srv).await;
    stream
        .write_all(
            b"POST /users HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"username\":",
        )
        .await
        .expect("writing the head and a piece of the body");
    let answer = read_response(&mut stream, ANSWER_WITHIN)
        .await
        .expect("an answer before the client sends the rest");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        answer.contains("\"code\":\"request_timeout\""),
        "408 is JSON: {answer}"
    );
    assert_eq!(count_rows(&url, "users").await, 0, "nothing was written");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let url = fresh_database("maxconn").await;
    let srv = start_server_on(&url, &[("GITREV_MAX_CONNECTIONS", "2")]);
    let request = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut first = connect(&srv).await;
    let mut second = connect(&srv).await;
    for stream in [&mut first, &mut second] {
        stream.write_all(request).await.expect("writing");
        let answer = read_response(stream, ANSWER_WITHIN)
            .await
            .expect("an answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    }
    // Both slots are held by idle keep-alive connections: a third waits unanswered.
    let mut third = connect(&srv).await;
    third.write_all(request).await.expect("writing");
    assert!(
        read_response(&mut third, Duration::from_millis(800))
            .await
            .is_none(),
        "a third connection was served while two of two slots were taken"
    );
    drop(first);
    let answer = read_response(&mut third, ANSWER_WITHIN)
        .await
        .expect("the waiting connection is served once a slot frees");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

const TOKEN: &str = "test-token-7d1f0c9a2b";

#[tokio::test]
async fn writes_need_the_api_token_when_one_is_set() {
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
        let reply = crate::common::read_reply(
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

    let created =
        crate::common::read_reply(c.post(srv.url("/users")).bearer_auth(TOKEN).json(&body))
            .await
            .expect(201, "POST /users with the token");
    let id = id_of(&created.json);
    let url_row = crate::common::read_reply(
        c.post(srv.url("/urls"))
            .bearer_auth(TOKEN)
            .json(&json!({"original_url": unique_original_url(), "user_id": id})),
    )
    .await
    .expect(201, "POST /urls with the token");

    // Reads and redirects stay open; every other write method is guarded too.
    srv.get(&c, &format!("/users/{id}"))
        .await
        .expect(200, "GET without a token");
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
    srv.get(&c, &format!("/users/{id}"))
        .await
        .expect(200, "the user is still there");
}
