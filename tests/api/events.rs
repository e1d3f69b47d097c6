//! Events: `GET /events` with combined filters, `GET /events/{id}`, `POST /events`.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::harness::{
    assert_error, assert_event, assert_invalid_field, assert_json_content_type, assert_not_found,
    client, create_url, create_url_with, create_user, events, id_of, server, unique_original_url,
    MISSING_ID,
};

async fn post_event(c: &reqwest::Client, body: Value) -> Value {
    let reply = server()
        .post(c, "/events", &body)
        .await
        .expect(201, "POST /events");
    assert_json_content_type(&reply);
    assert_event(&reply.json);
    reply.json
}

#[tokio::test]
async fn create_returns_the_event_and_it_reads_back() {
    let c = client();
    let user = create_user(&c).await;
    let url = create_url(&c, id_of(&user)).await;
    let event = post_event(
        &c,
        json!({
            "event_type": "share",
            "url_id": id_of(&url),
            "user_id": id_of(&user),
            "details": {"channel": "email", "n": 2, "nested": {"ok": true}},
        }),
    )
    .await;
    assert_eq!(event["event_type"], "share");
    assert_eq!(event["url_id"], url["id"]);
    assert_eq!(event["user_id"], user["id"]);
    assert_eq!(
        event["details"],
        json!({"channel": "email", "n": 2, "nested": {"ok": true}})
    );
    let read = server()
        .get(&c, &format!("/events/{}", id_of(&event)))
        .await
        .expect(200, "GET /events/{id}");
    assert_eq!(read.json, event);
}

#[tokio::test]
async fn details_default_to_an_empty_object() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let event = post_event(&c, json!({"event_type": "view", "url_id": id_of(&url)})).await;
    assert_eq!(event["details"], json!({}));
    assert_eq!(event["url_id"], url["id"]);
}

/// PostgreSQL renders a JSONB number in plain decimal (1.7976931348623157e308 as a 309-digit
/// integer); reading it back must give the number stored, never an error (found by Schemathesis:
/// the grouped writer panicked on it and answered 503 from then on).
#[tokio::test]
async fn extreme_numbers_in_details_come_back_as_sent() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let details = json!({
        "max": f64::MAX, "min": -f64::MAX, "subnormal": -2.2250738585e-313,
        "big": 3.583245695923037e95, "tiny": 2.663907687334259e-301, "int": 55702277470823940_u64,
    });
    let event = post_event(
        &c,
        json!({"event_type": "numbers", "url_id": id_of(&url), "details": details}),
    )
    .await;
    assert_eq!(event["details"], details, "the answer to the POST");
    let read = server()
        .get(&c, &format!("/events/{}", id_of(&event)))
        .await
        .expect(200, "GET the event");
    assert_eq!(read.json["details"], details, "read back");
    let again = post_event(&c, json!({"event_type": "after", "url_id": id_of(&url)})).await;
    assert_eq!(again["event_type"], "after", "the writer still writes");
}

#[tokio::test]
async fn unknown_event_is_404() {
    assert_not_found(&format!("/events/{MISSING_ID}")).await;
}

#[tokio::test]
async fn unknown_url_or_user_is_404() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let reply = server()
        .post(
            &c,
            "/events",
            &json!({"event_type": "x", "url_id": MISSING_ID}),
        )
        .await;
    assert_error(&reply, 404, "not_found");
    let reply = server()
        .post(
            &c,
            "/events",
            &json!({"event_type": "x", "url_id": id_of(&url), "user_id": MISSING_ID}),
        )
        .await;
    assert_error(&reply, 404, "not_found");
}

#[tokio::test]
async fn details_that_are_not_an_object_are_422() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    for details in [
        json!("a string"),
        json!("{\"k\":1}"),
        json!([1, 2]),
        json!(5),
        json!(true),
    ] {
        let reply = server()
            .post(
                &c,
                "/events",
                &json!({"event_type": "x", "url_id": id_of(&url), "details": details}),
            )
            .await;
        assert_invalid_field(&reply, "details");
    }
}

#[tokio::test]
async fn event_type_and_url_id_are_validated() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let url_id = id_of(&url);
    let bad_types = [
        json!({"url_id": url_id}),
        json!({"url_id": url_id, "event_type": ""}),
        json!({"url_id": url_id, "event_type": 5}),
        json!({"url_id": url_id, "event_type": null}),
        json!({"url_id": url_id, "event_type": "e".repeat(65)}),
    ];
    for body in bad_types {
        let reply = server().post(&c, "/events", &body).await;
        assert_invalid_field(&reply, "event_type");
    }
    let bad_urls = [
        json!({"event_type": "x"}),
        json!({"event_type": "x", "url_id": "abc"}),
        json!({"event_type": "x", "url_id": null}),
        json!({"event_type": "x", "url_id": 1.5}),
    ];
    for body in bad_urls {
        let reply = server().post(&c, "/events", &body).await;
        assert_invalid_field(&reply, "url_id");
    }
    let reply = server()
        .post(
            &c,
            "/events",
            &json!({"event_type": "x", "url_id": url_id, "user_id": "me"}),
        )
        .await;
    assert_invalid_field(&reply, "user_id");

    let longest = "e".repeat(64);
    let event = post_event(&c, json!({"event_type": longest, "url_id": url_id})).await;
    assert_eq!(event["event_type"], longest);
}

#[tokio::test]
async fn filters_combine() {
    let c = client();
    let a = create_user(&c).await;
    let b = create_user(&c).await;
    let (ua, ub) = (id_of(&a), id_of(&b));
    let url1 = id_of(&create_url(&c, ua).await);
    let url2 = id_of(&create_url(&c, ua).await);
    let share1a = id_of(
        &post_event(
            &c,
            json!({"event_type": "share", "url_id": url1, "user_id": ua}),
        )
        .await,
    );
    let share1b = id_of(
        &post_event(
            &c,
            json!({"event_type": "share", "url_id": url1, "user_id": ub}),
        )
        .await,
    );
    let share2b = id_of(
        &post_event(
            &c,
            json!({"event_type": "share", "url_id": url2, "user_id": ub}),
        )
        .await,
    );
    let view2a = id_of(
        &post_event(
            &c,
            json!({"event_type": "view", "url_id": url2, "user_id": ua}),
        )
        .await,
    );
    let created1 = only_id(events(&c, &format!("url_id={url1}&event_type=created")).await);
    let created2 = only_id(events(&c, &format!("url_id={url2}&event_type=created")).await);

    let cases: Vec<(String, Vec<i64>)> = vec![
        (format!("url_id={url1}"), vec![created1, share1a, share1b]),
        (
            format!("url_id={url1}&event_type=share"),
            vec![share1a, share1b],
        ),
        (format!("url_id={url1}&user_id={ub}"), vec![share1b]),
        (
            format!("user_id={ua}"),
            vec![created1, created2, share1a, view2a],
        ),
        (format!("user_id={ub}"), vec![share1b, share2b]),
        (format!("user_id={ua}&event_type=share"), vec![share1a]),
        (
            format!("user_id={ua}&event_type=created"),
            vec![created1, created2],
        ),
        (format!("event_type=view&user_id={ua}"), vec![view2a]),
        (
            format!("url_id={url2}&user_id={ub}&event_type=share"),
            vec![share2b],
        ),
        (format!("url_id={url1}&event_type=view"), vec![]),
        (format!("user_id={ub}&event_type=created"), vec![]),
        (
            format!("url_id={url2}&color=red"),
            vec![created2, share2b, view2a],
        ),
    ];
    for (query, expected) in cases {
        let got: BTreeSet<i64> = events(&c, &query).await.iter().map(id_of).collect();
        let expected: BTreeSet<i64> = expected.into_iter().collect();
        assert_eq!(got, expected, "GET /events?{query}");
    }
}

fn only_id(list: Vec<Value>) -> i64 {
    assert_eq!(list.len(), 1, "exactly one event: {list:?}");
    id_of(&list[0])
}

#[tokio::test]
async fn listed_events_match_every_filter() {
    let c = client();
    let user = create_user(&c).await;
    let url = create_url(&c, id_of(&user)).await;
    let (user_id, url_id) = (id_of(&user), id_of(&url));
    post_event(
        &c,
        json!({"event_type": "ping", "url_id": url_id, "user_id": user_id}),
    )
    .await;
    let queries = [
        vec![("event_type", json!("ping"))],
        vec![("user_id", json!(user_id))],
        vec![("url_id", json!(url_id))],
        vec![("url_id", json!(url_id)), ("event_type", json!("ping"))],
        vec![
            ("user_id", json!(user_id)),
            ("url_id", json!(url_id)),
            ("event_type", json!("ping")),
        ],
    ];
    for filters in queries {
        let query: Vec<String> = filters
            .iter()
            .map(|(field, value)| match value {
                Value::String(text) => format!("{field}={text}"),
                other => format!("{field}={other}"),
            })
            .collect();
        let query = query.join("&");
        let list = events(&c, &query).await;
        assert!(
            list.iter()
                .any(|e| e["event_type"] == "ping" && e["url_id"] == url_id),
            "GET /events?{query} lists the ping event posted here"
        );
        for event in &list {
            for (field, value) in &filters {
                assert_eq!(&event[*field], value, "GET /events?{query} listed {event}");
            }
        }
    }
}

#[tokio::test]
async fn bad_filter_values_are_422() {
    let c = client();
    for query in ["url_id=x", "user_id=abc", "url_id=1.5"] {
        let reply = server().get(&c, &format!("/events?{query}")).await;
        assert_error(&reply, 422, "validation_failed");
    }
}
