//! Id sequences: after rows are written with explicit ids (seeding, bulk import, a restore), the
//! identity sequence must be moved past the largest id or the next insert collides.
//!
//! Sequences only ever move forward: moving one back below ids that were handed out and deleted
//! would reuse them, and the event log still refers to the old owners of those ids.

use tokio_postgres::Client;

use super::StoreError;

pub const TABLES: &[&str] = &["users", "urls", "events"];

/// Moves the id sequence of each table past its largest id; returns each table's next id.
pub async fn fix(client: &Client, tables: &[&str]) -> Result<Vec<(String, i64)>, StoreError> {
    let mut next = Vec::with_capacity(tables.len());
    for table in tables {
        if !TABLES.contains(table) {
            return Err(StoreError::Internal(format!("unknown table {table}")));
        }
        // The table name comes from the fixed list above, never from input. Clicks take their
        // ids from the events sequence too.
        let largest = if *table == "events" {
            "GREATEST((SELECT MAX(id) FROM events), (SELECT MAX(last_id) FROM click_runs),
                       (SELECT MAX(id) FROM clicks))"
                .to_owned()
        } else {
            format!("(SELECT MAX(id) FROM {table})")
        };
        let sql = format!(
            "SELECT setval(s.seq, GREATEST(
                        COALESCE({largest}, 0) + 1,
                        COALESCE(pg_sequence_last_value(s.seq) + 1, 1)), false)
             FROM (SELECT pg_get_serial_sequence('{table}', 'id')::regclass AS seq) s"
        );
        let row = client.query_one(&sql, &[]).await?;
        next.push((table.to_string(), row.get::<_, i64>(0)));
    }
    Ok(next)
}
