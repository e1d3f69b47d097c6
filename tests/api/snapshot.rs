//! Warm restarts from the link snapshot: a restarted server serves the links it had cached without
//! a query — even with the database stopped — never serves one that was switched off after the
//! snapshot was taken, and starts cold (saying so) from a damaged snapshot.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gitrev_embedded::EmbeddedPostgres;
use serde_json::{json, Value};

use crate::common::{
    assert_cli_ok, client, connect, fresh_database, gitrev, id_of, own_test_dir, read_metric,
    start_server_on, str_of, unique, unique_original_url, TestServer,
};

/// A data directory of the test's own, kept across the servers it starts.
fn data_dir(prefix: &str) -> PathBuf {
    let dir = own_test_dir(&unique(prefix));
    std::fs::create_dir_all(&dir).expect("creating the data dir");
    dir
}

fn start_in(data: &std::path::Path, url: &str) -> TestServer {
    let data = data.to_str().expect("a UTF-8 temp path");
    start_server_on(url, &[("GITREV_DATA_DIR", data)])
}

/// Creates `n` urls through `srv` and redirects each once, so they are cached.
async fn cached_links(srv: &TestServer, n: usize) -> Vec<Value> {
    let c = client();
    let mut links = Vec::new();
    for _ in 0..n {
        let url = srv
            .post(&c, "/urls", &json!({"original_url": unique_original_url()}))
            .await
            .expect(201, "POST /urls")
            .json;
        srv.head(&c, &format!("/{}", str_of(&url, "short_code")))
            .await
            .expect(302, "the link is cached");
        links.push(url);
    }
    links
}

async fn redirect(srv: &TestServer, link: &Value) -> crate::common::Reply {
    srv.head(&client(), &format!("/{}", str_of(link, "short_code")))
        .await
}

async fn wait_for_ready(srv: &TestServer, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while srv.get(&client(), "/ready").await.status != want {
        assert!(Instant::now() < deadline, "/ready never turned {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_restart_with_the_database_stopped_serves_the_snapshot() {
    let cluster = own_test_dir(&unique("snapdb"));
    let mut pg = EmbeddedPostgres::start(&cluster, None)
        .await
        .expect("a cluster of the test's own");
    let url = pg.database_url();
    let data = data_dir("snapdata");
    let first = start_in(&data, &url);
    let links = cached_links(&first, 3).await;
    assert!(first.stop_after_signal(libc::SIGTERM).success());
    assert!(
        data.join("links.snapshot").exists(),
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
    let mut pg = EmbeddedPostgres::start(&cluster, None)
        .await
        .expect("the cluster starts again");
    wait_for_ready(&second, 200).await;
    second
        .post(&c, "/urls", &json!({"original_url": unique_original_url()}))
        .await
        .expect(201, "writes work once the database is back");
    // What was served unchecked does not outlive the outage: once the invalidation listener is
    // back (it retries with backoff) it clears the cache, and a snapshot link is read from the
    // database again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let misses = read_metric(&second, &c, "gitrev_link_cache_misses_total").await;
        redirect(&second, &links[0]).await.expect(302, "the link");
        if read_metric(&second, &c, "gitrev_link_cache_misses_total").await > misses {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the snapshot's entries were still cached 30 s after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(second.stop_after_signal(libc::SIGTERM).success());
    pg.stop().await;
}

#[tokio::test]
async fn links_changed_after_the_snapshot_are_never_served() {
    let url = fresh_database("snapchg").await;
    assert_cli_ok(&gitrev(&["migrate"], &url), "gitrev migrate");
    let data = data_dir("snapchg");
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
async fn a_damaged_snapshot_is_rejected_and_the_service_starts_cold() {
    let url = fresh_database("snapbad").await;
    assert_cli_ok(&gitrev(&["migrate"], &url), "gitrev migrate");
    let data = data_dir("snapbad");
    let first = start_in(&data, &url);
    let links = cached_links(&first, 2).await;
    assert!(first.stop_after_signal(libc::SIGTERM).success());
    let path = data.join("links.snapshot");
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
        assert!(read_metric(&srv, &c, "gitrev_link_cache_misses_total").await >= 2.0);
        let log = std::fs::read_to_string(&srv.log).unwrap_or_default();
        assert!(
            log.contains("link snapshot rejected"),
            "{what}: the log says so:\n{log}"
        );
        assert!(srv.stop_after_signal(libc::SIGTERM).success());
    }
}
