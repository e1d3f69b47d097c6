//! `gitrev migrate` and `gitrev check-schema`: migrations are idempotent, a migrated database checks
//! clean, and drift (a dropped column, a dropped index) is named. Each case has a database of its own.

use crate::harness::{assert_cli_ok, connect, count_rows, gitrev, migrated_database, output_text};

#[tokio::test]
async fn migrate_is_idempotent_and_checks_clean() {
    let url = migrated_database("migrate").await;
    let applied = count_rows(&url, "schema_migrations").await;
    assert!(applied > 0, "the first run applies the migrations");
    assert_cli_ok(&gitrev(&["migrate"], &url), "gitrev migrate, second run");
    assert_eq!(
        count_rows(&url, "schema_migrations").await,
        applied,
        "the second run applies nothing"
    );
    assert_cli_ok(&gitrev(&["check-schema"], &url), "gitrev check-schema");
    let db = connect(&url).await;
    for table in ["users", "urls", "events"] {
        let exists: bool = db
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await
            .expect("looking up a table")
            .get(0);
        assert!(exists, "migrate creates {table}");
    }
}

#[tokio::test]
async fn check_schema_names_a_dropped_column() {
    let url = migrated_database("dropcol").await;
    let db = connect(&url).await;
    db.batch_execute("ALTER TABLE urls DROP COLUMN title")
        .await
        .expect("dropping urls.title");
    let output = gitrev(&["check-schema"], &url);
    let text = output_text(&output);
    assert!(
        !output.status.success(),
        "check-schema must fail on drift:\n{text}"
    );
    assert!(text.contains("urls.title"), "the drift is named:\n{text}");
}

#[tokio::test]
async fn check_schema_names_a_dropped_index() {
    let url = migrated_database("dropidx").await;
    let db = connect(&url).await;
    // A secondary index the migrations made, not one that backs a constraint (those cannot be dropped
    // on their own).
    let row = db
        .query_opt(
            "SELECT i.indexname FROM pg_indexes i \
             JOIN pg_class c ON c.relname = i.indexname \
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = i.schemaname \
             WHERE i.schemaname = 'public' AND i.tablename IN ('users', 'urls', 'events') \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid) \
             ORDER BY i.tablename, i.indexname LIMIT 1",
            &[],
        )
        .await
        .expect("listing indexes");
    let index: String = row
        .expect("the migrations create at least one secondary index on users, urls or events")
        .get(0);
    db.batch_execute(&format!("DROP INDEX \"{index}\""))
        .await
        .unwrap_or_else(|e| panic!("dropping {index}: {e}"));
    let output = gitrev(&["check-schema"], &url);
    let text = output_text(&output);
    assert!(
        !output.status.success(),
        "check-schema must fail after DROP INDEX {index}:\n{text}"
    );
    assert!(
        text.contains(&index),
        "the dropped index {index} is named:\n{text}"
    );
}

#[tokio::test]
async fn check_schema_names_a_changed_view() {
    let url = migrated_database("chview").await;
    let db = connect(&url).await;
    // The event log view, redefined by hand without the clicks: every click would vanish from
    // `GET /events`.
    db.batch_execute(
        "CREATE OR REPLACE VIEW event_log AS
             SELECT id, url_id, user_id, event_type, timestamp, details FROM events",
    )
    .await
    .expect("redefining event_log");
    let output = gitrev(&["check-schema"], &url);
    let text = output_text(&output);
    assert!(
        !output.status.success(),
        "check-schema must fail after the view changed:\n{text}"
    );
    assert!(
        text.contains("view event_log"),
        "the changed view is named:\n{text}"
    );
}

#[tokio::test]
async fn check_schema_names_a_dropped_trigger_and_a_changed_function() {
    // The link tier trusts the change log these write: losing one must not go unnoticed.
    let url = migrated_database("chtrig").await;
    let db = connect(&url).await;
    db.batch_execute("DROP TRIGGER urls_log_updates ON urls")
        .await
        .expect("dropping the update trigger");
    let output = gitrev(&["check-schema"], &url);
    let text = output_text(&output);
    assert!(
        !output.status.success(),
        "check-schema must fail after DROP TRIGGER:\n{text}"
    );
    assert!(
        text.contains("trigger urls_log_updates on urls"),
        "the dropped trigger is named:\n{text}"
    );

    let url = migrated_database("chfunc").await;
    let db = connect(&url).await;
    db.batch_execute(
        "CREATE OR REPLACE FUNCTION log_link_changes() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RETURN NULL; END $$",
    )
    .await
    .expect("replacing the trigger function");
    let output = gitrev(&["check-schema"], &url);
    let text = output_text(&output);
    assert!(
        !output.status.success(),
        "check-schema must fail after the function changed:\n{text}"
    );
    assert!(
        text.contains("function log_link_changes"),
        "the changed function is named:\n{text}"
    );
}
