//! Link lifecycle and redirect options (docs/api.md, "Link lifecycle and redirect options"):
//! expiry by time and by clicks, the expired fallback, per-link redirect status, query forwarding,
//! tags, search, the expired filter, bulk create and QR codes — through real sockets on the real
//! database.
//!
//! Expiry at a given second is decided by `CachedLink::decide` with the instant the request is
//! served: its boundary (a microsecond before, the second itself) is tested there with an injected
//! clock (`crates/links/src/cache.rs`); here the database drives it, by moving `expires_at` to either
//! side of now, on two replicas.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::harness::{
    assert_error, assert_url, client, client_with_key, code_path, create_url_with, create_user,
    fresh_database, id_of, read_metric, server, settled_clicks, start_server_on, str_of, unique,
    unique_email, unique_original_url, TestServer,
};

/// How long a change may take to reach another replica (a NOTIFY: milliseconds).
const WAIT: Duration = Duration::from_secs(5);

/// Now on the database's clock, shifted by `seconds`, as the API writes timestamps.
async fn db_now_plus(seconds: i64) -> String {
    let db = crate::harness::connect(&server().database_url).await;
    let row = db
        .query_one(
            "SELECT to_char((now() AT TIME ZONE 'UTC') + make_interval(secs => $1::float8),
                            'YYYY-MM-DD\"T\"HH24:MI:SS')",
            &[&(seconds as f64)],
        )
        .await
        .expect("the database's clock");
    row.get(0)
}

/// Polls `HEAD path` (which takes no click) until it answers 404: a change announced by another
/// replica has arrived.
async fn head_until_404(srv: &TestServer, path: &str) {
    let c = client();
    let heard = crate::harness::poll(
        WAIT,
        || async { srv.head(&c, path).await.status },
        |status| *status == 404,
    )
    .await;
    assert_eq!(heard, Ok(404), "HEAD {path} turned 404 within {WAIT:?}");
}

/// `count` GETs of `path` at once; their statuses and locations.
async fn concurrent_gets(srv: &TestServer, path: &str, count: usize) -> Vec<(u16, Option<String>)> {
    let c = client();
    join_all((0..count).map(|_| async {
        let reply = srv.get(&c, path).await;
        (reply.status, reply.header("location").map(str::to_owned))
    }))
    .await
}

#[tokio::test]
async fn options_are_shown_null_when_unset_and_round_trip() {
    let c = client();
    let plain = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    for field in ["expires_at", "max_clicks", "expired_url", "redirect_status"] {
        assert!(plain[field].is_null(), "{field} unset: {plain}");
    }
    assert_eq!(plain["forward_query"], false);
    assert_eq!(plain["tags"], json!([]));

    let url = create_url_with(
        &c,
        json!({"original_url": unique_original_url(), "expires_at": "2031-01-02T03:04:05.678Z",
               "max_clicks": 9, "expired_url": "https://example.com/over",
               "redirect_status": 308, "forward_query": true, "tags": ["spring", "mail"]}),
    )
    .await;
    assert_eq!(
        url["expires_at"], "2031-01-02T03:04:05",
        "whole seconds, UTC"
    );
    assert_eq!(url["max_clicks"], 9);
    assert_eq!(url["expired_url"], "https://example.com/over");
    assert_eq!(url["redirect_status"], 308);
    assert_eq!(url["forward_query"], true);
    assert_eq!(url["tags"], json!(["spring", "mail"]));
    let path = format!("/urls/{}", id_of(&url));
    let read = server().get(&c, &path).await.expect(200, "GET the url");
    assert_eq!(read.json, url);

    // `null` unsets each; one `updated` event per field that changed.
    let cleared = server()
        .patch(
            &c,
            &path,
            &json!({"expires_at": null, "max_clicks": null, "expired_url": null,
                    "redirect_status": null, "forward_query": null, "tags": null}),
        )
        .await
        .expect(200, "clearing every option");
    assert_url(&cleared.json);
    for field in ["expires_at", "max_clicks", "expired_url", "redirect_status"] {
        assert!(cleared.json[field].is_null(), "{field}: {}", cleared.json);
    }
    assert_eq!(cleared.json["forward_query"], false);
    assert_eq!(cleared.json["tags"], json!([]));
    let events = server()
        .get(
            &c,
            &format!("/events?url_id={}&event_type=updated", id_of(&url)),
        )
        .await
        .expect(200, "updated events");
    let fields: BTreeSet<&str> = events
        .array()
        .iter()
        .map(|e| e["details"]["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from([
            "expires_at",
            "max_clicks",
            "expired_url",
            "redirect_status",
            "forward_query",
            "tags"
        ])
    );
    // Setting them again to the same values records nothing new.
    let again = server()
        .patch(&c, &path, &json!({"tags": []}))
        .await
        .expect(200, "no-op");
    assert_eq!(again.json["updated_at"], cleared.json["updated_at"]);
}

#[tokio::test]
async fn bad_options_are_422_naming_every_field() {
    let c = client();
    let reply = server()
        .post(
            &c,
            "/urls",
            &json!({"original_url": unique_original_url(), "expires_at": "next week",
                    "max_clicks": 0, "expired_url": "ftp://x", "redirect_status": 303,
                    "forward_query": "yes", "tags": ["ok", ""]}),
        )
        .await;
    assert_error(&reply, 422, "validation_failed");
    let named: BTreeSet<&str> = reply.json["details"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        named,
        BTreeSet::from([
            "expires_at",
            "max_clicks",
            "expired_url",
            "redirect_status",
            "forward_query",
            "tags"
        ])
    );
    let too_many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    for tags in [
        json!(too_many),
        json!(["a", "a"]),
        json!("a"),
        json!([1]),
        json!(["x".repeat(51)]),
        json!(["   "]),
        json!(["a\u{0}b"]),
    ] {
        let reply = server()
            .post(
                &c,
                "/urls",
                &json!({"original_url": unique_original_url(), "tags": tags}),
            )
            .await;
        assert_error(&reply, 422, "validation_failed");
        assert!(
            reply.json["details"]["tags"].is_string(),
            "{tags}: {}",
            reply.text
        );
    }
    // Fifty characters (not bytes) is fine.
    let url = create_url_with(
        &c,
        json!({"original_url": unique_original_url(), "tags": ["é".repeat(50)]}),
    )
    .await;
    assert_eq!(url["tags"][0].as_str().unwrap().chars().count(), 50);
}

#[tokio::test]
async fn a_link_stops_at_its_expiry_on_every_replica_and_the_fallback_records_no_click() {
    let c = client();
    let other = start_server_on(&server().database_url, &[]);
    let target = unique_original_url();
    let url = create_url_with(
        &c,
        json!({"original_url": target, "expires_at": db_now_plus(3600).await}),
    )
    .await;
    let path = code_path(&url);
    for srv in [server(), &other] {
        let reply = srv.get(&c, &path).await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (302, Some(target.as_str()))
        );
    }
    // A second ago: expired, on this replica and the other one at once.
    let past = db_now_plus(-1).await;
    server()
        .patch(
            &c,
            &format!("/urls/{}", id_of(&url)),
            &json!({"expires_at": past}),
        )
        .await
        .expect(200, "expiring it");
    for srv in [server(), &other] {
        // Polled with HEAD: a GET that beat the announcement would be a click.
        head_until_404(srv, &path).await;
        assert_error(&srv.get(&c, &path).await, 404, "expired");
    }
    // With a fallback: 302 there (whatever the link's own status), no click.
    server()
        .patch(
            &c,
            &format!("/urls/{}", id_of(&url)),
            &json!({"expired_url": "https://example.com/ended", "redirect_status": 301}),
        )
        .await
        .expect(200, "a fallback");
    for srv in [server(), &other] {
        let reply = srv.poll_get(&path, WAIT, |r| r.status != 404).await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (302, Some("https://example.com/ended"))
        );
    }
    // Back in the future: it redirects again, with its own status.
    server()
        .patch(
            &c,
            &format!("/urls/{}", id_of(&url)),
            &json!({"expires_at": db_now_plus(60).await}),
        )
        .await
        .expect(200, "unexpiring it");
    let reply = server().poll_get(&path, WAIT, |r| r.status == 301).await;
    assert_eq!(reply.header("location"), Some(target.as_str()));
    crate::harness::settle_clicks(&other).await;
    let clicks = settled_clicks(&c, id_of(&url)).await;
    assert_eq!(
        clicks.len(),
        3,
        "two redirects before, one after; no fallback: {clicks:?}"
    );
    drop(other);
}

#[tokio::test]
async fn max_clicks_five_lets_exactly_five_of_twenty_concurrent_gets_through() {
    let c = client();
    let target = unique_original_url();
    let url = create_url_with(&c, json!({"original_url": target, "max_clicks": 5})).await;
    let path = code_path(&url);
    let answers = concurrent_gets(server(), &path, 20).await;
    let through = answers.iter().filter(|(s, _)| *s == 302).count();
    let expired = answers.iter().filter(|(s, _)| *s == 404).count();
    assert_eq!((through, expired), (5, 15), "{answers:?}");
    assert!(answers
        .iter()
        .filter(|(s, _)| *s == 302)
        .all(|(_, l)| l.as_deref() == Some(target.as_str())));
    assert_error(&server().get(&c, &path).await, 404, "expired");
    assert_eq!(server().head(&c, &path).await.status, 404, "HEAD: no body");
    let clicks = settled_clicks(&c, id_of(&url)).await;
    assert_eq!(clicks.len(), 5);
    let stats = server()
        .get(&c, &format!("/urls/{}/stats", id_of(&url)))
        .await
        .expect(200, "stats");
    assert_eq!(stats.json["clicks"], 5);
    // The expired filter sees it too.
    let listed = server()
        .get(
            &c,
            &format!(
                "/urls?expired=true&short_code={}",
                str_of(&url, "short_code")
            ),
        )
        .await
        .expect(200, "expired urls");
    assert_eq!(listed.array().len(), 1);

    // Two more allowed: exactly two more go through; with a fallback the rest go there.
    server()
        .patch(
            &c,
            &format!("/urls/{}", id_of(&url)),
            &json!({"max_clicks": 7, "expired_url": "https://example.com/sold-out"}),
        )
        .await
        .expect(200, "raising the limit");
    let answers = concurrent_gets(server(), &path, 10).await;
    let to_target = answers
        .iter()
        .filter(|(_, l)| l.as_deref() == Some(target.as_str()))
        .count();
    let to_fallback = answers
        .iter()
        .filter(|(_, l)| l.as_deref() == Some("https://example.com/sold-out"))
        .count();
    assert_eq!((to_target, to_fallback), (2, 8), "{answers:?}");
    assert_eq!(
        settled_clicks(&c, id_of(&url)).await.len(),
        7,
        "no click for a fallback"
    );
}

#[tokio::test]
async fn a_limit_counts_the_other_replicas_written_clicks() {
    let c = client();
    let other = start_server_on(&server().database_url, &[]);
    let url = create_url_with(
        &c,
        json!({"original_url": unique_original_url(), "max_clicks": 4}),
    )
    .await;
    let path = code_path(&url);
    // Loaded on both, then three clicks on one.
    assert_eq!(server().get(&c, &path).await.status, 302);
    assert_eq!(other.get(&c, &path).await.status, 302);
    for _ in 0..2 {
        assert_eq!(server().get(&c, &path).await.status, 302);
    }
    // Written and announced, the other replica learns the limit is reached without reloading
    // (HEAD takes no click, so polling with it cannot overshoot while the announcement travels).
    settled_clicks(&c, id_of(&url)).await;
    head_until_404(&other, &path).await;
    assert_error(&other.get(&c, &path).await, 404, "expired");
    crate::harness::settle_clicks(&other).await;
    assert_eq!(settled_clicks(&c, id_of(&url)).await.len(), 4);
}

#[tokio::test]
async fn per_link_status_and_query_forwarding() {
    let c = client();
    let target = format!("{}?a=1#frag", unique_original_url());
    let url = create_url_with(
        &c,
        json!({"original_url": target, "redirect_status": 307, "forward_query": true}),
    )
    .await;
    let path = code_path(&url);
    let base = target.split('#').next().unwrap();
    let reply = server()
        .get(
            &c,
            &format!("{path}?utm_source=mail&q=caf%C3%A9+au+lait&a=2"),
        )
        .await;
    assert_eq!(reply.status, 307);
    assert_eq!(
        reply.header("location").unwrap(),
        format!("{base}&utm_source=mail&q=caf%C3%A9+au+lait&a=2#frag")
    );
    let head = server().head(&c, &format!("{path}?x=1")).await;
    assert_eq!(
        (head.status, head.header("location").map(str::to_owned)),
        (307, Some(format!("{base}&x=1#frag")))
    );
    // No query: the target as it is.
    let reply = server().get(&c, &path).await;
    assert_eq!(reply.header("location"), Some(target.as_str()));
    // A link that does not forward ignores the query.
    let plain = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let reply = server()
        .get(&c, &format!("{}?utm_source=x", code_path(&plain)))
        .await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (302, plain["original_url"].as_str())
    );
    assert_eq!(
        settled_clicks(&c, id_of(&url)).await.len(),
        2,
        "HEAD records none"
    );
}

/// The short codes of `GET /urls?query`.
async fn listed_codes(query: &str) -> BTreeSet<String> {
    let reply = server()
        .get(&client(), &format!("/urls?{query}"))
        .await
        .expect(200, query);
    assert_eq!(reply.total_count(), reply.array().len() as i64, "{query}");
    reply
        .array()
        .iter()
        .map(|u| {
            assert_url(u);
            str_of(u, "short_code").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn tags_search_and_expired_filter_and_combine() {
    let c = client();
    let run = unique("lt").to_lowercase().replace('-', "");
    let (a, b) = (format!("{run}a"), format!("{run}b"));
    let make = |body: Value| async {
        str_of(&create_url_with(&client(), body).await, "short_code").to_owned()
    };
    let both = make(
        json!({"original_url": unique_original_url(), "tags": [a, b],
                           "title": format!("Spring SALE {run}")}),
    )
    .await;
    let only_a = make(
        json!({"original_url": format!("https://shop.example/{run}/Winter"),
                             "tags": [a]}),
    )
    .await;
    let only_b = make(json!({"original_url": unique_original_url(), "tags": [b],
                             "expires_at": "2001-01-01T00:00:00"}))
    .await;
    let custom = format!("Q{}", &run[run.len() - 8..]);
    let coded = make(
        json!({"original_url": unique_original_url(), "short_code": custom,
                            "title": "100% off_now"}),
    )
    .await;
    let set = |codes: &[&String]| codes.iter().map(|c| c.to_string()).collect::<BTreeSet<_>>();

    assert_eq!(
        listed_codes(&format!("tag={a}")).await,
        set(&[&both, &only_a])
    );
    assert_eq!(
        listed_codes(&format!("tag={b}")).await,
        set(&[&both, &only_b])
    );
    assert_eq!(
        listed_codes(&format!("tag={a}&tag={b}")).await,
        set(&[&both])
    );
    assert_eq!(
        listed_codes(&format!("tag={b}&expired=true")).await,
        set(&[&only_b])
    );
    assert_eq!(
        listed_codes(&format!("tag={b}&expired=false")).await,
        set(&[&both])
    );
    // Search: title, target and code, any case; `%` and `_` are literal.
    assert_eq!(
        listed_codes(&format!("q={}", format!("sale {run}").to_uppercase())).await,
        set(&[&both])
    );
    assert_eq!(
        listed_codes(&format!("q={}/winter", run.to_uppercase())).await,
        set(&[&only_a])
    );
    assert_eq!(
        listed_codes(&format!("q={}", custom.to_lowercase())).await,
        set(&[&coded])
    );
    assert_eq!(
        listed_codes(&format!("q={run}&tag={a}&page=1&per_page=10")).await,
        set(&[&both, &only_a])
    );
    // Pages of a search count every match, a page past the last one too.
    for (page, rows) in [(1, 1), (2, 1), (3, 0)] {
        let reply = server()
            .get(&c, &format!("/urls?q={run}&page={page}&per_page=1"))
            .await
            .expect(200, "a page of a search");
        assert_eq!(
            (reply.array().len(), reply.total_count()),
            (rows, 2),
            "page {page}"
        );
    }
    let pct = listed_codes("q=100%25%20off_now").await;
    assert!(pct.contains(&coded), "{pct:?}");
    assert!(
        listed_codes("q=100%25%20offXnow").await.is_empty(),
        "`_` is literal"
    );
    // Bad values; a control character (the separator between the searched columns among them)
    // is refused, so no match spans two columns.
    for bad in [
        "expired=soon",
        "q=",
        "q=%20%20",
        &format!("q=Winter%1F{run}"),
        "q=a%0Ab",
        &format!("tag={}", "x".repeat(51)),
    ] {
        let reply = server().get(&c, &format!("/urls?{bad}")).await;
        assert_error(&reply, 422, "validation_failed");
    }
}

/// Searches through `srv` for every page of `q` at `per_page`, one past the last: each page's ids
/// and count against `matches` (every match's id, ascending).
async fn assert_search_pages(srv: &TestServer, q: &str, matches: &[i64], per_page: usize) {
    let c = client();
    for page in 1..=matches.len().div_ceil(per_page) + 1 {
        let reply = srv
            .get(&c, &format!("/urls?q={q}&page={page}&per_page={per_page}"))
            .await
            .expect(200, "a page of a search");
        let ids: Vec<i64> = reply.array().iter().map(id_of).collect();
        let want: Vec<i64> = matches
            .iter()
            .copied()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect();
        assert_eq!(ids, want, "page {page} of {per_page}");
        assert_eq!(
            reply.total_count(),
            matches.len() as i64,
            "page {page} of {per_page}"
        );
    }
}

/// A search runs in two halves at once (schema 8: alternate blocks of 256 ids, two indexes, two
/// connections) when a second connection is free, else as one statement: both answer every page
/// alike, over matches spread across blocks of both halves and across their boundaries.
#[tokio::test]
async fn a_search_in_two_halves_and_in_one_statement_answer_alike() {
    let db = fresh_database("halves").await;
    let srv = start_server_on(&db, &[]);
    let one_connection = start_server_on(&db, &[("GITREV_POOL_SIZE", "1")]);
    let pg = crate::harness::connect(&db).await;
    let c = client();
    let run = unique("hv").to_lowercase().replace('-', "");
    let mut matches = Vec::new();
    // Ids 251…, 501…, 761…, 1101…, 1531…: blocks 0 to 6, three groups across a block's edge.
    for start in [250, 500, 760, 1100, 1530] {
        pg.batch_execute(&format!(
            "SELECT setval(pg_get_serial_sequence('urls', 'id'), {start})"
        ))
        .await
        .expect("moving the url ids on");
        let body: Vec<Value> = (0..12)
            .map(|i| {
                let title = if i % 3 == 2 {
                    format!("other {i}")
                } else {
                    format!("Match {} {i}", run.to_uppercase())
                };
                json!({"original_url": unique_original_url(), "title": title})
            })
            .collect();
        let reply = srv
            .post(&c, "/urls/bulk", &json!(body))
            .await
            .expect(201, "bulk");
        for url in reply.json["created"].as_array().expect("created urls") {
            if url["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("Match"))
            {
                matches.push(id_of(url));
            }
        }
    }
    matches.sort_unstable();
    assert_eq!(matches.len(), 40);
    let blocks: BTreeSet<i64> = matches.iter().map(|id| id / 256).collect();
    assert_eq!(
        blocks.iter().map(|b| b % 2).collect::<BTreeSet<_>>(),
        BTreeSet::from([0, 1]),
        "matches in both halves: blocks {blocks:?}"
    );
    let searches = |text: &str, plan: &str| {
        crate::harness::labelled_value(text, "gitrev_url_searches_total", &[("plan", plan)])
    };
    for per_page in [1, 7, 40, 100] {
        assert_search_pages(&srv, &run, &matches, per_page).await;
        assert_search_pages(&one_connection, &run, &matches, per_page).await;
    }
    // Each server searched 41 + 7 + 2 + 2 times (every page, and the one past the last).
    let text = crate::harness::scrape(&srv, &c).await;
    assert!(
        searches(&text, "halves") >= 1.0,
        "the replica with a pool searched in halves:\n{text}"
    );
    let text = crate::harness::scrape(&one_connection, &c).await;
    assert_eq!(
        (searches(&text, "halves"), searches(&text, "whole")),
        (0.0, 52.0),
        "one connection: every search in one statement"
    );
    // A page past the first 10,000 matches is cut from the whole: one statement.
    let before = searches(&crate::harness::scrape(&srv, &c).await, "whole");
    let reply = srv
        .get(&c, &format!("/urls?q={run}&page=1001&per_page=20"))
        .await
        .expect(200, "a deep page");
    assert_eq!((reply.array().len(), reply.total_count()), (0, 40));
    let after = searches(&crate::harness::scrape(&srv, &c).await, "whole");
    assert_eq!(after - before, 1.0, "the deep page ran as one statement");
}

/// A search in halves whose statements run out of time (the table locked) answers 503 with a JSON
/// error, and once the table is free the next one answers in full on the same connections.
#[tokio::test]
async fn a_search_in_halves_past_its_statement_timeout_is_503_and_the_next_answers_in_full() {
    let db = fresh_database("halvestimeout").await;
    let srv = start_server_on(&db, &[("GITREV_STATEMENT_TIMEOUT_MS", "500")]);
    let c = client();
    let run = unique("ht").to_lowercase().replace('-', "");
    let body: Vec<Value> = (0..6)
        .map(|i| json!({"original_url": unique_original_url(), "title": format!("{run} {i}")}))
        .collect();
    srv.post(&c, "/urls/bulk", &json!(body))
        .await
        .expect(201, "bulk");
    let halves = || async {
        crate::harness::labelled_value(
            &crate::harness::scrape(&srv, &c).await,
            "gitrev_url_searches_total",
            &[("plan", "halves")],
        )
    };
    // Until the pool holds a second idle connection, searches run whole.
    let warmed = crate::harness::poll(
        WAIT,
        || async {
            let reply = srv.get(&c, &format!("/urls?q={run}")).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            halves().await
        },
        |n| *n >= 1.0,
    )
    .await;
    assert!(warmed.is_ok(), "a search ran in halves: {warmed:?}");

    let lock = crate::harness::connect(&db).await;
    lock.batch_execute("BEGIN; LOCK TABLE urls IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("locking urls");
    let before = halves().await;
    let reply = srv.get(&c, &format!("/urls?q={run}")).await;
    assert_error(&reply, 503, "unavailable");
    assert_eq!(
        halves().await - before,
        1.0,
        "the failed search ran in halves"
    );
    lock.batch_execute("ROLLBACK")
        .await
        .expect("unlocking urls");

    let reply = srv
        .get(&c, &format!("/urls?q={run}"))
        .await
        .expect(200, "a search after the lock");
    assert_eq!((reply.array().len(), reply.total_count()), (6, 6));
}

#[tokio::test]
async fn bulk_create_answers_each_element() {
    let c = client();
    let user = create_user(&c).await;
    let taken = create_url_with(
        &c,
        json!({"original_url": unique_original_url(),
                                           "short_code": unique("taken")}),
    )
    .await;
    let code = unique("bulk");
    let body = json!([
        {"original_url": unique_original_url(), "user_id": id_of(&user), "tags": ["bulk"]},
        {"original_url": unique_original_url(), "short_code": code},
        {"original_url": unique_original_url(), "short_code": code},
        {"original_url": unique_original_url(), "short_code": taken["short_code"]},
        {"original_url": unique_original_url(), "short_code": "users"},
        {"original_url": "not a url"},
        {"original_url": unique_original_url(), "user_id": i64::MAX},
        "a string",
        {"original_url": unique_original_url(), "max_clicks": 3, "forward_query": true},
    ]);
    let reply = server()
        .post(&c, "/urls/bulk", &body)
        .await
        .expect(201, "bulk");
    let created = reply.json["created"].as_array().unwrap();
    assert_eq!(created.len(), 3, "{}", reply.text);
    for url in created {
        assert_url(url);
    }
    assert_eq!(created[0]["user_id"], user["id"]);
    assert_eq!(created[0]["tags"], json!(["bulk"]));
    assert_eq!(created[1]["short_code"], code);
    assert_eq!(created[2]["max_clicks"], 3);
    let errors: Vec<(i64, &str)> = reply.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
            (e["index"].as_i64().unwrap(), e["code"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        errors,
        [
            (2, "conflict"),
            (3, "conflict"),
            (4, "validation_failed"),
            (5, "validation_failed"),
            (6, "not_found"),
            (7, "invalid_body"),
        ]
    );
    let details = &reply.json["errors"][2]["details"];
    assert!(details["short_code"].is_string(), "{details}");
    // What was created redirects and reads back; the refused made nothing.
    for url in created {
        let read = server()
            .get(&c, &format!("/urls/{}", id_of(url)))
            .await
            .expect(200, "read");
        assert_eq!(&read.json, url);
        assert_eq!(server().get(&c, &code_path(url)).await.status, 302);
    }
    assert_eq!(listed_codes(&format!("short_code={code}")).await.len(), 1);
}

#[tokio::test]
async fn bulk_refuses_oversized_batches_and_non_arrays() {
    let c = client();
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"original_url": format!("https://example.com/{i}")}))
        .collect();
    let reply = server().post(&c, "/urls/bulk", &json!(many)).await;
    assert_error(&reply, 413, "payload_too_large");
    for body in [
        json!({"original_url": "https://example.com"}),
        json!("x"),
        json!(null),
    ] {
        let reply = server().post(&c, "/urls/bulk", &body).await;
        assert_error(&reply, 400, "invalid_body");
    }
    let reply = crate::harness::read_reply(
        c.post(server().url("/urls/bulk"))
            .body("[{\"original_url\": "),
    )
    .await;
    assert_error(&reply, 400, "invalid_body");
    let empty = server()
        .post(&c, "/urls/bulk", &json!([]))
        .await
        .expect(201, "empty");
    assert_eq!(empty.json, json!({"created": [], "errors": []}));
    // A thousand is fine, in order.
    let run = unique("thousand");
    let batch: Vec<Value> = (0..1000)
        .map(|i| json!({"original_url": format!("https://example.com/{run}/{i}"), "tags": [run]}))
        .collect();
    let reply = server()
        .post(&c, "/urls/bulk", &json!(batch))
        .await
        .expect(201, "a thousand");
    let created = reply.json["created"].as_array().unwrap();
    assert_eq!(created.len(), 1000);
    assert!(created
        .iter()
        .enumerate()
        .all(|(i, u)| u["original_url"] == format!("https://example.com/{run}/{i}")));
    let listed = server()
        .get(&c, &format!("/urls?tag={run}&per_page=1"))
        .await
        .expect(200, "listed");
    assert_eq!(listed.total_count(), 1000);
}

/// `GET path` on the shared server: status, content type and the body's bytes.
async fn get_bytes(path: &str) -> (u16, Option<String>, Vec<u8>) {
    let response = client()
        .get(server().url(path))
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response.bytes().await.expect("a body").to_vec();
    (status, content_type, bytes)
}

/// The text of the one QR code in a greyscale image.
fn read_qr(pixels: &[u8], width: usize, height: usize) -> String {
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| pixels[y * width + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    grids[0].decode().expect("the code decodes").1
}

fn decode_png(bytes: &[u8]) -> String {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    buf.truncate(info.buffer_size());
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    read_qr(&buf, info.width as usize, info.height as usize)
}

fn decode_svg(svg: &str) -> String {
    use resvg::{tiny_skia, usvg};
    let tree = usvg::Tree::from_str(svg, &usvg::Options::default()).expect("an SVG");
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).expect("a pixmap");
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    let grey: Vec<u8> = pixmap.pixels().iter().map(|p| p.red()).collect();
    read_qr(&grey, size.width() as usize, size.height() as usize)
}

#[tokio::test]
async fn qr_codes_decode_back_to_the_short_link() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let code = str_of(&url, "short_code");
    let id = id_of(&url);
    // No GITREV_PUBLIC_URL: the request's host.
    let want = server().url(&format!("/{code}"));
    let (status, content_type, png) = get_bytes(&format!("/urls/{id}/qr.png?size=300")).await;
    assert_eq!((status, content_type.as_deref()), (200, Some("image/png")));
    assert_eq!(decode_png(&png), want);
    let (_, _, png) = get_bytes(&format!("/urls/{id}/qr.png")).await;
    assert_eq!(decode_png(&png), want, "the default size");
    let reply = server().get(&c, &format!("/urls/{id}/qr.svg")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("image/svg+xml"));
    assert_eq!(decode_svg(&reply.text), want);

    for bad in ["size=63", "size=2049", "size=big"] {
        let reply = server().get(&c, &format!("/urls/{id}/qr.png?{bad}")).await;
        assert_error(&reply, 422, "validation_failed");
    }
    assert_error(
        &server().get(&c, "/urls/999999999999/qr.svg").await,
        404,
        "not_found",
    );

    // With GITREV_PUBLIC_URL, that origin whatever the host.
    let public = start_server_on(
        &server().database_url,
        &[("GITREV_PUBLIC_URL", "https://go.example.com/")],
    );
    let reply = public.get(&c, &format!("/urls/{id}/qr.svg")).await;
    assert_eq!(
        decode_svg(&reply.text),
        format!("https://go.example.com/{code}")
    );
    let before = read_metric(&public, &c, "gitrev_clicks_received_total").await;
    assert_eq!(before, 0.0, "a QR code is not a click");
}

#[tokio::test]
async fn a_bound_key_bulk_creates_within_its_user() {
    const TOKEN: &str = "links-bulk-token-31d7";
    let db = fresh_database("bulkbound").await;
    let srv = start_server_on(&db, &[("GITREV_API_TOKEN", TOKEN)]);
    let admin = client_with_key(TOKEN);
    let mut users = Vec::new();
    for name in ["owner", "other"] {
        let user = srv
            .post(
                &admin,
                "/users",
                &json!({"username": name, "email": unique_email()}),
            )
            .await
            .expect(201, name);
        users.push(id_of(&user.json));
    }
    let (owner, other) = (users[0], users[1]);
    let key = srv
        .post(
            &admin,
            "/keys",
            &json!({"name": "bound", "scope": "write", "user_id": owner}),
        )
        .await
        .expect(201, "a bound key");
    let bound = client_with_key(str_of(&key.json, "key"));
    let reply = srv
        .post(
            &bound,
            "/urls/bulk",
            &json!([
                {"original_url": unique_original_url()},
                {"original_url": unique_original_url(), "user_id": other},
                {"original_url": unique_original_url(), "user_id": owner},
            ]),
        )
        .await
        .expect(201, "bulk with a bound key");
    let created = reply.json["created"].as_array().unwrap();
    assert_eq!(created.len(), 2, "{}", reply.text);
    assert!(
        created.iter().all(|u| u["user_id"] == owner),
        "{}",
        reply.text
    );
    assert_eq!(reply.json["errors"][0]["index"], 1);
    assert_eq!(reply.json["errors"][0]["code"], "not_found");
    // A read key may not.
    let read = srv
        .post(&admin, "/keys", &json!({"name": "reader", "scope": "read"}))
        .await
        .expect(201, "a read key");
    let reply = srv
        .post(
            &client_with_key(str_of(&read.json, "key")),
            "/urls/bulk",
            &json!([]),
        )
        .await;
    assert_error(&reply, 403, "forbidden");
}
