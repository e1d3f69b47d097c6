//! Operations features: `x-request-id`, `gitrev healthcheck`, readiness and `gitrev migrate` on a
//! database another build migrated (newer, or with an edited migration), and the process metrics.

use std::process::Output;
use std::time::Duration;

use serde_json::json;

use crate::harness::{
    assert_cli_ok, bare_gitrev_command, client, connect, gitrev, labelled_value, metric_value,
    migrated_database, output_text, poll, scrape, server, start_server_on, str_of,
    unique_original_url,
};

const REQUEST_ID: &str = "x-request-id";

async fn health_with_id(id: Option<&str>) -> String {
    let mut request = client().get(server().url("/health"));
    if let Some(id) = id {
        request = request.header(REQUEST_ID, id);
    }
    let response = request.send().await.expect("GET /health");
    assert_eq!(response.status().as_u16(), 200);
    response
        .headers()
        .get(REQUEST_ID)
        .unwrap_or_else(|| panic!("no {REQUEST_ID} on the answer (sent {id:?})"))
        .to_str()
        .expect("a request id is ASCII")
        .to_string()
}

#[tokio::test]
async fn a_sane_request_id_is_echoed() {
    assert_eq!(health_with_id(Some("abc-123")).await, "abc-123");
    assert_eq!(
        health_with_id(Some("Req_1.2:3")).await,
        "Req_1.2:3",
        "letters, digits, `-`, `_`, `.` and `:` are kept"
    );
}

#[tokio::test]
async fn a_missing_request_id_is_generated_and_unique() {
    let first = health_with_id(None).await;
    let second = health_with_id(None).await;
    assert!(!first.is_empty(), "a generated id is not empty");
    assert_ne!(first, second, "each request gets its own id");
}

#[tokio::test]
async fn an_unacceptable_request_id_is_replaced() {
    for sent in ["has space", "semi;colon", &"x".repeat(200)] {
        let got = health_with_id(Some(sent)).await;
        assert_ne!(got, sent, "{sent:?} is replaced");
        assert!(
            !got.is_empty()
                && got.len() <= 128
                && got
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')),
            "the replacement {got:?} is itself a sane id"
        );
    }
}

fn healthcheck(listen: &str, ready: bool) -> Output {
    let mut cmd = bare_gitrev_command();
    cmd.arg("healthcheck").arg("--listen").arg(listen);
    if ready {
        cmd.arg("--ready");
    }
    cmd.env("GITREV_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running gitrev healthcheck")
}

#[test]
fn healthcheck_passes_against_a_serving_server() {
    let output = healthcheck(server().listen_addr(), false);
    assert_cli_ok(&output, "gitrev healthcheck");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("healthy"),
        "gitrev healthcheck prints healthy: {}",
        output_text(&output)
    );
    let output = healthcheck(server().listen_addr(), true);
    assert_cli_ok(&output, "gitrev healthcheck --ready");
}

#[test]
fn healthcheck_fails_against_a_closed_port() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    let addr = listener.local_addr().expect("a bound address").to_string();
    drop(listener);
    let output = healthcheck(&addr, false);
    assert!(
        !output.status.success(),
        "gitrev healthcheck against closed {addr} must fail: {}",
        output_text(&output)
    );
}

#[tokio::test]
async fn a_database_a_newer_build_migrated_is_ready() {
    let url = migrated_database("newer").await;
    connect(&url)
        .await
        .batch_execute(
            "INSERT INTO schema_migrations (version, name, checksum) \
             VALUES (9999, '9999_future.sql', 'x')",
        )
        .await
        .expect("recording a future migration");
    let srv = start_server_on(&url, &[]);
    let reply = srv.get(&client(), "/ready").await;
    assert_eq!(
        reply.status, 200,
        "/ready on a database with a newer migration: {}",
        reply.text
    );
    assert_eq!(reply.json["status"], "ready", "{}", reply.text);
    drop(srv);
    assert_cli_ok(
        &gitrev(&["migrate"], &url),
        "gitrev migrate on a database a newer build migrated",
    );
}

#[tokio::test]
async fn an_edited_applied_migration_is_not_ready() {
    let url = migrated_database("edited").await;
    // The server migrates as it starts, so it starts on the intact ledger and the edit comes after.
    let srv = start_server_on(&url, &[]);
    let c = client();
    srv.get(&c, "/ready").await.expect(200, "GET /ready before");
    connect(&url)
        .await
        .batch_execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
        .await
        .expect("editing the ledger");
    let reply = srv.get(&c, "/ready").await;
    assert_eq!(
        reply.status, 503,
        "/ready with an edited migration: {}",
        reply.text
    );
    assert_eq!(reply.json["status"], "unavailable", "{}", reply.text);
    let reason = reply.json["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("edited"),
        "the reason says edited: {}",
        reply.text
    );
    drop(srv);
    let output = gitrev(&["migrate"], &url);
    assert!(
        !output.status.success(),
        "gitrev migrate on an edited migration must fail: {}",
        output_text(&output)
    );
    assert!(
        output_text(&output).contains("edited"),
        "gitrev migrate says which migration was edited: {}",
        output_text(&output)
    );
}

#[tokio::test]
async fn metrics_include_process_figures() {
    let reply = server()
        .get(&client(), "/metrics")
        .await
        .expect(200, "GET /metrics");
    let content_type = reply.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("text/plain"),
        "/metrics is Prometheus text, got {content_type:?}"
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(
            metric_value(&reply.text, name).is_some(),
            "/metrics has a {name} sample:\n{}",
            reply.text
        );
    }
}

#[tokio::test]
async fn metrics_count_cache_evictions_and_pool_use() {
    let url = migrated_database("evict").await;
    let srv = start_server_on(
        &url,
        &[
            ("GITREV_CACHE_CAPACITY", "4"),
            ("GITREV_CACHE_TTL_SECS", "1"),
        ],
    );
    let c = client();
    let mut codes = Vec::new();
    for _ in 0..24 {
        let body = json!({"original_url": unique_original_url()});
        let url = srv.post(&c, "/urls", &body).await.expect(201, "POST /urls");
        codes.push(str_of(&url.json, "short_code").to_owned());
    }
    for code in &codes {
        srv.get(&c, &format!("/{code}"))
            .await
            .expect(302, "redirect");
    }
    // Every one of the 24 links leaves the cache on its own: over the capacity of 4 (size), or past
    // the 1 s TTL (expired). `/metrics` runs the cache's pending maintenance, so it sees them go.
    let evictions = |text: &str, reason: &str| {
        labelled_value(
            text,
            "gitrev_link_cache_evictions_total",
            &[("reason", reason)],
        )
    };
    let text = poll(
        Duration::from_secs(20),
        || scrape(&srv, &c),
        |text| evictions(text, "size") + evictions(text, "expired") >= 24.0,
    )
    .await
    .unwrap_or_else(|text| {
        panic!("24 links did not all leave a cache of 4 with a 1 s TTL:\n{text}")
    });
    assert_eq!(
        evictions(&text, "size") + evictions(&text, "expired"),
        24.0,
        "each link is evicted once:\n{text}"
    );
    assert!(
        evictions(&text, "size") >= 1.0,
        "24 links through a cache of 4 evict by size:\n{text}"
    );
    assert!(
        evictions(&text, "expired") >= 1.0,
        "links older than the 1 s TTL expire:\n{text}"
    );
    assert_eq!(
        metric_value(&text, "gitrev_link_cache_entries"),
        Some(0.0),
        "nothing is left cached:\n{text}"
    );
    let pool = |name: &str| {
        metric_value(&text, name).unwrap_or_else(|| panic!("/metrics has no {name}:\n{text}"))
    };
    let open = pool("gitrev_db_pool_connections");
    assert!(
        open >= 1.0,
        "the pool has a connection after serving writes"
    );
    assert_eq!(
        open,
        pool("gitrev_db_pool_idle_connections") + pool("gitrev_db_pool_in_use_connections"),
        "every open connection is idle or in use"
    );
    // Reported even when nobody waits (`pool` fails on a metric that is missing).
    pool("gitrev_db_pool_waiters");
    assert!(
        pool("gitrev_db_pool_max_connections") >= open,
        "the pool opens no more than its maximum"
    );
}
