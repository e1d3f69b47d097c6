//! What the link tier reads from the database (issue #12): every link at one snapshot, and the
//! change log (`sql/0006_link_changes.sql`) that says which codes changed since. Each case has a
//! migrated database of its own and a real `Store` on it.

use std::collections::BTreeSet;

use gitrev_store::{Store, StoreSettings};
use gitrev_tier::Tier;

use crate::harness::{connect, database_name, migrated_database};

/// The session-level advisory lock `gitrev migrate` takes (`gitrev_store::migrate`: "gitrev").
const MIGRATION_LOCK: i64 = 0x6769_7472_6576;

fn store(url: &str) -> Store {
    Store::new(
        url,
        &StoreSettings {
            pool_size: 4,
            statement_timeout_ms: 10_000,
            pool_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            db_deadline_margin_ms: 5_000,
            maintenance_timeout_ms: 60_000,
            click_retention_days: 0,
        },
    )
    .expect("a store")
}

/// Every link at one snapshot, read by the builder `gitrev build-tier` uses, and the origin it
/// records.
async fn read_links(store: &Store) -> (gitrev_tier::Origin, Vec<gitrev_tier::Link>) {
    let builder = store.tier_builder().await.expect("read the links");
    let origin = builder.origin().clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("read.tier");
    builder.write(&path).expect("written");
    let tier = Tier::open(&path).expect("opens").expect("exists");
    let links = tier.iter().map(|l| l.to_link()).collect();
    (origin, links)
}

fn codes(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|c| c.to_string()).collect()
}

/// Five links of two users: plain, inactive, with options, limited, without a user.
async fn five_links(db: &tokio_postgres::Client) {
    db.batch_execute(
        "INSERT INTO users (id, username, email) VALUES (1, 'ann', 'ann@example.com'),
                                                        (2, 'bob', 'bob@example.com');
         INSERT INTO urls (user_id, short_code, original_url, is_active) VALUES
             (1, 'plain1', 'https://example.com/plain', true),
             (1, 'off1', 'https://example.com/off', false),
             (2, 'bob1', 'https://example.com/bob', true);
         INSERT INTO urls (user_id, short_code, original_url, expires_at, expired_url,
                           redirect_status, forward_query)
             VALUES (1, 'opts1', 'https://example.com/opts?a=1', '2031-01-02 03:04:05.678901',
                     'https://example.com/gone', 308, true);
         INSERT INTO urls (short_code, original_url, max_clicks)
             VALUES ('lim1', 'https://example.com/limited', 5);",
    )
    .await
    .expect("five links");
}

#[tokio::test]
async fn a_tier_built_from_the_database_answers_like_it() {
    let url = migrated_database("tierbuild").await;
    let db = connect(&url).await;
    five_links(&db).await;
    let store = store(&url);

    let (origin, links) = read_links(&store).await;
    let (system_id, name) = store.database_identity().await.expect("identity");
    assert_eq!(origin.system_id, system_id);
    assert_eq!(origin.database, name);
    assert_eq!(name, database_name(&url));
    assert_eq!(links.len(), 5);

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("links.tier");
    gitrev_tier::write(&path, &origin, links).expect("written");
    let tier = Tier::open(&path).expect("opens").expect("exists");
    assert!(tier.is_from(system_id, &name));
    assert!(!tier.is_from(system_id, "another_database"));

    // Every field a redirect decides on, against the row.
    let rows = db
        .query(
            "SELECT short_code, id, user_id, original_url, is_active, expires_at, expired_url,
                    redirect_status, forward_query, max_clicks IS NOT NULL FROM urls",
            &[],
        )
        .await
        .expect("the rows");
    for row in rows {
        let code: String = row.get(0);
        let found = tier
            .get(&code)
            .unwrap_or_else(|| panic!("{code} is in the tier"));
        assert_eq!(found.url_id, row.get::<_, i64>(1), "{code}");
        assert_eq!(found.user_id, row.get::<_, Option<i64>>(2), "{code}");
        assert_eq!(found.target, row.get::<_, String>(3), "{code}");
        assert_eq!(found.active, row.get::<_, bool>(4), "{code}");
        let expires: Option<chrono::NaiveDateTime> = row.get(5);
        assert_eq!(
            found.expires_at_us,
            expires.map(|at| at.and_utc().timestamp_micros()),
            "{code}"
        );
        assert_eq!(
            found.expired_url.map(str::to_owned),
            row.get::<_, Option<String>>(6),
            "{code}"
        );
        assert_eq!(
            found.redirect_status,
            row.get::<_, Option<i16>>(7),
            "{code}"
        );
        assert_eq!(found.forward_query, row.get::<_, bool>(8), "{code}");
        assert_eq!(found.limited, row.get::<_, bool>(9), "{code}");
    }
    assert!(tier.get("nosuch").is_none());
    // Microseconds survive the trip (no rounding through floating point).
    assert_eq!(
        tier.get("opts1").and_then(|f| f.expires_at_us),
        Some(1_925_089_445_678_901)
    );
}

#[tokio::test]
async fn every_kind_of_change_after_the_build_is_reported_once() {
    let url = migrated_database("tierchanges").await;
    let db = connect(&url).await;
    five_links(&db).await;
    let store = store(&url);
    let (origin, _) = read_links(&store).await;

    let none = store
        .links_changed_since(&origin.snapshot)
        .await
        .expect("changes");
    assert!(none.codes.is_empty() && !none.everything, "{none:?}");

    db.batch_execute(
        "UPDATE urls SET original_url = 'https://example.com/moved' WHERE short_code = 'plain1';
         UPDATE urls SET is_active = false WHERE short_code = 'opts1';
         UPDATE urls SET short_code = 'renamed' WHERE short_code = 'lim1';
         DELETE FROM urls WHERE short_code = 'off1';
         INSERT INTO urls (short_code, original_url) VALUES ('new1', 'https://example.com/new');
         -- a user's deletion cascades to its links
         DELETE FROM users WHERE id = 2;",
    )
    .await
    .expect("changes");
    let changes = store
        .links_changed_since(&origin.snapshot)
        .await
        .expect("changes");
    assert_eq!(
        changes.codes,
        codes(&["plain1", "opts1", "lim1", "renamed", "off1", "new1", "bob1"])
    );
    assert!(!changes.everything);

    // Asked again from the answer's snapshot: nothing new. A later change shows alone.
    let again = store
        .links_changed_since(&changes.snapshot)
        .await
        .expect("changes");
    assert!(again.codes.is_empty(), "{again:?}");
    db.batch_execute("UPDATE urls SET title = 't' WHERE short_code = 'new1'")
        .await
        .expect("a title");
    let later = store
        .links_changed_since(&again.snapshot)
        .await
        .expect("changes");
    assert_eq!(later.codes, codes(&["new1"]));

    // Pruning up to the last answer's snapshot keeps what it has not seen.
    let pruned = store
        .prune_link_changes(&again.snapshot)
        .await
        .expect("pruned");
    assert!(pruned >= 7, "{pruned} rows pruned");
    let after = store
        .links_changed_since(&again.snapshot)
        .await
        .expect("changes");
    assert_eq!(after.codes, codes(&["new1"]));

    // The maintenance pass drops changes older than their keeping time, and only those.
    db.batch_execute(
        "INSERT INTO urls (short_code, original_url) VALUES ('old1', 'https://example.com/old');
         UPDATE link_changes SET changed_at = changed_at - interval '8 days'
         WHERE short_code = 'old1'",
    )
    .await
    .expect("an old change");
    let pruned = store
        .prune_old_link_changes(gitrev_store::tier::CHANGES_KEPT)
        .await
        .expect("pruned");
    assert_eq!(pruned, 1);
    let left = store
        .links_changed_since(&again.snapshot)
        .await
        .expect("changes");
    assert_eq!(left.codes, codes(&["new1"]));
}

#[tokio::test]
async fn a_change_committed_after_the_build_began_is_reported_even_with_an_older_id() {
    // A transaction that wrote before the build's snapshot but committed after it: its rows are
    // not in the tier, and its transaction id is below that of changes the tier did see.
    let url = migrated_database("tierrace").await;
    let db = connect(&url).await;
    five_links(&db).await;
    let store = store(&url);

    let mut slow = connect(&url).await;
    let slow_tx = slow.transaction().await.expect("begin");
    slow_tx
        .batch_execute(
            "INSERT INTO urls (short_code, original_url) VALUES ('slow1', 'https://example.com/slow');
             UPDATE urls SET original_url = 'https://example.com/retargeted' WHERE short_code = 'bob1'",
        )
        .await
        .expect("the slow writer's rows");
    // A faster writer commits after the slow one began.
    db.batch_execute("UPDATE urls SET is_active = false WHERE short_code = 'off1'")
        .await
        .expect("a quick change");

    let (origin, links) = read_links(&store).await;
    assert!(links.iter().all(|l| l.code != "slow1"));
    let bob = links.iter().find(|l| l.code == "bob1").expect("bob1");
    assert_eq!(bob.target, "https://example.com/bob");
    slow_tx.commit().await.expect("commit");

    let changes = store
        .links_changed_since(&origin.snapshot)
        .await
        .expect("changes");
    assert_eq!(changes.codes, codes(&["slow1", "bob1"]));
}

#[tokio::test]
async fn a_truncate_marks_every_link_and_a_bad_snapshot_is_an_error() {
    let url = migrated_database("tiertrunc").await;
    let db = connect(&url).await;
    five_links(&db).await;
    let store = store(&url);
    let (origin, _) = read_links(&store).await;
    db.batch_execute("TRUNCATE urls CASCADE")
        .await
        .expect("truncate");
    let changes = store
        .links_changed_since(&origin.snapshot)
        .await
        .expect("changes");
    assert!(changes.everything, "{changes:?}");

    for bad in ["", "not a snapshot", "10:5:"] {
        assert!(
            store.links_changed_since(bad).await.is_err(),
            "{bad:?} is refused"
        );
    }
}

/// A connection LISTENing on the links channel, and the payloads it has heard.
async fn listener(
    url: &str,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("a listening connection");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut messages).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                if n.channel() == gitrev_store::announce::CHANNEL
                    && tx.send(n.payload().to_owned()).is_err()
                {
                    break;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {}", gitrev_store::announce::CHANNEL))
        .await
        .expect("LISTEN");
    (client, rx)
}

/// Everything heard once `marker` (a NOTIFY sent after the statements) arrives.
async fn heard_until(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    marker: &str,
) -> BTreeSet<String> {
    let mut heard = BTreeSet::new();
    loop {
        let payload = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("notifications keep coming")
            .expect("the listener runs");
        if payload == marker {
            return heard;
        }
        heard.insert(payload);
    }
}

/// The statement that sends `marker` on the links channel, for [`heard_until`].
fn marker_sql(marker: &str) -> String {
    format!(
        "SELECT pg_notify('{}', '{marker}')",
        gitrev_store::announce::CHANNEL
    )
}

/// A server on `url` that remembers answers for ten minutes (the negative ones too): only the
/// announcements can make it see a change within seconds.
fn server_remembering_long(url: &str) -> crate::harness::TestServer {
    crate::harness::start_server_on(
        url,
        &[
            ("GITREV_NEGATIVE_TTL_MS", "600000"),
            ("GITREV_CACHE_TTL_SECS", "600"),
        ],
    )
}

/// A statement over more than 10,000 codes announces '*' once instead of a NOTIFY per code
/// (`sql/0007_large_changes.sql`), and a replica that hears it serves every changed link anew.
/// Up to 10,000, each code is announced, as before. The change log has a row per code either way.
#[tokio::test]
async fn a_statement_over_many_codes_announces_them_all_at_once() {
    let url = migrated_database("tiermany").await;
    let srv = server_remembering_long(&url);
    let c = crate::harness::client();
    let db = connect(&url).await;
    let (_listening, mut rx) = listener(&url).await;
    let insert = |prefix: &str, n: u32| {
        format!(
            "INSERT INTO urls (short_code, original_url)
             SELECT '{prefix}' || g, 'https://example.com/a/' || g FROM generate_series(1, {n}) g"
        )
    };
    db.batch_execute(&insert("many", 10_000))
        .await
        .expect("10,000 links");
    db.batch_execute(&marker_sql("m1")).await.expect("marker");
    assert_eq!(heard_until(&mut rx, "m1").await.len(), 10_000, "one by one");

    db.batch_execute(&insert("more", 10_001))
        .await
        .expect("10,001 links");
    db.batch_execute(&marker_sql("m2")).await.expect("marker");
    assert_eq!(heard_until(&mut rx, "m2").await, codes(&["*"]));

    let reply = srv
        .head(&c, "/more7")
        .await
        .expect(302, "a link of the import");
    assert_eq!(reply.header("location"), Some("https://example.com/a/7"));
    db.batch_execute(
        "UPDATE urls SET original_url = replace(original_url, '/a/', '/b/')
         WHERE short_code LIKE 'more%'",
    )
    .await
    .expect("retargeted by hand");
    db.batch_execute(&marker_sql("m3")).await.expect("marker");
    assert_eq!(heard_until(&mut rx, "m3").await, codes(&["*"]));
    let served = crate::harness::poll(
        std::time::Duration::from_secs(5),
        || srv.head(&c, "/more7"),
        |r| r.header("location") == Some("https://example.com/b/7"),
    )
    .await;
    assert!(served.is_ok(), "the new target is served within 5 s");

    let logged: i64 = db
        .query_one(
            "SELECT count(*) FROM link_changes WHERE short_code LIKE 'more%'",
            &[],
        )
        .await
        .expect("the change log")
        .get(0);
    assert_eq!(logged, 2 * 10_001, "a row per code and statement");
}

#[tokio::test]
async fn every_write_path_announces_the_codes_it_touches() {
    // Not only the service's statements: an INSERT, UPDATE, DELETE or TRUNCATE made by hand
    // announces its codes, so a replica never answers from before it for long.
    let url = migrated_database("tiernotify").await;
    let db = connect(&url).await;
    let (_listening, mut rx) = listener(&url).await;
    five_links(&db).await;
    db.batch_execute(&marker_sql("m1")).await.expect("marker");
    // Created: '+' and the code.
    assert_eq!(
        heard_until(&mut rx, "m1").await,
        codes(&["+plain1", "+off1", "+bob1", "+opts1", "+lim1"])
    );

    db.batch_execute(
        "UPDATE urls SET short_code = 'renamed' WHERE short_code = 'lim1';
         DELETE FROM urls WHERE short_code = 'off1';
         UPDATE urls SET title = 'x' WHERE short_code = 'plain1'",
    )
    .await
    .expect("changes");
    db.batch_execute(&marker_sql("m2")).await.expect("marker");
    assert_eq!(
        heard_until(&mut rx, "m2").await,
        codes(&["lim1", "renamed", "off1", "plain1"])
    );

    // Nothing is announced for a transaction that rolls back.
    db.batch_execute("BEGIN; UPDATE urls SET title = 'y' WHERE short_code = 'bob1'; ROLLBACK;")
        .await
        .expect("rolled back");
    db.batch_execute("TRUNCATE urls CASCADE")
        .await
        .expect("truncate");
    db.batch_execute(&marker_sql("m3")).await.expect("marker");
    assert_eq!(heard_until(&mut rx, "m3").await, codes(&["*"]));
}

#[tokio::test]
async fn gitrev_build_tier_writes_every_link_and_reports_a_bad_path() {
    let url = migrated_database("tiercli").await;
    let db = connect(&url).await;
    five_links(&db).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("links.tier");
    let path_arg = path.to_str().expect("a UTF-8 path");
    let output = crate::harness::gitrev(&["build-tier", "--out", path_arg], &url);
    let text = crate::harness::output_text(&output);
    assert!(output.status.success(), "build-tier failed:\n{text}");
    assert!(text.contains("5 links"), "it says what it wrote:\n{text}");
    let tier = Tier::open(&path).expect("opens").expect("exists");
    assert_eq!(tier.len(), 5);
    assert!(tier.get("opts1").is_some_and(|f| f.forward_query));

    let missing = dir.path().join("no/such/dir/links.tier");
    let output = crate::harness::gitrev(
        &["build-tier", "--out", missing.to_str().expect("UTF-8")],
        &url,
    );
    let text = crate::harness::output_text(&output);
    assert!(!output.status.success(), "a bad path fails:\n{text}");
    assert!(
        text.contains("no/such/dir") && !text.contains("panicked"),
        "the error names the path:\n{text}"
    );
}

/// `build-tier` reads; it never migrates. A replica runs it at every rebuild, so it must not take
/// the migration lock (held here, as a migration in progress elsewhere would): a rebuild cut off
/// by a partition while it held that lock kept every other command and replica start waiting. On
/// a database without this build's schema it stops, saying so, and leaves the database as it was.
#[tokio::test]
async fn gitrev_build_tier_checks_the_schema_and_never_takes_the_migration_lock() {
    let url = migrated_database("tierlock").await;
    let db = connect(&url).await;
    five_links(&db).await;
    let holder = connect(&url).await;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .expect("holding the migration lock");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("links.tier");
    let quick = [("GITREV_MAINTENANCE_TIMEOUT_MS", "5000")];
    let output = crate::harness::gitrev_with_env(
        &["build-tier", "--out", path.to_str().expect("UTF-8")],
        &url,
        &quick,
    );
    let text = crate::harness::output_text(&output);
    assert!(
        output.status.success(),
        "build-tier waited for the migration lock:\n{text}"
    );
    assert_eq!(Tier::open(&path).expect("opens").expect("exists").len(), 5);

    let bare = crate::harness::fresh_database("tierbare").await;
    let output = crate::harness::gitrev_with_env(
        &["build-tier", "--out", path.to_str().expect("UTF-8")],
        &bare,
        &quick,
    );
    let text = crate::harness::output_text(&output);
    assert!(!output.status.success(), "no schema, no tier:\n{text}");
    assert!(
        text.contains("gitrev migrate") && !text.contains("panicked"),
        "it says what to do:\n{text}"
    );
    let tables: i64 = connect(&bare)
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
            &[],
        )
        .await
        .expect("counting tables")
        .get(0);
    assert_eq!(tables, 0, "the database was left as it was");
}

#[tokio::test]
async fn a_link_created_or_changed_by_hand_reaches_a_running_replica_at_once() {
    let url = migrated_database("tierhand").await;
    let srv = server_remembering_long(&url);
    let c = crate::harness::client();
    srv.head(&c, "/byhand1").await.expect(404, "not there yet");

    let db = connect(&url).await;
    db.batch_execute(
        "INSERT INTO urls (short_code, original_url) VALUES ('byhand1', 'https://example.com/a')",
    )
    .await
    .expect("created by hand");
    let location = |target: &'static str| {
        let srv = &srv;
        let c = &c;
        move || async move {
            let reply = srv.head(c, "/byhand1").await;
            (
                reply.status,
                reply.header("location").map(str::to_owned),
                target,
            )
        }
    };
    crate::harness::poll(
        std::time::Duration::from_secs(5),
        location("https://example.com/a"),
        |(status, at, want)| *status == 302 && at.as_deref() == Some(*want),
    )
    .await
    .unwrap_or_else(|seen| panic!("the created link is served within 5 s: {seen:?}"));

    db.batch_execute(
        "UPDATE urls SET original_url = 'https://example.com/b' WHERE short_code = 'byhand1'",
    )
    .await
    .expect("retargeted by hand");
    crate::harness::poll(
        std::time::Duration::from_secs(5),
        location("https://example.com/b"),
        |(status, at, want)| *status == 302 && at.as_deref() == Some(*want),
    )
    .await
    .unwrap_or_else(|seen| panic!("the new target is served within 5 s: {seen:?}"));
}
