//! `POST /users/bulk`: users CSV as multipart (`file` field) or as a raw `text/csv` body; upsert by id
//! or by email, idempotent, invalid rows skipped and reported by line, the sequence moved past the
//! largest id.
//!
//! Ids imported into the shared database come from `bulk_id_block`, far from anything other tests
//! create; the full seed file is imported into a database of its own.

use reqwest::multipart::{Form, Part};
use serde_json::json;

use crate::harness::{
    assert_error, assert_invalid_field, assert_user, bulk_id_block, client, count_rows,
    create_user, fresh_database, id_of, read_reply, seed_dir, server, start_server_on, str_of,
    unique, unique_email, Reply, TestServer, MISSING_ID,
};

async fn import_raw(srv: &TestServer, csv: &str, content_type: &str) -> Reply {
    read_reply(
        client()
            .post(srv.url("/users/bulk"))
            .header("content-type", content_type)
            .body(csv.to_string()),
    )
    .await
}

async fn import_multipart(srv: &TestServer, form: Form) -> Reply {
    read_reply(client().post(srv.url("/users/bulk")).multipart(form)).await
}

fn file_form(csv: &str) -> Form {
    let part = Part::bytes(csv.as_bytes().to_vec())
        .file_name("users.csv")
        .mime_str("text/csv")
        .expect("text/csv is a valid mime type");
    Form::new().part("file", part)
}

/// Checks the 201 answer and returns (imported, skipped, error lines).
fn summary(reply: &Reply) -> (i64, i64, Vec<i64>) {
    assert_eq!(reply.status, 201, "POST /users/bulk: {}", reply.text);
    let body = &reply.json;
    let keys: Vec<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("a JSON object: {}", reply.text))
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["count", "errors", "imported", "skipped"],
        "{}",
        reply.text
    );
    let imported = body["imported"].as_i64().expect("imported is an integer");
    assert_eq!(
        body["count"], body["imported"],
        "count == imported: {}",
        reply.text
    );
    let skipped = body["skipped"].as_i64().expect("skipped is an integer");
    let errors = body["errors"].as_array().expect("errors is an array");
    assert_eq!(
        errors.len() as i64,
        skipped,
        "one error per skipped row: {}",
        reply.text
    );
    let mut lines: Vec<i64> = errors
        .iter()
        .map(|e| {
            assert!(
                e["error"].as_str().is_some_and(|m| !m.is_empty()),
                "each error says why: {e}"
            );
            e["line"]
                .as_i64()
                .unwrap_or_else(|| panic!("line is an integer: {e}"))
        })
        .collect();
    lines.sort_unstable();
    (imported, skipped, lines)
}

async fn get_user(id: i64) -> Reply {
    server().get(&client(), &format!("/users/{id}")).await
}

#[tokio::test]
async fn multipart_import_creates_users_with_their_ids() {
    let b = bulk_id_block();
    let (e1, e2, e3) = (unique_email(), unique_email(), unique_email());
    let csv = format!(
        "id,username,email,created_at\n\
         {b},bulk_one,{e1},2024-01-02 03:04:05\n\
         {},bulk_two,{e2},2024-02-03T04:05:06\n\
         {},bulk_three,{e3},\n",
        b + 1,
        b + 2
    );
    let reply = import_multipart(server(), file_form(&csv)).await;
    assert_eq!(summary(&reply), (3, 0, vec![]));

    let one = get_user(b).await.expect(200, "first row");
    assert_eq!(
        one.json,
        json!({"id": b, "username": "bulk_one", "email": e1, "created_at": "2024-01-02T03:04:05"})
    );
    let two = get_user(b + 1).await.expect(200, "second row");
    assert_eq!(two.json["created_at"], "2024-02-03T04:05:06");
    assert_eq!(two.json["email"], e2);
    let three = get_user(b + 2).await.expect(200, "third row");
    assert_user(&three.json);
    assert_eq!(three.json["username"], "bulk_three");

    let next = server()
        .post(
            &client(),
            "/users",
            &json!({"username": "n", "email": unique_email()}),
        )
        .await
        .expect(201, "POST /users after the import");
    assert!(
        id_of(&next.json) > b + 2,
        "the sequence is past the largest imported id {}: got {}",
        b + 2,
        next.json["id"]
    );
}

#[tokio::test]
async fn raw_csv_body_imports_too() {
    let b = bulk_id_block();
    let email = unique_email();
    let csv = format!("id,username,email,created_at\n{b},raw_one,{email},2023-05-06 07:08:09\n");
    let reply = import_raw(server(), &csv, "text/csv").await;
    assert_eq!(summary(&reply), (1, 0, vec![]));
    let user = get_user(b).await.expect(200, "imported row");
    assert_eq!(user.json["username"], "raw_one");
    assert_eq!(user.json["created_at"], "2023-05-06T07:08:09");

    let email = unique_email();
    let csv = format!("username,email\nraw_two,{email}\n");
    let reply = import_raw(server(), &csv, "text/csv; charset=utf-8").await;
    assert_eq!(summary(&reply), (1, 0, vec![]));
    let reply = server()
        .post(
            &client(),
            "/users",
            &json!({"username": "x", "email": email}),
        )
        .await;
    assert_error(&reply, 409, "conflict");
}

#[tokio::test]
async fn importing_the_same_file_twice_gives_the_same_counts_and_table() {
    let b = bulk_id_block();
    let mut csv = String::from("id,username,email,created_at\n");
    for i in 0..20 {
        csv.push_str(&format!(
            "{},twice_{i},{},2024-03-0{} 10:00:00\n",
            b + i,
            unique_email(),
            1 + i % 9
        ));
    }
    csv.push_str(&format!(
        "{},broken,not-an-email,2024-03-01 10:00:00\n",
        b + 20
    ));
    let form = || Form::new().text("file", csv.clone());

    let first = import_multipart(server(), form()).await;
    assert_eq!(summary(&first), (20, 1, vec![22]));
    let mut before = Vec::new();
    for i in 0..20 {
        before.push(get_user(b + i).await.expect(200, "imported").json);
    }

    let second = import_multipart(server(), form()).await;
    assert_eq!(first.json, second.json, "the same answer the second time");
    for i in 0..20 {
        let after = get_user(b + i).await.expect(200, "still there").json;
        assert_eq!(after, before[i as usize], "the same row the second time");
    }
    // The refused row was not imported. Its id is the one the users sequence hands out next (the
    // import moved it past b + 19), so another test's user may hold it by now: never this row.
    let reply = get_user(b + 20).await;
    if reply.status == 200 {
        assert_ne!(reply.json["email"], "not-an-email", "{}", reply.text);
    } else {
        assert_error(&reply, 404, "not_found");
    }
}

#[tokio::test]
async fn invalid_rows_are_skipped_and_reported_by_line() {
    let b = bulk_id_block();
    let good: Vec<String> = (0..3).map(|_| unique_email()).collect();
    let csv = format!(
        "id,username,email,created_at\n\
         {b},good_a,{},2024-01-01 00:00:00\n\
         {},bad_email,not-an-email,2024-01-01 00:00:00\n\
         {},,{},2024-01-01 00:00:00\n\
         {},good_b,{},2024-01-01 00:00:00\n\
         abc,bad_id,{},2024-01-01 00:00:00\n\
         {},bad_time,{},yesterday\n\
         {},good_c,{},\n",
        good[0],
        b + 1,
        b + 2,
        unique_email(),
        b + 3,
        good[1],
        unique_email(),
        b + 5,
        unique_email(),
        b + 6,
        good[2],
    );
    let reply = import_raw(server(), &csv, "text/csv").await;
    assert_eq!(
        summary(&reply),
        (3, 4, vec![3, 4, 6, 7]),
        "lines count the header as line 1: {}",
        reply.text
    );
    for (id, name) in [(b, "good_a"), (b + 3, "good_b"), (b + 6, "good_c")] {
        let user = get_user(id).await.expect(200, "a valid row");
        assert_eq!(user.json["username"], name);
    }
    for id in [b + 1, b + 2, b + 5] {
        assert_error(&get_user(id).await, 404, "not_found");
    }
}

#[tokio::test]
async fn rows_with_an_id_upsert_by_id() {
    let c = client();
    let user = create_user(&c).await;
    let id = id_of(&user);
    let email = str_of(&user, "email");
    let csv = format!("id,username,email\n{id},renamed_by_import,{email}\n");
    let reply = import_raw(server(), &csv, "text/csv").await;
    assert_eq!(summary(&reply), (1, 0, vec![]));
    let read = get_user(id).await.expect(200, "updated user");
    assert_eq!(read.json["username"], "renamed_by_import");
    assert_eq!(read.json["email"], email);
    assert_eq!(
        read.json["created_at"], user["created_at"],
        "no created_at column: kept"
    );

    let new_email = unique_email();
    let csv = format!("id,username,email\n{id},renamed_again,{new_email}\n");
    let reply = import_raw(server(), &csv, "text/csv").await;
    assert_eq!(summary(&reply), (1, 0, vec![]));
    let read = get_user(id).await.expect(200, "updated user");
    assert_eq!(read.json["username"], "renamed_again");
    assert_eq!(read.json["email"], new_email);
}

#[tokio::test]
async fn rows_without_an_id_upsert_by_email() {
    let c = client();
    let user = create_user(&c).await;
    let id = id_of(&user);
    let csv = format!(
        "username,email\nrenamed_by_email,{}\n",
        str_of(&user, "email")
    );
    for _ in 0..2 {
        let reply = import_raw(server(), &csv, "text/csv").await;
        assert_eq!(summary(&reply), (1, 0, vec![]));
        let read = get_user(id).await.expect(200, "same user");
        assert_eq!(read.json["username"], "renamed_by_email");
        assert_eq!(read.json["email"], user["email"]);
        assert_eq!(read.json["created_at"], user["created_at"]);
    }
}

#[tokio::test]
async fn email_of_another_user_is_skipped() {
    let c = client();
    let owner = create_user(&c).await;
    let b = bulk_id_block();
    let csv = format!(
        "id,username,email\n{b},thief,{}\n{},honest,{}\n",
        str_of(&owner, "email"),
        b + 1,
        unique_email()
    );
    let reply = import_raw(server(), &csv, "text/csv").await;
    assert_eq!(summary(&reply), (1, 1, vec![2]));
    assert_error(&get_user(b).await, 404, "not_found");
    let read = get_user(id_of(&owner)).await.expect(200, "owner");
    assert_eq!(read.json, owner, "the owner of the email is untouched");
    get_user(b + 1)
        .await
        .expect(200, "the valid row is imported");
}

#[tokio::test]
async fn missing_file_field_is_422() {
    let form = Form::new().text("data", format!("username,email\nx,{}\n", unique_email()));
    let reply = import_multipart(server(), form).await;
    assert_invalid_field(&reply, "file");
}

#[tokio::test]
async fn missing_username_or_email_column_is_422() {
    for (csv, field) in [
        (
            format!("id,name,email\n{MISSING_ID},x,{}\n", unique_email()),
            "username",
        ),
        (
            format!("id,username,created_at\n{MISSING_ID},x,2024-01-01 00:00:00\n"),
            "email",
        ),
        ("email\nsomeone@example.com\n".to_string(), "username"),
    ] {
        let reply = import_raw(server(), &csv, "text/csv").await;
        assert_error(&reply, 422, "validation_failed");
        assert!(
            reply.text.contains(field),
            "the 422 names the missing column {field}: {}",
            reply.text
        );
    }
    let reply = import_raw(server(), "", "text/csv").await;
    assert_error(&reply, 422, "validation_failed");
    assert_error(&get_user(MISSING_ID).await, 404, "not_found");
}

#[tokio::test]
async fn other_content_types_are_415() {
    let csv = format!("username,email\nx,{}\n", unique_email());
    for content_type in [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
    ] {
        let reply = import_raw(server(), &csv, content_type).await;
        assert_error(&reply, 415, "unsupported_media_type");
    }
    let reply = read_reply(client().post(server().url("/users/bulk")).body(csv.clone())).await;
    assert_error(&reply, 415, "unsupported_media_type");
    let reply = read_reply(
        client()
            .post(server().url("/users/bulk"))
            .header("content-type", "application/json")
            .body(json!({"file": csv}).to_string()),
    )
    .await;
    assert_error(&reply, 415, "unsupported_media_type");
}

#[tokio::test]
async fn the_dup_usernames_users_file_imports_all_400_twice() {
    let url = fresh_database("bulkseed").await;
    let srv = start_server_on(&url, &[]);
    let csv = std::fs::read_to_string(seed_dir("dup-usernames").join("users.csv"))
        .expect("reading the seed users.csv");
    for round in ["first", "second"] {
        let reply = import_multipart(&srv, file_form(&csv)).await;
        assert_eq!(summary(&reply), (400, 0, vec![]), "{round} import");
    }
    assert_eq!(count_rows(&url, "users").await, 400);
    let c = client();
    for id in [180, 293] {
        let user = srv
            .get(&c, &format!("/users/{id}"))
            .await
            .expect(200, "dup");
        assert_eq!(user.json["username"], "warmkernel40");
    }
    let next = srv
        .post(
            &c,
            "/users",
            &json!({"username": unique("after"), "email": unique_email()}),
        )
        .await
        .expect(201, "POST /users after the import");
    assert!(id_of(&next.json) > 400, "id {}", next.json["id"]);
}
