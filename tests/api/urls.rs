//! URLs: `POST /urls`, `GET /urls`, `GET|PUT|PATCH|DELETE /urls/{id}`, `GET /urls/{id}/stats`, and the
//! `created` / `updated` / `deleted` events they record.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{
    assert_error, assert_invalid_field, assert_json_content_type, assert_not_found,
    assert_redirects, assert_timestamp, assert_url, client, code_path, connect, create_url,
    create_url_with, create_user, events, id_of, is_base62_code, poll, server, settled_clicks,
    str_of, unique, unique_original_url, MISSING_ID,
};

const RESERVED: [&str; 13] = [
    "health",
    "ready",
    "metrics",
    "users",
    "urls",
    "events",
    "openapi.json",
    "favicon.ico",
    "robots.txt",
    "api",
    "admin",
    "static",
    "docs",
];

#[tokio::test]
async fn create_with_only_original_url() {
    let c = client();
    let original = unique_original_url();
    let reply = server()
        .post(&c, "/urls", &json!({"original_url": original}))
        .await
        .expect(201, "POST /urls");
    assert_json_content_type(&reply);
    let url = &reply.json;
    assert_url(url);
    assert_eq!(url["original_url"], original);
    assert_eq!(url["user_id"], Value::Null);
    assert_eq!(url["title"], Value::Null);
    assert_eq!(url["is_active"], true);
    let code = str_of(url, "short_code");
    assert!(
        is_base62_code(code),
        "generated code {code:?} is 6 base62 characters"
    );
}

#[tokio::test]
async fn create_with_every_field() {
    let c = client();
    let user = create_user(&c).await;
    let original = unique_original_url();
    let code = unique("mine");
    let body = json!({
        "original_url": original,
        "user_id": id_of(&user),
        "title": "My page",
        "short_code": code,
        "is_active": false,
    });
    let url = create_url_with(&c, body).await;
    assert_eq!(url["original_url"], original);
    assert_eq!(url["user_id"], user["id"]);
    assert_eq!(url["title"], "My page");
    assert_eq!(url["short_code"], code);
    assert_eq!(url["is_active"], false);
    let read = server()
        .get(&c, &format!("/urls/{}", id_of(&url)))
        .await
        .expect(200, "GET /urls/{id}");
    assert_eq!(read.json, url);
}

#[tokio::test]
async fn unknown_url_is_404_and_so_are_its_stats() {
    for path in [
        format!("/urls/{MISSING_ID}"),
        format!("/urls/{MISSING_ID}/stats"),
        format!("/urls/{MISSING_ID}/stats/timeseries"),
        format!("/urls/{MISSING_ID}/stats/breakdown?by=os"),
        format!("/urls/{MISSING_ID}/clicks.csv"),
    ] {
        assert_not_found(&path).await;
    }
}

#[tokio::test]
async fn same_original_url_twice_gives_two_codes() {
    let c = client();
    let original = unique_original_url();
    let a = create_url_with(&c, json!({"original_url": original})).await;
    let b = create_url_with(&c, json!({"original_url": original})).await;
    assert_ne!(a["id"], b["id"]);
    assert_ne!(a["short_code"], b["short_code"]);
    for url in [&a, &b] {
        assert_redirects(server(), &c, &code_path(url), &original).await;
    }
}

#[tokio::test]
async fn non_url_original_url_is_422() {
    let c = client();
    let bad = [
        json!("hello"),
        json!("example.com"),
        json!("ftp://x"),
        json!(""),
        json!(123),
        json!(null),
        json!("http://"),
        json!("javascript:alert(1)"),
    ];
    for original in &bad {
        let reply = server()
            .post(&c, "/urls", &json!({"original_url": original}))
            .await;
        assert_invalid_field(&reply, "original_url");
    }
    let reply = server()
        .post(&c, "/urls", &json!({"title": "no url"}))
        .await;
    assert_invalid_field(&reply, "original_url");
}

#[tokio::test]
async fn http_and_https_urls_with_paths_and_queries_are_accepted() {
    let c = client();
    for original in [
        "http://example.com".to_string(),
        format!(
            "https://sub.example.org:8443/a/b?c=d&e=f#frag{}",
            unique("x")
        ),
        "http://127.0.0.1:9/".to_string(),
    ] {
        let url = create_url_with(&c, json!({"original_url": original})).await;
        assert_eq!(url["original_url"], original.as_str());
    }
}

#[tokio::test]
async fn unknown_user_id_is_404() {
    let reply = server()
        .post(
            &client(),
            "/urls",
            &json!({"original_url": unique_original_url(), "user_id": MISSING_ID}),
        )
        .await;
    assert_error(&reply, 404, "not_found");
}

#[tokio::test]
async fn wrong_typed_fields_are_422() {
    let c = client();
    let cases = [
        ("user_id", json!("abc")),
        ("user_id", json!(1.5)),
        ("title", json!(5)),
        ("title", json!(["t"])),
        ("is_active", json!("yes")),
        ("is_active", json!(1)),
        ("short_code", json!(123)),
    ];
    for (field, value) in cases {
        let mut body = json!({"original_url": unique_original_url()});
        body[field] = value;
        let reply = server().post(&c, "/urls", &body).await;
        assert_invalid_field(&reply, field);
    }
}

#[tokio::test]
async fn custom_short_code_is_used_and_redirects() {
    let c = client();
    let code = format!("My-Code_{}", unique("c"));
    let original = unique_original_url();
    let url = create_url_with(&c, json!({"original_url": original, "short_code": code})).await;
    assert_eq!(url["short_code"], code);
    assert_redirects(server(), &c, &format!("/{code}"), &original).await;
}

#[tokio::test]
async fn taken_short_code_is_409() {
    let c = client();
    let code = unique("taken");
    create_url_with(
        &c,
        json!({"original_url": unique_original_url(), "short_code": code}),
    )
    .await;
    let reply = server()
        .post(
            &c,
            "/urls",
            &json!({"original_url": unique_original_url(), "short_code": code}),
        )
        .await;
    assert_error(&reply, 409, "conflict");
    assert!(
        reply.json["details"].get("short_code").is_some(),
        "{}",
        reply.text
    );

    let generated = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let reply = server()
        .post(
            &c,
            "/urls",
            &json!({"original_url": unique_original_url(), "short_code": generated["short_code"]}),
        )
        .await;
    assert_error(&reply, 409, "conflict");
}

#[tokio::test]
async fn reserved_short_codes_are_422() {
    let c = client();
    for code in RESERVED {
        let reply = server()
            .post(
                &c,
                "/urls",
                &json!({"original_url": unique_original_url(), "short_code": code}),
            )
            .await;
        assert_invalid_field(&reply, "short_code");
    }
}

#[tokio::test]
async fn short_codes_with_bad_characters_or_length_are_422() {
    let c = client();
    let bad = [
        String::new(),
        "has space".to_string(),
        "a/b".to_string(),
        "ab.c".to_string(),
        "caf\u{e9}".to_string(),
        "q?x".to_string(),
        "pct%20".to_string(),
        "x".repeat(33),
    ];
    for code in &bad {
        let reply = server()
            .post(
                &c,
                "/urls",
                &json!({"original_url": unique_original_url(), "short_code": code}),
            )
            .await;
        assert_invalid_field(&reply, "short_code");
    }
    // The longest allowed code.
    let tail = unique("y");
    let longest = format!("{}{tail}", "L".repeat(32 - tail.len()));
    assert_eq!(longest.len(), 32);
    let url = create_url_with(
        &c,
        json!({"original_url": unique_original_url(), "short_code": longest}),
    )
    .await;
    assert_eq!(url["short_code"], longest);
}

#[tokio::test]
async fn created_event_is_recorded() {
    let c = client();
    let user = create_user(&c).await;
    let url = create_url(&c, id_of(&user)).await;
    let list = events(&c, &format!("url_id={}&event_type=created", id_of(&url))).await;
    assert_eq!(list.len(), 1, "one created event: {list:?}");
    let event = &list[0];
    assert_eq!(event["url_id"], url["id"]);
    assert_eq!(
        event["user_id"], user["id"],
        "url events belong to the owner"
    );
    assert_eq!(event["details"]["short_code"], url["short_code"]);
    assert_eq!(event["details"]["original_url"], url["original_url"]);
}

#[tokio::test]
async fn created_event_of_an_ownerless_url_has_no_user() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let list = events(&c, &format!("url_id={}&event_type=created", id_of(&url))).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["user_id"], Value::Null);
}

#[tokio::test]
async fn list_filters_by_user_active_and_code() {
    let c = client();
    let user = create_user(&c).await;
    let uid = id_of(&user);
    let active_a = create_url(&c, uid).await;
    let active_b = create_url(&c, uid).await;
    let inactive = create_url_with(
        &c,
        json!({"original_url": unique_original_url(), "user_id": uid, "is_active": false}),
    )
    .await;
    let ids = |list: &Vec<Value>| -> BTreeSet<i64> { list.iter().map(id_of).collect() };
    let all: BTreeSet<i64> = [&active_a, &active_b, &inactive]
        .into_iter()
        .map(id_of)
        .collect();
    let active: BTreeSet<i64> = [&active_a, &active_b].into_iter().map(id_of).collect();
    let only_inactive: BTreeSet<i64> = [id_of(&inactive)].into();

    let reply = server()
        .get(&c, &format!("/urls?user_id={uid}"))
        .await
        .expect(200, "by user");
    assert_eq!(ids(reply.array()), all);
    assert_eq!(reply.total_count(), 3);
    for url in reply.array() {
        assert_url(url);
    }

    for value in ["true", "TRUE", "True", "1"] {
        let reply = server()
            .get(&c, &format!("/urls?user_id={uid}&is_active={value}"))
            .await
            .expect(200, "active only");
        assert_eq!(ids(reply.array()), active, "is_active={value}");
    }
    for value in ["false", "FALSE", "0"] {
        let reply = server()
            .get(&c, &format!("/urls?is_active={value}&user_id={uid}"))
            .await
            .expect(200, "inactive only");
        assert_eq!(ids(reply.array()), only_inactive, "is_active={value}");
    }

    let code = str_of(&active_b, "short_code");
    let reply = server()
        .get(&c, &format!("/urls?short_code={code}"))
        .await
        .expect(200, "by code");
    assert_eq!(reply.array(), &vec![active_b.clone()]);

    let reply = server()
        .get(
            &c,
            &format!("/urls?user_id={uid}&short_code={code}&color=blue"),
        )
        .await
        .expect(200, "filters combine, unknown params ignored");
    assert_eq!(reply.array(), &vec![active_b.clone()]);
}

#[tokio::test]
async fn is_active_true_never_lists_inactive_urls() {
    let c = client();
    create_url_with(
        &c,
        json!({"original_url": unique_original_url(), "is_active": false}),
    )
    .await;
    let reply = server()
        .get(&c, "/urls?is_active=true")
        .await
        .expect(200, "active urls");
    for url in reply.array() {
        assert_eq!(url["is_active"], true, "{url}");
    }
}

#[tokio::test]
async fn bad_filter_values_are_422() {
    let c = client();
    for query in [
        "user_id=abc",
        "is_active=maybe",
        "is_active=",
        "user_id=1.5",
    ] {
        let reply = server().get(&c, &format!("/urls?{query}")).await;
        assert_error(&reply, 422, "validation_failed");
    }
}

#[tokio::test]
async fn put_and_patch_update_given_fields_and_record_one_event_per_change() {
    let c = client();
    let user = create_user(&c).await;
    let url = create_url(&c, id_of(&user)).await;
    let path = format!("/urls/{}", id_of(&url));
    let new_original = unique_original_url();

    let reply = server()
        .put(&c, &path, &json!({"title": "Renamed"}))
        .await
        .expect(200, "PUT title");
    assert_url(&reply.json);
    assert_eq!(reply.json["title"], "Renamed");
    assert_eq!(reply.json["original_url"], url["original_url"]);
    assert_eq!(reply.json["is_active"], true);
    assert_eq!(reply.json["short_code"], url["short_code"]);
    assert_eq!(reply.json["created_at"], url["created_at"]);

    let reply = server()
        .patch(
            &c,
            &path,
            &json!({"is_active": false, "original_url": new_original}),
        )
        .await
        .expect(200, "PATCH two fields");
    assert_eq!(reply.json["title"], "Renamed");
    assert_eq!(reply.json["is_active"], false);
    assert_eq!(reply.json["original_url"], new_original);
    let read = server().get(&c, &path).await.expect(200, "GET");
    assert_eq!(read.json, reply.json);

    let updated = events(&c, &format!("url_id={}&event_type=updated", id_of(&url))).await;
    let changes: BTreeSet<String> = updated
        .iter()
        .map(|e| {
            assert_eq!(e["user_id"], user["id"], "url events belong to the owner");
            assert_eq!(e["url_id"], url["id"]);
            e["details"].to_string()
        })
        .collect();
    let expected: BTreeSet<String> = [
        json!({"field": "title", "new_value": "Renamed"}),
        json!({"field": "is_active", "new_value": false}),
        json!({"field": "original_url", "new_value": new_original}),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    assert_eq!(updated.len(), 3, "one event per changed field: {updated:?}");
    assert_eq!(changes, expected);

    // Setting fields to the values they already have records nothing.
    server()
        .put(
            &c,
            &path,
            &json!({"title": "Renamed", "is_active": false, "original_url": new_original}),
        )
        .await
        .expect(200, "PUT same values");
    let again = events(&c, &format!("url_id={}&event_type=updated", id_of(&url))).await;
    assert_eq!(
        again.len(),
        3,
        "unchanged values record no event: {again:?}"
    );

    // A title can be cleared.
    let reply = server()
        .patch(&c, &path, &json!({"title": null}))
        .await
        .expect(200, "PATCH title null");
    assert_eq!(reply.json["title"], Value::Null);
    let last = events(&c, &format!("url_id={}&event_type=updated", id_of(&url))).await;
    assert_eq!(last.len(), 4, "{last:?}");
    assert!(
        last.iter()
            .any(|e| e["details"] == json!({"field": "title", "new_value": null})),
        "{last:?}"
    );
}

#[tokio::test]
async fn updated_at_moves_on_change_and_not_on_empty_update() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let path = format!("/urls/{}", id_of(&url));
    // Timestamps have whole seconds: wait until the database's clock shows a later second than the
    // url's, or an update could not move updated_at.
    let created = str_of(&url, "updated_at").to_owned();
    let db = connect(&server().database_url).await;
    let db = &db;
    poll(
        Duration::from_secs(5),
        || async move {
            db.query_one(
                "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')",
                &[],
            )
            .await
            .expect("reading the database's clock")
            .get::<_, String>(0)
        },
        |now| now.as_str() > created.as_str(),
    )
    .await
    .unwrap_or_else(|now| panic!("the database's clock stays at {now}, not past {created}"));

    let reply = server()
        .put(&c, &path, &json!({}))
        .await
        .expect(200, "PUT {}");
    assert_eq!(reply.json, url, "an empty update changes nothing");
    let reply = server()
        .patch(&c, &path, &json!({"unknown": 1}))
        .await
        .expect(200, "PATCH with unknown fields only");
    assert_eq!(reply.json, url);
    let updated = events(&c, &format!("url_id={}&event_type=updated", id_of(&url))).await;
    assert!(
        updated.is_empty(),
        "no-op updates record nothing: {updated:?}"
    );

    let reply = server()
        .patch(&c, &path, &json!({"title": "later"}))
        .await
        .expect(200, "PATCH title");
    assert_timestamp(&reply.json["updated_at"], "updated_at");
    assert!(
        str_of(&reply.json, "updated_at") > str_of(&url, "updated_at"),
        "updated_at moves: {} then {}",
        url["updated_at"],
        reply.json["updated_at"]
    );
    assert_eq!(reply.json["created_at"], url["created_at"]);
}

#[tokio::test]
async fn invalid_updates_are_422_and_change_nothing() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let path = format!("/urls/{}", id_of(&url));
    let cases = [
        ("original_url", json!("hello")),
        ("original_url", json!("ftp://x")),
        ("original_url", json!("")),
        ("original_url", json!(null)),
        ("is_active", json!("no")),
        ("is_active", json!(null)),
        ("title", json!(5)),
    ];
    for (field, value) in cases {
        let mut body = json!({});
        body[field] = value;
        let reply = server().put(&c, &path, &body).await;
        assert_invalid_field(&reply, field);
        let reply = server().patch(&c, &path, &body).await;
        assert_invalid_field(&reply, field);
    }
    let read = server().get(&c, &path).await.expect(200, "GET");
    assert_eq!(read.json, url);
}

#[tokio::test]
async fn update_unknown_url_is_404() {
    let c = client();
    let path = format!("/urls/{MISSING_ID}");
    assert_error(
        &server().put(&c, &path, &json!({"title": "x"})).await,
        404,
        "not_found",
    );
    assert_error(
        &server().patch(&c, &path, &json!({"title": "x"})).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn update_is_visible_to_the_redirect_at_once() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let code = str_of(&url, "short_code");
    let path = format!("/urls/{}", id_of(&url));
    let redirect = format!("/{code}");
    let reply = server().get(&c, &redirect).await.expect(302, "before");
    assert_eq!(reply.header("location"), url["original_url"].as_str());

    let moved = unique_original_url();
    server()
        .put(&c, &path, &json!({"original_url": moved}))
        .await
        .expect(200, "PUT original_url");
    let reply = server().get(&c, &redirect).await.expect(302, "after PUT");
    assert_eq!(reply.header("location"), Some(moved.as_str()));

    server()
        .patch(&c, &path, &json!({"is_active": false}))
        .await
        .expect(200, "deactivate");
    assert_error(&server().get(&c, &redirect).await, 404, "not_found");

    server()
        .patch(&c, &path, &json!({"is_active": true}))
        .await
        .expect(200, "reactivate");
    let reply = server().get(&c, &redirect).await.expect(302, "reactivated");
    assert_eq!(reply.header("location"), Some(moved.as_str()));
}

#[tokio::test]
async fn delete_is_204_then_404_and_records_a_deleted_event() {
    let c = client();
    let user = create_user(&c).await;
    let url = create_url(&c, id_of(&user)).await;
    let code = str_of(&url, "short_code");
    let path = format!("/urls/{}", id_of(&url));
    server()
        .get(&c, &format!("/{code}"))
        .await
        .expect(302, "redirect before the delete");

    let reply = server().delete(&c, &path).await.expect(204, "DELETE");
    assert!(reply.text.is_empty(), "204 has no body: {:?}", reply.text);
    assert_error(&server().get(&c, &path).await, 404, "not_found");
    assert_error(&server().delete(&c, &path).await, 404, "not_found");
    assert_error(
        &server().get(&c, &format!("/{code}")).await,
        404,
        "not_found",
    );

    let deleted = events(&c, &format!("user_id={}&event_type=deleted", id_of(&user))).await;
    assert_eq!(deleted.len(), 1, "one deleted event: {deleted:?}");
    assert_eq!(deleted[0]["url_id"], url["id"]);
    assert_eq!(deleted[0]["details"]["short_code"], code);
}

#[tokio::test]
async fn stats_count_redirects() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let id = id_of(&url);
    let path = format!("/urls/{id}/stats");
    let reply = server()
        .get(&c, &path)
        .await
        .expect(200, "stats of a new url");
    assert_json_content_type(&reply);
    assert_eq!(
        reply.json,
        json!({"url_id": id, "clicks": 0, "bot_clicks": 0, "last_click_at": null})
    );

    let code = str_of(&url, "short_code");
    for _ in 0..3 {
        server()
            .get(&c, &format!("/{code}"))
            .await
            .expect(302, "redirect");
    }
    server()
        .head(&c, &format!("/{code}"))
        .await
        .expect(302, "HEAD");
    // The click events of the three redirects have been written, and the counter with them (the same
    // statement).
    assert_eq!(settled_clicks(&c, id).await.len(), 3);
    let stats = server().get(&c, &path).await.expect(200, "stats").json;
    assert_eq!(stats["url_id"], id);
    assert_eq!(stats["clicks"], 3, "three GETs, HEAD not counted: {stats}");
    assert_eq!(
        stats["bot_clicks"], 3,
        "the test client sends no user agent, which classifies as a bot: {stats}"
    );
    assert_timestamp(&stats["last_click_at"], "last_click_at");
}

#[tokio::test]
async fn a_posted_click_counts_like_a_redirect() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let id = id_of(&url);
    // The contract (part 2): a posted click is a click like any other, classified and counted.
    let browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    let posted = server()
        .post(
            &c,
            "/events",
            &json!({"event_type": "click", "url_id": id, "details": {"user_agent": browser, "campaign": "spring"}}),
        )
        .await
        .expect(201, "POST a click");
    assert_eq!(
        posted.json["details"],
        json!({"user_agent": browser, "campaign": "spring", "bot": false}),
        "a posted click keeps its details as given, plus its classification"
    );
    server()
        .get(&c, &code_path(&url))
        .await
        .expect(302, "one real redirect");
    assert_eq!(
        settled_clicks(&c, id).await.len(),
        2,
        "the posted click-typed event and the redirect's click"
    );
    let stats = server()
        .get(&c, &format!("/urls/{id}/stats"))
        .await
        .expect(200, "stats")
        .json;
    assert_eq!(
        stats["clicks"], 2,
        "the posted click and the redirect: {stats}"
    );
    assert_eq!(
        stats["bot_clicks"], 1,
        "the redirect came without a user agent (a bot), the posted click from a browser: {stats}"
    );
}
