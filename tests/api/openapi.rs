//! The OpenAPI description (`openapi.json`, served at `GET /openapi.json`) promises nothing the
//! server never does: every status it lists for every operation is driven here by one request that
//! gets exactly that status, and no request here gets a status the document does not list for its
//! operation. 401, 403, the keys' answers, 408 and 413 come from a server with an API token and
//! small limits, 429s from one whose keys may make a request a second, 503s from one whose
//! database was renamed away.
//!
//! Whether each answer's body, headers and content type match the document is Schemathesis's check
//! (`.ci/schemathesis.sh`, run by CI against a live server), not this module's.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::{Client, Method};
use serde_json::{json, Value};

use crate::harness::{
    client, client_with_key, connect, database_name, fresh_database, id_of, is_timestamp,
    rename_database, server, start_server_on, str_of, unique, unique_email, unique_original_url,
    with_database, Reply, TestServer, MISSING_ID,
};

const METHODS: [&str; 6] = ["get", "head", "post", "put", "patch", "delete"];

/// A documented answer: (path template, method in lower case, status).
type Answer = (String, String, u16);

/// Every (path, method, status) `doc` lists.
fn documented(doc: &Value) -> BTreeSet<Answer> {
    let mut answers = BTreeSet::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            let Some(responses) = item[method]["responses"].as_object() else {
                continue;
            };
            for status in responses.keys() {
                let status = status
                    .parse()
                    .unwrap_or_else(|_| panic!("{method} {template}: status {status:?}"));
                answers.insert((template.clone(), method.to_owned(), status));
            }
        }
    }
    answers
}

/// A request body: its content type and bytes.
type Body = Option<(&'static str, Vec<u8>)>;

fn json_body(value: Value) -> Body {
    Some(("application/json", value.to_string().into_bytes()))
}

fn raw_body(content_type: &'static str, bytes: &[u8]) -> Body {
    Some((content_type, bytes.to_vec()))
}

/// Sends requests to one server, checks each gets the status it was sent for, and notes the
/// documented answer it produced.
struct Driver<'a> {
    srv: &'a TestServer,
    c: Client,
    produced: &'a mut BTreeSet<Answer>,
}

impl Driver<'_> {
    async fn call(
        &mut self,
        template: &str,
        method: Method,
        path: &str,
        body: Body,
        status: u16,
    ) -> Reply {
        let (content_type, bytes) = match body {
            Some((content_type, bytes)) => (Some(content_type), Some(bytes)),
            None => (None, None),
        };
        let reply = self
            .srv
            .send(&self.c, method.clone(), path, content_type, bytes)
            .await;
        self.note(template, &method, path, &reply, status);
        reply
    }

    /// Checks `reply` (to `method path`, an instance of `template`) has `status`, and notes it.
    fn note(&mut self, template: &str, method: &Method, path: &str, reply: &Reply, status: u16) {
        assert_eq!(
            reply.status, status,
            "{method} {path} ({template}): expected {status}, got {} with body {}",
            reply.status, reply.text
        );
        let method = method.as_str().to_ascii_lowercase();
        self.produced.insert((template.to_owned(), method, status));
    }
}

fn load_document() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

#[tokio::test]
async fn every_documented_status_is_produced_and_nothing_else() {
    let doc = load_document();
    let served = server()
        .get(&client(), "/openapi.json")
        .await
        .expect(200, "GET /openapi.json");
    assert_eq!(
        served.json, doc,
        "GET /openapi.json serves openapi.json (rebuild after editing it)"
    );

    let mut produced = BTreeSet::new();
    answered(&mut produced).await;
    guarded(&doc, &mut produced).await;
    limited(&doc, &mut produced).await;
    unavailable(&mut produced).await;

    let documented = documented(&doc);
    let never: Vec<&Answer> = documented.difference(&produced).collect();
    assert!(
        never.is_empty(),
        "openapi.json lists answers no request here produced: {never:?}"
    );
    let undocumented: Vec<&Answer> = produced.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "requests here got answers openapi.json does not list: {undocumented:?}"
    );
}

/// Every answer the shared server gives with its database up and no token required.
async fn answered(produced: &mut BTreeSet<Answer>) {
    let mut d = Driver {
        srv: server(),
        c: client(),
        produced,
    };
    let (get, post, put, patch, delete) = (
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    );
    let missing = MISSING_ID;
    let new_user = || json_body(json!({"username": unique("user"), "email": unique_email()}));
    let new_url = || json_body(json!({"original_url": unique_original_url()}));

    for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
        d.call(path, get.clone(), path, None, 200).await;
    }

    // Users.
    let t = "/users";
    d.call(t, get.clone(), "/users?page=1&per_page=1", None, 200)
        .await;
    d.call(t, get.clone(), "/users?per_page=0", None, 422).await;
    let a = d.call(t, post.clone(), t, new_user(), 201).await.json;
    let b = d.call(t, post.clone(), t, new_user(), 201).await.json;
    let taken = json_body(json!({"username": "dup", "email": a["email"]}));
    d.call(t, post.clone(), t, taken, 409).await;
    d.call(t, post.clone(), t, raw_body("text/plain", b"hello"), 400)
        .await;
    let bad = json_body(json!({"username": 7, "email": unique_email()}));
    d.call(t, post.clone(), t, bad, 422).await;

    let t = "/users/bulk";
    let csv = format!("username,email\n{},{}\n", unique("bulk"), unique_email());
    d.call(
        t,
        post.clone(),
        t,
        raw_body("text/csv", csv.as_bytes()),
        201,
    )
    .await;
    d.call(
        t,
        post.clone(),
        t,
        raw_body("multipart/form-data", b"x"),
        400,
    )
    .await;
    d.call(t, post.clone(), t, raw_body("application/json", b"{}"), 415)
        .await;
    d.call(
        t,
        post.clone(),
        t,
        raw_body("text/csv", b"id,name\n1,x\n"),
        422,
    )
    .await;

    let t = "/users/{id}";
    let (path_a, path_missing) = (format!("/users/{}", id_of(&a)), format!("/users/{missing}"));
    d.call(t, get.clone(), &path_a, None, 200).await;
    d.call(t, get.clone(), &path_missing, None, 404).await;
    for method in [put.clone(), patch.clone()] {
        let renamed = json_body(json!({"username": unique("renamed")}));
        d.call(t, method.clone(), &path_a, renamed, 200).await;
        d.call(
            t,
            method.clone(),
            &path_a,
            raw_body("application/json", b"[1]"),
            400,
        )
        .await;
        d.call(
            t,
            method.clone(),
            &path_missing,
            json_body(json!({"username": "x"})),
            404,
        )
        .await;
        let taken = json_body(json!({"email": b["email"]}));
        d.call(t, method.clone(), &path_a, taken, 409).await;
        d.call(
            t,
            method.clone(),
            &path_a,
            json_body(json!({"email": 5})),
            422,
        )
        .await;
    }
    let doomed = id_of(
        &d.call("/users", post.clone(), "/users", new_user(), 201)
            .await
            .json,
    );
    d.call(t, delete.clone(), &format!("/users/{doomed}"), None, 204)
        .await;
    d.call(t, delete.clone(), &format!("/users/{doomed}"), None, 404)
        .await;

    // Urls.
    let t = "/urls";
    let owned = json_body(json!({"original_url": unique_original_url(), "user_id": id_of(&a)}));
    let url = d.call(t, post.clone(), t, owned, 201).await.json;
    let custom =
        json_body(json!({"original_url": unique_original_url(), "short_code": url["short_code"]}));
    d.call(t, post.clone(), t, custom, 409).await;
    let orphan = json_body(json!({"original_url": unique_original_url(), "user_id": missing}));
    d.call(t, post.clone(), t, orphan, 404).await;
    d.call(
        t,
        post.clone(),
        t,
        json_body(json!({"original_url": "hello"})),
        422,
    )
    .await;
    d.call(t, post.clone(), t, raw_body("application/json", b""), 400)
        .await;
    d.call(
        t,
        get.clone(),
        &format!("/urls?user_id={}", id_of(&a)),
        None,
        200,
    )
    .await;
    d.call(t, get.clone(), "/urls?is_active=maybe", None, 422)
        .await;
    d.call(
        t,
        get.clone(),
        "/urls?tag=a&tag=b&q=shop&expired=false&page=1&per_page=5",
        None,
        200,
    )
    .await;

    let t = "/urls/bulk";
    let batch = json_body(json!([{"original_url": unique_original_url()}, {"original_url": "x"}]));
    d.call(t, post.clone(), t, batch, 201).await;
    d.call(t, post.clone(), t, json_body(json!({"a": 1})), 400)
        .await;
    let over: Vec<Value> = (0..1001).map(|_| json!({})).collect();
    d.call(t, post.clone(), t, json_body(json!(over)), 413)
        .await;

    for (t, ok, bad) in [
        ("/urls/{id}/qr.svg", "qr.svg", None),
        (
            "/urls/{id}/qr.png",
            "qr.png?size=100",
            Some("qr.png?size=63"),
        ),
    ] {
        let url_path = format!("/urls/{}", id_of(&url));
        d.call(t, get.clone(), &format!("{url_path}/{ok}"), None, 200)
            .await;
        d.call(t, get.clone(), &format!("/urls/{missing}/{ok}"), None, 404)
            .await;
        if let Some(bad) = bad {
            d.call(t, get.clone(), &format!("{url_path}/{bad}"), None, 422)
                .await;
        }
        // HTTP/1.0 without a `host`, and no GITREV_PUBLIC_URL: no origin for the code.
        let path = format!("{url_path}/{ok}");
        let head = format!("GET {path} HTTP/1.0\r\n\r\n");
        let reply = d
            .srv
            .raw_exchange(head.as_bytes(), Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("GET {path} without a host: no answer"));
        d.note(t, &get, &path, &reply, 422);
    }

    let t = "/urls/{id}";
    let (path_u, path_missing) = (format!("/urls/{}", id_of(&url)), format!("/urls/{missing}"));
    d.call(t, get.clone(), &path_u, None, 200).await;
    d.call(t, get.clone(), &path_missing, None, 404).await;
    for method in [put.clone(), patch.clone()] {
        let title = json_body(json!({"title": unique("title")}));
        d.call(t, method.clone(), &path_u, title, 200).await;
        d.call(
            t,
            method.clone(),
            &path_u,
            raw_body("application/json", b"null"),
            400,
        )
        .await;
        d.call(
            t,
            method.clone(),
            &path_missing,
            json_body(json!({"title": "x"})),
            404,
        )
        .await;
        d.call(
            t,
            method.clone(),
            &path_u,
            json_body(json!({"is_active": "yes"})),
            422,
        )
        .await;
    }
    let t = "/urls/{id}/stats";
    d.call(t, get.clone(), &format!("{path_u}/stats"), None, 200)
        .await;
    d.call(t, get.clone(), &format!("{path_missing}/stats"), None, 404)
        .await;

    // Click analytics. The query is checked before the url is looked up, so the 422s use a url
    // that exists and the 404s a query that is good.
    let t = "/urls/{id}/stats/timeseries";
    for query in [
        "",
        "?interval=day&from=2026-12-01&to=2026-12-31T23:59:59Z&bots=exclude",
    ] {
        let path = format!("{path_u}/stats/timeseries{query}");
        d.call(t, get.clone(), &path, None, 200).await;
    }
    d.call(
        t,
        get.clone(),
        &format!("{path_missing}/stats/timeseries?interval=hour"),
        None,
        404,
    )
    .await;
    for query in [
        "interval=week",
        "bots=only",
        "from=yesterday",
        "from=2026-12-02&to=2026-12-01",
        "interval=hour&from=2020-01-01&to=2026-01-01",
    ] {
        let path = format!("{path_u}/stats/timeseries?{query}");
        d.call(t, get.clone(), &path, None, 422).await;
    }
    let t = "/urls/{id}/stats/breakdown";
    for query in [
        "by=referrer",
        "by=device&from=2026-12-01 00:00:00.5&bots=exclude&limit=1000",
    ] {
        let path = format!("{path_u}/stats/breakdown?{query}");
        d.call(t, get.clone(), &path, None, 200).await;
    }
    d.call(
        t,
        get.clone(),
        &format!("{path_missing}/stats/breakdown?by=os"),
        None,
        404,
    )
    .await;
    for query in [
        "",
        "by=agent",
        "by=os&limit=0",
        "by=os&limit=1001",
        "by=os&to=2026-02-30",
    ] {
        let path = format!("{path_u}/stats/breakdown?{query}");
        d.call(t, get.clone(), &path, None, 422).await;
    }
    let t = "/urls/{id}/clicks.csv";
    for query in ["", "?from=2026-12-01&to=2026-12-01T23:59:59"] {
        let path = format!("{path_u}/clicks.csv{query}");
        d.call(t, get.clone(), &path, None, 200).await;
    }
    d.call(
        t,
        get.clone(),
        &format!("{path_missing}/clicks.csv"),
        None,
        404,
    )
    .await;
    for query in ["from=1e9", "from=2026-12-01T00:00:01&to=2026-12-01"] {
        let path = format!("{path_u}/clicks.csv?{query}");
        d.call(t, get.clone(), &path, None, 422).await;
    }

    // Redirects.
    let t = "/{short_code}";
    let (code, unknown) = (
        format!("/{}", str_of(&url, "short_code")),
        format!("/{}", unique("nx")),
    );
    for method in [Method::HEAD, get.clone()] {
        d.call(t, method.clone(), &code, None, 302).await;
        d.call(t, method.clone(), &unknown, None, 404).await;
    }
    for status in [301, 307, 308] {
        let own =
            json_body(json!({"original_url": unique_original_url(), "redirect_status": status}));
        let own = d.call("/urls", post.clone(), "/urls", own, 201).await.json;
        for method in [Method::HEAD, get.clone()] {
            d.call(
                t,
                method,
                &format!("/{}", str_of(&own, "short_code")),
                None,
                status,
            )
            .await;
        }
    }

    // Events.
    let t = "/events";
    let event = json_body(json!({"event_type": "shared", "url_id": id_of(&url)}));
    let event = d.call(t, post.clone(), t, event, 201).await.json;
    let orphan = json_body(json!({"event_type": "x", "url_id": missing}));
    d.call(t, post.clone(), t, orphan, 404).await;
    let bad = json_body(json!({"event_type": "x", "url_id": id_of(&url), "details": "str"}));
    d.call(t, post.clone(), t, bad, 422).await;
    d.call(t, post.clone(), t, raw_body("application/json", b"[]"), 400)
        .await;
    d.call(
        t,
        get.clone(),
        &format!("/events?url_id={}", id_of(&url)),
        None,
        200,
    )
    .await;
    d.call(t, get.clone(), "/events?url_id=x", None, 422).await;
    let t = "/events/{id}";
    d.call(
        t,
        get.clone(),
        &format!("/events/{}", id_of(&event)),
        None,
        200,
    )
    .await;
    d.call(t, get.clone(), &format!("/events/{missing}"), None, 404)
        .await;

    // Deleting a url.
    let t = "/urls/{id}";
    let gone = id_of(
        &d.call("/urls", post.clone(), "/urls", new_url(), 201)
            .await
            .json,
    );
    d.call(t, delete.clone(), &format!("/urls/{gone}"), None, 204)
        .await;
    d.call(t, delete.clone(), &format!("/urls/{gone}"), None, 404)
        .await;
}

/// The writes, each with the path it is sent to and the content type of its body (`None`: no body).
const WRITES: [(&str, &str, &str, Option<&str>); 12] = [
    ("/users", "POST", "/users", Some("application/json")),
    ("/users/bulk", "POST", "/users/bulk", Some("text/csv")),
    ("/users/{id}", "PUT", "/users/1", Some("application/json")),
    ("/users/{id}", "PATCH", "/users/1", Some("application/json")),
    ("/users/{id}", "DELETE", "/users/1", None),
    ("/urls", "POST", "/urls", Some("application/json")),
    ("/urls/bulk", "POST", "/urls/bulk", Some("application/json")),
    ("/urls/{id}", "PUT", "/urls/1", Some("application/json")),
    ("/urls/{id}", "PATCH", "/urls/1", Some("application/json")),
    ("/urls/{id}", "DELETE", "/urls/1", None),
    ("/events", "POST", "/events", Some("application/json")),
    ("/keys", "POST", "/keys", Some("application/json")),
];

/// Every (template, method) whose documented answers include `status`.
fn operations_answering(doc: &Value, status: u16) -> Vec<(String, Method)> {
    documented(doc)
        .into_iter()
        .filter(|(_, _, s)| *s == status)
        .map(|(template, method, _)| {
            let method =
                Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("a method");
            (template, method)
        })
        .collect()
}

/// On a server with `GITREV_API_TOKEN` and small limits: every operation the document says needs
/// a key answers 401 without one, and every one that needs more than `read` answers 403 with a
/// read key (both driven from the document itself, so a new operation cannot be left out); the
/// keys' own answers; and with the token, 408 for a body that never arrives and 413 for one over
/// the limit.
async fn guarded(doc: &Value, produced: &mut BTreeSet<Answer>) {
    const TOKEN: &str = "openapi-token-4b1e9d";
    const LIMIT: usize = 1024;
    let url = fresh_database("oas401").await;
    let limit = LIMIT.to_string();
    let srv = start_server_on(
        &url,
        &[
            ("GITREV_API_TOKEN", TOKEN),
            ("GITREV_METRICS_TOKEN", "openapi-metrics-token-88a1"),
            ("GITREV_BODY_READ_TIMEOUT_MS", "200"),
            ("GITREV_MAX_BODY_BYTES", &limit),
            ("GITREV_MAX_UPLOAD_BYTES", &limit),
        ],
    );
    let at = |template: &str| template.replace("{id}", "1");
    let mut d = Driver {
        srv: &srv,
        c: client(),
        produced: &mut *produced,
    };
    for (template, method) in operations_answering(doc, 401) {
        d.call(&template, method, &at(&template), None, 401).await;
    }

    let mut d = Driver {
        srv: &srv,
        c: client_with_key(TOKEN),
        produced: &mut *produced,
    };
    let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
    d.call("/keys", get, "/keys", None, 200).await;
    let new_key = |scope: &str| json_body(json!({"name": unique("key"), "scope": scope}));
    let reader = d
        .call("/keys", post.clone(), "/keys", new_key("read"), 201)
        .await;
    let reader = str_of(&reader.json, "key").to_owned();
    let gone = d
        .call("/keys", post.clone(), "/keys", new_key("write"), 201)
        .await;
    let gone = format!("/keys/{}", id_of(&gone.json));
    d.call("/keys/{id}", delete.clone(), &gone, None, 204).await;
    d.call("/keys/{id}", delete, &gone, None, 404).await;
    d.call(
        "/keys",
        post.clone(),
        "/keys",
        raw_body("text/plain", b"hello"),
        400,
    )
    .await;
    d.call("/keys", post.clone(), "/keys", new_key("root"), 422)
        .await;
    let bound_to_nobody = json_body(json!({"name": "k", "scope": "read", "user_id": MISSING_ID}));
    d.call("/keys", post.clone(), "/keys", bound_to_nobody, 404)
        .await;

    let mut d = Driver {
        srv: &srv,
        c: client_with_key(&reader),
        produced: &mut *produced,
    };
    for (template, method) in operations_answering(doc, 403) {
        d.call(&template, method, &at(&template), None, 403).await;
    }

    let mut d = Driver {
        srv: &srv,
        c: client(),
        produced,
    };
    for (template, method, path, content_type) in WRITES {
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let Some(content_type) = content_type else {
            continue;
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: {content_type}\r\ncontent-length: 64\r\n\r\n{{"
        );
        let stalled = srv
            .raw_exchange(head.as_bytes(), Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{method} {path} with a stalled body: no answer"));
        d.note(template, &method, path, &stalled, 408);
        // Announced over the limit and not sent: refused on the announcement, before any byte of it.
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            LIMIT + 1
        );
        let over = srv
            .raw_exchange(head.as_bytes(), Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{method} {path} announcing too large a body: no answer"));
        d.note(template, &method, path, &over, 413);
    }
}

/// Every operation that takes a key, on a server whose keys may make one request a second: 429
/// once the bucket is empty (a request that still got through empties it for the next).
async fn limited(doc: &Value, produced: &mut BTreeSet<Answer>) {
    const TOKEN: &str = "openapi-token-429-7f3a";
    let url = fresh_database("oas429").await;
    let srv = start_server_on(
        &url,
        &[
            ("GITREV_API_TOKEN", TOKEN),
            ("GITREV_KEY_RATE", "1"),
            ("GITREV_KEY_BURST", "1"),
        ],
    );
    let mut d = Driver {
        srv: &srv,
        c: client_with_key(TOKEN),
        produced,
    };
    for (template, method) in operations_answering(doc, 429) {
        let path = template.replace("{id}", "1");
        let mut reply = None;
        for _ in 0..3 {
            let answer = srv.send(&d.c, method.clone(), &path, None, None).await;
            if answer.status == 429 {
                reply = Some(answer);
                break;
            }
        }
        let reply = reply.unwrap_or_else(|| panic!("{method} {path}: never 429 in three tries"));
        assert!(
            reply
                .header("retry-after")
                .is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)),
            "{method} {path}: retry-after of at least a second"
        );
        assert_eq!(reply.header("ratelimit-remaining"), Some("0"));
        d.note(&template, &method, &path, &reply, 429);
    }
}

/// Every operation on a server whose database was renamed away: 503.
async fn unavailable(produced: &mut BTreeSet<Answer>) {
    let url = fresh_database("oas503").await;
    let srv = start_server_on(&url, &[]);
    let mut d = Driver {
        srv: &srv,
        c: client(),
        produced,
    };
    let user = json_body(json!({"username": "u", "email": unique_email()}));
    let user = id_of(
        &d.call("/users", Method::POST, "/users", user, 201)
            .await
            .json,
    );
    let link = json_body(json!({"original_url": unique_original_url(), "user_id": user}));
    let link = d.call("/urls", Method::POST, "/urls", link, 201).await.json;
    let event = json_body(json!({"event_type": "x", "url_id": id_of(&link)}));
    let event = id_of(
        &d.call("/events", Method::POST, "/events", event, 201)
            .await
            .json,
    );

    let admin = connect(&with_database(&url, "postgres")).await;
    rename_database(&admin, database_name(&url), &unique("away")).await;
    srv.wait_for_ready(503, Duration::from_secs(60)).await;

    let (user, link_id, code) = (user, id_of(&link), str_of(&link, "short_code"));
    let csv = format!("username,email\nu,{}\n", unique_email());
    let requests: Vec<(&str, Method, String, Body)> = vec![
        ("/ready", Method::GET, "/ready".into(), None),
        ("/users", Method::GET, "/users".into(), None),
        (
            "/users",
            Method::POST,
            "/users".into(),
            json_body(json!({"username": "u", "email": unique_email()})),
        ),
        (
            "/users/bulk",
            Method::POST,
            "/users/bulk".into(),
            raw_body("text/csv", csv.as_bytes()),
        ),
        ("/users/{id}", Method::GET, format!("/users/{user}"), None),
        (
            "/users/{id}",
            Method::PUT,
            format!("/users/{user}"),
            json_body(json!({"username": "v"})),
        ),
        (
            "/users/{id}",
            Method::PATCH,
            format!("/users/{user}"),
            json_body(json!({"username": "v"})),
        ),
        (
            "/users/{id}",
            Method::DELETE,
            format!("/users/{user}"),
            None,
        ),
        ("/urls", Method::GET, "/urls".into(), None),
        (
            "/urls",
            Method::POST,
            "/urls".into(),
            json_body(json!({"original_url": unique_original_url()})),
        ),
        (
            "/urls/bulk",
            Method::POST,
            "/urls/bulk".into(),
            json_body(json!([{"original_url": unique_original_url()}])),
        ),
        (
            "/urls/{id}/qr.svg",
            Method::GET,
            format!("/urls/{link_id}/qr.svg"),
            None,
        ),
        (
            "/urls/{id}/qr.png",
            Method::GET,
            format!("/urls/{link_id}/qr.png"),
            None,
        ),
        ("/urls/{id}", Method::GET, format!("/urls/{link_id}"), None),
        (
            "/urls/{id}",
            Method::PUT,
            format!("/urls/{link_id}"),
            json_body(json!({"title": "t"})),
        ),
        (
            "/urls/{id}",
            Method::PATCH,
            format!("/urls/{link_id}"),
            json_body(json!({"title": "t"})),
        ),
        (
            "/urls/{id}",
            Method::DELETE,
            format!("/urls/{link_id}"),
            None,
        ),
        (
            "/urls/{id}/stats",
            Method::GET,
            format!("/urls/{link_id}/stats"),
            None,
        ),
        (
            "/urls/{id}/stats/timeseries",
            Method::GET,
            format!("/urls/{link_id}/stats/timeseries"),
            None,
        ),
        (
            "/urls/{id}/stats/breakdown",
            Method::GET,
            format!("/urls/{link_id}/stats/breakdown?by=browser"),
            None,
        ),
        (
            "/urls/{id}/clicks.csv",
            Method::GET,
            format!("/urls/{link_id}/clicks.csv"),
            None,
        ),
        ("/events", Method::GET, "/events".into(), None),
        (
            "/events",
            Method::POST,
            "/events".into(),
            json_body(json!({"event_type": "x", "url_id": link_id})),
        ),
        (
            "/events/{id}",
            Method::GET,
            format!("/events/{event}"),
            None,
        ),
        ("/keys", Method::GET, "/keys".into(), None),
        (
            "/keys",
            Method::POST,
            "/keys".into(),
            json_body(json!({"name": "k", "scope": "read"})),
        ),
        ("/keys/{id}", Method::DELETE, "/keys/1".into(), None),
        // Not cached (never redirected): the lookup needs the database.
        ("/{short_code}", Method::GET, format!("/{code}"), None),
        (
            "/{short_code}",
            Method::HEAD,
            format!("/{}", unique("nx")),
            None,
        ),
    ];
    // All at once: each may wait out the pool timeout.
    let replies = join_all(requests.iter().map(|(_, method, path, body)| {
        let (content_type, bytes) = match body {
            Some((content_type, bytes)) => (Some(*content_type), Some(bytes.clone())),
            None => (None, None),
        };
        srv.send(&d.c, method.clone(), path, content_type, bytes)
    }))
    .await;
    for ((template, method, path, _), reply) in requests.iter().zip(&replies) {
        d.note(template, method, path, reply, 503);
    }
}

/// Retries of a request answered 503 (see `click_moments_are_what_the_document_describes`).
const RETRIES_ON_503: usize = 5;

/// Every timestamp in a JSON answer of the click analytics (`from`, `to`, each point's `start`).
fn answer_timestamps(answer: &Value) -> Vec<&str> {
    let mut found: Vec<&str> = ["from", "to"]
        .iter()
        .filter_map(|key| answer[*key].as_str())
        .collect();
    if let Some(points) = answer["points"].as_array() {
        found.extend(points.iter().filter_map(|p| p["start"].as_str()));
    }
    found
}

/// `from` and `to` of the click analytics are what the document's `ClickMoment` describes: every
/// form it lists is taken, out to the ends of the years it allows (0000-9999), and the answer's
/// timestamps are then `Timestamp`s; anything else is a 422 naming the parameter, never a 500, a
/// dropped connection, or an answer whose timestamps are not `Timestamp`s.
#[tokio::test]
async fn click_moments_are_what_the_document_describes() {
    let srv = server();
    let c = client();
    let doc = load_document();
    let moment = &doc["components"]["schemas"]["ClickMoment"];
    assert!(moment["pattern"].is_string(), "ClickMoment has a pattern");
    // A 503 tells the client to retry (the pool may be slow to hand out a connection on a loaded
    // machine); it says nothing about the request, so these are retried a few times.
    let post = |path: &'static str, body: Value| {
        let c = c.clone();
        async move {
            let mut reply = srv.post(&c, path, &body).await;
            for _ in 0..RETRIES_ON_503 {
                if reply.status != 503 {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                reply = srv.post(&c, path, &body).await;
            }
            reply
        }
    };
    let url = post("/urls", json!({"original_url": unique_original_url()}))
        .await
        .expect(201, "POST /urls")
        .json;
    let id = id_of(&url);
    let click = json!({"event_type": "click", "url_id": id, "details": {"user_agent":
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"}});
    let click = post("/events", click)
        .await
        .expect(201, "POST /events (a click)")
        .json;
    let click_id = id_of(&click);

    let operations = [
        format!("/urls/{id}/stats/timeseries?"),
        format!("/urls/{id}/stats/breakdown?by=os&"),
        format!("/urls/{id}/clicks.csv?"),
    ];
    let encode = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let mut failures = Vec::new();
    let mut check = |path: String, reply: Result<(u16, String), String>, want: u16| {
        let (status, text) = match reply {
            Ok(reply) => reply,
            Err(e) => {
                failures.push(format!("GET {path}: no answer ({e})"));
                return;
            }
        };
        if status != want {
            failures.push(format!("GET {path}: expected {want}, got {status}: {text}"));
        } else if status == 200 && !path.contains("clicks.csv") {
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let bad: Vec<&str> = answer_timestamps(&answer)
                .into_iter()
                .filter(|ts| !is_timestamp(ts))
                .collect();
            if answer.is_null() || !bad.is_empty() {
                failures.push(format!(
                    "GET {path}: timestamps not YYYY-MM-DDTHH:MM:SS {bad:?} in {text}"
                ));
            }
        } else if status == 200 {
            let row = text.lines().nth(1).unwrap_or("");
            let stamp = row.split(',').nth(1).unwrap_or("");
            if !row.starts_with(&format!("{click_id},")) || !is_timestamp(stamp) {
                failures.push(format!(
                    "GET {path}: the click's row missing or malformed: {text}"
                ));
            }
        }
    };
    let get = |path: String| {
        let c = c.clone();
        let url = srv.url(&path);
        async move {
            let mut attempts = 0;
            loop {
                let reply = match c.get(&url).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        match response.text().await {
                            Ok(text) => Ok((status, text)),
                            Err(e) => Err(format!("status {status}, body unreadable: {e}")),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                attempts += 1;
                match reply {
                    Ok((503, _)) if attempts <= RETRIES_ON_503 => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    reply => return reply,
                }
            }
        }
    };

    // In the document's forms, at the ends of its years: 200 with `Timestamp`s.
    let taken = [
        (0, "to=0000-01-01"),
        (0, "interval=day&to=0000-01-10"),
        (
            0,
            "from=9999-12-31T23:00:00&to=9999-12-31T23:59:59.999999999Z",
        ),
        (0, "interval=day&from=2026-12-01 23:59:59.9&to=2026-12-02Z"),
        (1, "to=0000-01-05"),
        (1, "from=9999-12-31"),
        (2, "from=0000-01-01&to=9999-12-31T23:59:59"),
        (2, "from=0000-01-01 00:00:00Z"),
    ];
    for (op, query) in taken {
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) => format!("{k}={}", encode(v)),
                None => pair.to_owned(),
            })
            .collect();
        let path = format!("{}{}", operations[op], query.join("&"));
        let reply = get(path.clone()).await;
        check(path, reply, 200);
    }
    // Outside them (signed or long years, short fields, a leap second, no such day, a zone): 422.
    let refused = [
        "+12345-01-01",
        "-0001-01-01",
        "-4714-01-01",
        "-262143-01-01",
        "+262142-12-31T23:00:00",
        "+262142-12-31T23:59:59",
        "26-12-01",
        "2026-1-1",
        "2026-12-01T10:30:60",
        "2026-02-30",
        "2026-12-01T10:00:00+01:00",
    ];
    for value in refused {
        for operation in &operations {
            let v = encode(value);
            let path = format!("{operation}from={v}&to={v}");
            let reply = get(path.clone()).await;
            check(path, reply, 422);
        }
    }
    assert!(
        failures.is_empty(),
        "{} answers differ from what openapi.json says of `from`/`to`:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
