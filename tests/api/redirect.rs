//! The redirect: `GET /{short_code}` answers 302 and records a click; `HEAD` answers the same without
//! one; unknown, inactive and deleted codes are a JSON 404 with no event.
//!
//! Clicks are written after the redirect is answered, so click counts, "no click" checks included,
//! are read once the server has dealt with every click it had received (`settled_clicks`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{
    assert_error, assert_redirects, click_events, client, code_path, create_url, create_url_on,
    create_url_with, create_user, fresh_database, id_of, poll, server, settled_clicks,
    start_server_on, str_of, unique, unique_email, unique_original_url, Reply, TestServer,
};

#[tokio::test]
async fn get_redirects_with_302_and_location() {
    let c = client();
    let original = unique_original_url();
    let url = create_url_with(&c, json!({"original_url": original})).await;
    assert_redirects(server(), &c, &code_path(&url), &original).await;
}

#[tokio::test]
async fn click_records_url_owner_code_and_target() {
    let c = client();
    let user = create_user(&c).await;
    let url = create_url(&c, id_of(&user)).await;
    let code = str_of(&url, "short_code");
    server()
        .get(&c, &format!("/{code}"))
        .await
        .expect(302, "redirect");
    let clicks = settled_clicks(&c, id_of(&url)).await;
    assert_eq!(clicks.len(), 1, "{clicks:?}");
    let click = &clicks[0];
    assert_eq!(click["event_type"], "click");
    assert_eq!(click["url_id"], url["id"]);
    assert_eq!(
        click["user_id"], user["id"],
        "a click belongs to the url's owner"
    );
    assert_eq!(click["details"]["short_code"], code);
    assert_eq!(click["details"]["original_url"], url["original_url"]);
    for absent in ["referrer", "user_agent"] {
        let value = click["details"].get(absent).unwrap_or(&Value::Null);
        assert!(value.is_null(), "{absent} was not sent: {click}");
    }
}

#[tokio::test]
async fn click_records_referrer_and_user_agent_when_sent() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let code = str_of(&url, "short_code");
    let reply = crate::harness::read_reply(
        c.get(server().url(&format!("/{code}")))
            .header("referer", "https://news.example/item?id=1")
            .header("user-agent", "gitrev-tests/1.0"),
    )
    .await
    .expect(302, "redirect with headers");
    assert_eq!(reply.header("location"), url["original_url"].as_str());
    let clicks = settled_clicks(&c, id_of(&url)).await;
    assert_eq!(clicks.len(), 1, "{clicks:?}");
    let details = &clicks[0]["details"];
    assert_eq!(details["referrer"], "https://news.example/item?id=1");
    assert_eq!(details["user_agent"], "gitrev-tests/1.0");
    assert_eq!(details["short_code"], code);
    assert_eq!(clicks[0]["user_id"], Value::Null, "the url has no owner");
}

#[tokio::test]
async fn every_redirect_records_a_click() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let path = code_path(&url);
    for _ in 0..7 {
        server().get(&c, &path).await.expect(302, "redirect");
    }
    let clicks = settled_clicks(&c, id_of(&url)).await;
    assert_eq!(clicks.len(), 7, "seven redirects, seven clicks: {clicks:?}");
    let ids: std::collections::BTreeSet<i64> = clicks.iter().map(id_of).collect();
    assert_eq!(ids.len(), 7, "each click is its own event");
}

#[tokio::test]
async fn head_answers_like_get_without_a_click() {
    let c = client();
    let original = unique_original_url();
    let url = create_url_with(&c, json!({"original_url": original})).await;
    let path = code_path(&url);
    for _ in 0..3 {
        let reply = server().head(&c, &path).await.expect(302, "HEAD /{code}");
        assert_eq!(reply.header("location"), Some(original.as_str()));
        assert!(reply.text.is_empty(), "HEAD has no body");
    }
    // One GET as a control (clicks are recorded at all); every click received is settled before
    // counting, so one any HEAD had made would be counted too.
    server().get(&c, &path).await.expect(302, "GET /{code}");
    let clicks = settled_clicks(&c, id_of(&url)).await;
    assert_eq!(clicks.len(), 1, "HEAD records no click: {clicks:?}");
}

#[tokio::test]
async fn head_of_unknown_code_is_404() {
    let reply = server()
        .head(&client(), &format!("/{}", unique("nohead")))
        .await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn unknown_code_is_json_404() {
    let c = client();
    let reply = server().get(&c, &format!("/{}", unique("nocode"))).await;
    assert_error(&reply, 404, "not_found");
    assert!(reply.header("location").is_none(), "no redirect");
}

#[tokio::test]
async fn inactive_code_is_404_and_records_no_click() {
    let c = client();
    let url = create_url_with(
        &c,
        json!({"original_url": unique_original_url(), "is_active": false}),
    )
    .await;
    let path = code_path(&url);
    for _ in 0..3 {
        let reply = server().get(&c, &path).await;
        assert_error(&reply, 404, "not_found");
        assert!(reply.header("location").is_none(), "no redirect");
    }
    // Reactivate and redirect once: that click is the only one this url may have.
    server()
        .patch(
            &c,
            &format!("/urls/{}", id_of(&url)),
            &json!({"is_active": true}),
        )
        .await
        .expect(200, "reactivate");
    server().get(&c, &path).await.expect(302, "active again");
    let clicks = settled_clicks(&c, id_of(&url)).await;
    assert_eq!(clicks.len(), 1, "the 404s recorded nothing: {clicks:?}");
}

#[tokio::test]
async fn deleted_code_is_404_and_records_no_click() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let id = id_of(&url);
    let path = code_path(&url);
    server()
        .delete(&c, &format!("/urls/{id}"))
        .await
        .expect(204, "DELETE");
    for _ in 0..3 {
        assert_error(&server().get(&c, &path).await, 404, "not_found");
    }
    let clicks = settled_clicks(&c, id).await;
    assert!(
        clicks.is_empty(),
        "a deleted code records no click: {clicks:?}"
    );
}

#[tokio::test]
async fn codes_are_case_sensitive() {
    let c = client();
    let lower = format!("case{}", unique("k"));
    let upper = lower.to_uppercase();
    let a = create_url_with(
        &c,
        json!({"original_url": unique_original_url(), "short_code": lower}),
    )
    .await;
    let b = create_url_with(
        &c,
        json!({"original_url": unique_original_url(), "short_code": upper}),
    )
    .await;
    // Each case is its own code.
    for url in [&a, &b] {
        assert_redirects(server(), &c, &code_path(url), str_of(url, "original_url")).await;
    }
}

// ---------------------------------------------------------------------------------------------------
// Servers of their own: configuration, shutdown, restart and a second replica.

/// Polls `HEAD path` on `srv` until `done` holds or 10 s pass; returns the last answer.
async fn poll_redirect(srv: &TestServer, path: &str, done: impl Fn(&Reply) -> bool) -> Reply {
    let c = client();
    poll(Duration::from_secs(10), || srv.head(&c, path), done)
        .await
        .unwrap_or_else(|last| last)
}

#[tokio::test]
async fn redirect_status_is_configurable() {
    let url = fresh_database("status").await;
    let c = client();
    for status in [301u16, 307, 308, 302] {
        let srv = start_server_on(&url, &[("GITREV_REDIRECT_STATUS", &status.to_string())]);
        let original = unique_original_url();
        let link = create_url_on(&srv, &c, json!({"original_url": original})).await;
        let path = code_path(&link);
        let reply = srv.get(&c, &path).await.expect(status, "configured status");
        assert_eq!(reply.header("location"), Some(original.as_str()));
        let reply = srv.head(&c, &path).await.expect(status, "HEAD too");
        assert_eq!(reply.header("location"), Some(original.as_str()));
        assert!(srv.stop().success(), "a clean stop");
    }
}

#[tokio::test]
async fn acknowledged_clicks_survive_a_shutdown() {
    let url = fresh_database("shutdown").await;
    let srv = start_server_on(&url, &[]);
    let c = client();
    let link = create_url_on(&srv, &c, json!({"original_url": unique_original_url()})).await;
    let path = code_path(&link);
    for _ in 0..20 {
        srv.get(&c, &path).await.expect(302, "redirect");
    }
    // Stop at once: the clicks may still be queued, and the drain must write them.
    let status = srv.stop();
    assert!(status.success(), "gitrev serve stops cleanly: {status}");

    assert_eq!(
        click_events(&url, id_of(&link)).await,
        20,
        "every acknowledged redirect has its click"
    );

    let again = start_server_on(&url, &[]);
    let stats = again
        .get(&c, &format!("/urls/{}/stats", id_of(&link)))
        .await
        .expect(200, "stats after the restart");
    assert_eq!(stats.json["clicks"], 20, "{}", stats.text);
}

#[tokio::test]
async fn a_restart_never_serves_links_changed_before_it() {
    let url = fresh_database("restart").await;
    let data = tempfile::tempdir().expect("a temporary data dir");
    let data_dir = data.path().to_str().expect("UTF-8 temp path").to_string();
    let env = [("GITREV_DATA_DIR", data_dir.as_str())];
    let c = client();

    let first = start_server_on(&url, &env);
    let mut links = Vec::new();
    for _ in 0..3 {
        links.push(create_url_on(&first, &c, json!({"original_url": unique_original_url()})).await);
    }
    let paths: Vec<String> = links.iter().map(code_path).collect();
    for path in &paths {
        first.get(&c, path).await.expect(302, "warm the cache");
    }
    first
        .patch(
            &c,
            &format!("/urls/{}", id_of(&links[1])),
            &json!({"is_active": false}),
        )
        .await
        .expect(200, "deactivate");
    first
        .delete(&c, &format!("/urls/{}", id_of(&links[2])))
        .await
        .expect(204, "delete");
    assert!(first.stop().success(), "a clean stop");

    let second = start_server_on(&url, &env);
    assert_redirects(&second, &c, &paths[0], str_of(&links[0], "original_url")).await;
    assert_error(&second.get(&c, &paths[1]).await, 404, "not_found");
    assert_error(&second.get(&c, &paths[2]).await, 404, "not_found");
}

#[tokio::test]
async fn changes_reach_the_other_replica() {
    let url = fresh_database("replicas").await;
    let a = start_server_on(&url, &[]);
    let b = start_server_on(&url, &[]);
    let c = client();

    let owner = a
        .post(
            &c,
            "/users",
            &json!({"username": "owner", "email": unique_email()}),
        )
        .await
        .expect(201, "POST /users");
    let uid = id_of(&owner.json);
    let moved = create_url_on(&a, &c, json!({"original_url": unique_original_url()})).await;
    let paused = create_url_on(&a, &c, json!({"original_url": unique_original_url()})).await;
    let gone = create_url_on(&a, &c, json!({"original_url": unique_original_url()})).await;
    let owned = create_url_on(
        &a,
        &c,
        json!({"original_url": unique_original_url(), "user_id": uid}),
    )
    .await;
    let path = |l: &Value| code_path(l);
    for link in [&moved, &paused, &gone, &owned] {
        b.get(&c, &path(link))
            .await
            .expect(302, "replica b serves the link");
    }

    let target = unique_original_url();
    a.put(
        &c,
        &format!("/urls/{}", id_of(&moved)),
        &json!({"original_url": target}),
    )
    .await
    .expect(200, "PUT on a");
    a.patch(
        &c,
        &format!("/urls/{}", id_of(&paused)),
        &json!({"is_active": false}),
    )
    .await
    .expect(200, "deactivate on a");
    a.delete(&c, &format!("/urls/{}", id_of(&gone)))
        .await
        .expect(204, "delete url on a");
    a.delete(&c, &format!("/users/{uid}"))
        .await
        .expect(204, "delete user on a");

    let reply = poll_redirect(&b, &path(&moved), |r| {
        r.header("location") == Some(target.as_str())
    })
    .await;
    assert_eq!(
        reply.header("location"),
        Some(target.as_str()),
        "replica b follows the new target"
    );
    for (what, link) in [
        ("deactivated", &paused),
        ("deleted", &gone),
        ("owner deleted", &owned),
    ] {
        let reply = poll_redirect(&b, &path(link), |r| r.status == 404).await;
        assert_eq!(reply.status, 404, "replica b stops serving a {what} link");
    }
}
