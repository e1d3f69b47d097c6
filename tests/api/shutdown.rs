//! Graceful shutdown, part by part: on SIGTERM the server stops accepting, lets a request that is
//! already in flight finish, and gives up on one that outlives the grace period instead of hanging.
//! (Draining the click queue and stopping the embedded PostgreSQL are tested in `hotpaths` and
//! `lifecycle`.)
//!
//! A request is held in flight for as long as the test wants by locking the `users` table from a
//! separate connection: the server's INSERT waits on the lock.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{
    client, connect, migrated_database, poll, start_server_on, unique_email, TestServer,
};

/// Waits until the server's INSERT into `users` is blocked on our lock: the request is in flight.
async fn wait_until_insert_waits(db: &tokio_postgres::Client) {
    let waiting = || async move {
        // `db` holds its lock inside a transaction, and a transaction sees one snapshot of
        // pg_stat_activity until it is cleared: without this, the INSERT would never show up.
        db.batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .expect("clearing the statistics snapshot");
        db.query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND query ILIKE 'INSERT INTO users%'",
            &[],
        )
        .await
        .expect("reading pg_stat_activity")
        .get::<_, i64>(0)
    };
    if poll(Duration::from_secs(30), waiting, |n| *n > 0)
        .await
        .is_ok()
    {
        return;
    }
    let seen: Vec<String> = db
        .query(
            "SELECT coalesce(wait_event_type, '-') || ' ' || state || ': ' || query
             FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND datname = current_database()",
            &[],
        )
        .await
        .expect("reading pg_stat_activity")
        .iter()
        .map(|row| row.get(0))
        .collect();
    panic!("the POST /users never reached the database; backends: {seen:#?}");
}

/// Polls until a fresh TCP connection to `addr` is refused.
async fn wait_until_refused(addr: SocketAddr) {
    let accepts = || {
        std::future::ready(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
    };
    poll(Duration::from_secs(30), accepts, |accepted| !accepted)
        .await
        .unwrap_or_else(|_| panic!("the server still accepts connections after SIGTERM"));
}

async fn server_with_locked_users(grace_ms: &str) -> (TestServer, tokio_postgres::Client, String) {
    let url = migrated_database("shutdown").await;
    let srv = start_server_on(
        &url,
        &[
            ("GITREV_SHUTDOWN_GRACE_MS", grace_ms),
            ("GITREV_STATEMENT_TIMEOUT_MS", "60000"),
            // The stop's last resort is this drain plus 5 s (see `a_request_that_outlives_…`).
            ("GITREV_CLICK_DRAIN_MS", "1000"),
        ],
    );
    let db = connect(&url).await;
    db.batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("locking users");
    (srv, db, url)
}

#[tokio::test]
async fn sigterm_stops_accepting_and_finishes_the_request_in_flight() {
    let (srv, db, url) = server_with_locked_users("20000").await;
    let addr = srv.socket_addr();
    let email = unique_email();
    let request = {
        let target = srv.url("/users");
        let body = json!({"username": "inflight", "email": email});
        tokio::spawn(async move { client().post(target).json(&body).send().await })
    };
    wait_until_insert_waits(&db).await;

    let stopping = tokio::task::spawn_blocking(move || srv.stop_with_signal(libc::SIGTERM));
    wait_until_refused(addr).await;
    // The server no longer accepts, and the request is still waiting on our lock: release it.
    assert!(!request.is_finished(), "the in-flight request ended early");
    db.batch_execute("COMMIT")
        .await
        .expect("releasing the lock");

    let reply = request
        .await
        .expect("the request task")
        .expect("the in-flight request got an answer");
    assert_eq!(reply.status().as_u16(), 201, "the in-flight POST /users");
    let status = stopping.await.expect("the stopping task");
    assert!(status.success(), "gitrev exited with {status}");
    let stored: i64 = connect(&url)
        .await
        .query_one("SELECT count(*) FROM users WHERE email = $1", &[&email])
        .await
        .expect("counting the user")
        .get(0);
    assert_eq!(stored, 1, "the acknowledged user is in the database");
}

#[tokio::test]
async fn a_request_that_outlives_the_grace_period_does_not_hold_the_stop() {
    let (srv, db, _url) = server_with_locked_users("500").await;
    let request = {
        let target = srv.url("/users");
        let body = json!({"username": "stuck", "email": unique_email()});
        tokio::spawn(async move { client().post(target).json(&body).send().await })
    };
    wait_until_insert_waits(&db).await;

    // The lock is held throughout: without a bound the server would wait for it until the
    // statement timeout (60 s). The grace period (500 ms) ends the request, and the grouped writer
    // still waiting on its INSERT is aborted with it (nobody waits for its answer): the stop takes
    // the grace period and the click drain of an empty queue, plus slack for a loaded machine —
    // well under the last resort (click drain 1 s + 5 s).
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || srv.stop_with_signal(libc::SIGTERM))
        .await
        .expect("the stopping task");
    assert!(status.success(), "gitrev exited with {status}");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the stop took {took:?} with a grace period of 500 ms and a click drain of 1 s"
    );
    let outcome = request.await.expect("the request task");
    assert!(
        outcome
            .as_ref()
            .map_or(true, |r| r.status().as_u16() != 201),
        "a request cut off by the grace period was not acknowledged: {outcome:?}"
    );
    db.batch_execute("ROLLBACK")
        .await
        .expect("releasing the lock");
}
