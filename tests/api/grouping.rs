//! Grouped writes beyond `POST /users`: concurrent `POST /urls` and `POST /events` are inserted a
//! group per statement, and each request still gets its own answer — its own row, its own 404 for
//! a missing user or url, its own 409 for a custom code someone else got first.

use std::collections::BTreeSet;

use futures_util::future::join_all;
use reqwest::Client;
use serde_json::{json, Value};

use crate::harness::{
    assert_error, assert_grouped, assert_redirects, client, code_path, connect, count_rows,
    create_url_on, create_user_on, fresh_database, group_totals, id_of, read_metric,
    start_server_on, str_of, unique, unique_original_url, TestServer,
};

const UNKNOWN_ID: i64 = 9_000_000_000;

/// A server of its own on a fresh database, a client, and the id of a user made there.
async fn server_with_owner(prefix: &str) -> (String, TestServer, Client, i64) {
    let database_url = fresh_database(prefix).await;
    let srv = start_server_on(&database_url, &[]);
    let c = client();
    let owner = id_of(&create_user_on(&srv, &c).await);
    (database_url, srv, c, owner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_url_creates_are_grouped_and_each_answered() {
    let (database_url, srv, c, owner) = server_with_owner("group_urls").await;
    let before = group_totals(&srv, &c, "gitrev_url_batch_size").await;

    let bodies: Vec<Value> = (0..300)
        .map(|i| {
            let user_id = if i % 10 == 3 { UNKNOWN_ID } else { owner };
            json!({"original_url": unique_original_url(), "user_id": user_id, "title": format!("t{i}")})
        })
        .collect();
    let replies = join_all(bodies.iter().map(|body| srv.post(&c, "/urls", body))).await;

    let (mut ids, mut codes) = (BTreeSet::new(), BTreeSet::new());
    for (i, (body, reply)) in bodies.iter().zip(&replies).enumerate() {
        if body["user_id"] == UNKNOWN_ID {
            assert_error(reply, 404, "not_found");
            continue;
        }
        assert_eq!(reply.status, 201, "request {i}: {}", reply.text);
        assert_eq!(
            reply.json["original_url"], body["original_url"],
            "request {i}: its own row"
        );
        assert_eq!(
            reply.json["title"], body["title"],
            "request {i}: its own row"
        );
        assert!(
            ids.insert(id_of(&reply.json)),
            "id given twice: {}",
            reply.text
        );
        assert!(
            codes.insert(str_of(&reply.json, "short_code").to_owned()),
            "code given twice"
        );
    }
    assert_eq!(ids.len(), 270);
    assert_eq!(count_rows(&database_url, "urls").await, 270);
    let created: i64 = connect(&database_url)
        .await
        .query_one(
            "SELECT count(DISTINCT url_id) FROM events WHERE event_type = 'created'",
            &[],
        )
        .await
        .expect("counting created events")
        .get(0);
    assert_eq!(
        created, 270,
        "every url has its created event, and only those"
    );
    assert_grouped(&srv, &c, "gitrev_url_batch_size", before, 300).await;
    // Answered 201 means committed, and the generated codes redirect.
    for reply in replies.iter().filter(|r| r.status == 201).step_by(27) {
        let target = str_of(&reply.json, "original_url");
        assert_redirects(&srv, &c, &code_path(&reply.json), target).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_custom_code_wanted_by_many_at_once_goes_to_exactly_one() {
    let database_url = fresh_database("group_code").await;
    let srv = start_server_on(&database_url, &[]);
    let c = client();
    let code = unique("cc");
    let bodies: Vec<Value> = (0..40)
        .map(|_| json!({"original_url": unique_original_url(), "short_code": code}))
        .collect();
    let replies = join_all(bodies.iter().map(|body| srv.post(&c, "/urls", body))).await;
    let winners: Vec<usize> = (0..replies.len())
        .filter(|&i| replies[i].status == 201)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one request gets the code");
    let winner = winners[0];
    assert_eq!(
        replies[winner].json["original_url"], bodies[winner]["original_url"],
        "the request answered 201 is the one whose row was stored"
    );
    for reply in replies.iter().filter(|r| r.status != 201) {
        assert_error(reply, 409, "conflict");
        assert!(
            reply.json["details"].get("short_code").is_some(),
            "{}",
            reply.text
        );
    }
    assert_eq!(count_rows(&database_url, "urls").await, 1);
    // The code leads to the target the winner sent.
    let target = str_of(&bodies[winner], "original_url");
    assert_redirects(&srv, &c, &format!("/{code}"), target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_events_are_grouped_and_each_answered() {
    let (database_url, srv, c, owner) = server_with_owner("group_events").await;
    let body = json!({"original_url": unique_original_url(), "user_id": owner});
    let url_id = id_of(&create_url_on(&srv, &c, body).await);
    let before = group_totals(&srv, &c, "gitrev_event_batch_size").await;

    let bodies: Vec<Value> = (0..300)
        .map(|i| match i % 10 {
            4 => json!({"event_type": "grouped", "url_id": UNKNOWN_ID, "details": {"i": i}}),
            7 => json!({"event_type": "grouped", "url_id": url_id, "user_id": UNKNOWN_ID}),
            5 => json!({"event_type": "grouped", "url_id": url_id, "details": {"i": i}}),
            _ => json!({"event_type": "grouped", "url_id": url_id, "user_id": owner, "details": {"i": i}}),
        })
        .collect();
    let replies = join_all(bodies.iter().map(|body| srv.post(&c, "/events", body))).await;

    let mut ids = BTreeSet::new();
    for (i, (body, reply)) in bodies.iter().zip(&replies).enumerate() {
        match i % 10 {
            4 | 7 => {
                assert_error(reply, 404, "not_found");
                continue;
            }
            _ => {}
        }
        assert_eq!(reply.status, 201, "request {i}: {}", reply.text);
        assert_eq!(
            reply.json["details"], body["details"],
            "request {i}: its own row"
        );
        assert_eq!(
            reply.json["user_id"],
            body.get("user_id").cloned().unwrap_or(Value::Null)
        );
        assert!(
            ids.insert(id_of(&reply.json)),
            "id given twice: {}",
            reply.text
        );
    }
    assert_eq!(ids.len(), 240);
    let stored: i64 = connect(&database_url)
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE event_type = 'grouped'",
            &[],
        )
        .await
        .expect("counting events")
        .get(0);
    assert_eq!(stored, 240, "exactly the answered events are stored");
    assert_grouped(&srv, &c, "gitrev_event_batch_size", before, 300).await;
    for reply in replies.iter().filter(|r| r.status == 201).step_by(23) {
        let read = srv
            .get(&c, &format!("/events/{}", id_of(&reply.json)))
            .await
            .expect(200, "a created event reads back");
        assert_eq!(read.json, reply.json);
    }
}

#[tokio::test]
async fn with_grouping_off_urls_and_events_are_written_alone() {
    let database_url = fresh_database("group_off").await;
    let srv = start_server_on(&database_url, &[("GITREV_USER_BATCH", "off")]);
    let c = client();
    let url = srv
        .post(&c, "/urls", &json!({"original_url": unique_original_url()}))
        .await
        .expect(201, "POST /urls");
    srv.post(
        &c,
        "/events",
        &json!({"event_type": "alone", "url_id": id_of(&url.json)}),
    )
    .await
    .expect(201, "POST /events");
    srv.post(
        &c,
        "/events",
        &json!({"event_type": "alone", "url_id": UNKNOWN_ID}),
    )
    .await
    .expect(404, "POST /events for an unknown url");
    for name in [
        "gitrev_url_batch_size_count",
        "gitrev_event_batch_size_count",
    ] {
        assert_eq!(
            read_metric(&srv, &c, name).await,
            0.0,
            "{name}: nothing grouped"
        );
    }
}
