//! Schema drift: compares the live schema with the one the migrations define.
//!
//! The expected schema is built for real: inside a transaction that is always rolled back, the
//! migrations run in a scratch schema, and the catalog of both schemas is read the same way
//! (columns, indexes, constraints). Any difference is a drift, and so is an applied migration
//! whose file changed or a migration not applied yet.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::migrate::{self, MIGRATIONS};
use super::StoreError;

/// One object of the schema and its definition, keyed like `column urls.title`.
type Catalog = BTreeMap<String, String>;

async fn catalog(
    client: &impl tokio_postgres::GenericClient,
    schema: &str,
) -> Result<Catalog, tokio_postgres::Error> {
    let mut out = Catalog::new();
    let columns = client
        .query(
            "SELECT c.table_name::text, c.column_name::text,
                    format('%s %s default %s identity %s', c.data_type,
                           CASE WHEN c.is_nullable = 'YES' THEN 'null' ELSE 'not null' END,
                           COALESCE(c.column_default, '-'), c.is_identity)
             FROM information_schema.columns c
             JOIN information_schema.tables t
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name
             WHERE c.table_schema = $1 AND t.table_type = 'BASE TABLE'
               AND c.table_name <> 'schema_migrations'
               -- The click log's day partitions are made by the service, not by a migration.
               AND NOT EXISTS (SELECT 1 FROM pg_class p JOIN pg_namespace pn ON pn.oid = p.relnamespace
                               WHERE pn.nspname = c.table_schema AND p.relname = c.table_name
                                 AND p.relispartition)",
            &[&schema],
        )
        .await?;
    for row in columns {
        let (table, column, def): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        out.insert(format!("column {table}.{column}"), def);
    }
    let indexes = client
        .query(
            "SELECT t.relname::text, i.relname::text, pg_get_indexdef(x.indexrelid)
             FROM pg_index x
             JOIN pg_class i ON i.oid = x.indexrelid
             JOIN pg_class t ON t.oid = x.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = $1 AND t.relname <> 'schema_migrations' AND NOT t.relispartition",
            &[&schema],
        )
        .await?;
    let qualified = format!(" ON {schema}.");
    let qualified_only = format!(" ON ONLY {schema}.");
    for row in indexes {
        let (table, index, def): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        out.insert(
            format!("index {index} on {table}"),
            def.replace(&qualified, " ON ")
                .replace(&qualified_only, " ON ONLY "),
        );
    }
    let constraints = client
        .query(
            "SELECT t.relname::text, c.conname::text, pg_get_constraintdef(c.oid)
             FROM pg_constraint c
             JOIN pg_class t ON t.oid = c.conrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = $1 AND t.relname <> 'schema_migrations' AND NOT t.relispartition",
            &[&schema],
        )
        .await?;
    let views = client
        .query(
            "SELECT viewname::text, definition FROM pg_views WHERE schemaname = $1",
            &[&schema],
        )
        .await?;
    let prefix = format!("{schema}.");
    for row in views {
        let (view, def): (String, String) = (row.get(0), row.get(1));
        out.insert(format!("view {view}"), def.replace(&prefix, ""));
    }
    // Triggers and the functions the migrations define (not extensions' own): the link tier
    // trusts the change log they write, so a dropped or edited one is a drift.
    let triggers = client
        .query(
            "SELECT t.relname::text, g.tgname::text, pg_get_triggerdef(g.oid)
             FROM pg_trigger g
             JOIN pg_class t ON t.oid = g.tgrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = $1 AND NOT g.tgisinternal AND NOT t.relispartition",
            &[&schema],
        )
        .await?;
    for row in triggers {
        let (table, name, def): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        out.insert(
            format!("trigger {name} on {table}"),
            def.replace(&prefix, ""),
        );
    }
    let functions = client
        .query(
            "SELECT p.proname::text, pg_get_functiondef(p.oid)
             FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = $1 AND p.prokind = 'f'
               AND NOT EXISTS (SELECT 1 FROM pg_depend d
                               WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                 AND d.deptype = 'e')",
            &[&schema],
        )
        .await?;
    for row in functions {
        let (name, def): (String, String) = (row.get(0), row.get(1));
        out.insert(format!("function {name}"), def.replace(&prefix, ""));
    }
    for row in constraints {
        let (table, name, def): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        out.insert(
            format!("constraint {name} on {table}"),
            def.replace(&prefix, ""),
        );
    }
    Ok(out)
}

/// Every drift between the live schema and the migrations, as one sentence each; empty when none.
pub async fn check(client: &mut Client) -> Result<Vec<String>, StoreError> {
    let mut drifts = Vec::new();
    let applied = migrate::applied(client).await?;
    for problem in migrate::ledger_problems(&applied) {
        drifts.push(problem.to_string());
    }
    for m in MIGRATIONS {
        if !applied.iter().any(|a| a.version == m.version) {
            drifts.push(format!("migration {} has not been applied", m.name));
        }
    }

    let live_schema: String = client
        .query_one("SELECT current_schema()::text", &[])
        .await?
        .get(0);
    let scratch = format!("gitrev_expected_{}", std::process::id());
    let tx = client.transaction().await?;
    // The live schema stays on the path behind the scratch one, so the extensions installed there
    // (pg_trgm's operator classes) resolve, and print unqualified in both catalogs alike.
    tx.batch_execute(&format!(
        "CREATE SCHEMA {scratch}; SET LOCAL search_path TO {scratch}, {live_schema}"
    ))
    .await?;
    for m in MIGRATIONS {
        tx.batch_execute(m.sql).await?;
    }
    let expected = catalog(&tx, &scratch).await?;
    tx.batch_execute(&format!("SET LOCAL search_path TO {live_schema}"))
        .await?;
    let live = catalog(&tx, &live_schema).await?;
    tx.rollback().await?;

    for (object, want) in &expected {
        match live.get(object) {
            None => drifts.push(format!("missing {object} (expected: {want})")),
            Some(have) if have != want => {
                drifts.push(format!("changed {object}: expected {want}, found {have}"))
            }
            Some(_) => {}
        }
    }
    for object in live.keys().filter(|k| !expected.contains_key(*k)) {
        drifts.push(format!(
            "unexpected {object} (not defined by any migration)"
        ));
    }
    Ok(drifts)
}
