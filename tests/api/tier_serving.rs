//! The link tier on the redirect path (issue #12): the real server with its tier file, on a
//! database of the test's own. Every server here keeps one link in its cache at most
//! (`GITREV_CACHE_CAPACITY=1`), so what it answers comes from the tier or the database, and the
//! tier's answer counts (`gitrev_link_tier_answers_total`) say which.

use std::time::Duration;

use reqwest::Client;
use serde_json::json;

use crate::harness::{
    client, connect, gitrev, labelled_value, launch, migrated_database, poll, read_metric, scrape,
    start_server_on, wait_for_metric, Launch, TestDir, TestServer,
};

const ANSWERS: &str = "gitrev_link_tier_answers_total";
/// A server's first tier is built in a child process: a second or so on a small database.
const TIER_WAIT: Duration = Duration::from_secs(30);
/// What an announcement may take to reach another replica.
const HEARD_WITHIN: Duration = Duration::from_secs(5);

/// A server on `url` answering past a one-link cache, once its tier holds `links` links and is
/// trusted.
async fn tier_server(url: &str, links: f64, env: &[(&str, &str)]) -> TestServer {
    let mut all = vec![("GITREV_CACHE_CAPACITY", "1")];
    all.extend_from_slice(env);
    let srv = start_server_on(url, &all);
    trusted_with(&srv, links).await;
    srv
}

/// A server on `url` with its data in `dir` (a tier file there is its own), answering past a
/// one-link cache.
fn serve_in(dir: &TestDir, url: &str, log_level: &str) -> TestServer {
    launch(Launch {
        dir: dir.path(),
        database_url: Some(url),
        env: &[("GITREV_CACHE_CAPACITY", "1")],
        stop_on_stdin_eof: true,
        log_level,
    })
    .expect("gitrev serve starts")
}

async fn trusted_with(srv: &TestServer, links: f64) {
    wait_for_metric(srv, "gitrev_link_tier_links", TIER_WAIT, |n| n == links).await;
    wait_for_metric(srv, "gitrev_link_tier_trusted", TIER_WAIT, |n| n == 1.0).await;
}

/// (link, absent, database): the tier's answers so far.
async fn answers(srv: &TestServer, c: &Client) -> (f64, f64, f64) {
    let text = scrape(srv, c).await;
    let of = |answer| labelled_value(&text, ANSWERS, &[("answer", answer)]);
    (of("link"), of("absent"), of("database"))
}

/// The status and `location` of `HEAD /code`.
async fn probe(srv: &TestServer, c: &Client, code: &str) -> (u16, Option<String>) {
    let reply = srv.head(c, &format!("/{code}")).await;
    (reply.status, reply.header("location").map(str::to_owned))
}

fn at(target: &str) -> (u16, Option<String>) {
    (302, Some(target.to_owned()))
}

const GONE: (u16, Option<String>) = (404, None);

/// Polls `code` on `srv` until it answers `want`, then checks it keeps answering so.
async fn settles(srv: &TestServer, c: &Client, code: &str, want: (u16, Option<String>)) {
    poll(HEARD_WITHIN, || probe(srv, c, code), |got| *got == want)
        .await
        .unwrap_or_else(|got| panic!("{code}: still {got:?}, want {want:?}"));
    for _ in 0..10 {
        assert_eq!(probe(srv, c, code).await, want, "{code} went back");
    }
}

#[tokio::test]
async fn a_replica_answers_links_and_unknown_codes_from_its_tier_without_the_database() {
    let url = migrated_database("tierserve").await;
    let db = connect(&url).await;
    db.batch_execute(
        "INSERT INTO urls (short_code, original_url)
             SELECT 'ts' || g, 'https://example.com/t/' || g FROM generate_series(1, 200) g;
         INSERT INTO urls (short_code, original_url, is_active)
             VALUES ('tsoff', 'https://example.com/off', false);
         INSERT INTO urls (short_code, original_url, max_clicks)
             VALUES ('tslim', 'https://example.com/lim', 1000);",
    )
    .await
    .expect("links");
    let srv = tier_server(&url, 202.0, &[]).await;
    let c = client();
    let before = answers(&srv, &c).await;

    for n in 1..=200 {
        assert_eq!(
            probe(&srv, &c, &format!("ts{n}")).await,
            at(&format!("https://example.com/t/{n}"))
        );
    }
    for n in 0..100 {
        assert_eq!(probe(&srv, &c, &format!("nosuch{n}")).await, GONE);
    }
    assert_eq!(probe(&srv, &c, "tsoff").await, GONE, "inactive");
    // A limited link's clicks so far are the database's: asked there.
    assert_eq!(
        probe(&srv, &c, "tslim").await,
        at("https://example.com/lim")
    );

    let after = answers(&srv, &c).await;
    // The one-link cache may have kept one of them.
    assert!(after.0 - before.0 >= 199.0, "{before:?} -> {after:?}");
    assert_eq!(after.1 - before.1, 101.0, "unknown and inactive: no query");
    assert_eq!(after.2 - before.2, 1.0, "only the limited link was asked");
}

/// A link the tier answers enters the cache on its second answer (the doorkeeper), not its first:
/// codes asked once do not churn the cache. The third request is the cache's.
#[tokio::test]
async fn a_link_the_tier_answers_enters_the_cache_on_its_second_answer() {
    let url = migrated_database("tierdoor").await;
    let db = connect(&url).await;
    db.batch_execute(
        "INSERT INTO urls (short_code, original_url) VALUES ('door1', 'https://example.com/door')",
    )
    .await
    .expect("a link");
    let srv = tier_server(&url, 1.0, &[]).await;
    let c = client();
    let hits = || async { read_metric(&srv, &c, "gitrev_link_cache_hits_total").await };
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (tier_before, hits_before) = (answers(&srv, &c).await.0, hits().await);
        assert_eq!(
            probe(&srv, &c, "door1").await,
            at("https://example.com/door")
        );
        seen.push((
            answers(&srv, &c).await.0 - tier_before,
            hits().await - hits_before,
        ));
    }
    assert_eq!(
        seen,
        [(1.0, 0.0), (1.0, 0.0), (0.0, 1.0)],
        "(tier answers, cache hits) of each request"
    );
}

/// The contract's write paths (on replica A) and hand-made SQL, each after both tiers were built:
/// A answers the new state at once, B as soon as the announcement arrives, and neither ever goes
/// back to what its tier holds. A link whose expiry passes after the build stops redirecting at
/// that moment, though its tier record never changes.
#[tokio::test]
async fn a_link_changed_after_the_build_is_never_served_from_the_tier_on_either_replica() {
    let url = migrated_database("tierchanged").await;
    let db = connect(&url).await;
    db.batch_execute(
        "INSERT INTO urls (short_code, original_url)
             SELECT 'tc' || g, 'https://example.com/c/' || g FROM generate_series(1, 6) g;
         INSERT INTO urls (short_code, original_url, expires_at)
             VALUES ('tcexp', 'https://example.com/exp',
                     (now() AT TIME ZONE 'UTC') + interval '15 seconds');",
    )
    .await
    .expect("links");
    let id = |code: &'static str| {
        let db = &db;
        async move {
            db.query_one("SELECT id FROM urls WHERE short_code = $1", &[&code])
                .await
                .expect("the url")
                .get::<_, i64>(0)
        }
    };
    let a = tier_server(&url, 7.0, &[]).await;
    let b = tier_server(&url, 7.0, &[]).await;
    let c = client();
    for srv in [&a, &b] {
        assert_eq!(probe(srv, &c, "tc1").await, at("https://example.com/c/1"));
    }

    a.patch(
        &c,
        &format!("/urls/{}", id("tc1").await),
        &json!({"original_url": "https://example.com/new1"}),
    )
    .await
    .expect(200, "retarget");
    assert_eq!(probe(&a, &c, "tc1").await, at("https://example.com/new1"));
    a.patch(
        &c,
        &format!("/urls/{}", id("tc2").await),
        &json!({"is_active": false}),
    )
    .await
    .expect(200, "deactivate");
    assert_eq!(probe(&a, &c, "tc2").await, GONE);
    a.delete(&c, &format!("/urls/{}", id("tc3").await))
        .await
        .expect(204, "delete");
    assert_eq!(probe(&a, &c, "tc3").await, GONE);
    a.patch(
        &c,
        &format!("/urls/{}", id("tc4").await),
        &json!({"forward_query": true}),
    )
    .await
    .expect(200, "forward the query");
    let forwarded = a.head(&c, "/tc4?x=1").await;
    assert_eq!(
        forwarded.header("location"),
        Some("https://example.com/c/4?x=1")
    );
    db.batch_execute(
        "UPDATE urls SET original_url = 'https://example.com/hand5' WHERE short_code = 'tc5';
         DELETE FROM urls WHERE short_code = 'tc6';",
    )
    .await
    .expect("changed by hand");

    for srv in [&a, &b] {
        settles(srv, &c, "tc1", at("https://example.com/new1")).await;
        settles(srv, &c, "tc2", GONE).await;
        settles(srv, &c, "tc3", GONE).await;
        settles(srv, &c, "tc5", at("https://example.com/hand5")).await;
        settles(srv, &c, "tc6", GONE).await;
        let forwarded = srv.head(&c, "/tc4?x=1").await;
        assert_eq!(
            forwarded.header("location"),
            Some("https://example.com/c/4?x=1")
        );
    }

    // The expiry passes while both serve the tier they built before it.
    assert_eq!(probe(&b, &c, "tcexp").await, at("https://example.com/exp"));
    for srv in [&a, &b] {
        poll(
            Duration::from_secs(25),
            || probe(srv, &c, "tcexp"),
            |got| got.0 == 404,
        )
        .await
        .unwrap_or_else(|got| panic!("tcexp still answers {got:?}"));
        assert_eq!(probe(srv, &c, "tcexp").await.0, 404);
    }
}

/// A link created through one replica is served by another at once: a code the tier does not
/// know waits for every announcement committed before the request (the fence) rather than
/// being answered 404 while its `+code` is on its way.
#[tokio::test]
async fn a_link_created_on_one_replica_is_served_by_another_at_once() {
    let url = migrated_database("tiercreated").await;
    let db = connect(&url).await;
    db.batch_execute(
        "INSERT INTO urls (short_code, original_url) VALUES ('tk0', 'https://example.com/0')",
    )
    .await
    .expect("a link");
    let a = tier_server(&url, 1.0, &[]).await;
    let b = tier_server(&url, 1.0, &[]).await;
    let c = client();
    for n in 0..30 {
        let target = format!("https://example.com/made/{n}");
        // Half with a custom code, half generated.
        let body = if n % 2 == 0 {
            json!({"original_url": target, "short_code": format!("tkc{n}")})
        } else {
            json!({"original_url": target})
        };
        let made = a.post(&c, "/urls", &body).await.expect(201, "created");
        let code = made.json["short_code"].as_str().expect("a code").to_owned();
        assert_eq!(probe(&b, &c, &code).await, at(&target), "#{n} on B");
        assert_eq!(probe(&a, &c, &code).await, at(&target), "#{n} on A");
    }
}

/// A replica restarted on its data dir serves from the tier it built before, but only what did
/// not change while it was down: it reads the change log before its first answer.
#[tokio::test]
async fn a_restarted_replica_reads_what_changed_before_it_answers_from_its_tier() {
    let url = migrated_database("tierrestart").await;
    let db = connect(&url).await;
    db.batch_execute(
        "INSERT INTO urls (short_code, original_url)
             SELECT 'tr' || g, 'https://example.com/r/' || g FROM generate_series(1, 5) g;",
    )
    .await
    .expect("links");
    let dir = TestDir::new("tierrestart");
    let start = || serve_in(&dir, &url, "info");
    let first = start();
    trusted_with(&first, 5.0).await;
    let first_log = first.log.clone();
    first.stop();
    let logged_before = std::fs::read_to_string(&first_log).expect("the log").len();

    db.batch_execute(
        "UPDATE urls SET original_url = 'https://example.com/moved' WHERE short_code = 'tr1';
         DELETE FROM urls WHERE short_code = 'tr2';
         UPDATE urls SET is_active = false WHERE short_code = 'tr3';
         INSERT INTO urls (short_code, original_url) VALUES ('tr6', 'https://example.com/r/6');",
    )
    .await
    .expect("changed while it was down");
    let second = start();
    let c = client();
    // No waiting: ready means caught up.
    assert_eq!(
        probe(&second, &c, "tr1").await,
        at("https://example.com/moved")
    );
    assert_eq!(probe(&second, &c, "tr2").await, GONE);
    assert_eq!(probe(&second, &c, "tr3").await, GONE);
    assert_eq!(
        probe(&second, &c, "tr6").await,
        at("https://example.com/r/6")
    );
    let before = answers(&second, &c).await;
    assert_eq!(
        probe(&second, &c, "tr4").await,
        at("https://example.com/r/4")
    );
    assert_eq!(
        probe(&second, &c, "tr5").await,
        at("https://example.com/r/5")
    );
    let after = answers(&second, &c).await;
    assert!(
        after.0 - before.0 >= 1.0,
        "served from the tier: {before:?} -> {after:?}"
    );
    assert_eq!(after.2, before.2, "no query for unchanged links");
    let log = std::fs::read_to_string(&second.log).expect("the log")[logged_before..].to_owned();
    assert!(log.contains("link tier opened"), "{log}");
    assert!(log.contains("caught up with the change log"), "{log}");
}

/// A tier file that fails its checks is refused with a log line; the server serves from the
/// database and replaces the file with a rebuilt one.
#[tokio::test]
async fn a_corrupt_tier_file_is_refused_and_the_database_answers_until_the_rebuild() {
    let url = migrated_database("tiercorrupt").await;
    let db = connect(&url).await;
    db.batch_execute(
        "INSERT INTO urls (short_code, original_url) VALUES ('tx1', 'https://example.com/x1')",
    )
    .await
    .expect("a link");
    let dir = TestDir::new("tiercorrupt");
    let path = dir.path().join("links.tier");
    // A real tier with one byte of its payload flipped.
    let built = gitrev(
        &["build-tier", "--out", path.to_str().expect("utf-8")],
        &url,
    );
    assert!(built.status.success(), "{built:?}");
    let mut bytes = std::fs::read(&path).expect("the tier");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x5a;
    std::fs::write(&path, &bytes).expect("corrupted");

    let srv = serve_in(&dir, &url, "warn");
    let c = client();
    assert_eq!(probe(&srv, &c, "tx1").await, at("https://example.com/x1"));
    let log = std::fs::read_to_string(&srv.log).expect("the log");
    assert!(log.contains("the link tier is refused"), "{log}");
    trusted_with(&srv, 1.0).await;
    assert!(
        gitrev_tier::Tier::open(&path).expect("rebuilt").is_some(),
        "the rebuild replaced the file"
    );
}

/// A rebuild that never finished (its child killed with a replica stopped hard) leaves its
/// temporary file, a tier's size of disk: the next start removes it, says so, and keeps the tier.
#[tokio::test]
async fn an_unfinished_rebuilds_file_is_removed_at_start() {
    let url = migrated_database("tierleft").await;
    connect(&url)
        .await
        .batch_execute(
            "INSERT INTO urls (short_code, original_url) VALUES ('lf1', 'https://example.com/l1')",
        )
        .await
        .expect("a link");
    let dir = TestDir::new("tierleft");
    let path = dir.path().join("links.tier");
    let built = gitrev(
        &["build-tier", "--out", path.to_str().expect("utf-8")],
        &url,
    );
    assert!(built.status.success(), "{built:?}");
    let leftover = dir.path().join("links.tier.tmp");
    std::fs::write(&leftover, vec![0u8; 64 * 1024]).expect("a half-written tier");

    // The tier is fresh, so no rebuild is due: only the start's clean-up can remove the file.
    let srv = serve_in(&dir, &url, "info");
    trusted_with(&srv, 1.0).await;
    assert!(!leftover.exists(), "the unfinished rebuild's file is gone");
    let log = std::fs::read_to_string(&srv.log).expect("the log");
    assert!(
        log.contains("removed an unfinished tier rebuild's file"),
        "{log}"
    );
    assert_eq!(rebuilds(&srv).await, 0.0, "the tier was kept, not rebuilt");
}

/// A data dir moved to another database: its tier says which database it was built from, and is
/// never used for another, whose own links are served instead.
#[tokio::test]
async fn a_tier_built_from_another_database_is_never_used() {
    let other = migrated_database("tierother").await;
    connect(&other)
        .await
        .batch_execute(
            "INSERT INTO urls (short_code, original_url) VALUES
                 ('onlyx', 'https://example.com/x'), ('both', 'https://example.com/x-both')",
        )
        .await
        .expect("the other database's links");
    let url = migrated_database("tierthis").await;
    connect(&url)
        .await
        .batch_execute(
            "INSERT INTO urls (short_code, original_url) VALUES
                 ('onlyy', 'https://example.com/y'), ('both', 'https://example.com/y-both')",
        )
        .await
        .expect("this database's links");
    let dir = TestDir::new("tierother");
    let path = dir.path().join("links.tier");
    let built = gitrev(
        &["build-tier", "--out", path.to_str().expect("utf-8")],
        &other,
    );
    assert!(built.status.success(), "{built:?}");

    let srv = serve_in(&dir, &url, "warn");
    let c = client();
    assert_eq!(probe(&srv, &c, "onlyx").await, GONE);
    assert_eq!(
        probe(&srv, &c, "both").await,
        at("https://example.com/y-both")
    );
    assert_eq!(probe(&srv, &c, "onlyy").await, at("https://example.com/y"));
    let log = std::fs::read_to_string(&srv.log).expect("the log");
    assert!(log.contains("built from another database"), "{log}");
    // Its own tier replaces it.
    trusted_with(&srv, 2.0).await;
    assert_eq!(probe(&srv, &c, "onlyx").await, GONE);
    assert_eq!(
        probe(&srv, &c, "both").await,
        at("https://example.com/y-both")
    );
}

async fn rebuilds(srv: &TestServer) -> f64 {
    let text = scrape(srv, &client()).await;
    labelled_value(
        &text,
        "gitrev_link_tier_rebuilds_total",
        &[("result", "ok")],
    )
}

/// Rebuilds every second while clients redirect and a link is retargeted over and over: every
/// answer is right, across several swaps.
#[tokio::test]
async fn a_rebuild_under_redirect_load_loses_no_answer() {
    let url = migrated_database("tierload").await;
    let db = connect(&url).await;
    db.batch_execute(
        "INSERT INTO urls (short_code, original_url)
             SELECT 'tl' || g, 'https://example.com/l/' || g FROM generate_series(1, 100) g;",
    )
    .await
    .expect("links");
    let moving: i64 = db
        .query_one("SELECT id FROM urls WHERE short_code = 'tl1'", &[])
        .await
        .expect("tl1")
        .get(0);
    let srv = tier_server(&url, 100.0, &[("GITREV_TIER_REBUILD_SECS", "1")]).await;
    let rebuilt_before = rebuilds(&srv).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);

    let readers = (0..4).map(|r| {
        let srv = &srv;
        async move {
            let c = client();
            let mut n = r;
            let mut checked = 0;
            while tokio::time::Instant::now() < deadline {
                n = (n * 7 + 3) % 100 + 2; // tl2..tl101: tl1 moves
                if n <= 100 {
                    assert_eq!(
                        probe(srv, &c, &format!("tl{n}")).await,
                        at(&format!("https://example.com/l/{n}"))
                    );
                }
                assert_eq!(probe(srv, &c, &format!("tlnone{n}")).await, GONE);
                checked += 1;
            }
            checked
        }
    });
    let writer = async {
        let c = client();
        let mut made = 0;
        while tokio::time::Instant::now() < deadline {
            made += 1;
            let target = format!("https://example.com/moved/{made}");
            srv.patch(
                &c,
                &format!("/urls/{moving}"),
                &json!({"original_url": target}),
            )
            .await
            .expect(200, "retarget");
            assert_eq!(probe(&srv, &c, "tl1").await, at(&target), "after {made}");
            let created = srv
                .post(&c, "/urls", &json!({"original_url": target}))
                .await
                .expect(201, "create");
            let code = created.json["short_code"].as_str().expect("a code");
            assert_eq!(probe(&srv, &c, code).await, at(&target));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        made
    };
    let (checked, made) = tokio::join!(futures_util::future::join_all(readers), writer);
    assert!(checked.iter().all(|n| *n > 10), "{checked:?}");
    assert!(made > 10, "{made}");
    let rebuilt = rebuilds(&srv).await - rebuilt_before;
    assert!(rebuilt >= 2.0, "{rebuilt} rebuilds during the load");
}

/// A replica cut off from the database (a partition: nothing closes, the LISTEN connection just
/// goes silent) stops trusting its tier once the heartbeat goes unanswered, so it never answers
/// "no such link" for what it may have missed; links changed and created meanwhile are served
/// right after the partition heals, because the change log is read before the tier is trusted
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_lost_its_listen_connection_trusts_its_tier_again_only_after_catching_up() {
    use crate::harness::proxy::{address_of, PartitionProxy};
    let url = migrated_database("tierpartition").await;
    let db = connect(&url).await;
    db.batch_execute(
        "INSERT INTO urls (short_code, original_url) VALUES
             ('tp1', 'https://example.com/p1'), ('tp2', 'https://example.com/p2')",
    )
    .await
    .expect("links");
    let proxy = PartitionProxy::start(address_of(&url)).await;
    let through_proxy = proxy.url_for(&url);
    let srv = tokio::task::block_in_place(|| {
        start_server_on(
            &through_proxy,
            &[
                ("GITREV_CACHE_CAPACITY", "1"),
                ("GITREV_STATEMENT_TIMEOUT_MS", "1000"),
                ("GITREV_DB_DEADLINE_MARGIN_MS", "500"),
            ],
        )
    });
    trusted_with(&srv, 2.0).await;
    let c = client();
    assert_eq!(probe(&srv, &c, "tp1").await, at("https://example.com/p1"));

    proxy.partition();
    wait_for_metric(&srv, "gitrev_link_listen_connected", TIER_WAIT, |n| {
        n == 0.0
    })
    .await;
    db.batch_execute(
        "UPDATE urls SET original_url = 'https://example.com/moved' WHERE short_code = 'tp1';
         INSERT INTO urls (short_code, original_url) VALUES ('tp3', 'https://example.com/p3');",
    )
    .await
    .expect("changed during the partition");
    // Not trusted: the database is asked, and it cannot answer.
    assert_eq!(probe(&srv, &c, "tp3").await.0, 503, "never a 404 for tp3");
    assert_eq!(probe(&srv, &c, "tpnone").await.0, 503);
    assert_eq!(
        probe(&srv, &c, "tp2").await.0,
        503,
        "not from the tier, which may have missed a change"
    );

    proxy.heal();
    wait_for_metric(&srv, "gitrev_link_listen_connected", TIER_WAIT, |n| {
        n == 1.0
    })
    .await;
    // Connected means caught up: the announcements lost in the partition are not needed. The
    // pool's connections cut by the partition may still fail a query or two (503), never answer
    // from the tier.
    srv.wait_for_ready(200, TIER_WAIT).await;
    for (code, want) in [
        ("tp1", at("https://example.com/moved")),
        ("tp3", at("https://example.com/p3")),
    ] {
        let got = poll(HEARD_WITHIN, || probe(&srv, &c, code), |got| got.0 != 503)
            .await
            .unwrap_or_else(|got| panic!("{code}: still {got:?}"));
        assert_eq!(got, want, "{code}");
    }
    let before = answers(&srv, &c).await;
    assert_eq!(probe(&srv, &c, "tpnone").await, GONE);
    assert_eq!(probe(&srv, &c, "tp2").await, at("https://example.com/p2"));
    let after = answers(&srv, &c).await;
    assert_eq!(
        after.1 - before.1,
        1.0,
        "trusted again: {before:?} -> {after:?}"
    );
}

/// A rebuild that cannot write its file (here a directory sits where the tier goes) is counted as
/// failed and retried while the database answers every redirect; once the path is free, the next
/// attempt succeeds and the tier is trusted.
#[tokio::test]
async fn a_failed_rebuild_is_retried_while_the_database_answers() {
    let url = migrated_database("tierfail").await;
    connect(&url)
        .await
        .batch_execute(
            "INSERT INTO urls (short_code, original_url) VALUES ('tf1', 'https://example.com/f1')",
        )
        .await
        .expect("a link");
    let dir = TestDir::new("tierfail");
    let blocker = dir.path().join("links.tier");
    std::fs::create_dir(&blocker).expect("a directory where the tier goes");
    std::fs::write(blocker.join("keep"), b"x").expect("not empty, so no rename replaces it");
    let srv = serve_in(&dir, &url, "warn");
    let c = client();
    let failed = || async {
        let text = scrape(&srv, &c).await;
        labelled_value(
            &text,
            "gitrev_link_tier_rebuilds_total",
            &[("result", "failed")],
        )
    };
    poll(TIER_WAIT, failed, |n| *n >= 1.0)
        .await
        .unwrap_or_else(|n| panic!("{n} failed rebuilds"));
    let text = scrape(&srv, &c).await;
    assert_eq!(labelled_value(&text, "gitrev_link_tier_trusted", &[]), 0.0);
    assert_eq!(
        labelled_value(
            &text,
            "gitrev_link_tier_rebuilds_total",
            &[("result", "ok")]
        ),
        0.0
    );
    let before = answers(&srv, &c).await;
    assert_eq!(probe(&srv, &c, "tf1").await, at("https://example.com/f1"));
    assert_eq!(probe(&srv, &c, "tfnone").await, GONE);
    let after = answers(&srv, &c).await;
    assert_eq!(
        after.2 - before.2,
        2.0,
        "both asked the database: {before:?} -> {after:?}"
    );
    let log = std::fs::read_to_string(&srv.log).expect("the log");
    assert!(log.contains("could not rebuild the link tier"), "{log}");

    std::fs::remove_dir_all(&blocker).expect("the path freed");
    trusted_with(&srv, 1.0).await;
    assert_eq!(probe(&srv, &c, "tf1").await, at("https://example.com/f1"));
}
