//! Data makers. Tests run in parallel against the shared database, so everything a test creates is
//! its own: names, emails, codes and urls are unique across threads and runs ([`unique`]), ids that a
//! test imports come from blocks no other test touches ([`bulk_id_block`]), and a test that needs an
//! id nobody has uses [`MISSING_ID`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Client;
use serde_json::{json, Value};

use super::server::{server, TestServer};
use super::shapes::{assert_url, assert_user};

/// An id no test ever creates: below `i32::MAX` (so it is a valid id for any column type) and far above
/// the highest id the bulk tests import into the shared database (`bulk_id_block`).
pub const MISSING_ID: i64 = 2_146_000_000;

/// A string no other call in any thread of any run returns: `prefix` plus pid, counter and clock, in
/// lowercase base 36 joined by `_`, so it is valid as a username, an email local part, a short code
/// (at most 32 characters for a prefix of up to 9) and a database name.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        base36(u128::from(std::process::id())),
        base36(u128::from(count)),
        base36(nanos % 36u128.pow(8))
    )
}

fn base36(mut n: u128) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base36 digits are ASCII")
}

pub fn unique_email() -> String {
    format!("{}@example.com", unique("u"))
}

pub fn unique_original_url() -> String {
    format!("https://example.com/{}", unique("page"))
}

/// The start of a block of 1000 user ids that a bulk test may import into the shared database.
///
/// Imports move the users id sequence past the largest imported id, so ids created after an import are
/// higher than it. Blocks are handed out downwards from far above anything the sequence reaches before
/// the first import, so an imported id can never land on a row another test created.
pub fn bulk_id_block() -> i64 {
    static NEXT: AtomicI64 = AtomicI64::new(2_000_000_000);
    NEXT.fetch_sub(1_000_000, Ordering::Relaxed)
}

/// A fresh user created through the shared server.
pub async fn create_user(client: &Client) -> Value {
    create_user_on(server(), client).await
}

/// A fresh user created through `srv`.
pub async fn create_user_on(srv: &TestServer, client: &Client) -> Value {
    let body = json!({"username": unique("user"), "email": unique_email()});
    create_on(srv, client, "/users", &body, assert_user).await
}

/// `POST path` with `body` on `srv`: a 201 whose body `shape` accepts, that body.
async fn create_on(
    srv: &TestServer,
    client: &Client,
    path: &str,
    body: &Value,
    shape: fn(&Value),
) -> Value {
    let reply = srv
        .post(client, path, body)
        .await
        .expect(201, &format!("POST {path}"));
    shape(&reply.json);
    reply.json
}

/// A fresh url owned by `user_id`, created through the shared server.
pub async fn create_url(client: &Client, user_id: i64) -> Value {
    create_url_with(
        client,
        json!({"original_url": unique_original_url(), "user_id": user_id}),
    )
    .await
}

/// `POST /urls` with `body` on the shared server; the created url.
pub async fn create_url_with(client: &Client, body: Value) -> Value {
    create_url_on(server(), client, body).await
}

/// `POST /urls` with `body` on `srv`; the created url.
pub async fn create_url_on(srv: &TestServer, client: &Client, body: Value) -> Value {
    create_on(srv, client, "/urls", &body, assert_url).await
}

pub fn id_of(value: &Value) -> i64 {
    value["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer id in {value}"))
}

pub fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field} in {value}"))
}

/// `/{short_code}` of a url: where it redirects from.
pub fn code_path(url: &Value) -> String {
    format!("/{}", str_of(url, "short_code"))
}
