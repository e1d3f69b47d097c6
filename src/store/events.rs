//! The `events` table: the log of what happened to urls.

use serde_json::Value;
use tokio_postgres::Row;

use super::{Filter, Page, Store, StoreError};
use crate::model::{Event, NewEvent};

const COLUMNS: &str = "id, url_id, user_id, event_type, timestamp, details";

pub fn event_from_row(row: &Row) -> Event {
    Event {
        id: row.get(0),
        url_id: row.get(1),
        user_id: row.get(2),
        event_type: row.get(3),
        timestamp: row.get(4),
        details: row.get(5),
    }
}

/// Filters of `GET /events`; they combine.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub url_id: Option<i64>,
    pub user_id: Option<i64>,
    pub event_type: Option<String>,
}

impl Store {
    /// Records an event; the url (and user, when given) must exist.
    pub async fn create_event(&self, new: &NewEvent) -> Result<Event, StoreError> {
        let mut conn = self.conn().await?;
        let stmt = conn
            .prepared(
                "WITH checked AS (
                    SELECT EXISTS (SELECT 1 FROM urls WHERE id = $1) AS url_ok,
                           ($2::bigint IS NULL OR EXISTS (SELECT 1 FROM users WHERE id = $2)) AS user_ok),
                 ins AS (
                    INSERT INTO events (url_id, user_id, event_type, details)
                    SELECT $1, $2, $3, $4 FROM checked WHERE url_ok AND user_ok
                    RETURNING id, url_id, user_id, event_type, timestamp, details)
                 SELECT checked.url_ok, checked.user_ok, ins.id, ins.url_id, ins.user_id,
                        ins.event_type, ins.timestamp, ins.details
                 FROM checked LEFT JOIN ins ON true",
            )
            .await?;
        let details = Value::Object(new.details.clone());
        let row = conn
            .client
            .query_one(
                &stmt,
                &[&new.url_id, &new.user_id, &new.event_type, &details],
            )
            .await?;
        if !row.get::<_, bool>(0) {
            return Err(StoreError::NotFound("url"));
        }
        if !row.get::<_, bool>(1) {
            return Err(StoreError::NotFound("user"));
        }
        Ok(Event {
            id: row.get(2),
            url_id: row.get(3),
            user_id: row.get(4),
            event_type: row.get(5),
            timestamp: row.get(6),
            details: row.get(7),
        })
    }

    pub async fn get_event(&self, id: i64) -> Result<Event, StoreError> {
        let mut conn = self.conn().await?;
        let stmt = conn
            .prepared(
                "SELECT id, url_id, user_id, event_type, timestamp, details FROM events
                 WHERE id = $1",
            )
            .await?;
        let row = conn.client.query_opt(&stmt, &[&id]).await?;
        row.map(|r| event_from_row(&r))
            .ok_or(StoreError::NotFound("event"))
    }

    pub async fn list_events(
        &self,
        filter: EventFilter,
        page: Page,
    ) -> Result<(Vec<Event>, i64), StoreError> {
        let filter = Filter::default()
            .eq("url_id", filter.url_id)
            .eq("user_id", filter.user_id)
            .eq("event_type", filter.event_type);
        let (rows, total) = self.list("events", COLUMNS, filter, page).await?;
        Ok((rows.iter().map(event_from_row).collect(), total))
    }
}
