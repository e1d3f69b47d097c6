//! A partitioned database: PostgreSQL behind a proxy (`proxy::PartitionProxy`) that stops forwarding
//! without closing anything, after writes left live connections idle in the pool. Nothing refuses,
//! nothing resets: only the service's own deadlines can end a wait. Every request must still be
//! answered within the deadline (statement timeout + margin) plus one watchdog tick and slack for a
//! loaded CI machine; cached redirects keep answering; clicks taken meanwhile are written after the
//! partition heals; and the service recovers without a restart.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::proxy::{address_of, PartitionProxy};
use crate::harness::{
    click_events, client, client_with_key, connect, fresh_database, gitrev_with_env, id_of,
    output_text, poll, read_metric, read_raw_reply, settle_clicks, start_server_on, str_of,
    unique_email, unique_original_url, wait_for_metric, wait_for_state, Reply, TestServer,
};

/// The default deadline: `GITREV_STATEMENT_TIMEOUT_MS` (2500) + `GITREV_DB_DEADLINE_MARGIN_MS` (500).
const DEFAULT_DEADLINE: Duration = Duration::from_millis(3000);
/// What a loaded 2-core CI machine may add to a bound (a watchdog tick is at most 150 ms of it).
const SLACK: Duration = Duration::from_millis(1500);
/// How long a change of state (a partition felt, a connection back) may take to show.
const STATE_WAIT: Duration = Duration::from_secs(20);

/// A server of its own on a fresh database, reached only through a partitionable proxy.
async fn server_behind_proxy(extra_env: &[(&str, &str)]) -> (PartitionProxy, TestServer, String) {
    let database_url = fresh_database("partition").await;
    let proxy = PartitionProxy::start(address_of(&database_url)).await;
    let through_proxy = proxy.url_for(&database_url);
    // Blocking (it polls the server's ready file): the proxy keeps running on the other workers.
    let srv = tokio::task::block_in_place(|| start_server_on(&through_proxy, extra_env));
    (proxy, srv, database_url)
}

/// Several concurrent writes, so that the pool holds more than one live connection when the
/// partition begins.
async fn warm_pool(srv: &TestServer, c: &reqwest::Client) -> i64 {
    let user = srv
        .post(
            c,
            "/users",
            &json!({"username": "warm", "email": unique_email()}),
        )
        .await
        .expect(201, "POST /users before the partition");
    let user_id = id_of(&user.json);
    let path = format!("/users/{user_id}");
    // New connections take a while in a debug build (SCRAM), so a burst may meet a 503 while the
    // pool fills; the partition must begin with idle connections, whatever it took.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let patches = (0..4).map(|i| {
            let path = &path;
            async move {
                srv.patch(c, path, &json!({"username": format!("warm-{i}")}))
                    .await
            }
        });
        futures_util::future::join_all(patches).await;
        let idle = read_metric(srv, c, "gitrev_db_pool_idle_connections").await;
        if idle >= 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pool holds live idle connections before the partition: {idle}"
        );
    }
    user_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_a_partition_writes_and_ready_answer_503_within_the_deadline_and_recover() {
    let (proxy, srv, database_url) = server_behind_proxy(&[]).await;
    let c = client();
    let user_id = warm_pool(&srv, &c).await;
    let link = srv
        .post(&c, "/urls", &json!({"original_url": unique_original_url()}))
        .await
        .expect(201, "POST /urls before the partition");
    let (url_id, code) = (
        id_of(&link.json),
        str_of(&link.json, "short_code").to_owned(),
    );
    srv.get(&c, &format!("/{code}"))
        .await
        .expect(302, "the link is cached before the partition");
    settle_clicks(&srv).await;

    proxy.partition();
    let started = Instant::now();
    let timed = |reply: Reply| (reply, started.elapsed());
    let (srv_ref, c_ref, user_path) = (&srv, &c, format!("/users/{user_id}"));
    let user_path = &user_path;
    let (creations, patches, ready, redirect) = tokio::join!(
        futures_util::future::join_all((0..5).map(|_| async {
            let body = json!({"username": "partitioned", "email": unique_email()});
            timed(srv.post(&c, "/users", &body).await)
        })),
        futures_util::future::join_all((0..3).map(|i| async move {
            let body = json!({"username": format!("partitioned-{i}")});
            timed(srv_ref.patch(c_ref, user_path, &body).await)
        })),
        async { timed(srv.get(&c, "/ready").await) },
        async { timed(srv.get(&c, &format!("/{code}")).await) },
    );
    let bound = DEFAULT_DEADLINE + SLACK;
    for (reply, took) in creations.iter().chain(&patches) {
        assert_eq!(
            reply.status, 503,
            "a write under a partition: {}",
            reply.text
        );
        assert_eq!(
            reply.header("retry-after"),
            Some("1"),
            "503 says when to retry"
        );
        assert!(
            *took <= bound,
            "a write under a partition took {took:?} (bound {bound:?})"
        );
    }
    let (ready, took) = ready;
    assert_eq!(
        ready.status, 503,
        "/ready under a partition: {}",
        ready.text
    );
    assert!(took <= bound, "/ready under a partition took {took:?}");
    assert_eq!(
        ready.json["reason"], "database unavailable",
        "/ready names the condition, not the driver's text"
    );
    let (redirect, took) = redirect;
    assert_eq!(redirect.status, 302, "a cached redirect under a partition");
    assert!(
        took < Duration::from_secs(1),
        "a cached redirect does not wait for the database: {took:?}"
    );
    assert!(
        read_metric(&srv, &c, "gitrev_db_deadlines_passed_total").await >= 1.0,
        "the passed deadline is counted"
    );

    // Known down now: writes fail fast (at most one of a burst waits, as the probe).
    let burst = futures_util::future::join_all((0..4).map(|i| async move {
        let at = Instant::now();
        let body = json!({"username": format!("fast-{i}")});
        let reply = srv_ref.patch(c_ref, user_path, &body).await;
        (reply.status, at.elapsed())
    }))
    .await;
    assert!(burst.iter().all(|(status, _)| *status == 503), "{burst:?}");
    let quick = burst
        .iter()
        .filter(|(_, took)| *took < Duration::from_millis(500))
        .count();
    assert!(
        quick >= 3,
        "writes fail fast once the database went silent: {burst:?}"
    );

    // Clicks taken during the partition wait in the queue.
    for _ in 0..3 {
        srv.get(&c, &format!("/{code}"))
            .await
            .expect(302, "a redirect during the partition");
    }

    proxy.heal();
    srv.wait_for_ready(200, Duration::from_secs(10)).await;
    srv.post(
        &c,
        "/users",
        &json!({"username": "after", "email": unique_email()}),
    )
    .await
    .expect(201, "a write after the partition healed, without a restart");
    settle_clicks(&srv).await;
    assert_eq!(
        click_events(&database_url, url_id).await,
        5,
        "the clicks taken during the partition are written after it, once each"
    );
    let stats = srv
        .get(&c, &format!("/urls/{url_id}/stats"))
        .await
        .expect(200, "GET /urls/{id}/stats");
    assert_eq!(stats.json["clicks"], 5, "{}", stats.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_during_grouped_user_inserts_never_acknowledges_a_lost_row_nor_writes_one_twice(
) {
    let short = [
        ("GITREV_STATEMENT_TIMEOUT_MS", "1000"),
        ("GITREV_DB_DEADLINE_MARGIN_MS", "500"),
    ];
    let (proxy, srv, database_url) = server_behind_proxy(&short).await;
    let c = client();
    warm_pool(&srv, &c).await;

    #[derive(Default)]
    struct Answers {
        created: Vec<String>,
        unavailable: Vec<String>,
        other: Vec<(u16, String)>,
        slowest: Duration,
    }
    let answers = Arc::new(Mutex::new(Answers::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (answers, stop, url) = (answers.clone(), stop.clone(), srv.url("/users"));
            tokio::spawn(async move {
                let c = client();
                while !stop.load(Ordering::Relaxed) {
                    // Every email is sent once: a 409 would mean the service wrote it twice.
                    let email = unique_email();
                    let at = Instant::now();
                    let reply = c
                        .post(&url)
                        .json(&json!({"username": "grouped", "email": email}))
                        .send()
                        .await
                        .expect("every request is answered");
                    let (status, took) = (reply.status().as_u16(), at.elapsed());
                    let body = reply.text().await.unwrap_or_default();
                    let mut a = answers.lock().expect("no panic while holding the answers");
                    a.slowest = a.slowest.max(took);
                    match status {
                        201 => a.created.push(email),
                        503 => a.unavailable.push(email),
                        _ => a.other.push((status, body)),
                    }
                }
            })
        })
        .collect();
    wait_for_state(&answers, STATE_WAIT, "writes before the partition", |a| {
        a.created.len() >= 16
    })
    .await;
    proxy.partition();
    // Felt: a statement in flight was cut at its deadline, and the workers met 503s.
    wait_for_metric(&srv, "gitrev_db_deadlines_passed_total", STATE_WAIT, |n| {
        n >= 1.0
    })
    .await;
    wait_for_state(&answers, STATE_WAIT, "503s under the partition", |a| {
        a.unavailable.len() >= 16
    })
    .await;
    let created_before_heal = answers.lock().expect("the answers").created.len();
    proxy.heal();
    srv.wait_for_ready(200, Duration::from_secs(10)).await;
    wait_for_state(
        &answers,
        STATE_WAIT,
        "writes after the partition healed",
        |a| a.created.len() >= created_before_heal + 16,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("a load worker");
    }

    let a = std::mem::take(&mut *answers.lock().expect("the workers are done"));
    assert!(
        a.other.is_empty(),
        "only 201 and 503 under a partition: {:?}",
        a.other
    );
    assert!(a.unavailable.len() >= 16, "the partition was felt");
    assert!(
        a.created.len() >= 32,
        "writes went through before and after: {}",
        a.created.len()
    );
    let bound = Duration::from_millis(1500) + SLACK;
    assert!(
        a.slowest <= bound,
        "no answer took longer than {bound:?}: {:?}",
        a.slowest
    );
    let db = connect(&database_url).await;
    let rows = db
        .query("SELECT email FROM users WHERE username = 'grouped'", &[])
        .await
        .unwrap_or_else(|e| panic!("reading users: {e}"));
    let stored: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let distinct: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(distinct.len(), stored.len(), "no row written twice");
    for email in &a.created {
        assert!(distinct.contains(email), "acknowledged {email} is stored");
    }
    let sent: BTreeSet<&String> = a.created.iter().chain(&a.unavailable).collect();
    assert!(
        distinct.iter().all(|e| sent.contains(e)),
        "every stored row was one of ours"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_whose_listen_connection_went_silent_clears_its_cache_after_reconnecting() {
    let short = [
        ("GITREV_STATEMENT_TIMEOUT_MS", "1000"),
        ("GITREV_DB_DEADLINE_MARGIN_MS", "500"),
    ];
    let (proxy, srv, database_url) = server_behind_proxy(&short).await;
    let c = client();
    let before = unique_original_url();
    let link = srv
        .post(&c, "/urls", &json!({"original_url": before}))
        .await
        .expect(201, "POST /urls");
    let code = str_of(&link.json, "short_code").to_owned();
    let reply = srv.get(&c, &format!("/{code}")).await.expect(302, "cached");
    assert_eq!(reply.header("location"), Some(before.as_str()));
    let listen = "gitrev_link_listen_connected";
    wait_for_metric(&srv, listen, STATE_WAIT, |v| v == 1.0).await;

    proxy.partition();
    wait_for_metric(&srv, listen, STATE_WAIT, |v| v == 0.0).await;
    // Changed behind the replica's back: no announcement can reach it.
    let after = unique_original_url();
    connect(&database_url)
        .await
        .execute(
            "UPDATE urls SET original_url = $1 WHERE short_code = $2",
            &[&after, &code],
        )
        .await
        .unwrap_or_else(|e| panic!("updating the url directly: {e}"));
    let reply = srv
        .get(&c, &format!("/{code}"))
        .await
        .expect(302, "the cached link answers during the partition");
    assert_eq!(reply.header("location"), Some(before.as_str()));

    proxy.heal();
    wait_for_metric(&srv, listen, STATE_WAIT, |v| v == 1.0).await;
    // The click of the redirect above met the partition: the pool recovers with the next probe.
    srv.wait_for_ready(200, Duration::from_secs(10)).await;
    let reply = srv
        .get(&c, &format!("/{code}"))
        .await
        .expect(302, "after the LISTEN connection came back");
    assert_eq!(
        reply.header("location"),
        Some(after.as_str()),
        "what was cached before the silence is not trusted after it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_stopping_under_a_partition_stops_within_its_bound() {
    let settings = [
        ("GITREV_STATEMENT_TIMEOUT_MS", "1000"),
        ("GITREV_DB_DEADLINE_MARGIN_MS", "500"),
        ("GITREV_CLICK_DRAIN_MS", "2000"),
        ("GITREV_SHUTDOWN_GRACE_MS", "2000"),
    ];
    let (proxy, srv, _) = server_behind_proxy(&settings).await;
    let c = client();
    warm_pool(&srv, &c).await;
    let link = srv
        .post(&c, "/urls", &json!({"original_url": unique_original_url()}))
        .await
        .expect(201, "POST /urls");
    let code = str_of(&link.json, "short_code").to_owned();
    srv.get(&c, &format!("/{code}"))
        .await
        .expect(302, "cached before the partition");
    proxy.partition();
    for _ in 0..5 {
        srv.get(&c, &format!("/{code}"))
            .await
            .expect(302, "a click to drain");
    }
    // A write in flight when the stop begins: its handler is reading its body.
    let body = json!({"username": "stopping", "email": unique_email()});
    let mut in_flight = srv.send_in_flight("POST", "/users", &body).await;
    let started = Instant::now();
    let status = tokio::task::block_in_place(|| srv.stop_with_signal(libc::SIGTERM));
    let took = started.elapsed();
    assert!(status.success(), "a clean exit: {status}");
    // Grace (2 s) + click drain (2 s) + one deadline (1.5 s) + slack.
    let bound = Duration::from_millis(5500) + SLACK;
    assert!(
        took <= bound,
        "stopping under a partition took {took:?} (bound {bound:?})"
    );
    let answer = read_raw_reply(&mut in_flight, Duration::from_secs(10)).await;
    assert_eq!(
        answer.as_ref().map(|r| r.status),
        Some(503),
        "the write in flight was answered 503, not left hanging: {answer:?}"
    );
    drop(proxy);
}

/// A replica whose LISTEN connection is lost keeps no key in memory: a key revoked while its
/// announcement cannot arrive is not honoured meanwhile (the replica asks the database: 503 while
/// it is unreachable) and is refused once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_lost_its_listen_connection_keeps_no_key() {
    const TOKEN: &str = "partition-token-31c7a9";
    let settings = [
        ("GITREV_STATEMENT_TIMEOUT_MS", "1000"),
        ("GITREV_DB_DEADLINE_MARGIN_MS", "500"),
        ("GITREV_API_TOKEN", TOKEN),
    ];
    let (proxy, srv, database_url) = server_behind_proxy(&settings).await;
    let made = srv
        .post(
            &client_with_key(TOKEN),
            "/keys",
            &json!({"name": "p", "scope": "read"}),
        )
        .await
        .expect(201, "a key");
    let key = client_with_key(str_of(&made.json, "key"));
    srv.get(&key, "/users")
        .await
        .expect(200, "the key works (and is held)");

    proxy.partition();
    wait_for_metric(&srv, "gitrev_link_listen_connected", STATE_WAIT, |n| {
        n == 0.0
    })
    .await;
    // Revoked directly in the database: the announcement cannot reach this replica.
    revoke_watching_waits(id_of(&made.json), &database_url).await;
    let meanwhile = srv.get(&key, "/users").await;
    assert_eq!(
        meanwhile.status, 503,
        "not answered from a memory that may be stale: {}",
        meanwhile.text
    );

    proxy.heal();
    // The pool reconnects on demand, the LISTEN connection after its backoff: in between, a
    // replica that kept its keys would let the revoked one in. The first answer that is not a 503
    // must already refuse it.
    let first = poll(STATE_WAIT, || srv.get(&key, "/users"), |r| r.status != 503)
        .await
        .unwrap_or_else(|last| last);
    assert_eq!(
        first.status, 401,
        "refused as soon as the database answers: {}",
        first.text
    );
}

/// A transaction whose replica is cut off by a partition is ended by PostgreSQL, so it does not
/// keep its row locks until the partition heals. A PATCH caught between its `SELECT … FOR UPDATE`
/// and the rest holds the url's row; behind a real partition the database never hears the replica
/// give up (the proxy holds its close too), and the row would stay locked for as long as the
/// partition lasts. PostgreSQL's `idle_in_transaction_session_timeout`, twice the deadline (here
/// 2 × 3.5 s), ends it instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_cut_off_by_a_partition_does_not_keep_its_row_locks() {
    let settings = [
        ("GITREV_STATEMENT_TIMEOUT_MS", "3000"),
        ("GITREV_DB_DEADLINE_MARGIN_MS", "500"),
    ];
    let (proxy, srv, database_url) = server_behind_proxy(&settings).await;
    let c = client();
    let made = srv
        .post(&c, "/urls", &json!({"original_url": unique_original_url()}))
        .await
        .expect(201, "POST /urls");
    let id = id_of(&made.json);
    let watcher = connect(&database_url).await;
    let sessions = |state: &'static str| {
        let watcher = &watcher;
        move || async move {
            watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND application_name = 'gitrev' AND query LIKE '%FOR UPDATE%' AND \
                     (CASE $1 WHEN 'lock' THEN wait_event_type = 'Lock' ELSE state = $1 END)",
                    &[&state],
                )
                .await
                .expect("pg_stat_activity")
                .get::<_, i64>(0)
        }
    };

    // The PATCH's first statement waits for the test's lock; the partition begins meanwhile, and
    // the lock goes: the row is the PATCH's, and its answer is held by the partition.
    let lock = connect(&database_url).await;
    lock.batch_execute(&format!(
        "BEGIN; SELECT id FROM urls WHERE id = {id} FOR UPDATE"
    ))
    .await
    .expect("locking the url");
    let path = format!("/urls/{id}");
    let during = json!({"title": "during the partition"});
    let patching = srv.patch(&c, &path, &during);
    let cut_off = async {
        poll(STATE_WAIT, sessions("lock"), |n| *n == 1)
            .await
            .expect("the PATCH waits for the test's lock");
        proxy.partition();
        lock.batch_execute("ROLLBACK")
            .await
            .expect("unlocking the url");
        poll(STATE_WAIT, sessions("idle in transaction"), |n| *n == 1)
            .await
            .expect("precondition: the PATCH's transaction holds the row, idle, its answer held");
    };
    let (patched, ()) = tokio::join!(patching, cut_off);
    assert_eq!(
        patched.status, 503,
        "the replica gives up at its deadline: {}",
        patched.text
    );

    // Still partitioned: the row is free again once PostgreSQL has ended the transaction.
    let started = Instant::now();
    let updated = watcher
        .batch_execute(&format!(
            "SET lock_timeout = '{}s'; UPDATE urls SET title = 'by hand' WHERE id = {id}",
            STATE_WAIT.as_secs()
        ))
        .await;
    assert!(
        updated.is_ok(),
        "the row stayed locked by the cut-off transaction: {updated:?}"
    );
    assert_eq!(
        sessions("idle in transaction")().await,
        0,
        "the cut-off transaction is gone ({:?} after the PATCH's answer)",
        started.elapsed()
    );

    proxy.heal();
    srv.wait_for_ready(200, STATE_WAIT).await;
    let later = json!({"title": "after the partition"});
    let after = poll(
        STATE_WAIT,
        || srv.patch(&c, &path, &later),
        |r| r.status != 503,
    )
    .await
    .unwrap_or_else(|last| last);
    after.expect(200, "a PATCH after the partition");
    let title: String = watcher
        .query_one("SELECT title FROM urls WHERE id = $1", &[&id])
        .await
        .expect("the url")
        .get(0);
    assert_eq!(
        title, "after the partition",
        "the PATCH cut off wrote nothing"
    );
}

/// `gitrev keys revoke` on the database itself, with timeouts the length of the test's waits:
/// what is tested is the replica, not how fast a loaded machine runs the command. Should it fail
/// anyway, the failure shows what every session on the database was waiting on two seconds in.
/// (It failed twice in CI on a statement timeout. Once the partition also held closes, as a real
/// one does, it was caught waiting for the migration lock, which the replica's tier rebuild had
/// taken just before the partition cut it off; `build-tier` no longer migrates.)
async fn revoke_watching_waits(key_id: i64, database_url: &str) {
    let (args, url) = (
        vec!["keys".to_owned(), "revoke".to_owned(), key_id.to_string()],
        database_url.to_owned(),
    );
    let mut command = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let timeout = STATE_WAIT.as_millis().to_string();
        let timeouts = [
            ("GITREV_STATEMENT_TIMEOUT_MS", timeout.as_str()),
            ("GITREV_MAINTENANCE_TIMEOUT_MS", timeout.as_str()),
        ];
        gitrev_with_env(&args, &url, &timeouts)
    });
    let (revoked, waits) = match tokio::time::timeout(Duration::from_secs(2), &mut command).await {
        Ok(done) => (done, Vec::new()),
        Err(_) => {
            let waits: Vec<String> = connect(database_url)
                .await
                .query(
                    "SELECT concat_ws(' | ', application_name, state, wait_event_type, \
                     wait_event, left(query, 120)) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                .unwrap_or_else(|e| vec![format!("pg_stat_activity: {e}")]);
            (command.await, waits)
        }
    };
    let revoked = revoked.expect("the revoke command's thread");
    assert!(
        revoked.status.success(),
        "gitrev keys revoke exited with {}:\n{}\nsessions on the database 2 s in:\n{}",
        revoked.status,
        output_text(&revoked),
        waits.join("\n")
    );
}
