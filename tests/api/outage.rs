//! Database outages and crashes under load. The embedded cluster behind a server is stopped and
//! started again while requests keep coming; afterwards every request that was answered 201 is in
//! the database, every redirect answered 302 is a recorded click (or a counted drop), no answer took
//! longer than the configured bounds, and the server recovered without a restart. A server killed
//! with SIGKILL under load loses no acknowledged user either.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gitrev_embedded::EmbeddedPostgres;
use serde_json::json;

use crate::harness::{
    click_events, client, code_path, connect, migrated_database, poll, read_metric,
    start_server_on, str_of, tail, unique_email, unique_original_url, wait_for_state, Reply,
    TestDir, TestServer,
};

/// The bounds the servers here run with; no answer may take longer than their sum plus slack for
/// a loaded CI machine.
const POOL_TIMEOUT_MS: &str = "1000";
const CONNECT_TIMEOUT_MS: &str = "1000";
const STATEMENT_TIMEOUT_MS: &str = "3000";
const ANSWER_BOUND: Duration = Duration::from_secs(8);
/// How long the load may take to show what a phase of a test waits for.
const LOAD_WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Outcomes {
    /// Emails answered 201.
    created: Vec<String>,
    /// Every answer: (status, took, had retry-after).
    answers: Vec<(u16, Duration, bool)>,
    redirects: u64,
    /// Requests that got no HTTP answer at all (connection refused or reset).
    unanswered: u64,
}

/// Sends POST /users and GET /{code} from `workers` tasks until `stop` is set.
fn start_load(
    srv: &TestServer,
    code: &str,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Outcomes>>, Vec<tokio::task::JoinHandle<()>>) {
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (users, redirect) = (srv.url("/users"), srv.url(&format!("/{code}")));
        let (outcomes, stop) = (outcomes.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let (sent_email, reply) = if worker % 2 == 0 {
                    let email = unique_email();
                    let body = json!({"username": "load", "email": email});
                    (Some(email), c.post(&users).json(&body).send().await)
                } else {
                    (None, c.get(&redirect).send().await)
                };
                let took = started.elapsed();
                let reply = match reply {
                    Ok(reply) => {
                        let status = reply.status().as_u16();
                        Some((status, reply.headers().contains_key("retry-after")))
                    }
                    Err(_) => None,
                };
                {
                    let mut o = outcomes
                        .lock()
                        .expect("no panics while holding the outcomes");
                    match reply {
                        Some((status, retry_after)) => {
                            o.answers.push((status, took, retry_after));
                            match (status, sent_email) {
                                (201, Some(email)) => o.created.push(email),
                                (302, None) => o.redirects += 1,
                                _ => {}
                            }
                        }
                        None => o.unanswered += 1,
                    }
                }
                // Pacing, not waiting for anything: 8 workers back to back would only queue up
                // behind each other on a 2-core machine.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    (outcomes, tasks)
}

/// Waits until what the load has seen so far satisfies `done`.
async fn wait_for_load(outcomes: &Mutex<Outcomes>, what: &str, done: impl Fn(&Outcomes) -> bool) {
    wait_for_state(outcomes, LOAD_WAIT, what, done).await;
}

fn count_status(o: &Outcomes, status: u16) -> usize {
    o.answers.iter().filter(|a| a.0 == status).count()
}

/// A fresh url created through `srv`.
async fn new_link(srv: &TestServer, c: &reqwest::Client) -> Reply {
    srv.post(c, "/urls", &json!({"original_url": unique_original_url()}))
        .await
        .expect(201, "POST /urls")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_under_load_loses_nothing_acknowledged() {
    let dir = TestDir::new("outage");
    let mut pg = EmbeddedPostgres::start(dir.path(), None, None)
        .await
        .expect("a cluster of the test's own");
    let port = pg.port();
    let url = pg.database_url();
    let srv = start_server_on(
        &url,
        &[
            ("GITREV_POOL_TIMEOUT_MS", POOL_TIMEOUT_MS),
            ("GITREV_CONNECT_TIMEOUT_MS", CONNECT_TIMEOUT_MS),
            ("GITREV_STATEMENT_TIMEOUT_MS", STATEMENT_TIMEOUT_MS),
        ],
    );
    let c = client();
    let link = new_link(&srv, &c).await;
    let code = str_of(&link.json, "short_code").to_owned();
    let url_id = link.json["id"].as_i64().expect("an id");
    srv.get(&c, &format!("/{code}"))
        .await
        .expect(302, "the link is cached");

    let stop = Arc::new(AtomicBool::new(false));
    let (outcomes, tasks) = start_load(&srv, &code, 8, stop.clone());
    wait_for_load(&outcomes, "users created and redirects served", |o| {
        o.created.len() >= 5 && o.redirects >= 5
    })
    .await;

    // PostgreSQL goes away.
    pg.stop().await;
    let why = srv.wait_for_ready(503, Duration::from_secs(10)).await;
    assert!(
        why.json["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "/ready says why: {}",
        why.text
    );
    srv.get(&c, "/health")
        .await
        .expect(200, "liveness does not depend on the database");
    // Writes fail fast while the database is known to be down: of five at once, at most one is
    // let through to probe (and may wait out the pool timeout); the others answer at once.
    // (PATCH, not POST /users: five creations would share one grouped statement, one checkout.)
    let timed = (0..5).map(|_| async {
        let started = Instant::now();
        let reply = srv
            .patch(&c, "/users/1", &json!({"username": "down"}))
            .await;
        (reply, started.elapsed())
    });
    let refused = futures_util::future::join_all(timed).await;
    for (reply, _) in &refused {
        assert_eq!(
            reply.status, 503,
            "a write while the database is down: {}",
            reply.text
        );
        assert_eq!(reply.header("retry-after"), Some("1"));
    }
    let took: Vec<Duration> = refused.iter().map(|r| r.1).collect();
    let quick = took
        .iter()
        .filter(|t| **t < Duration::from_millis(500))
        .count();
    assert!(
        quick >= 4,
        "writes fail fast while the database is down: {took:?}"
    );
    srv.get(&c, &format!("/{code}"))
        .await
        .expect(302, "a cached redirect answers while the database is down");
    // The load meets the outage: its writers are refused (one 503 per writing worker at least).
    let refused_before = count_status(&outcomes.lock().expect("the outcomes"), 503);
    wait_for_load(&outcomes, "the outage to its writers", |o| {
        count_status(o, 503) >= refused_before + 4
    })
    .await;

    // PostgreSQL comes back, at the same address; the server recovers by itself.
    let mut pg = EmbeddedPostgres::start(dir.path(), None, None)
        .await
        .expect("the cluster starts again");
    assert_eq!(
        pg.port(),
        port,
        "the embedded cluster keeps its port across restarts"
    );
    srv.wait_for_ready(200, Duration::from_secs(20)).await;
    srv.post(
        &c,
        "/users",
        &json!({"username": "back", "email": unique_email()}),
    )
    .await
    .expect(201, "writes work again without a restart");
    let created_before = outcomes.lock().expect("the outcomes").created.len();
    wait_for_load(&outcomes, "users created after the outage", |o| {
        o.created.len() >= created_before + 5
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a load task");
    }

    let overflow = read_metric(&srv, &c, "gitrev_click_queue_overflow_total").await;
    let status = srv.stop_after_signal(libc::SIGTERM);
    assert!(
        status.success(),
        "gitrev stops cleanly after the outage: {status}"
    );

    let o = std::mem::take(&mut *outcomes.lock().expect("the load is over"));
    assert!(!o.created.is_empty() && o.redirects > 0, "the load ran");
    let statuses: BTreeSet<u16> = o.answers.iter().map(|a| a.0).collect();
    assert!(
        statuses.iter().all(|s| [201, 302, 503].contains(s)),
        "only 201, 302 and 503 under an outage: {statuses:?}"
    );
    assert!(statuses.contains(&503), "the outage was seen: {statuses:?}");
    assert!(
        o.answers.iter().filter(|a| a.0 == 503).all(|a| a.2),
        "every 503 says retry-after"
    );
    let slowest = o.answers.iter().map(|a| a.1).max().unwrap_or_default();
    assert!(slowest < ANSWER_BOUND, "an answer took {slowest:?}");
    assert_eq!(o.unanswered, 0, "every request got an HTTP answer");

    assert_eq!(
        stored_users(&url, &o.created).await,
        o.created.len() as i64,
        "every user answered 201 is stored"
    );
    let clicks = click_events(&url, url_id).await;
    // The warm-up redirect and the one during the outage are clicks too.
    let served = o.redirects as f64 + 2.0;
    assert_eq!(
        clicks as f64 + overflow,
        served,
        "every redirect is a stored click or a counted drop ({clicks} stored, {overflow} dropped)"
    );
    pg.stop().await;
}

/// How many of `emails` are stored.
async fn stored_users(database_url: &str, emails: &[String]) -> i64 {
    connect(database_url)
        .await
        .query_one(
            "SELECT count(*) FROM users WHERE email = ANY($1)",
            &[&emails],
        )
        .await
        .expect("counting acknowledged users")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_under_load_loses_no_acknowledged_user() {
    let url = migrated_database("kill9").await;
    let srv = start_server_on(&url, &[]);
    let c = client();
    let link = new_link(&srv, &c).await;
    let code = str_of(&link.json, "short_code").to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let (outcomes, tasks) = start_load(&srv, &code, 8, stop.clone());
    wait_for_load(&outcomes, "20 users created", |o| o.created.len() >= 20).await;

    let status = srv.stop_with_signal(libc::SIGKILL);
    assert!(!status.success(), "SIGKILL ends it: {status}");
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a load task");
    }
    let created = std::mem::take(&mut outcomes.lock().expect("the load is over").created);
    assert!(!created.is_empty(), "the load ran");

    let again = start_server_on(&url, &[]);
    let db = connect(&url).await;
    assert_eq!(
        stored_users(&url, &created).await,
        created.len() as i64,
        "every user answered 201 survived SIGKILL"
    );
    let duplicates: i64 = db
        .query_one(
            "SELECT count(*) FROM (SELECT lower(email) FROM users GROUP BY 1 HAVING count(*) > 1) d",
            &[],
        )
        .await
        .expect("looking for duplicates")
        .get(0);
    assert_eq!(duplicates, 0, "no email twice");
    let max_id: i64 = db
        .query_one("SELECT max(id) FROM users", &[])
        .await
        .expect("the largest id")
        .get(0);
    let next = again
        .post(
            &c,
            "/users",
            &json!({"username": "after", "email": unique_email()}),
        )
        .await
        .expect(201, "POST /users after the restart");
    assert!(
        next.json["id"].as_i64().expect("an id") > max_id,
        "the sequence is past every stored id"
    );
}

#[tokio::test]
async fn a_stop_while_the_database_is_down_gives_up_on_queued_clicks_in_time() {
    let dir = TestDir::new("drain");
    let mut pg = EmbeddedPostgres::start(dir.path(), None, None)
        .await
        .expect("a cluster of the test's own");
    let url = pg.database_url();
    let srv = start_server_on(
        &url,
        &[
            ("GITREV_CLICK_DRAIN_MS", "1000"),
            ("GITREV_CLICK_FLUSH_MS", "20"),
            ("GITREV_POOL_TIMEOUT_MS", POOL_TIMEOUT_MS),
            ("GITREV_CONNECT_TIMEOUT_MS", CONNECT_TIMEOUT_MS),
        ],
    );
    let c = client();
    let link = new_link(&srv, &c).await;
    let path = code_path(&link.json);
    srv.get(&c, &path).await.expect(302, "the link is cached");

    pg.stop().await;
    // Clicks the writer is already retrying when the stop begins (flushed every 20 ms, they were
    // handed to a writer before it, which says so in the log).
    for _ in 0..20 {
        srv.get(&c, &path)
            .await
            .expect(302, "a cached redirect with the database down");
    }
    let retrying = || std::future::ready(tail(&srv.log, 1 << 20));
    poll(LOAD_WAIT, retrying, |log| {
        log.contains("cannot write clicks yet")
    })
    .await
    .unwrap_or_else(|log| panic!("the click writer never retried:\n{log}"));
    let started = Instant::now();
    let status = srv.stop_with_signal(libc::SIGTERM);
    assert!(status.success(), "gitrev stops cleanly: {status}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the stop gave up on the clicks within the drain bound ({:?})",
        started.elapsed()
    );
}
