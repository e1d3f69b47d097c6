//! Users: `POST /users`, `GET /users`, `GET|PUT|PATCH|DELETE /users/{id}`.

use reqwest::Client;
use serde_json::{json, Value};

use crate::harness::{
    assert_error, assert_invalid_field, assert_json_content_type, assert_not_found, assert_user,
    client, code_path, create_url, create_user, id_of, server, str_of, unique, unique_email, Reply,
    MISSING_ID,
};

#[tokio::test]
async fn create_returns_201_and_the_user() {
    let c = client();
    let username = unique("alice");
    let email = unique_email();
    let reply = server()
        .post(&c, "/users", &json!({"username": username, "email": email}))
        .await
        .expect(201, "POST /users");
    assert_json_content_type(&reply);
    assert_user(&reply.json);
    assert_eq!(reply.json["username"], username);
    assert_eq!(reply.json["email"], email);
}

#[tokio::test]
async fn created_user_can_be_read_back() {
    let c = client();
    let user = create_user(&c).await;
    let reply = server()
        .get(&c, &format!("/users/{}", id_of(&user)))
        .await
        .expect(200, "GET /users/{id}");
    assert_json_content_type(&reply);
    assert_eq!(reply.json, user);
}

#[tokio::test]
async fn list_contains_created_users() {
    let c = client();
    let a = create_user(&c).await;
    let b = create_user(&c).await;
    let reply = server().get(&c, "/users").await.expect(200, "GET /users");
    let list = reply.array();
    for user in [&a, &b] {
        assert!(
            list.contains(user),
            "GET /users lists {user} (x-total-count {:?})",
            reply.header("x-total-count")
        );
    }
    for user in list {
        assert_user(user);
    }
}

#[tokio::test]
async fn unknown_user_is_404() {
    assert_not_found(&format!("/users/{MISSING_ID}")).await;
}

#[tokio::test]
async fn id_beyond_any_row_is_404_not_500() {
    assert_not_found("/users/99999999999").await;
}

/// `POST /users` on the shared server with `username` and a fresh email.
async fn post_username(c: &Client, username: Value) -> Reply {
    let body = json!({"username": username, "email": unique_email()});
    server().post(c, "/users", &body).await
}

#[tokio::test]
async fn username_is_not_unique() {
    let c = client();
    let username = unique("same");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let reply = post_username(&c, json!(username))
            .await
            .expect(201, "a repeated username with a new email");
        assert_eq!(reply.json["username"], username);
        ids.push(id_of(&reply.json));
    }
    assert_ne!(ids[0], ids[1], "two users share the name");
    for id in ids {
        let read = server()
            .get(&c, &format!("/users/{id}"))
            .await
            .expect(200, "each user reads back");
        assert_eq!(read.json["username"], username);
    }
}

#[tokio::test]
async fn email_taken_is_409() {
    let c = client();
    let email = unique_email();
    server()
        .post(
            &c,
            "/users",
            &json!({"username": unique("a"), "email": email}),
        )
        .await
        .expect(201, "first user");
    let reply = server()
        .post(
            &c,
            "/users",
            &json!({"username": unique("b"), "email": email}),
        )
        .await;
    assert_error(&reply, 409, "conflict");
    assert!(
        reply.json["details"].get("email").is_some(),
        "the conflict names the email: {}",
        reply.text
    );
}

#[tokio::test]
async fn email_uniqueness_ignores_case_but_storage_keeps_it() {
    let c = client();
    let local = unique("mixed");
    let stored = format!("Mixed.{local}@Example.COM");
    let reply = server()
        .post(&c, "/users", &json!({"username": "m", "email": stored}))
        .await
        .expect(201, "mixed-case email");
    assert_eq!(reply.json["email"], stored, "email is stored as given");
    let reply = server()
        .post(
            &c,
            "/users",
            &json!({"username": "m", "email": stored.to_lowercase()}),
        )
        .await;
    assert_error(&reply, 409, "conflict");
}

#[tokio::test]
async fn missing_username_or_email_is_422_naming_the_field() {
    let c = client();
    let reply = server()
        .post(&c, "/users", &json!({"email": unique_email()}))
        .await;
    assert_invalid_field(&reply, "username");
    let reply = server()
        .post(&c, "/users", &json!({"username": unique("u")}))
        .await;
    assert_invalid_field(&reply, "email");
    let reply = server().post(&c, "/users", &json!({})).await;
    assert_invalid_field(&reply, "username");
    assert_invalid_field(&reply, "email");
}

#[tokio::test]
async fn wrong_typed_username_or_email_is_422() {
    let c = client();
    let wrong: [Value; 6] = [
        json!(42),
        json!(1.5),
        json!(true),
        json!(null),
        json!(["a"]),
        json!({"a": 1}),
    ];
    for value in &wrong {
        let reply = server()
            .post(
                &c,
                "/users",
                &json!({"username": value, "email": unique_email()}),
            )
            .await;
        assert_invalid_field(&reply, "username");
        let reply = server()
            .post(
                &c,
                "/users",
                &json!({"username": unique("u"), "email": value}),
            )
            .await;
        assert_invalid_field(&reply, "email");
    }
}

#[tokio::test]
async fn bad_emails_are_422() {
    let c = client();
    let local = unique("bad");
    let bad = [
        String::new(),
        "nope".to_string(),
        format!("{local}@nodot"),
        "@example.com".to_string(),
        format!("{local}@@example.com"),
        format!("{local}@a@example.com"),
        format!("{local} x@example.com"),
        format!("{local}@example.com "),
        format!("{local}@exa\tmple.com"),
        format!("{}@example.com", "a".repeat(250)),
    ];
    for email in &bad {
        let reply = server()
            .post(&c, "/users", &json!({"username": "u", "email": email}))
            .await;
        assert_invalid_field(&reply, "email");
    }
}

#[tokio::test]
async fn username_must_be_non_empty_and_at_most_255() {
    let c = client();
    for refused in [String::new(), "x".repeat(256)] {
        assert_invalid_field(&post_username(&c, json!(refused)).await, "username");
    }
    let longest = "x".repeat(255);
    let reply = post_username(&c, json!(longest))
        .await
        .expect(201, "a 255-character username");
    assert_eq!(reply.json["username"], longest);
}

#[tokio::test]
async fn unknown_fields_are_ignored_on_create() {
    let c = client();
    let reply = server()
        .post(
            &c,
            "/users",
            &json!({"username": unique("u"), "email": unique_email(), "nickname": "zed", "age": 3}),
        )
        .await
        .expect(201, "extra fields");
    assert_user(&reply.json);
}

#[tokio::test]
async fn put_and_patch_update_only_the_given_fields() {
    let c = client();
    let user = create_user(&c).await;
    let path = format!("/users/{}", id_of(&user));

    let new_name = unique("renamed");
    let reply = server()
        .put(&c, &path, &json!({"username": new_name}))
        .await
        .expect(200, "PUT username");
    assert_user(&reply.json);
    assert_eq!(reply.json["username"], new_name);
    assert_eq!(reply.json["email"], user["email"]);
    assert_eq!(reply.json["created_at"], user["created_at"]);
    assert_eq!(reply.json["id"], user["id"]);

    let new_email = unique_email();
    let reply = server()
        .patch(&c, &path, &json!({"email": new_email}))
        .await
        .expect(200, "PATCH email");
    assert_eq!(reply.json["username"], new_name);
    assert_eq!(reply.json["email"], new_email);
    assert_eq!(reply.json["created_at"], user["created_at"]);

    let read = server()
        .get(&c, &path)
        .await
        .expect(200, "GET after updates");
    assert_eq!(read.json, reply.json, "the update is what GET returns");

    let both = json!({"username": unique("both"), "email": unique_email()});
    let reply = server().put(&c, &path, &both).await.expect(200, "PUT both");
    assert_eq!(reply.json["username"], both["username"]);
    assert_eq!(reply.json["email"], both["email"]);
}

#[tokio::test]
async fn empty_update_is_a_no_op() {
    let c = client();
    let user = create_user(&c).await;
    let path = format!("/users/{}", id_of(&user));
    let reply = server()
        .put(&c, &path, &json!({}))
        .await
        .expect(200, "PUT {}");
    assert_eq!(reply.json, user);
    let reply = server()
        .patch(&c, &path, &json!({"nickname": "ignored"}))
        .await
        .expect(200, "PATCH with only unknown fields");
    assert_eq!(reply.json, user);
}

#[tokio::test]
async fn update_unknown_user_is_404() {
    let c = client();
    let path = format!("/users/{MISSING_ID}");
    let reply = server().put(&c, &path, &json!({"username": "x"})).await;
    assert_error(&reply, 404, "not_found");
    let reply = server().patch(&c, &path, &json!({"username": "x"})).await;
    assert_error(&reply, 404, "not_found");
}

#[tokio::test]
async fn update_to_a_taken_email_is_409() {
    let c = client();
    let a = create_user(&c).await;
    let b = create_user(&c).await;
    let path = format!("/users/{}", id_of(&b));
    let reply = server().put(&c, &path, &json!({"email": a["email"]})).await;
    assert_error(&reply, 409, "conflict");
    assert!(
        reply.json["details"].get("email").is_some(),
        "{}",
        reply.text
    );
    let upper = str_of(&a, "email").to_uppercase();
    let reply = server().patch(&c, &path, &json!({"email": upper})).await;
    assert_error(&reply, 409, "conflict");
    let read = server().get(&c, &path).await.expect(200, "GET b");
    assert_eq!(read.json, b, "a refused update changes nothing");
}

#[tokio::test]
async fn update_to_own_email_in_another_case_is_not_a_conflict() {
    let c = client();
    let user = create_user(&c).await;
    let path = format!("/users/{}", id_of(&user));
    server()
        .put(&c, &path, &json!({"email": user["email"]}))
        .await
        .expect(200, "PUT own email");
    let upper = str_of(&user, "email").to_uppercase();
    let reply = server()
        .patch(&c, &path, &json!({"email": upper}))
        .await
        .expect(200, "PATCH own email upper-cased");
    assert_eq!(reply.json["email"], upper);
}

#[tokio::test]
async fn invalid_update_is_422() {
    let c = client();
    let user = create_user(&c).await;
    let path = format!("/users/{}", id_of(&user));
    for body in [
        json!({"username": 5}),
        json!({"username": ""}),
        json!({"username": null}),
    ] {
        let reply = server().put(&c, &path, &body).await;
        assert_invalid_field(&reply, "username");
    }
    for body in [
        json!({"email": "not-an-email"}),
        json!({"email": 7}),
        json!({"email": null}),
    ] {
        let reply = server().patch(&c, &path, &body).await;
        assert_invalid_field(&reply, "email");
    }
    let read = server().get(&c, &path).await.expect(200, "GET");
    assert_eq!(read.json, user, "a refused update changes nothing");
}

#[tokio::test]
async fn delete_is_204_then_404() {
    let c = client();
    let user = create_user(&c).await;
    let path = format!("/users/{}", id_of(&user));
    let reply = server().delete(&c, &path).await.expect(204, "DELETE");
    assert!(reply.text.is_empty(), "204 has no body: {:?}", reply.text);
    assert_error(&server().get(&c, &path).await, 404, "not_found");
    assert_error(&server().delete(&c, &path).await, 404, "not_found");
}

#[tokio::test]
async fn delete_takes_the_users_urls_and_stops_their_redirects() {
    let c = client();
    let user = create_user(&c).await;
    let other = create_user(&c).await;
    let mine = create_url(&c, id_of(&user)).await;
    let theirs = create_url(&c, id_of(&other)).await;
    let code = str_of(&mine, "short_code");
    // Redirect once so any cache holds the link before the delete.
    server()
        .get(&c, &format!("/{code}"))
        .await
        .expect(302, "redirect before the delete");

    server()
        .delete(&c, &format!("/users/{}", id_of(&user)))
        .await
        .expect(204, "DELETE user");

    assert_error(
        &server().get(&c, &format!("/{code}")).await,
        404,
        "not_found",
    );
    assert_error(
        &server().get(&c, &format!("/urls/{}", id_of(&mine))).await,
        404,
        "not_found",
    );
    // A filter is not a reference (openapi.json lists no 404 for GET /urls): nothing matches.
    let listed = server()
        .get(&c, &format!("/urls?user_id={}", id_of(&user)))
        .await
        .expect(200, "GET /urls?user_id of a deleted user");
    assert!(
        listed.array().is_empty(),
        "urls of a deleted user: {}",
        listed.text
    );
    assert_eq!(listed.total_count(), 0);
    server()
        .get(&c, &format!("/urls/{}", id_of(&theirs)))
        .await
        .expect(200, "another user's url stays");
    server()
        .get(&c, &code_path(&theirs))
        .await
        .expect(302, "another user's url still redirects");
}
