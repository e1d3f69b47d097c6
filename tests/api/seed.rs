//! The seed sets and the id sequences: `gitrev seed`, `gitrev reset`, `gitrev fix-sequences`, each on a
//! database of its own so counts and ids are exact.

use std::path::Path;

use serde_json::{json, Value};

use crate::harness::{
    assert_cli_ok, client, connect, count_rows, fresh_database, gitrev, gitrev_with_env, id_of,
    output_text, seed_dir, seeded_database, start_server_on, unique_email,
};

/// Rows of a seed CSV (header excluded), parsed with quoting (`"…"`, `""` for a quote).
pub fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) => quoted = true,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\r', false) => {}
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (other, _) => field.push(other),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows.remove(0);
    rows
}

/// `YYYY-MM-DD HH:MM:SS` as the API renders it.
fn api_time(csv: &str) -> String {
    csv.replacen(' ', "T", 1)
}

fn opt_int(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        json!(text.parse::<i64>().expect("an integer column"))
    }
}

fn user_json(row: &[String]) -> Value {
    json!({
        "id": row[0].parse::<i64>().expect("user id"),
        "username": row[1],
        "email": row[2],
        "created_at": api_time(&row[3]),
    })
}

fn url_json(row: &[String]) -> Value {
    json!({
        "id": row[0].parse::<i64>().expect("url id"),
        "user_id": opt_int(&row[1]),
        "short_code": row[2],
        "original_url": row[3],
        "title": if row[4].is_empty() { Value::Null } else { json!(row[4]) },
        "is_active": row[5].eq_ignore_ascii_case("true"),
        "created_at": api_time(&row[6]),
        "updated_at": api_time(&row[7]),
        // The seed files predate link options: every one unset.
        "expires_at": null,
        "max_clicks": null,
        "expired_url": null,
        "redirect_status": null,
        "forward_query": false,
        "tags": [],
    })
}

fn event_json(row: &[String]) -> Value {
    json!({
        "id": row[0].parse::<i64>().expect("event id"),
        "url_id": opt_int(&row[1]),
        "user_id": opt_int(&row[2]),
        "event_type": row[3],
        "timestamp": api_time(&row[4]),
        "details": serde_json::from_str::<Value>(&row[5]).expect("details are JSON"),
    })
}

async fn assert_counts(url: &str, users: i64, urls: i64, events: i64) {
    assert_eq!(count_rows(url, "users").await, users, "users");
    assert_eq!(count_rows(url, "urls").await, urls, "urls");
    assert_eq!(count_rows(url, "events").await, events, "events");
}

fn dir_arg(set: &str) -> String {
    seed_dir(set)
        .to_str()
        .expect("the seed path is UTF-8")
        .to_string()
}

#[tokio::test]
async fn seed_loads_the_set_prints_a_summary_and_is_idempotent() {
    let url = fresh_database("seed").await;
    assert_cli_ok(&gitrev(&["migrate"], &url), "gitrev migrate");
    let dir = dir_arg("gitrev");
    let first = gitrev(&["seed", "--dir", &dir], &url);
    assert_cli_ok(&first, "gitrev seed");
    let summary = output_text(&first);
    assert!(
        summary.to_lowercase().contains("users") && summary.contains("400"),
        "gitrev seed prints a summary of what it loaded:\n{summary}"
    );
    assert_counts(&url, 400, 2000, 3422).await;

    assert_cli_ok(&gitrev(&["seed", "--dir", &dir], &url), "gitrev seed again");
    assert_counts(&url, 400, 2000, 3422).await;
}

#[tokio::test]
async fn seeded_rows_keep_their_ids_and_values() {
    let url = seeded_database("gitrev").await;
    let srv = start_server_on(&url, &[]);
    let c = client();
    let dir = seed_dir("gitrev");

    let users = csv_rows(&dir.join("users.csv"));
    for row in [&users[0], &users[199], &users[399]] {
        let expected = user_json(row);
        let reply = srv
            .get(&c, &format!("/users/{}", id_of(&expected)))
            .await
            .expect(200, "GET seeded user");
        assert_eq!(reply.json, expected);
    }

    let urls = csv_rows(&dir.join("urls.csv"));
    let inactive = urls
        .iter()
        .find(|r| r[5].eq_ignore_ascii_case("false"))
        .expect("the set has inactive urls");
    let active = urls
        .iter()
        .rev()
        .find(|r| r[5].eq_ignore_ascii_case("true"))
        .expect("the set has active urls");
    for row in [&urls[0], inactive, active] {
        let expected = url_json(row);
        let reply = srv
            .get(&c, &format!("/urls/{}", id_of(&expected)))
            .await
            .expect(200, "GET seeded url");
        assert_eq!(reply.json, expected);
    }
    let reply = srv
        .get(&c, &format!("/{}", active[2]))
        .await
        .expect(302, "a seeded active code redirects");
    assert_eq!(reply.header("location"), Some(active[3].as_str()));
    let reply = srv.get(&c, &format!("/{}", inactive[2])).await;
    assert_eq!(
        reply.status, 404,
        "a seeded inactive code does not redirect"
    );

    let events = csv_rows(&dir.join("events.csv"));
    let deleted = events
        .iter()
        .find(|r| r[3] == "deleted")
        .expect("the set has deleted events");
    for row in [&events[0], deleted, &events[3421]] {
        let expected = event_json(row);
        let reply = srv
            .get(&c, &format!("/events/{}", id_of(&expected)))
            .await
            .expect(200, "GET seeded event");
        assert_eq!(reply.json, expected, "details come back as a JSON object");
    }
}

#[tokio::test]
async fn sequences_continue_after_the_seed_and_after_a_bulk_import() {
    let url = seeded_database("gitrev").await;
    let srv = start_server_on(&url, &[]);
    let c = client();

    let user = srv
        .post(
            &c,
            "/users",
            &json!({"username": "next", "email": unique_email()}),
        )
        .await
        .expect(201, "POST /users after the seed");
    assert_eq!(
        user.json["id"], 401,
        "the first new user follows the 400 seeded ones"
    );

    let created = srv
        .post(
            &c,
            "/urls",
            &json!({"original_url": "https://example.com/after-seed", "user_id": 401}),
        )
        .await
        .expect(201, "POST /urls after the seed");
    assert!(id_of(&created.json) > 2000, "url id {}", created.json["id"]);
    let event = srv
        .post(
            &c,
            "/events",
            &json!({"event_type": "view", "url_id": id_of(&created.json)}),
        )
        .await
        .expect(201, "POST /events after the seed");
    assert!(id_of(&event.json) > 3422, "event id {}", event.json["id"]);

    let csv = format!("id,username,email\n5000,far,{}\n", unique_email());
    let reply = crate::harness::read_reply(
        c.post(srv.url("/users/bulk"))
            .header("content-type", "text/csv")
            .body(csv),
    )
    .await
    .expect(201, "bulk import of id 5000");
    assert_eq!(reply.json["imported"], 1, "{}", reply.text);
    let after = srv
        .post(
            &c,
            "/users",
            &json!({"username": "after", "email": unique_email()}),
        )
        .await
        .expect(201, "POST /users after the import");
    assert!(
        id_of(&after.json) > 5000,
        "the sequence moved past the imported id: {}",
        after.json["id"]
    );
}

#[tokio::test]
async fn fix_sequences_repairs_a_sequence_that_drifted() {
    let url = seeded_database("gitrev").await;
    let db = connect(&url).await;
    db.batch_execute("SELECT setval(pg_get_serial_sequence('users', 'id'), 1)")
        .await
        .expect("moving the users sequence back");
    assert_cli_ok(&gitrev(&["fix-sequences"], &url), "gitrev fix-sequences");

    let srv = start_server_on(&url, &[]);
    let reply = srv
        .post(
            &client(),
            "/users",
            &json!({"username": "fixed", "email": unique_email()}),
        )
        .await
        .expect(201, "POST /users after fix-sequences");
    assert!(id_of(&reply.json) > 400, "id {}", reply.json["id"]);
}

#[tokio::test]
async fn dup_usernames_set_loads_every_user() {
    let url = seeded_database("dup-usernames").await;
    assert_counts(&url, 400, 2000, 3422).await;
    assert_cli_ok(
        &gitrev(&["seed", "--dir", &dir_arg("dup-usernames")], &url),
        "gitrev seed again",
    );
    assert_counts(&url, 400, 2000, 3422).await;

    let srv = start_server_on(&url, &[]);
    let c = client();
    let a = srv.get(&c, "/users/180").await.expect(200, "user 180");
    let b = srv.get(&c, "/users/293").await.expect(200, "user 293");
    assert_eq!(a.json["username"], "warmkernel40");
    assert_eq!(b.json["username"], "warmkernel40");
    assert_ne!(a.json["email"], b.json["email"]);
    let next = srv
        .post(
            &c,
            "/users",
            &json!({"username": "warmkernel40", "email": unique_email()}),
        )
        .await
        .expect(201, "a third warmkernel40");
    assert_eq!(next.json["id"], 401);
}

async fn mutate_seeded(url: &str) {
    let db = connect(url).await;
    db.batch_execute(
        "INSERT INTO users (username, email, created_at) VALUES ('extra', 'extra@reset.test', now()); \
         DELETE FROM events WHERE id = 1;",
    )
    .await
    .expect("changing the seeded data");
    assert_counts(url, 401, 2000, 3421).await;
}

#[tokio::test]
async fn reset_reloads_the_seed_set() {
    let url = seeded_database("gitrev").await;
    mutate_seeded(&url).await;
    assert_cli_ok(
        &gitrev(&["reset", "--dir", &dir_arg("gitrev")], &url),
        "gitrev reset --dir",
    );
    assert_counts(&url, 400, 2000, 3422).await;
    let db = connect(&url).await;
    let extra: i64 = db
        .query_one(
            "SELECT count(*) FROM users WHERE email = 'extra@reset.test'",
            &[],
        )
        .await
        .expect("counting")
        .get(0);
    assert_eq!(extra, 0, "reset empties the tables first");

    let srv = start_server_on(&url, &[]);
    let reply = srv
        .post(
            &client(),
            "/users",
            &json!({"username": "r", "email": unique_email()}),
        )
        .await
        .expect(201, "POST /users after reset");
    assert!(
        id_of(&reply.json) > 400,
        "reset moves the sequences too: {}",
        reply.json["id"]
    );
}

#[tokio::test]
async fn reset_takes_the_seed_dir_from_the_environment() {
    let url = seeded_database("gitrev").await;
    mutate_seeded(&url).await;
    let dir = dir_arg("dup-usernames");
    assert_cli_ok(
        &gitrev_with_env(&["reset"], &url, &[("GITREV_SEED_DIR", &dir)]),
        "gitrev reset with GITREV_SEED_DIR",
    );
    assert_counts(&url, 400, 2000, 3422).await;
    let db = connect(&url).await;
    let dups: i64 = db
        .query_one(
            "SELECT count(*) FROM users WHERE username = 'warmkernel40'",
            &[],
        )
        .await
        .expect("counting")
        .get(0);
    assert_eq!(dups, 2, "the set named by GITREV_SEED_DIR was loaded");
}

#[tokio::test]
async fn reset_is_refused_in_production() {
    let url = seeded_database("gitrev").await;
    mutate_seeded(&url).await;
    let output = gitrev_with_env(
        &["reset", "--dir", &dir_arg("gitrev")],
        &url,
        &[("GITREV_ENV", "production")],
    );
    assert!(
        !output.status.success(),
        "reset must refuse to run in production:\n{}",
        output_text(&output)
    );
    assert_counts(&url, 401, 2000, 3421).await;
}

#[tokio::test]
async fn reset_forgets_the_clicks_recorded_since_the_seed() {
    let url = seeded_database("gitrev").await;
    let count = |sql: &'static str| {
        let url = url.clone();
        async move {
            connect(&url)
                .await
                .query_one(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .get::<_, i64>(0)
        }
    };
    let seeded = count("SELECT count(*) FROM click_log").await;

    let srv = start_server_on(&url, &[]);
    let c = client();
    let made = srv
        .post(
            &c,
            "/urls",
            &json!({"user_id": 1, "original_url": "https://example.com/before-reset"}),
        )
        .await
        .expect(201, "POST /urls");
    let code = made.json["short_code"].as_str().expect("a code").to_owned();
    for _ in 0..3 {
        srv.get(&c, &format!("/{code}"))
            .await
            .expect(302, "a redirect");
    }
    crate::harness::settle_clicks(&srv).await;
    assert_eq!(count("SELECT count(*) FROM click_log").await, seeded + 3);
    srv.stop();

    assert_cli_ok(
        &gitrev(&["reset", "--dir", &dir_arg("gitrev")], &url),
        "gitrev reset --dir",
    );
    assert_eq!(
        count("SELECT count(*) FROM click_log").await,
        seeded,
        "reset leaves the seed's clicks and nothing else"
    );
}
