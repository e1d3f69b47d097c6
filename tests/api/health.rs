//! Health and operations: `/health`, `/ready`, `/metrics`, unknown paths and methods, and the 503 a
//! write gets while the database is away.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{
    assert_error, assert_json_content_type, client, connect, database_name, fresh_database,
    rename_database, server, settle_clicks, start_server_on, unique, unique_email, with_database,
};

/// How long an outage (or its end) may take to show on `/ready`.
const OUTAGE_SEEN: Duration = Duration::from_secs(60);

/// `GET path` on the shared server: a 200 with a JSON body, that body.
async fn get_json(path: &str) -> Value {
    let reply = server()
        .get(&client(), path)
        .await
        .expect(200, &format!("GET {path}"));
    assert_json_content_type(&reply);
    reply.json
}

#[tokio::test]
async fn health_answers_ok() {
    assert_eq!(get_json("/health").await, json!({"status": "ok"}));
}

#[tokio::test]
async fn ready_answers_ready_when_the_database_answers() {
    assert_eq!(get_json("/ready").await, json!({"status": "ready"}));
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let c = client();
    // At least one request has been served, so request counters exist.
    server().get(&c, "/health").await.expect(200, "GET /health");
    let reply = server()
        .get(&c, "/metrics")
        .await
        .expect(200, "GET /metrics");
    let text = &reply.text;
    assert!(
        text.contains("# TYPE "),
        "Prometheus text format declares metric types:\n{text}"
    );
    let samples: Vec<&str> = text
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    assert!(
        samples
            .iter()
            .any(|line| line.contains("health") && line.contains("\"200\"")),
        "request counts by route and status include GET /health -> 200:\n{text}"
    );
    // Metric names are the server's to choose; each family API.md lists must be recognisable by name.
    let names: std::collections::BTreeSet<&str> = samples
        .iter()
        .map(|line| line.split(['{', ' ']).next().unwrap_or(""))
        .collect();
    let families: [(&str, &[&str]); 7] = [
        ("cache hits", &["cache", "hit"]),
        ("cache misses", &["cache", "miss"]),
        ("pool usage", &["pool"]),
        ("batch sizes", &["batch"]),
        ("queue depths", &["queue"]),
        ("process CPU", &["cpu"]),
        ("process memory", &["memory"]),
    ];
    let missing: Vec<&str> = families
        .iter()
        .filter(|(_, words)| {
            !names
                .iter()
                .any(|name| words.iter().all(|w| name.contains(w)))
        })
        .map(|(what, _)| *what)
        .collect();
    assert!(
        missing.is_empty(),
        "/metrics lacks {missing:?}; names served: {names:?}"
    );
    // Checked last so a wrong type does not hide what the body lacks. Prometheus text format 0.0.4 is
    // served as text/plain; OpenMetrics is a different exposition format with its own content type.
    let content_type = reply.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("text/plain"),
        "Prometheus text format is served as text/plain, got {content_type:?}"
    );
}

#[tokio::test]
async fn unknown_multi_segment_paths_are_json_404() {
    let c = client();
    for path in ["/nope/x", "/users/1/extra/more", "/events/1/x"] {
        let reply = server().get(&c, path).await;
        assert_error(&reply, 404, "not_found");
    }
}

#[tokio::test]
async fn wrong_methods_are_json_405() {
    let c = client();
    let reply = server().delete(&c, "/health").await;
    assert_error(&reply, 405, "method_not_allowed");
    let reply = server().post(&c, "/health", &json!({})).await;
    assert_error(&reply, 405, "method_not_allowed");
    let reply = server().delete(&c, "/users").await;
    assert_error(&reply, 405, "method_not_allowed");
}

#[tokio::test]
async fn database_outage_gives_503_on_ready_and_writes_and_recovers() {
    let url = fresh_database("outage").await;
    let name = database_name(&url).to_owned();
    let srv = start_server_on(&url, &[]);
    let c = client();
    srv.get(&c, "/ready").await.expect(200, "GET /ready before");

    let admin = connect(&with_database(&url, "postgres")).await;
    let away = unique("away");
    rename_database(&admin, &name, &away).await;

    let ready = srv.wait_for_ready(503, OUTAGE_SEEN).await;
    assert_json_content_type(&ready);
    assert_eq!(ready.json["status"], "unavailable", "{}", ready.text);
    assert!(
        ready.json["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "/ready says why: {}",
        ready.text
    );

    let health = srv.get(&c, "/health").await;
    assert_eq!(health.status, 200, "liveness never touches the database");

    let write = srv
        .post(
            &c,
            "/users",
            &json!({"username": "outage", "email": unique_email()}),
        )
        .await;
    assert_error(&write, 503, "unavailable");
    assert!(
        write.header("retry-after").is_some(),
        "a 503 carries retry-after"
    );

    rename_database(&admin, &away, &name).await;
    // Without a restart.
    srv.wait_for_ready(200, OUTAGE_SEEN).await;
    srv.post(
        &c,
        "/users",
        &json!({"username": "back", "email": unique_email()}),
    )
    .await
    .expect(201, "POST /users after the database came back");
}

#[tokio::test]
async fn cached_redirects_keep_working_through_an_outage_and_their_clicks_are_kept() {
    let url = fresh_database("outage2").await;
    let name = database_name(&url).to_owned();
    let srv = start_server_on(&url, &[]);
    let c = client();
    let link = srv
        .post(
            &c,
            "/urls",
            &json!({"original_url": "https://example.com/outage"}),
        )
        .await
        .expect(201, "POST /urls");
    let id = link.json["id"].as_i64().expect("an id");
    let path = format!("/{}", link.json["short_code"].as_str().expect("a code"));
    srv.get(&c, &path).await.expect(302, "warm the cache");

    let admin = connect(&with_database(&url, "postgres")).await;
    let away = unique("away");
    rename_database(&admin, &name, &away).await;
    srv.wait_for_ready(503, OUTAGE_SEEN).await;

    let reply = srv
        .get(&c, &path)
        .await
        .expect(302, "a cached redirect during the outage");
    assert_eq!(reply.header("location"), Some("https://example.com/outage"));

    rename_database(&admin, &away, &name).await;
    srv.wait_for_ready(200, OUTAGE_SEEN).await;
    settle_clicks(&srv).await;
    let stats = srv
        .get(&c, &format!("/urls/{id}/stats"))
        .await
        .expect(200, "GET /urls/{id}/stats");
    assert_eq!(
        stats.json["clicks"], 2,
        "the click acknowledged during the outage is written once the database is back: {}",
        stats.text
    );
}
