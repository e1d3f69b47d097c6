//! API keys and scopes (docs/api.md, "Access control"): who may call what, keys made and revoked
//! through the CLI and the API, revocation reaching another replica, production never open, and
//! no secret where it does not belong (logs, the ready file's mode).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{
    assert_cli_ok, assert_error, client, client_with_key, fresh_database, gitrev, id_of,
    is_timestamp, poll, serve_until_exit, start_server_on, str_of, unique, unique_email,
    unique_original_url, TestDir, TestServer,
};

const TOKEN: &str = "keys-test-token-5c2e8a";

/// The scope the contract says each documented operation needs (`None`: public). A template this
/// table does not know fails the test: a new route cannot be left out of the access rules.
fn needed(template: &str, method: &str) -> Option<&'static str> {
    match (template, method) {
        ("/health" | "/ready" | "/metrics" | "/openapi.json" | "/{short_code}", _) => None,
        ("/keys" | "/keys/{id}", _) | ("/users/bulk", "post") => Some("admin"),
        (
            "/users"
            | "/users/{id}"
            | "/urls"
            | "/urls/{id}"
            | "/urls/{id}/stats"
            | "/urls/{id}/stats/timeseries"
            | "/urls/{id}/stats/breakdown"
            | "/urls/{id}/clicks.csv"
            | "/urls/{id}/qr.svg"
            | "/urls/{id}/qr.png"
            | "/events"
            | "/events/{id}",
            "get",
        ) => Some("read"),
        ("/users" | "/users/{id}" | "/urls" | "/urls/{id}" | "/events", _)
        | ("/urls/bulk", "post") => Some("write"),
        _ => panic!("{method} {template}: not in the access table of this test"),
    }
}

fn rank(scope: &str) -> u8 {
    match scope {
        "read" => 1,
        "write" | "bound" => 2,
        "admin" => 3,
        other => panic!("no scope {other}"),
    }
}

/// `method path` with a JSON body, whatever the method.
async fn send_json(
    srv: &TestServer,
    c: &reqwest::Client,
    method: Method,
    path: &str,
    body: &[u8],
) -> crate::harness::Reply {
    srv.send(
        c,
        method,
        path,
        Some("application/json"),
        Some(body.to_vec()),
    )
    .await
}

/// Makes a key through the API with `admin` (a key or the token); its id and the key.
async fn make_key(srv: &TestServer, admin: &str, scope: &str) -> (i64, String) {
    let reply = srv
        .post(
            &client_with_key(admin),
            "/keys",
            &json!({"name": unique("key"), "scope": scope}),
        )
        .await
        .expect(201, "POST /keys");
    (id_of(&reply.json), str_of(&reply.json, "key").to_owned())
}

/// Every documented operation × {no key, a wrong key, read, write, admin, the token, a key bound to
/// the owner of the row asked for, one bound to another user}: 401 without a live key, 403 with one
/// short of the scope, 404 for another user's row, and past the access check with enough.
#[tokio::test]
async fn every_operation_answers_each_kind_of_key_as_the_contract_says() {
    let url = fresh_database("scopes").await;
    let srv = start_server_on(&url, &[("GITREV_API_TOKEN", TOKEN)]);
    let doc: Value = serde_json::from_str(include_str!("../../openapi.json")).expect("JSON");
    let mut keys: Vec<(&str, Option<String>, Option<&str>)> = vec![
        ("no key", None, None),
        (
            "a wrong key",
            Some("gk_AAAAAAAA_notakeynotakeynotakeynotakey".into()),
            None,
        ),
        ("the token", Some(TOKEN.into()), Some("admin")),
    ];
    // One user's rows, and write keys bound to that user (the owner) and to another: the scope
    // table holds for both, neither makes users, and the other's key finds none of the owner's rows.
    let admin = client_with_key(TOKEN);
    let owner = srv
        .post(
            &admin,
            "/users",
            &json!({"username": "owner", "email": unique_email()}),
        )
        .await
        .expect(201, "the owner");
    let owner = id_of(&owner.json);
    let other = srv
        .post(
            &admin,
            "/users",
            &json!({"username": "other", "email": unique_email()}),
        )
        .await
        .expect(201, "another user");
    let owned_url = srv
        .post(
            &admin,
            "/urls",
            &json!({"original_url": unique_original_url(), "user_id": owner}),
        )
        .await
        .expect(201, "the owner's url");
    let owned_url = id_of(&owned_url.json);
    let owned_event = srv
        .post(
            &admin,
            "/events",
            &json!({"event_type": "x", "url_id": owned_url, "user_id": owner}),
        )
        .await
        .expect(201, "the owner's event");
    let owned_event = id_of(&owned_event.json);
    for (who, user) in [
        ("the owner's bound key", owner),
        ("another user's bound key", id_of(&other.json)),
    ] {
        let bound = srv
            .post(
                &admin,
                "/keys",
                &json!({"name": who, "scope": "write", "user_id": user}),
            )
            .await
            .expect(201, "a bound key");
        keys.push((
            who,
            Some(str_of(&bound.json, "key").to_owned()),
            Some("bound"),
        ));
    }
    for scope in ["read", "write", "admin"] {
        let (_, key) = make_key(&srv, TOKEN, scope).await;
        keys.push((scope, Some(key), Some(scope)));
    }
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "head", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let needs = needed(template, method);
            // The owner's rows, or, for a DELETE (which would take them), an id that exists
            // nowhere: past the access check the answer is the handler's, never 401 or 403.
            let id = match template.split('/').nth(1) {
                _ if method == "delete" => 999_999_999,
                Some("users") => owner,
                Some("urls") => owned_url,
                Some("events") => owned_event,
                _ => 999_999_999,
            };
            let path = template
                .replace("{id}", &id.to_string())
                .replace("{short_code}", "nosuchcode");
            let owners_row = id != 999_999_999 && template.contains("{id}");
            for (who, key, has) in &keys {
                let c = key.as_deref().map_or_else(client, client_with_key);
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
                let reply = send_json(&srv, &c, method.clone(), &path, b"{}").await;
                let expected = match (needs, has) {
                    (None, _) => None,
                    (Some(_), Some("bound")) if template == "/users" && method == Method::POST => {
                        Some(403)
                    }
                    (Some(_), None) => Some(401),
                    (Some(n), Some(h)) if rank(h) < rank(n) => Some(403),
                    (Some(_), Some("bound")) if owners_row && who.starts_with("another") => {
                        Some(404)
                    }
                    (Some(_), Some(_)) => None,
                };
                match expected {
                    Some(status) => assert_eq!(
                        reply.status, status,
                        "{method} {path} with {who}: {}",
                        reply.text
                    ),
                    None => assert!(
                        reply.status != 401
                            && reply.status != 403
                            && !(owners_row && reply.status == 404),
                        "{method} {path} with {who}: past the access check (and to the owner's \
                         row), got {}: {}",
                        reply.status,
                        reply.text
                    ),
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked > 100,
        "every operation with every kind of key ({checked})"
    );
}

/// A development or test server with no key and no token is open; the first key made closes it.
#[tokio::test]
async fn the_first_key_turns_access_control_on() {
    let url = fresh_database("firstkey").await;
    let srv = start_server_on(&url, &[]);
    let c = client();
    srv.get(&c, "/users")
        .await
        .expect(200, "open: no key exists");
    let reply = srv
        .post(&c, "/keys", &json!({"name": "first", "scope": "admin"}))
        .await
        .expect(201, "the first key, made while open");
    let key = str_of(&reply.json, "key").to_owned();
    assert!(key.starts_with("gk_") && key.len() == 44, "{key}");
    assert_eq!(reply.json["prefix"], json!(&key[..11]));
    assert_eq!(reply.json["scope"], "admin");
    assert_error(&srv.get(&c, "/users").await, 401, "unauthorized");
    let listed = srv
        .get(&client_with_key(&key), "/keys")
        .await
        .expect(200, "GET /keys with the new key");
    assert_eq!(listed.json.as_array().map(Vec::len), Some(1));
    assert!(
        listed.json[0].get("key").is_none(),
        "a list never shows a key: {}",
        listed.text
    );
    assert!(
        !listed.text.contains(&key[11..]),
        "nor any part of its secret: {}",
        listed.text
    );
    assert_eq!(
        listed.json[0]["last_used_at"],
        Value::Null,
        "a use is written in batches, not by the request"
    );
    // The last batch is written when the server stops.
    let status = srv.stop();
    assert!(status.success(), "stops cleanly: {status}");
    let listed = gitrev(&["keys", "list"], &url);
    assert_cli_ok(&listed, "gitrev keys list");
    let row = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .find(|l| l.contains("\tfirst\t"))
        .map(str::to_owned)
        .expect("the key's row");
    let last_used = row.rsplit('\t').next().unwrap_or("-");
    assert!(
        is_timestamp(&last_used.replace('Z', "")),
        "last used at: {row}"
    );
}

#[tokio::test]
async fn bad_key_requests_are_422_and_make_nothing() {
    let url = fresh_database("badkeys").await;
    let srv = start_server_on(&url, &[("GITREV_API_TOKEN", TOKEN)]);
    let admin = client_with_key(TOKEN);
    for body in [
        json!({"scope": "read"}),
        json!({"name": "", "scope": "read"}),
        json!({"name": "x".repeat(101), "scope": "read"}),
        json!({"name": "n", "scope": "root"}),
        json!({"name": 7, "scope": "read"}),
        json!({"name": "n", "scope": "admin", "user_id": 1}),
        json!({"name": "n", "scope": "read", "user_id": "me"}),
        json!({"name": "n", "scope": "read", "rate": 0}),
        json!({"name": "n", "scope": "read", "burst": 1_000_001}),
        json!({"name": "nul\u{0}", "scope": "read"}),
    ] {
        let reply = srv.post(&admin, "/keys", &body).await;
        assert_error(&reply, 422, "validation_failed");
    }
    let nobody = srv
        .post(
            &admin,
            "/keys",
            &json!({"name": "n", "scope": "read", "user_id": 424242}),
        )
        .await;
    assert_error(&nobody, 404, "not_found");
    let listed = srv.get(&admin, "/keys").await.expect(200, "GET /keys");
    assert_eq!(listed.json, json!([]), "no refused key was made");
}

/// A key bound to one user sees and changes that user, their urls and their events; anything
/// else is 404 as if it did not exist, and every list is filtered to them.
#[tokio::test]
async fn a_user_bound_key_sees_and_changes_only_its_user() {
    let url = fresh_database("boundkey").await;
    let srv = start_server_on(&url, &[("GITREV_API_TOKEN", TOKEN)]);
    let admin = client_with_key(TOKEN);
    let user = |name: &str| json!({"username": name, "email": unique_email()});
    let a = id_of(
        &srv.post(&admin, "/users", &user("a"))
            .await
            .expect(201, "user a")
            .json,
    );
    let b = id_of(
        &srv.post(&admin, "/users", &user("b"))
            .await
            .expect(201, "user b")
            .json,
    );
    let link = |owner: i64| json!({"original_url": unique_original_url(), "user_id": owner});
    let a_url = srv
        .post(&admin, "/urls", &link(a))
        .await
        .expect(201, "a's url")
        .json;
    let b_url = id_of(
        &srv.post(&admin, "/urls", &link(b))
            .await
            .expect(201, "b's url")
            .json,
    );
    let event = |url_id: i64, owner: i64| json!({"event_type": "share", "url_id": url_id, "user_id": owner});
    let b_event = srv
        .post(&admin, "/events", &event(b_url, b))
        .await
        .expect(201, "b's event");
    let a_id = id_of(&a_url);
    srv.get(&client(), &format!("/{}", str_of(&a_url, "short_code")))
        .await
        .expect(302, "a click on a's url");

    let made = srv
        .post(
            &admin,
            "/keys",
            &json!({"name": "a's app", "scope": "write", "user_id": a}),
        )
        .await
        .expect(201, "a key bound to a");
    assert_eq!(made.json["user_id"], json!(a));
    let c = client_with_key(str_of(&made.json, "key"));

    let users = srv.get(&c, "/users").await.expect(200, "GET /users");
    assert_eq!(
        users.json,
        json!([srv.get(&admin, &format!("/users/{a}")).await.json])
    );
    assert_eq!(users.header("x-total-count"), Some("1"));
    srv.get(&c, &format!("/users/{a}"))
        .await
        .expect(200, "its user");
    for (method, path) in [
        (Method::GET, format!("/users/{b}")),
        (Method::PATCH, format!("/users/{b}")),
        (Method::DELETE, format!("/users/{b}")),
        (Method::GET, format!("/urls/{b_url}")),
        (Method::PUT, format!("/urls/{b_url}")),
        (Method::DELETE, format!("/urls/{b_url}")),
        (Method::GET, format!("/urls/{b_url}/stats")),
        (Method::GET, format!("/urls/{b_url}/stats/timeseries")),
        (
            Method::GET,
            format!("/urls/{b_url}/stats/breakdown?by=browser"),
        ),
        (Method::GET, format!("/urls/{b_url}/clicks.csv")),
        (Method::GET, format!("/events/{}", id_of(&b_event.json))),
    ] {
        let reply = send_json(&srv, &c, method, &path, br#"{"title":"t"}"#).await;
        assert_error(&reply, 404, "not_found");
    }
    assert_error(&srv.post(&c, "/users", &user("c")).await, 403, "forbidden");
    assert_error(&srv.get(&c, "/keys").await, 403, "forbidden");

    let urls = srv.get(&c, "/urls").await.expect(200, "GET /urls");
    assert_eq!(urls.json.as_array().map(Vec::len), Some(1), "{}", urls.text);
    assert_eq!(urls.json[0]["id"], json!(a_id));
    let others = srv
        .get(&c, &format!("/urls?user_id={b}"))
        .await
        .expect(200, "asked for b's");
    assert_eq!(others.json, json!([]));
    assert_eq!(others.header("x-total-count"), Some("0"));
    for path in ["stats", "stats/timeseries", "clicks.csv"] {
        srv.get(&c, &format!("/urls/{a_id}/{path}"))
            .await
            .expect(200, path);
    }

    let mine = srv
        .post(&c, "/urls", &json!({"original_url": unique_original_url()}))
        .await
        .expect(201, "a url without a user_id");
    assert_eq!(mine.json["user_id"], json!(a), "made a's");
    assert_error(&srv.post(&c, "/urls", &link(b)).await, 404, "not_found");
    assert_error(
        &srv.patch(&c, &format!("/urls/{a_id}"), &json!({"user_id": b}))
            .await,
        404,
        "not_found",
    );
    let detach = srv
        .patch(&c, &format!("/urls/{a_id}"), &json!({"user_id": null}))
        .await;
    assert_error(&detach, 422, "validation_failed");
    srv.patch(&c, &format!("/urls/{a_id}"), &json!({"title": "mine"}))
        .await
        .expect(200, "its own url changes");

    assert_error(
        &srv.post(&c, "/events", &json!({"event_type": "x", "url_id": b_url}))
            .await,
        404,
        "not_found",
    );
    let posted = srv
        .post(&c, "/events", &json!({"event_type": "x", "url_id": a_id}))
        .await
        .expect(201, "an event on its url");
    assert_eq!(posted.json["user_id"], json!(a));
    let events = crate::harness::poll(
        Duration::from_secs(10),
        || srv.get(&c, "/events"),
        |r| r.json.as_array().is_some_and(|e| e.len() >= 2),
    )
    .await
    .unwrap_or_else(|last| last);
    let events = events.json.as_array().expect("a list").clone();
    assert!(events.len() >= 2, "its click and its event: {events:?}");
    assert!(
        events.iter().all(|e| e["user_id"] == json!(a)),
        "only a's events: {events:?}"
    );

    // The user goes, and its keys with it, on every replica.
    srv.delete(&admin, &format!("/users/{a}"))
        .await
        .expect(204, "a deleted");
    let gone = poll(
        Duration::from_secs(5),
        || srv.get(&c, "/users"),
        |r| r.status == 401,
    )
    .await;
    assert!(gone.is_ok(), "the bound key went with its user");
}

/// Revoked on one replica, refused on another within a second (the NOTIFY path), and its last use
/// recorded (in a batch, not per request).
#[tokio::test]
async fn a_revoked_key_fails_on_another_replica_within_a_second() {
    let url = fresh_database("revoke").await;
    let a = start_server_on(&url, &[("GITREV_API_TOKEN", TOKEN)]);
    let b = start_server_on(&url, &[("GITREV_API_TOKEN", TOKEN)]);
    let (id, key) = make_key(&a, TOKEN, "read").await;
    let on_b = client_with_key(&key);
    b.get(&on_b, "/users")
        .await
        .expect(200, "the key works on b");
    b.get(&on_b, "/users")
        .await
        .expect(200, "again, from b's keyring");

    a.delete(&client_with_key(TOKEN), &format!("/keys/{id}"))
        .await
        .expect(204, "revoked on a");
    let revoked = Instant::now();
    let last = poll(
        Duration::from_secs(1),
        || b.get(&on_b, "/users"),
        |r| r.status == 401,
    )
    .await
    .unwrap_or_else(|last| panic!("still {} on b a second after the revocation", last.status));
    assert_error(&last, 401, "unauthorized");
    assert!(revoked.elapsed() < Duration::from_secs(2));
    assert_error(&a.get(&on_b, "/users").await, 401, "unauthorized");
    let again = a
        .delete(&client_with_key(TOKEN), &format!("/keys/{id}"))
        .await;
    assert_error(&again, 404, "not_found");
}

/// `gitrev keys create | list | revoke`: the key printed once on stdout, lists without it, a
/// revoked key refused by a running server.
#[tokio::test]
async fn keys_are_made_listed_and_revoked_from_the_command_line() {
    let url = fresh_database("keyscli").await;
    let made = gitrev(
        &["keys", "create", "--name", "deploy bot", "--scope", "write"],
        &url,
    );
    assert_cli_ok(&made, "gitrev keys create");
    let key = String::from_utf8(made.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned();
    assert!(
        key.starts_with("gk_") && key.len() == 44,
        "stdout is the key alone: {key:?}"
    );
    let said = String::from_utf8_lossy(&made.stderr);
    assert!(
        said.contains("shown once") && said.contains(&key[..11]),
        "{said}"
    );

    let srv = start_server_on(&url, &[]);
    let c = client_with_key(&key);
    srv.post(
        &c,
        "/users",
        &json!({"username": "cli", "email": unique_email()}),
    )
    .await
    .expect(201, "a write key writes");
    assert_error(&srv.get(&c, "/keys").await, 403, "forbidden");
    assert_error(&srv.get(&client(), "/users").await, 401, "unauthorized");

    let listed = gitrev(&["keys", "list"], &url);
    let listed = String::from_utf8(listed.stdout).expect("UTF-8");
    assert!(
        listed.contains("deploy bot") && listed.contains(&key[..11]),
        "{listed}"
    );
    assert!(
        !listed.contains(&key[11..]),
        "the list never shows a key: {listed}"
    );
    let id = listed
        .lines()
        .find(|l| l.contains("deploy bot"))
        .and_then(|l| l.split('\t').next())
        .expect("a row for the key")
        .to_owned();

    let revoked = gitrev(&["keys", "revoke", &id], &url);
    assert_cli_ok(&revoked, "gitrev keys revoke");
    if let Err(last) = poll(
        Duration::from_secs(5),
        || srv.get(&c, "/users"),
        |r| r.status == 401,
    )
    .await
    {
        panic!(
            "the running server still answers {} to the revoked key ({}); revoke said {}",
            last.status,
            last.text,
            String::from_utf8_lossy(&revoked.stdout)
        );
    }
    let twice = gitrev(&["keys", "revoke", &id], &url);
    assert!(!twice.status.success(), "revoking twice fails");
    assert!(String::from_utf8_lossy(&twice.stderr).contains("no key"));
    let bad = gitrev(&["keys", "create", "--name", "x", "--scope", "root"], &url);
    assert!(!bad.status.success(), "an unknown scope is refused");
}

/// Production with no key and no token refuses to start and says how to make one; with a token it
/// serves, and a request without a key is refused.
#[tokio::test]
async fn production_is_never_open() {
    let url = fresh_database("prodkeys").await;
    let dir = TestDir::new("prodkeys");
    let (status, said) = serve_until_exit(
        dir.path(),
        &[("DATABASE_URL", &url), ("GITREV_ENV", "production")],
        Duration::from_secs(60),
    );
    assert!(!status.success(), "a failure: {status}; {said}");
    assert!(
        said.contains("no API key") && said.contains("gitrev keys create"),
        "says why and what to do: {said}"
    );

    let srv = start_server_on(
        &url,
        &[("GITREV_ENV", "production"), ("GITREV_API_TOKEN", TOKEN)],
    );
    assert_error(&srv.get(&client(), "/urls").await, 401, "unauthorized");
    srv.get(&client_with_key(TOKEN), "/urls")
        .await
        .expect(200, "the token works");
}

/// Keys never reach a log line, even at the most verbose level with every request logged; the
/// ready file, which holds the database password, is readable by its owner alone.
#[tokio::test]
async fn no_secret_in_the_logs_and_the_ready_file_is_private() {
    let url = fresh_database("secrets").await;
    let srv = start_server_on(
        &url,
        &[
            ("GITREV_API_TOKEN", TOKEN),
            ("GITREV_LOG", "trace"),
            ("GITREV_ACCESS_LOG", "all"),
        ],
    );
    let (_, key) = make_key(&srv, TOKEN, "write").await;
    let c = client_with_key(&key);
    srv.get(&c, "/users").await.expect(200, "a keyed read");
    srv.get(
        &client_with_key("gk_wrongwro_wrongwrongwrongwrongwrongwrongwr"),
        "/users",
    )
    .await;
    srv.get(&c, "/keys").await;
    let ready = srv.log.with_file_name("ready.json");
    let mode = std::fs::metadata(&ready)
        .expect("the ready file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{} is 0600", ready.display());
    let log_path = srv.log.clone();
    let status = srv.stop();
    assert!(status.success(), "stops cleanly: {status}");
    let log = std::fs::read_to_string(&log_path).expect("the server's log");
    assert!(
        log.lines().count() > 20,
        "a verbose log: {} lines",
        log.lines().count()
    );
    for (what, secret) in [
        ("the key", key.as_str()),
        ("the key's secret part", &key[12..]),
        ("the token", TOKEN),
        ("a wrong key", "wrongwrongwrong"),
    ] {
        assert!(!log.contains(secret), "{what} is in {}", log_path.display());
    }
}

/// Each key has its own bucket: over it, 429 with `retry-after` and the `ratelimit-*` headers,
/// counted by key id; it recovers at the configured rate; a key's own limit overrides the default.
#[tokio::test]
async fn a_key_over_its_rate_gets_429_and_recovers() {
    let url = fresh_database("ratelimit").await;
    let srv = start_server_on(
        &url,
        &[
            ("GITREV_API_TOKEN", TOKEN),
            ("GITREV_KEY_RATE", "1"),
            ("GITREV_KEY_BURST", "3"),
        ],
    );
    let (id, key) = make_key(&srv, TOKEN, "read").await;
    let c = client_with_key(&key);
    for remaining in ["2", "1", "0"] {
        let reply = srv.get(&c, "/users").await.expect(200, "within the burst");
        assert_eq!(reply.header("ratelimit-limit"), Some("3"));
        assert_eq!(reply.header("ratelimit-remaining"), Some(remaining));
        assert!(reply.header("ratelimit-reset").is_some());
    }
    let refused = srv.get(&c, "/users").await;
    assert_error(&refused, 429, "rate_limited");
    let retry: u64 = refused
        .header("retry-after")
        .and_then(|s| s.parse().ok())
        .expect("a retry-after in seconds");
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    // One request a second comes back.
    let back = poll(
        Duration::from_secs(5),
        || srv.get(&c, "/users"),
        |r| r.status == 200,
    )
    .await;
    assert!(back.is_ok(), "the key recovers at its rate");

    // A key of its own limit; the other key's bucket is its own business.
    let own = srv
        .post(
            &client_with_key(TOKEN),
            "/keys",
            &json!({"name": "fast", "scope": "read", "rate": 100, "burst": 20}),
        )
        .await
        .expect(201, "a key with its own limit");
    assert_eq!(
        (own.json["rate"].clone(), own.json["burst"].clone()),
        (json!(100), json!(20))
    );
    let fast = client_with_key(str_of(&own.json, "key"));
    for _ in 0..10 {
        let reply = srv
            .get(&fast, "/users")
            .await
            .expect(200, "within its own burst");
        assert_eq!(reply.header("ratelimit-limit"), Some("20"));
    }

    let metrics = srv.get(&client(), "/metrics").await.expect(200, "metrics");
    let line = format!("gitrev_key_rate_limited_total{{key_id=\"{id}\"}}");
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l.starts_with(&line) && !l.ends_with(" 0")),
        "{line} counted: {}",
        metrics.text
    );
    assert!(
        !metrics.text.contains(&key[3..]),
        "never the key in a metric"
    );
    // Unkeyed and public requests carry no rate headers.
    let public = srv.get(&client(), "/health").await.expect(200, "health");
    assert_eq!(public.header("ratelimit-limit"), None);
}

/// `GITREV_METRICS_TOKEN` guards `/metrics` alone: nothing else opens it, and it opens nothing else.
#[tokio::test]
async fn the_metrics_token_guards_metrics_and_nothing_else() {
    const METRICS: &str = "keys-test-metrics-token-19b2";
    let url = fresh_database("metricstoken").await;
    let srv = start_server_on(
        &url,
        &[
            ("GITREV_API_TOKEN", TOKEN),
            ("GITREV_METRICS_TOKEN", METRICS),
        ],
    );
    for (who, c) in [
        ("no key", client()),
        ("the API token", client_with_key(TOKEN)),
        (
            "a wrong token",
            client_with_key("keys-test-metrics-token-19b3"),
        ),
    ] {
        let reply = srv.get(&c, "/metrics").await;
        assert_eq!(reply.status, 401, "/metrics with {who}: {}", reply.text);
    }
    let scraped = srv
        .get(&client_with_key(METRICS), "/metrics")
        .await
        .expect(200, "/metrics with the metrics token");
    assert!(scraped.text.contains("gitrev_http_requests_total"));
    assert_error(
        &srv.get(&client_with_key(METRICS), "/users").await,
        401,
        "unauthorized",
    );
    srv.get(&client(), "/health")
        .await
        .expect(200, "health stays public");
}
