//! Warm restarts from the link snapshot: a restarted server serves the links it had cached without
//! a query — even with the database stopped — never serves one that was switched off after the
//! snapshot was taken, and starts cold (saying so) from a damaged snapshot.

use std::time::Duration;

use gitrev_embedded::EmbeddedPostgres;
use serde_json::{json, Value};

use crate::harness::{
    client, code_path, connect, create_url_on, id_of, migrated_database, poll, read_metric,
    start_server_on, str_of, unique_original_url, Reply, TestDir, TestServer,
};

/// A server whose data dir (and with it the snapshot) is `data`, kept across the servers a test starts.
fn start_in(data: &TestDir, url: &str) -> TestServer {
    start_server_on(url, &[("GITREV_DATA_DIR", data.as_str())])
}

/// Creates `n` urls through `srv` and redirects each once, so they are cached.
async fn cached_links(srv: &TestServer, n: usize) -> Vec<Value> {
    let c = client();
    let mut links = Vec::new();
    for _ in 0..n {
        let url = create_url_on(srv, &c, json!({"original_url": unique_original_url()})).await;
        srv.head(&c, &code_path(&url))
            .await
            .expect(302, "the link is cached");
        links.push(url);
    }
    links
}

async fn redirect(srv: &TestServer, link: &Value) -> Reply {
    srv.head(&client(), &code_path(link)).await
}

#[tokio::test]
async fn a_restart_with_the_database_stopped_serves_the_snapshot() {
    let cluster = TestDir::new("snapdb");
    let mut pg = EmbeddedPostgres::start(cluster.path(), None, None)
        .await
        .expect("a cluster of the test's own");
    let url = pg.database_url();
    let data = TestDir::new("snapdata");
    let first = start_in(&data, &url);
    let links = cached_links(&first, 3).await;
    assert!(first.stop_after_signal(libc::SIGTERM).success());
    assert!(
        data.path().join("links.snapshot").exists(),
        "a stopping server writes its snapshot"
    );

    pg.stop().await;
    let second = start_in(&data, &url);
    for link in &links {
        let reply = redirect(&second, link)
            .await
            .expect(302, "a snapshot link with no database");
        assert_eq!(reply.header("location"), link["original_url"].as_str());
    }
    let c = client();
    assert_eq!(
        read_metric(&second, &c, "gitrev_snapshot_links_loaded").await,
        3.0
    );
    assert_eq!(
        read_metric(&second, &c, "gitrev_link_cache_misses_total").await,
        0.0
    );
    second.get(&c, "/health").await.expect(200, "alive");
    assert_eq!(
        second.get(&c, "/ready").await.status,
        503,
        "not ready without a database"
    );

    // The database returns: the server catches up by itself (migrations, readiness, writes).
    let mut pg = EmbeddedPostgres::start(cluster.path(), None, None)
        .await
        .expect("the cluster starts again");
    second.wait_for_ready(200, Duration::from_secs(30)).await;
    second
        .post(&c, "/urls", &json!({"original_url": unique_original_url()}))
        .await
        .expect(201, "writes work once the database is back");
    // What was served unchecked does not outlive the outage: once the invalidation listener is
    // back (it retries with backoff) it clears the cache, and a snapshot link is read from the
    // database again.
    let (srv, c, link) = (&second, &c, &links[0]);
    let missed = || async move {
        let misses = read_metric(srv, c, "gitrev_link_cache_misses_total").await;
        redirect(srv, link).await.expect(302, "the link");
        read_metric(srv, c, "gitrev_link_cache_misses_total").await > misses
    };
    poll(Duration::from_secs(30), missed, |missed| *missed)
        .await
        .unwrap_or_else(|_| {
            panic!("the snapshot's entries were still cached 30 s after the database came back")
        });
    assert!(second.stop_after_signal(libc::SIGTERM).success());
    pg.stop().await;
}

#[tokio::test]
async fn links_changed_after_the_snapshot_are_never_served() {
    let url = migrated_database("snapchg").await;
    let data = TestDir::new("snapchg");
    let first = start_in(&data, &url);
    let links = cached_links(&first, 4).await;
    assert!(first.stop_after_signal(libc::SIGTERM).success());

    // While the server is down, other replicas (here: SQL) switch links off and retarget one.
    let db = connect(&url).await;
    let (off, gone, moved, same) = (&links[0], &links[1], &links[2], &links[3]);
    db.execute(
        "UPDATE urls SET is_active = false WHERE id = $1",
        &[&id_of(off)],
    )
    .await
    .expect("deactivating");
    db.execute("DELETE FROM urls WHERE id = $1", &[&id_of(gone)])
        .await
        .expect("deleting");
    db.execute(
        "UPDATE urls SET original_url = 'https://moved.example/new' WHERE id = $1",
        &[&id_of(moved)],
    )
    .await
    .expect("retargeting");

    let second = start_in(&data, &url);
    let c = client();
    assert_eq!(
        read_metric(&second, &c, "gitrev_snapshot_links_loaded").await,
        1.0,
        "only the unchanged link is warmed"
    );
    let reply = redirect(&second, same)
        .await
        .expect(302, "the unchanged link");
    assert_eq!(reply.header("location"), same["original_url"].as_str());
    assert_eq!(
        read_metric(&second, &c, "gitrev_link_cache_misses_total").await,
        0.0,
        "served from the snapshot, without a query"
    );
    redirect(&second, off)
        .await
        .expect(404, "deactivated after the snapshot");
    redirect(&second, gone)
        .await
        .expect(404, "deleted after the snapshot");
    let reply = redirect(&second, moved)
        .await
        .expect(302, "retargeted after the snapshot");
    assert_eq!(reply.header("location"), Some("https://moved.example/new"));
}

#[tokio::test]
async fn link_options_survive_the_snapshot_and_changes_to_them_are_caught() {
    let url = migrated_database("snapopt").await;
    let data = TestDir::new("snapopt");
    let first = start_in(&data, &url);
    let c = client();
    let mut links = Vec::new();
    for options in [
        json!({"forward_query": true, "redirect_status": 307, "expires_at": "2099-01-01"}),
        json!({"expires_at": "2099-01-01", "expired_url": "https://example.com/over"}),
        json!({"max_clicks": 10}),
    ] {
        let mut body = options;
        body["original_url"] = json!(unique_original_url());
        let link = create_url_on(&first, &c, body).await;
        first.head(&c, &code_path(&link)).await;
        links.push(link);
    }
    assert!(first.stop_after_signal(libc::SIGTERM).success());
    let (forwarding, expiring, limited) = (&links[0], &links[1], &links[2]);
    // While the server is down, the second link is expired (by SQL, as another replica would).
    connect(&url)
        .await
        .execute(
            "UPDATE urls SET expires_at = '2001-01-01' WHERE id = $1",
            &[&id_of(expiring)],
        )
        .await
        .expect("expiring it");

    let second = start_in(&data, &url);
    assert_eq!(
        read_metric(&second, &c, "gitrev_snapshot_links_loaded").await,
        1.0,
        "the changed link is dropped; a limited one is never in the snapshot"
    );
    let reply = second
        .head(&c, &format!("{}?utm_source=x", code_path(forwarding)))
        .await;
    assert_eq!(reply.status, 307, "its own status, from the snapshot");
    assert_eq!(
        reply.header("location").map(str::to_owned),
        Some(format!(
            "{}?utm_source=x",
            str_of(forwarding, "original_url")
        ))
    );
    assert_eq!(
        read_metric(&second, &c, "gitrev_link_cache_misses_total").await,
        0.0,
        "served from the snapshot, options included, without a query"
    );
    let reply = second.head(&c, &code_path(expiring)).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (302, Some("https://example.com/over")),
        "expired after the snapshot: its fallback"
    );
    second
        .head(&c, &code_path(limited))
        .await
        .expect(302, "a limited link loads from the database");
}

#[tokio::test]
async fn a_damaged_snapshot_is_rejected_and_the_service_starts_cold() {
    let url = migrated_database("snapbad").await;
    let data = TestDir::new("snapbad");
    let first = start_in(&data, &url);
    let links = cached_links(&first, 2).await;
    assert!(first.stop_after_signal(libc::SIGTERM).success());
    let path = data.path().join("links.snapshot");
    let good = std::fs::read(&path).expect("the snapshot");

    let damaged: [(&str, Vec<u8>); 3] = [
        ("truncated", good[..good.len() - 7].to_vec()),
        ("flipped", {
            let mut bytes = good.clone();
            let at = bytes.len() / 2 + 32;
            bytes[at] ^= 0xff;
            bytes
        }),
        ("garbage", b"definitely not an rkyv archive".to_vec()),
    ];
    for (what, bytes) in damaged {
        std::fs::write(&path, bytes).expect("damaging the snapshot");
        let srv = start_in(&data, &url);
        let c = client();
        assert_eq!(
            read_metric(&srv, &c, "gitrev_snapshot_links_loaded").await,
            0.0,
            "{what}: nothing warmed"
        );
        for link in &links {
            redirect(&srv, link)
                .await
                .expect(302, "served cold, from the database");
        }
        assert_eq!(
            read_metric(&srv, &c, "gitrev_link_cache_misses_total").await,
            2.0,
            "{what}: each of the two links was read from the database once"
        );
        let log = std::fs::read_to_string(&srv.log).unwrap_or_default();
        assert!(
            log.contains("link snapshot rejected"),
            "{what}: the log says so:\n{log}"
        );
        assert!(srv.stop_after_signal(libc::SIGTERM).success());
    }
}
