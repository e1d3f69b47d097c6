//! The redirect: `GET /{short_code}` answers 302 and records a click; `HEAD` answers the same without
//! one; unknown, inactive and deleted codes are a JSON 404 with no event.
//!
//! Clicks may be written after the redirect is answered, so click counts are polled, and a "no click"
//! check first waits for a later click to appear (`fence_clicks`), after which an earlier one would have.

use serde_json::{json, Value};

use crate::common::{
    assert_error, client, create_url, create_url_with, create_user, fence_clicks, id_of, server,
    str_of, unique, unique_original_url, wait_for_clicks,
};

#[tokio::test]
async fn get_redirects_with_302_and_location() {
    let c = client();
    let original = unique_original_url();
    let url = create_url_with(&c, json!({"original_url": original})).await;
    let reply = server()
        .get(&c, &format!("/{}", str_of(&url, "short_code")))
        .await
        .expect(302, "GET /{code}");
    assert_eq!(reply.header("location"), Some(original.as_str()));
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
    let clicks = wait_for_clicks(&c, id_of(&url), 1).await;
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
    let reply = crate::common::read_reply(
        c.get(server().url(&format!("/{code}")))
            .header("referer", "https://news.example/item?id=1")
            .header("user-agent", "gitrev-tests/1.0"),
    )
    .await
    .expect(302, "redirect with headers");
    assert_eq!(reply.header("location"), url["original_url"].as_str());
    let clicks = wait_for_clicks(&c, id_of(&url), 1).await;
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
    let path = format!("/{}", str_of(&url, "short_code"));
    for _ in 0..7 {
        server().get(&c, &path).await.expect(302, "redirect");
    }
    let clicks = wait_for_clicks(&c, id_of(&url), 7).await;
    assert_eq!(clicks.len(), 7, "seven redirects, seven clicks: {clicks:?}");
    let ids: std::collections::BTreeSet<i64> = clicks.iter().map(id_of).collect();
    assert_eq!(ids.len(), 7, "each click is its own event");
}

#[tokio::test]
async fn head_answers_like_get_without_a_click() {
    let c = client();
    let original = unique_original_url();
    let url = create_url_with(&c, json!({"original_url": original})).await;
    let path = format!("/{}", str_of(&url, "short_code"));
    for _ in 0..3 {
        let reply = server().head(&c, &path).await.expect(302, "HEAD /{code}");
        assert_eq!(reply.header("location"), Some(original.as_str()));
        assert!(reply.text.is_empty(), "HEAD has no body");
    }
    // One GET after the HEADs: once its click is visible, any click the HEADs made would be too.
    server().get(&c, &path).await.expect(302, "GET /{code}");
    let clicks = wait_for_clicks(&c, id_of(&url), 1).await;
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
    let path = format!("/{}", str_of(&url, "short_code"));
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
    let clicks = wait_for_clicks(&c, id_of(&url), 1).await;
    assert_eq!(clicks.len(), 1, "the 404s recorded nothing: {clicks:?}");
}

#[tokio::test]
async fn deleted_code_is_404_and_records_no_click() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let id = id_of(&url);
    let path = format!("/{}", str_of(&url, "short_code"));
    server()
        .delete(&c, &format!("/urls/{id}"))
        .await
        .expect(204, "DELETE");
    for _ in 0..3 {
        assert_error(&server().get(&c, &path).await, 404, "not_found");
    }
    fence_clicks(&c).await;
    let clicks = wait_for_clicks(&c, id, 0).await;
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
    for url in [&a, &b] {
        let reply = server()
            .get(&c, &format!("/{}", str_of(url, "short_code")))
            .await
            .expect(302, "each case is its own code");
        assert_eq!(reply.header("location"), url["original_url"].as_str());
    }
}
