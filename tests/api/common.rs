//! The harness: one real `gitrev serve` for the whole run, plus the helpers every module shares.
//!
//! The shared server is started lazily by whichever test asks first and lives in a static for the rest of
//! the process. It is spawned with `std::process` (not `tokio::process`) because each `#[tokio::test]` has
//! its own runtime and the server must outlive all of them. It is never killed: its stdin is a pipe that
//! only this process holds, and the server stops itself (and its embedded PostgreSQL) when that pipe
//! closes, which the kernel does when the test process exits, however it exits.
//!
//! Tests that need exact counts or ids make a database of their own on the shared cluster
//! (`fresh_database`), drive the CLI against it (`gitrev`) and, when they need HTTP too, start a second
//! server on it (`start_server_on`), which stops the same way when its `TestServer` is dropped.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::{Client, Method};
use serde_json::{json, Value};

/// How long a server may take to initdb, start PostgreSQL, migrate and listen.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for an asynchronously written click before calling it missing.
const EVENT_WAIT: Duration = Duration::from_secs(10);
/// An id no test ever creates: below `i32::MAX` (so it is a valid id for any column type) and far above
/// the highest id the bulk tests import into the shared database (`bulk_id_block`).
pub const MISSING_ID: i64 = 2_146_000_000;

/// A running `gitrev serve`.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
    /// The database this server uses (for the shared server, its embedded cluster's `gitrev` database).
    pub database_url: String,
    /// Where its standard output and error go.
    pub log: PathBuf,
    /// Holds the child so it is not reaped early; the server stops when `_stdin` closes.
    _child: Mutex<Child>,
    /// Never written to: closing it (dropping the server, or the test process exiting) stops the server.
    _stdin: Mutex<Option<ChildStdin>>,
}

/// One HTTP answer, read completely.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    /// The body parsed as JSON, or `Value::Null` when it is not JSON.
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Panics, showing the body, unless the status is `status`.
    pub fn expect(self, status: u16, what: &str) -> Reply {
        assert_eq!(
            self.status, status,
            "{what}: expected {status}, got {} with body {}",
            self.status, self.text
        );
        self
    }

    /// The body as a JSON array, after checking the content type.
    pub fn array(&self) -> &Vec<Value> {
        assert_json_content_type(self);
        self.json
            .as_array()
            .unwrap_or_else(|| panic!("expected a JSON array, got {}", self.text))
    }

    pub fn total_count(&self) -> i64 {
        self.header("x-total-count")
            .unwrap_or_else(|| panic!("no x-total-count header on a list response"))
            .parse()
            .expect("x-total-count must be an integer")
    }
}

impl TestServer {
    /// Closes the server's stdin, its signal to drain and stop, and waits for it to exit.
    pub fn stop(self) -> std::process::ExitStatus {
        drop(self._stdin);
        let mut child = self
            ._child
            .into_inner()
            .expect("no test panics while holding the child");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => panic!("gitrev serve did not stop within 60 s of its stdin closing"),
                Err(e) => panic!("waiting for gitrev serve: {e}"),
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(
        &self,
        client: &Client,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut request = client.request(method, self.url(path));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        read_reply(request).await
    }

    pub async fn get(&self, client: &Client, path: &str) -> Reply {
        self.send(client, Method::GET, path, None, None).await
    }

    pub async fn head(&self, client: &Client, path: &str) -> Reply {
        self.send(client, Method::HEAD, path, None, None).await
    }

    pub async fn delete(&self, client: &Client, path: &str) -> Reply {
        self.send(client, Method::DELETE, path, None, None).await
    }

    pub async fn post(&self, client: &Client, path: &str, body: &Value) -> Reply {
        self.send_json(client, Method::POST, path, body).await
    }

    pub async fn put(&self, client: &Client, path: &str, body: &Value) -> Reply {
        self.send_json(client, Method::PUT, path, body).await
    }

    pub async fn patch(&self, client: &Client, path: &str, body: &Value) -> Reply {
        self.send_json(client, Method::PATCH, path, body).await
    }

    async fn send_json(&self, client: &Client, method: Method, path: &str, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("a serde_json::Value always serializes");
        self.send(client, method, path, Some("application/json"), Some(bytes))
            .await
    }
}

pub async fn read_reply(request: reqwest::RequestBuilder) -> Reply {
    let response = request
        .send()
        .await
        .expect("the request reaches the server");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("the body can be read");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

// ---------------------------------------------------------------------------------------------------
// Servers

static SERVER: OnceLock<Result<TestServer, String>> = OnceLock::new();

/// The shared server, started on first use. A failed start is remembered, so the rest of the run fails
/// at once with the same message instead of each test waiting for its own timeout.
pub fn server() -> &'static TestServer {
    let started = SERVER.get_or_init(|| {
        remove_stale_dirs();
        spawn_server("main", None, &[])
    });
    match started {
        Ok(server) => server,
        Err(why) => panic!("the shared gitrev server did not start: {why}"),
    }
}

/// Another `gitrev serve` on `database_url`, with its own data dir and ready file. It stops when the
/// returned value is dropped.
pub fn start_server_on(database_url: &str, extra_env: &[(&str, &str)]) -> TestServer {
    // The shared cluster must exist first, and remove_stale_dirs must not race this server's dir.
    let _ = server();
    let name = unique("srv");
    spawn_server(&name, Some(database_url), extra_env)
        .unwrap_or_else(|why| panic!("gitrev serve on {database_url} did not start: {why}"))
}

fn test_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("gitrev-test-{}-{name}", std::process::id()))
}

/// Removes `gitrev-test-<pid>-*` directories left by test runs whose process is gone.
fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let own = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("gitrev-test-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid <= 0 || pid as u32 == own || process_alive(pid) {
            continue;
        }
        let _ = fs::remove_dir_all(entry.path());
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 performs only the existence and permission check; nothing is delivered.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The child must not see this shell's gitrev settings: each test says exactly what it wants.
fn scrub_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("GITREV_")) {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("DATABASE_URL");
}

fn spawn_server(
    name: &str,
    database_url: Option<&str>,
    extra_env: &[(&str, &str)],
) -> Result<TestServer, String> {
    let dir = test_dir(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let ready_file = dir.join("ready.json");
    let log_path = dir.join("server.log");
    let log = fs::File::create(&log_path).map_err(|e| format!("creating server.log: {e}"))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cloning server.log: {e}"))?;

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitrev"));
    cmd.arg("serve");
    scrub_env(&mut cmd);
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    cmd.env("GITREV_DATA_DIR", &dir)
        .env("GITREV_LISTEN", "127.0.0.1:0")
        .env("GITREV_ENV", "test")
        .env("GITREV_LOG", "warn")
        .env("GITREV_READY_FILE", &ready_file)
        .env("GITREV_STOP_ON_STDIN_EOF", "1");
    for (key, value) in extra_env {
        cmd.env(key, value);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", env!("CARGO_BIN_EXE_gitrev")))?;
    let stdin = child.stdin.take();

    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some((listen, url)) = read_ready_file(&ready_file) {
            return Ok(TestServer {
                base: format!("http://{listen}"),
                database_url: url,
                log: log_path,
                _child: Mutex::new(child),
                _stdin: Mutex::new(stdin),
            });
        }
        if let Some(status) = child.try_wait().map_err(|e| format!("waiting: {e}"))? {
            return Err(format!(
                "gitrev serve exited with {status} before it was ready; {} ends with:\n{}",
                log_path.display(),
                tail(&log_path, 4000)
            ));
        }
        if Instant::now() > deadline {
            // Returning drops `stdin`, which tells the server to stop.
            return Err(format!(
                "no {} after {READY_TIMEOUT:?}; {} ends with:\n{}",
                ready_file.display(),
                log_path.display(),
                tail(&log_path, 4000)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_ready_file(path: &Path) -> Option<(String, String)> {
    let text = fs::read_to_string(path).ok()?;
    let ready: Value = serde_json::from_str(&text).ok()?;
    let listen = ready.get("listen")?.as_str()?.to_string();
    let url = ready.get("database_url")?.as_str()?.to_string();
    Some((listen, url))
}

fn tail(path: &Path, max: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

// ---------------------------------------------------------------------------------------------------
// Clients and unique data

/// A client that never follows redirects: the redirect tests look at the 302 itself.
pub fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a plain-http client always builds")
}

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

// ---------------------------------------------------------------------------------------------------
// Making data on the shared server

pub async fn create_user(client: &Client) -> Value {
    create_user_on(server(), client).await
}

/// A fresh user created through `srv`.
pub async fn create_user_on(srv: &TestServer, client: &Client) -> Value {
    let body = json!({"username": unique("user"), "email": unique_email()});
    let reply = srv
        .post(client, "/users", &body)
        .await
        .expect(201, "POST /users");
    assert_user(&reply.json);
    reply.json
}

pub async fn create_url(client: &Client, user_id: i64) -> Value {
    create_url_with(
        client,
        json!({"original_url": unique_original_url(), "user_id": user_id}),
    )
    .await
}

pub async fn create_url_with(client: &Client, body: Value) -> Value {
    let reply = server()
        .post(client, "/urls", &body)
        .await
        .expect(201, "POST /urls");
    assert_url(&reply.json);
    reply.json
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

// ---------------------------------------------------------------------------------------------------
// Shapes

pub fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, got {value}"))
        .keys()
        .cloned()
        .collect()
}

fn assert_keys(value: &Value, expected: &[&str]) {
    let expected: BTreeSet<String> = expected.iter().map(|k| k.to_string()).collect();
    assert_eq!(keys(value), expected, "fields of {value}");
}

/// `YYYY-MM-DDTHH:MM:SS`: a `T`, no zone, no fraction.
pub fn is_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 19
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            _ => b.is_ascii_digit(),
        })
}

pub fn assert_timestamp(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} must be a string, got {value}"));
    assert!(
        is_timestamp(text),
        "{what} must look like YYYY-MM-DDTHH:MM:SS, got {text:?}"
    );
}

pub fn is_base62_code(code: &str) -> bool {
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub fn assert_user(user: &Value) {
    assert_keys(user, &["id", "username", "email", "created_at"]);
    assert!(user["id"].is_i64(), "user id must be an integer: {user}");
    assert!(user["username"].is_string(), "username: {user}");
    assert!(user["email"].is_string(), "email: {user}");
    assert_timestamp(&user["created_at"], "user created_at");
}

pub fn assert_url(url: &Value) {
    assert_keys(
        url,
        &[
            "id",
            "user_id",
            "short_code",
            "original_url",
            "title",
            "is_active",
            "created_at",
            "updated_at",
        ],
    );
    assert!(url["id"].is_i64(), "url id must be an integer: {url}");
    assert!(
        url["user_id"].is_i64() || url["user_id"].is_null(),
        "user_id: {url}"
    );
    assert!(url["short_code"].is_string(), "short_code: {url}");
    assert!(url["original_url"].is_string(), "original_url: {url}");
    assert!(
        url["title"].is_string() || url["title"].is_null(),
        "title: {url}"
    );
    assert!(url["is_active"].is_boolean(), "is_active: {url}");
    assert_timestamp(&url["created_at"], "url created_at");
    assert_timestamp(&url["updated_at"], "url updated_at");
}

pub fn assert_event(event: &Value) {
    assert_keys(
        event,
        &[
            "id",
            "url_id",
            "user_id",
            "event_type",
            "timestamp",
            "details",
        ],
    );
    assert!(event["id"].is_i64(), "event id must be an integer: {event}");
    assert!(
        event["url_id"].is_i64() || event["url_id"].is_null(),
        "url_id: {event}"
    );
    assert!(
        event["user_id"].is_i64() || event["user_id"].is_null(),
        "user_id: {event}"
    );
    assert!(event["event_type"].is_string(), "event_type: {event}");
    assert_timestamp(&event["timestamp"], "event timestamp");
    assert!(
        event["details"].is_object(),
        "details must be a JSON object, never a string: {event}"
    );
}

pub fn assert_json_content_type(reply: &Reply) {
    let content_type = reply.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "content-type must be application/json, got {content_type:?} (status {}, body {})",
        reply.status,
        reply.text
    );
}

/// Checks an error answer: the status, a JSON body with a non-empty `error` message and the `code`.
pub fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(
        reply.status, status,
        "expected {status} {code}, got {} with body {}",
        reply.status, reply.text
    );
    assert_json_content_type(reply);
    let message = reply.json["error"].as_str().unwrap_or("");
    assert!(
        !message.is_empty(),
        "an error needs a human message in `error`: {}",
        reply.text
    );
    assert_eq!(
        reply.json["code"].as_str(),
        Some(code),
        "error code in {}",
        reply.text
    );
}

/// Checks a 422 whose `details` names `field`.
pub fn assert_invalid_field(reply: &Reply, field: &str) {
    assert_error(reply, 422, "validation_failed");
    assert!(
        reply.json["details"].get(field).is_some(),
        "details must name {field:?}: {}",
        reply.text
    );
}

// ---------------------------------------------------------------------------------------------------
// Events, which may be written after the answer that caused them

pub async fn events(client: &Client, query: &str) -> Vec<Value> {
    let reply = server()
        .get(client, &format!("/events?{query}"))
        .await
        .expect(200, "GET /events");
    let list = reply.array().clone();
    for event in &list {
        assert_event(event);
    }
    list
}

/// Polls `GET /events?query` until it holds at least `expected` events (or the wait runs out), then looks
/// once more a moment later so a surplus is seen too. The caller asserts the exact count.
pub async fn wait_for_events(client: &Client, query: &str, expected: usize) -> Vec<Value> {
    let deadline = Instant::now() + EVENT_WAIT;
    loop {
        let list = events(client, query).await;
        if list.len() >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    events(client, query).await
}

pub async fn wait_for_clicks(client: &Client, url_id: i64, expected: usize) -> Vec<Value> {
    wait_for_events(
        client,
        &format!("url_id={url_id}&event_type=click"),
        expected,
    )
    .await
}

/// Returns once a click made now has been written. Clicks are queued in order, so after this any click
/// that an earlier request had recorded is visible too: "no click" checks look after a fence.
pub async fn fence_clicks(client: &Client) {
    let url = create_url_with(client, json!({"original_url": unique_original_url()})).await;
    let code = str_of(&url, "short_code");
    server()
        .get(client, &format!("/{code}"))
        .await
        .expect(302, "GET of a fresh short code");
    let clicks = wait_for_clicks(client, id_of(&url), 1).await;
    assert_eq!(clicks.len(), 1, "the fence click was recorded once");
}

// ---------------------------------------------------------------------------------------------------
// Databases and the CLI

/// Creates an empty database on the shared cluster and returns its URL.
pub async fn fresh_database(name_prefix: &str) -> String {
    let shared = &server().database_url;
    let admin = connect(&with_database(shared, "postgres")).await;
    let name = unique(name_prefix).to_lowercase();
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    with_database(shared, &name)
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let (server, _) = base
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("no database name in {url}"));
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// A plain connection, its driver running on the calling test's runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

pub async fn count_rows(database_url: &str, table: &str) -> i64 {
    let db = connect(database_url).await;
    let row = db
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap_or_else(|e| panic!("counting {table}: {e}"));
    row.get(0)
}

/// Runs `gitrev <args>` against `database_url` in the test environment.
pub fn gitrev(args: &[&str], database_url: &str) -> Output {
    gitrev_with_env(args, database_url, &[])
}

pub fn gitrev_with_env(args: &[&str], database_url: &str, extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitrev"));
    cmd.args(args);
    scrub_env(&mut cmd);
    cmd.env("DATABASE_URL", database_url)
        .env("GITREV_ENV", "test")
        .env("GITREV_LOG", "warn")
        .stdin(Stdio::null());
    for (key, value) in extra_env {
        cmd.env(key, value);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("running gitrev {args:?}: {e}"))
}

/// stdout and stderr together, for messages and for looking for a name.
pub fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn assert_cli_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} exited with {}:\n{}",
        output.status,
        output_text(output)
    );
}

/// A seed set of the repository: `gitrev` is the built-in reference set (`seed/`), the others live
/// under `tests/fixtures/seed-data/` (see its README).
pub fn seed_dir(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = match name {
        "gitrev" => root.join("seed"),
        other => root.join("tests/fixtures/seed-data").join(other),
    };
    assert!(
        dir.join("users.csv").is_file(),
        "no seed set at {}",
        dir.display()
    );
    dir
}

/// A fresh database, migrated and seeded with the named set through the CLI.
pub async fn seeded_database(set: &str) -> String {
    let url = fresh_database("seeded").await;
    assert_cli_ok(&gitrev(&["migrate"], &url), "gitrev migrate");
    let dir = seed_dir(set);
    let dir = dir.to_str().expect("the seed path is UTF-8");
    assert_cli_ok(&gitrev(&["seed", "--dir", dir], &url), "gitrev seed");
    url
}

// ---------------------------------------------------------------------------------------------------
// Signals, processes of a test's own and metrics

impl TestServer {
    /// The server's process id, for signals.
    pub fn pid(&self) -> i32 {
        let child = self
            ._child
            .lock()
            .expect("no test panics while holding the child");
        i32::try_from(child.id()).expect("process ids fit in an i32")
    }

    /// Sends `signal` (SIGTERM, SIGINT) and waits, at most 30 s, for the server to exit. Its stdin stays
    /// open until then, so the signal alone is what stops it (and nothing else may keep it running).
    pub fn stop_with_signal(self, signal: i32) -> std::process::ExitStatus {
        self.send_signal(signal);
        let mut child = self
            ._child
            .into_inner()
            .expect("no test panics while holding the child");
        let status = wait_for_exit(&mut child, Duration::from_secs(30));
        drop(self._stdin);
        if let Some(status) = status {
            return status;
        }
        let after_eof = wait_for_exit(&mut child, Duration::from_secs(60));
        panic!(
            "gitrev serve did not exit within 30 s of signal {signal} while its stdin stayed open; \
             after its stdin was closed: {}",
            match after_eof {
                Some(status) => format!("it exited ({status})"),
                None => "it still runs".to_string(),
            }
        )
    }

    /// Sends `signal`, waits (at most 60 s) until the server has taken it, seen from outside as its
    /// listener going away, then closes its stdin and waits (at most 60 s) for it to exit.
    ///
    /// With stdin still open when the listener closed, the signal is what started the graceful stop (the
    /// drain, the shutdown order); closing stdin afterwards only releases the blocking stdin read that
    /// `GITREV_STOP_ON_STDIN_EOF` starts, which otherwise keeps the process from exiting (see
    /// `stop_with_signal` and the lifecycle test that holds stdin open).
    pub fn stop_after_signal(self, signal: i32) -> std::process::ExitStatus {
        let address: std::net::SocketAddr = self
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("the base is http://IP:PORT");
        self.send_signal(signal);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "gitrev serve still accepts connections 60 s after signal {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop()
    }

    fn send_signal(&self, signal: i32) {
        let pid = self.pid();
        // SAFETY: a signal to the child this value owns and has not yet reaped, so the pid is its own.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Polls `child` until it exits (its status) or `limit` passes (`None`, the child left running).
pub fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => return None,
            Err(e) => panic!("waiting for pid {}: {e}", child.id()),
        }
    }
}

/// Whether a process with this id exists (a zombie counts until it is reaped).
pub fn pid_exists(pid: i32) -> bool {
    process_alive(pid)
}

/// A directory named like the harness's own (`gitrev-test-<pid>-<name>`), so a run that dies before
/// removing it has it removed by the next run's stale-directory cleanup.
pub fn own_test_dir(name: &str) -> PathBuf {
    test_dir(name)
}

/// `gitrev` with none of this shell's gitrev settings (no `GITREV_*`, no `DATABASE_URL`): the caller says
/// exactly what it wants.
pub fn bare_gitrev_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitrev"));
    scrub_env(&mut cmd);
    cmd
}

/// The sum of every sample of metric `name` (all label sets) in a Prometheus text body; `None` when the
/// body has no sample of that name.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value: f64 = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no number at the end of metric line {line:?}"));
        *found.get_or_insert(0.0) += value;
    }
    found
}

/// `GET /metrics` on `srv` and the value of `name` in it; panics, showing the names served, when absent.
pub async fn read_metric(srv: &TestServer, client: &Client, name: &str) -> f64 {
    let reply = srv
        .get(client, "/metrics")
        .await
        .expect(200, "GET /metrics");
    metric_value(&reply.text, name)
        .unwrap_or_else(|| panic!("/metrics has no sample named {name}:\n{}", reply.text))
}

// ---------------------------------------------------------------------------------------------------
// Addresses

impl TestServer {
    /// The address the server listens on (`127.0.0.1:PORT`, from its ready file), as `--listen` takes it.
    pub fn listen_addr(&self) -> &str {
        self.base
            .strip_prefix("http://")
            .expect("the base is http://IP:PORT")
    }
}

/// Polls `GET /ready` on `srv` until it answers `want` (its JSON body), failing after `within`.
pub async fn wait_for_ready(srv: &TestServer, want: u16, within: Duration) -> serde_json::Value {
    let c = client();
    let deadline = Instant::now() + within;
    loop {
        let reply = srv.get(&c, "/ready").await;
        if reply.status == want {
            return reply.json;
        }
        assert!(
            Instant::now() < deadline,
            "/ready did not turn {want} within {within:?}: {} {}",
            reply.status,
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
