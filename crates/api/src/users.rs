//! `/users`, `/users/{id}` and `/users/bulk`.

use bytes::Bytes;
use gitrev_core::import;
use gitrev_core::model::{NewUser, UserChanges};
use gitrev_http::query::Query;
use gitrev_http::response;
use gitrev_store::seed;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use super::{list_response, AppState, HandlerResult};
use crate::error::ApiError;

pub async fn create(state: &AppState, body: Map<String, Value>) -> HandlerResult {
    let new = NewUser::from_json(&body)?;
    let writer = state.writers.as_ref().map(|w| &w.users);
    let user = super::write(writer, new, |new| async move {
        state.store.create_user(&new).await
    })
    .await?;
    Ok(response::json(StatusCode::CREATED, &user))
}

pub async fn list(state: &AppState, query: Option<&str>) -> HandlerResult {
    let mut query = Query::parse(query);
    let pagination = query.pagination(state.settings.list_cap);
    query.finish()?;
    let (users, total) = state.store.list_users(pagination.page()).await?;
    Ok(list_response("/users", &query, pagination, &users, total))
}

/// `GET /users` for a key bound to `user`: that user alone, paginated like any list.
pub async fn list_only(state: &AppState, query: Option<&str>, user: i64) -> HandlerResult {
    let mut query = Query::parse(query);
    let pagination = query.pagination(state.settings.list_cap);
    query.finish()?;
    let user = state.store.get_user(user).await?;
    let rows = if pagination.page().offset == 0 {
        vec![user]
    } else {
        Vec::new()
    };
    Ok(list_response("/users", &query, pagination, &rows, 1))
}

pub async fn get(state: &AppState, id: i64) -> HandlerResult {
    let user = state.store.get_user(id).await?;
    Ok(response::json(StatusCode::OK, &user))
}

pub async fn update(state: &AppState, id: i64, body: Map<String, Value>) -> HandlerResult {
    let changes = UserChanges::from_json(&body)?;
    let user = state.store.update_user(id, &changes).await?;
    Ok(response::json(StatusCode::OK, &user))
}

pub async fn delete(state: &AppState, id: i64) -> HandlerResult {
    for code in state.store.delete_user(id).await? {
        state.links.invalidate(&code).await;
    }
    Ok(response::no_content())
}

/// The CSV bytes of a bulk upload: a multipart `file` field or a raw `text/csv` body.
async fn csv_bytes(headers: &HeaderMap, bytes: Bytes) -> Result<Bytes, ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "multipart/form-data" => {
            let boundary = multer::parse_boundary(content_type).map_err(|e| {
                ApiError::InvalidBody(format!("the multipart body cannot be read: {e}"))
            })?;
            let stream =
                futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(bytes) });
            let mut multipart = multer::Multipart::new(stream, boundary);
            loop {
                match multipart.next_field().await {
                    Ok(Some(field)) if field.name() == Some("file") => {
                        return field.bytes().await.map_err(|e| {
                            ApiError::InvalidBody(format!("the multipart body cannot be read: {e}"))
                        })
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => {
                        return Err(ApiError::field(
                            "file",
                            "is required (a multipart field named `file` holding the CSV)",
                        ))
                    }
                    Err(e) => {
                        return Err(ApiError::InvalidBody(format!(
                            "the multipart body cannot be read: {e}"
                        )))
                    }
                }
            }
        }
        "text/csv" | "application/csv" => Ok(bytes),
        _ => Err(ApiError::UnsupportedMediaType(
            "send the CSV as multipart/form-data (field `file`) or as a text/csv body".into(),
        )),
    }
}

/// `POST /users/bulk`: imports a users CSV, row by row, reporting rows it skipped.
pub async fn bulk(state: &AppState, headers: &HeaderMap, incoming: Incoming) -> HandlerResult {
    let bytes = super::upload(state, headers, incoming).await?;
    let csv = csv_bytes(headers, bytes).await?;
    let parsed = import::parse_users(&csv).map_err(|e| ApiError::field("file", e.to_string()))?;
    let conn = state.store.conn().await?;
    let mut report = seed::import_users(&conn.client, &parsed.rows).await?;
    report.errors.extend(parsed.errors);
    report.errors.sort_by_key(|e| e.line);
    Ok(response::json(
        StatusCode::CREATED,
        &json!({
            "imported": report.written,
            "count": report.written,
            "skipped": report.errors.len(),
            "errors": report.errors,
        }),
    ))
}
