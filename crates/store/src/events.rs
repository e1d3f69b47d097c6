//! The event log: the `events` table (what happened to urls) and the click log, read together
//! through the `event_log` view, one id space. A posted click goes to the click log like a
//! redirect's.

use gitrev_core::model::{Event, NewEvent};
use serde_json::Value;
use tokio_postgres::Row;

use super::clicks::{self, Click, Counting};
use super::{Filter, Page, Store, StoreError};

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

/// One statement for a group of `POST /events`: each row is checked (url exists, user exists when
/// given), the rows that pass get their id up front (a volatile CTE is evaluated exactly once),
/// are inserted, and every request's row comes back in arrival order with its checks and, when
/// inserted, its event.
const INSERT_GROUP: &str = "WITH input AS (
        SELECT g.arrival, g.url_id, g.user_id, g.event_type, g.details, c.url_ok, c.user_ok,
               CASE WHEN c.url_ok AND c.user_ok
                    THEN nextval(pg_get_serial_sequence('events', 'id')) END AS id
        FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::jsonb[])
             WITH ORDINALITY AS g(url_id, user_id, event_type, details, arrival)
        CROSS JOIN LATERAL (
            SELECT EXISTS (SELECT 1 FROM urls WHERE id = g.url_id) AS url_ok,
                   (g.user_id IS NULL OR EXISTS (SELECT 1 FROM users WHERE id = g.user_id)) AS user_ok
        ) AS c),
    ins AS (
        INSERT INTO events (id, url_id, user_id, event_type, details)
        SELECT id, url_id, user_id, event_type, details FROM input WHERE id IS NOT NULL
        ORDER BY arrival
        RETURNING id, url_id, user_id, event_type, timestamp, details)
    SELECT input.url_ok, input.user_ok, ins.id, ins.url_id, ins.user_id, ins.event_type,
           ins.timestamp, ins.details
    FROM input LEFT JOIN ins ON ins.id = input.id
    ORDER BY input.arrival";

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
        if new.event_type == "click" {
            return self
                .create_clicks(std::slice::from_ref(new))
                .await
                .pop()
                .unwrap_or_else(|| Err(StoreError::Internal("no answer".into())));
        }
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

    /// Records a group of events in one statement and answers each with its own row or its own
    /// `NotFound`. Ids are drawn per row before the insert, so each answer is matched to its
    /// request by id, not by the order rows come back in.
    pub async fn create_events(&self, group: &[NewEvent]) -> Vec<Result<Event, StoreError>> {
        if group.iter().any(|e| e.event_type == "click") {
            // Clicks go to the click log, the rest to `events`; answers keep the group's order.
            type Part<'a> = Vec<(usize, &'a NewEvent)>;
            let (click_group, other_group): (Part, Part) = group
                .iter()
                .enumerate()
                .partition(|(_, e)| e.event_type == "click");
            let clicks: Vec<NewEvent> = click_group.iter().map(|(_, e)| (*e).clone()).collect();
            let others: Vec<NewEvent> = other_group.iter().map(|(_, e)| (*e).clone()).collect();
            let mut answers: Vec<Option<Result<Event, StoreError>>> =
                group.iter().map(|_| None).collect();
            let click_answers = self.create_clicks(&clicks).await;
            let other_answers = if others.is_empty() {
                Vec::new()
            } else {
                Box::pin(self.create_events(&others)).await
            };
            for ((i, _), answer) in click_group.iter().zip(click_answers) {
                answers[*i] = Some(answer);
            }
            for ((i, _), answer) in other_group.iter().zip(other_answers) {
                answers[*i] = Some(answer);
            }
            return answers
                .into_iter()
                .map(|a| a.unwrap_or_else(|| Err(StoreError::Internal("no answer".into()))))
                .collect();
        }
        let grouped = self.insert_events(group).await;
        super::answer_group(group, grouped, |new| self.create_event(new)).await
    }

    /// Posted clicks: each url (and user, when given) must exist; the rest are written to the
    /// click log with their rollups in one transaction, with ids drawn up front so that each
    /// answer is the stored event.
    async fn create_clicks(&self, group: &[NewEvent]) -> Vec<Result<Event, StoreError>> {
        match self.try_create_clicks(group).await {
            Ok(answers) => answers,
            Err(err) => {
                let unavailable = matches!(err, StoreError::Unavailable(_));
                group
                    .iter()
                    .map(|_| {
                        Err(if unavailable {
                            StoreError::Unavailable(err.to_string())
                        } else {
                            StoreError::Internal(err.to_string())
                        })
                    })
                    .collect()
            }
        }
    }

    async fn try_create_clicks(
        &self,
        group: &[NewEvent],
    ) -> Result<Vec<Result<Event, StoreError>>, StoreError> {
        let url_ids: Vec<i64> = group.iter().map(|e| e.url_id).collect();
        let user_ids: Vec<Option<i64>> = group.iter().map(|e| e.user_id).collect();
        let (checks, ids) = {
            let conn = self.conn().await?;
            let checks = conn
                .client
                .query(
                    "SELECT EXISTS (SELECT 1 FROM urls WHERE id = g.url_id),
                            (g.user_id IS NULL OR EXISTS (SELECT 1 FROM users WHERE id = g.user_id)),
                            CASE WHEN EXISTS (SELECT 1 FROM urls WHERE id = g.url_id)
                                  AND (g.user_id IS NULL
                                       OR EXISTS (SELECT 1 FROM users WHERE id = g.user_id))
                                 THEN nextval('events_id_seq') END,
                            (now() AT TIME ZONE 'UTC')
                     FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS g(url_id, user_id, n)
                     ORDER BY g.n",
                    &[&url_ids, &user_ids],
                )
                .await?;
            let ids: Vec<i64> = checks
                .iter()
                .filter_map(|r| r.get::<_, Option<i64>>(2))
                .collect();
            (checks, ids)
        };
        let clicks: Vec<Click> = group
            .iter()
            .zip(&checks)
            .filter_map(|(new, check)| {
                let id: Option<i64> = check.get(2);
                id.map(|id| {
                    Click::from_details(
                        new.url_id,
                        new.user_id,
                        check.get(3),
                        Some(id),
                        new.details.clone(),
                    )
                })
            })
            .collect();
        self.record_clicks(&clicks, None, Counting::New).await?;
        let lowest = ids.iter().copied().min().unwrap_or_default();
        let highest = ids.iter().copied().max().unwrap_or_default();
        let stored: std::collections::HashMap<i64, Event> = {
            let conn = self.conn().await?;
            conn.client
                .query(
                    &format!(
                        "SELECT id, url_id, user_id, event_type, timestamp, details FROM click_log
                         WHERE {} AND id = ANY($1)",
                        clicks::runs_holding("$2", "$3")
                    ),
                    &[&ids, &lowest, &highest],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), event_from_row(r)))
                .collect()
        };
        Ok(checks
            .iter()
            .map(|check| {
                if !check.get::<_, bool>(0) {
                    return Err(StoreError::NotFound("url"));
                }
                if !check.get::<_, bool>(1) {
                    return Err(StoreError::NotFound("user"));
                }
                let id: Option<i64> = check.get(2);
                id.and_then(|id| stored.get(&id).cloned())
                    .ok_or_else(|| StoreError::Internal("a posted click was not stored".into()))
            })
            .collect())
    }

    async fn insert_events(
        &self,
        group: &[NewEvent],
    ) -> Result<Vec<Option<Result<Event, StoreError>>>, StoreError> {
        let url_ids: Vec<i64> = group.iter().map(|e| e.url_id).collect();
        let user_ids: Vec<Option<i64>> = group.iter().map(|e| e.user_id).collect();
        let types: Vec<&str> = group.iter().map(|e| e.event_type.as_str()).collect();
        let details: Vec<Value> = group
            .iter()
            .map(|e| Value::Object(e.details.clone()))
            .collect();
        let mut conn = self.conn().await?;
        let stmt = conn.prepared(INSERT_GROUP).await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&url_ids, &user_ids, &types, &details];
        let rows = super::query_fixing_sequences(&conn.client, &stmt, &params, &["events"]).await?;
        Ok(rows
            .iter()
            .map(|row| {
                if !row.get::<_, bool>(0) {
                    return Some(Err(StoreError::NotFound("url")));
                }
                if !row.get::<_, bool>(1) {
                    return Some(Err(StoreError::NotFound("user")));
                }
                // Checked but not inserted cannot happen; should it, the request goes alone.
                let id: Option<i64> = row.get(2);
                id.map(|id| {
                    Ok(Event {
                        id,
                        url_id: row.get(3),
                        user_id: row.get(4),
                        event_type: row.get(5),
                        timestamp: row.get(6),
                        details: row.get(7),
                    })
                })
            })
            .collect())
    }

    pub async fn get_event(&self, id: i64) -> Result<Event, StoreError> {
        let mut conn = self.conn().await?;
        // Clicks are found through the runs that may hold the id (`click_log`): the view
        // `event_log` unnests every run for an id it cannot see inside one.
        let sql = format!(
            "SELECT id, url_id, user_id, event_type, timestamp, details FROM (
                SELECT id, url_id, user_id, event_type, timestamp, details FROM events
                WHERE id = $1
                UNION ALL
                SELECT id, url_id, user_id, event_type, timestamp, details FROM click_log
                WHERE {} AND id = $1) e
             WHERE NOT (event_type = 'click' AND timestamp < COALESCE($2::timestamp, '-infinity'))",
            clicks::runs_holding("$1", "$1")
        );
        let stmt = conn.prepared(&sql).await?;
        let row = conn
            .client
            .query_opt(&stmt, &[&id, &self.click_retention_cutoff()])
            .await?;
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
            .eq("event_type", filter.event_type)
            .clause(
                "NOT (event_type = 'click' AND timestamp < $?)",
                self.click_retention_cutoff(),
            );
        // Chosen from `event_rows` (no click's details built yet), then the page's clicks get
        // theirs: a url with millions of clicks sorts its ids, not its JSON.
        let (rows, total) = self
            .list_then(
                "event_rows",
                "id, url_id, user_id, event_type, timestamp, details, link_id, context_id",
                Some(
                    "SELECT p.id, p.url_id, p.user_id, p.event_type, p.timestamp,
                            COALESCE(p.details, click_details(l, x))
                     FROM page p
                     LEFT JOIN click_links l ON l.id = p.link_id
                     LEFT JOIN click_contexts x ON x.id = p.context_id
                     ORDER BY p.id",
                ),
                filter,
                page,
            )
            .await?;
        Ok((rows.iter().map(event_from_row).collect(), total))
    }
}
