//! Concurrency: user creation is grouped into batches under load, yet every request gets its own
//! answer — its own row, or its own conflict — and concurrent redirects each count.

use std::collections::BTreeSet;

use futures_util::future::join_all;
use serde_json::json;

use crate::harness::{
    client, create_url_with, id_of, server, settled_clicks, unique, unique_email,
    unique_original_url,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_creates_all_succeed_with_distinct_ids() {
    let c = client();
    let bodies: Vec<_> = (0..200)
        .map(|_| json!({"username": unique("crowd"), "email": unique_email()}))
        .collect();
    let replies = join_all(bodies.iter().map(|body| server().post(&c, "/users", body))).await;

    let mut ids = BTreeSet::new();
    for (body, reply) in bodies.iter().zip(&replies) {
        assert!(
            reply.status < 500,
            "no 5xx under load: {} {}",
            reply.status,
            reply.text
        );
        assert_eq!(reply.status, 201, "{}", reply.text);
        assert_eq!(
            reply.json["email"], body["email"],
            "each request gets its own row"
        );
        assert_eq!(reply.json["username"], body["username"]);
        assert!(
            ids.insert(id_of(&reply.json)),
            "id {} given twice",
            reply.json["id"]
        );
    }
    assert_eq!(ids.len(), 200);

    // Answered 201 means committed: every row reads back.
    for reply in replies.iter().step_by(10) {
        let read = server()
            .get(&c, &format!("/users/{}", id_of(&reply.json)))
            .await
            .expect(200, "a created user reads back");
        assert_eq!(read.json, reply.json);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_with_one_email_give_one_201_and_the_rest_409() {
    let c = client();
    let email = unique_email();
    let variants: Vec<String> = (0..30)
        .map(|i| {
            if i % 2 == 0 {
                email.clone()
            } else {
                email.to_uppercase()
            }
        })
        .collect();
    let bodies: Vec<_> = variants
        .iter()
        .map(|e| json!({"username": unique("race"), "email": e}))
        .collect();
    let replies = join_all(bodies.iter().map(|body| server().post(&c, "/users", body))).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    let conflicts = replies.iter().filter(|r| r.status == 409).count();
    let others: Vec<String> = replies
        .iter()
        .filter(|r| r.status != 201 && r.status != 409)
        .map(|r| format!("{} {}", r.status, r.text))
        .collect();
    assert!(others.is_empty(), "only 201 or 409: {others:?}");
    assert_eq!(created, 1, "exactly one request wins the email");
    assert_eq!(conflicts, 29);
    for reply in replies.iter().filter(|r| r.status == 409) {
        assert_eq!(reply.json["code"], "conflict");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_request_in_a_crowd_does_not_spoil_the_others() {
    let c = client();
    let taken = unique_email();
    server()
        .post(&c, "/users", &json!({"username": "first", "email": taken}))
        .await
        .expect(201, "the first owner of the email");
    let mut bodies: Vec<_> = (0..40)
        .map(|_| json!({"username": unique("mixed"), "email": unique_email()}))
        .collect();
    bodies[7] = json!({"username": "dup", "email": taken});
    bodies[23] = json!({"username": "dup2", "email": taken});
    let replies = join_all(bodies.iter().map(|body| server().post(&c, "/users", body))).await;
    for (i, reply) in replies.iter().enumerate() {
        let expected = if i == 7 || i == 23 { 409 } else { 201 };
        assert_eq!(reply.status, expected, "request {i}: {}", reply.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_redirects_each_record_a_click() {
    let c = client();
    let original = unique_original_url();
    let url = create_url_with(&c, json!({"original_url": original})).await;
    let path = format!("/{}", url["short_code"].as_str().expect("a code"));
    let replies = join_all((0..50).map(|_| server().get(&c, &path))).await;
    for reply in &replies {
        assert_eq!(reply.status, 302, "{}", reply.text);
        assert_eq!(reply.header("location"), Some(original.as_str()));
    }
    let clicks = settled_clicks(&c, id_of(&url)).await;
    assert_eq!(clicks.len(), 50, "fifty redirects, fifty clicks");
}
