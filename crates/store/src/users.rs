//! The `users` table.

use gitrev_core::model::{NewUser, User, UserChanges};
use tokio_postgres::Row;

use super::{sequences, Filter, Page, Store, StoreError};

const COLUMNS: &str = "id, username, email, created_at";

pub fn user_from_row(row: &Row) -> User {
    User {
        id: row.get(0),
        username: row.get(1),
        email: row.get(2),
        created_at: row.get(3),
    }
}

const INSERT: &str = "INSERT INTO users (username, email) VALUES ($1, $2)
    ON CONFLICT ((lower(email))) DO NOTHING
    RETURNING id, username, email, created_at";

/// One statement for a whole group, inserted in arrival order so the first of two requests with
/// the same email is the one that gets it.
const INSERT_GROUP: &str = "INSERT INTO users (username, email)
    SELECT username, email
    FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS g(username, email, arrival)
    ORDER BY arrival
    ON CONFLICT ((lower(email))) DO NOTHING
    RETURNING id, username, email, created_at";

impl Store {
    /// Inserts a user; `Conflict("email")` when the email is taken (in any letter case).
    pub async fn create_user(&self, new: &NewUser) -> Result<User, StoreError> {
        let mut conn = self.conn().await?;
        let stmt = conn.prepared(INSERT).await?;
        let mut repaired = false;
        loop {
            match conn
                .client
                .query_opt(&stmt, &[&new.username, &new.email])
                .await
                .map_err(StoreError::classify)
            {
                Ok(Some(row)) => return Ok(user_from_row(&row)),
                Ok(None) => return Err(StoreError::Conflict("email")),
                // The id sequence fell behind imported ids: move it past them once and retry.
                Err(StoreError::Conflict("id")) if !repaired => {
                    sequences::fix(&conn.client, &["users"]).await?;
                    repaired = true;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Inserts a group of users in one statement and answers each with its own row or its own
    /// error: the first request for an email (in any letter case) wins, later ones in the group
    /// get `Conflict("email")`. If the statement fails for a reason other than the database being
    /// unavailable, each user is retried alone so one bad row fails only its own request.
    pub async fn create_users(&self, group: &[NewUser]) -> Vec<Result<User, StoreError>> {
        let grouped = self.insert_group(group).await;
        super::answer_group(group, grouped, |new| self.create_user(new)).await
    }

    async fn insert_group(
        &self,
        group: &[NewUser],
    ) -> Result<Vec<Option<Result<User, StoreError>>>, StoreError> {
        let usernames: Vec<&str> = group.iter().map(|u| u.username.as_str()).collect();
        let emails: Vec<&str> = group.iter().map(|u| u.email.as_str()).collect();
        let mut conn = self.conn().await?;
        let stmt = conn.prepared(INSERT_GROUP).await?;
        let rows =
            super::query_fixing_sequences(&conn.client, &stmt, &[&usernames, &emails], &["users"])
                .await?;
        let mut inserted: std::collections::HashMap<String, User> = rows
            .iter()
            .map(|r| {
                let user = user_from_row(r);
                (user.email.to_lowercase(), user)
            })
            .collect();
        Ok(group
            .iter()
            .map(|new| {
                Some(
                    inserted
                        .remove(&new.email.to_lowercase())
                        .ok_or(StoreError::Conflict("email")),
                )
            })
            .collect())
    }

    pub async fn get_user(&self, id: i64) -> Result<User, StoreError> {
        let mut conn = self.conn().await?;
        let stmt = conn
            .prepared("SELECT id, username, email, created_at FROM users WHERE id = $1")
            .await?;
        let row = conn.client.query_opt(&stmt, &[&id]).await?;
        row.map(|r| user_from_row(&r))
            .ok_or(StoreError::NotFound("user"))
    }

    /// One page of users by id, and how many there are in all.
    pub async fn list_users(&self, page: Page) -> Result<(Vec<User>, i64), StoreError> {
        let (rows, total) = self.list("users", COLUMNS, Filter::default(), page).await?;
        Ok((rows.iter().map(user_from_row).collect(), total))
    }

    pub async fn update_user(&self, id: i64, changes: &UserChanges) -> Result<User, StoreError> {
        let mut conn = self.conn().await?;
        let stmt = conn
            .prepared(
                "UPDATE users SET username = COALESCE($2, username), email = COALESCE($3, email)
                 WHERE id = $1 RETURNING id, username, email, created_at",
            )
            .await?;
        let row = conn
            .client
            .query_opt(&stmt, &[&id, &changes.username, &changes.email])
            .await?;
        row.map(|r| user_from_row(&r))
            .ok_or(StoreError::NotFound("user"))
    }

    /// Deletes a user and their urls (recording a `deleted` event for each url) and returns the
    /// codes. Every replica hears of them from the triggers on `urls` (`sql/0006_link_changes.sql`).
    pub async fn delete_user(&self, id: i64) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.client.transaction().await?;
        let codes = tx
            .query(
                "WITH gone AS (DELETE FROM urls WHERE user_id = $1
                               RETURNING id, user_id, short_code, original_url),
                      logged AS (INSERT INTO events (url_id, user_id, event_type, details)
                                 SELECT id, user_id, 'deleted',
                                        jsonb_build_object('short_code', short_code,
                                                           'original_url', original_url,
                                                           'reason', 'user_deleted')
                                 FROM gone)
                 SELECT short_code FROM gone",
                &[&id],
            )
            .await?;
        let deleted = tx
            .execute("DELETE FROM users WHERE id = $1", &[&id])
            .await?;
        if deleted == 0 {
            return Err(StoreError::NotFound("user"));
        }
        let codes: Vec<String> = codes.iter().map(|r| r.get(0)).collect();
        tx.commit().await?;
        Ok(codes)
    }
}
