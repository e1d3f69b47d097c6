//! CSV parsing for seeding and bulk import: the users, urls and events files, row by row.
//!
//! A bad row never aborts the rest: it becomes a [`RowError`] with its line number (the header is
//! line 1) and the other rows go on. Only a file that cannot be read as a table at all (a missing
//! required column) is refused whole. Nothing here touches the database.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{self, parse_timestamp};
use crate::shortcode;

/// A row that was skipped, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub error: String,
}

/// The file as a whole cannot be imported.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    #[error("the CSV header lacks required column(s): {0}")]
    MissingColumns(String),
    #[error("the CSV file is empty")]
    Empty,
    #[error("the CSV file cannot be read: {0}")]
    Unreadable(String),
}

/// Rows that parsed, and rows that did not.
#[derive(Debug)]
pub struct Parsed<T> {
    pub rows: Vec<T>,
    pub errors: Vec<RowError>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UserRow {
    pub line: u64,
    pub id: Option<i64>,
    pub username: String,
    pub email: String,
    pub created_at: Option<NaiveDateTime>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UrlRow {
    pub line: u64,
    pub id: Option<i64>,
    pub user_id: Option<i64>,
    pub short_code: String,
    pub original_url: String,
    pub title: Option<String>,
    pub is_active: bool,
    pub created_at: Option<NaiveDateTime>,
    pub updated_at: Option<NaiveDateTime>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EventRow {
    pub line: u64,
    pub id: Option<i64>,
    pub url_id: i64,
    pub user_id: Option<i64>,
    pub event_type: String,
    pub timestamp: Option<NaiveDateTime>,
    pub details: Value,
}

/// A record with its columns looked up by header name.
struct Record<'a> {
    columns: &'a HashMap<String, usize>,
    record: &'a csv::StringRecord,
}

impl Record<'_> {
    /// The trimmed cell, `None` when the column is absent or the cell is empty.
    fn get(&self, column: &str) -> Option<&str> {
        let idx = *self.columns.get(column)?;
        self.record
            .get(idx)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    fn required(&self, column: &str) -> Result<&str, String> {
        self.get(column)
            .ok_or_else(|| format!("{column} is required"))
    }

    fn id(&self, column: &str) -> Result<Option<i64>, String> {
        match self.get(column) {
            None => Ok(None),
            Some(text) => match text.parse::<i64>() {
                Ok(v) if v > 0 => Ok(Some(v)),
                _ => Err(format!("{column} must be a positive integer, got {text:?}")),
            },
        }
    }

    fn timestamp(&self, column: &str) -> Result<Option<NaiveDateTime>, String> {
        match self.get(column) {
            None => Ok(None),
            Some(text) => parse_timestamp(text)
                .map(Some)
                .ok_or_else(|| format!("{column} must be YYYY-MM-DD HH:MM:SS, got {text:?}")),
        }
    }
}

/// Reads a CSV file, checks its header for `required` columns and parses each record with `row`.
fn parse<T>(
    data: &[u8],
    required: &[&str],
    row: impl Fn(&Record<'_>, u64) -> Result<T, String>,
) -> Result<Parsed<T>, ImportError> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::Headers)
        .from_reader(data);
    let headers = reader
        .headers()
        .map_err(|e| ImportError::Unreadable(e.to_string()))?
        .clone();
    if headers.is_empty() || headers.iter().all(str::is_empty) {
        return Err(ImportError::Empty);
    }
    let columns: HashMap<String, usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| (h.to_ascii_lowercase(), i))
        .collect();
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|c| !columns.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        return Err(ImportError::MissingColumns(missing.join(", ")));
    }
    let mut parsed = Parsed {
        rows: Vec::new(),
        errors: Vec::new(),
    };
    // The csv reader counts lines by '\n' alone, so in a file with bare '\r' line ends every row
    // would be "line 1": a row is always on a later line than the one before it.
    let mut last_line = 1;
    let mut line_of = |position: Option<&csv::Position>| {
        last_line = position.map_or(0, csv::Position::line).max(last_line + 1);
        last_line
    };
    for result in reader.records() {
        match result {
            Ok(record) => {
                let line = line_of(record.position());
                if record.iter().all(|cell| cell.trim().is_empty()) {
                    continue;
                }
                let rec = Record {
                    columns: &columns,
                    record: &record,
                };
                match row(&rec, line) {
                    Ok(value) => parsed.rows.push(value),
                    Err(error) => parsed.errors.push(RowError { line, error }),
                }
            }
            Err(err) => {
                let line = line_of(err.position());
                parsed.errors.push(RowError {
                    line,
                    error: format!("unreadable row: {err}"),
                });
                if matches!(err.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
            }
        }
    }
    Ok(parsed)
}

/// Checks a value with one of the model's field rules, naming the column on failure.
fn checked<'a>(
    column: &str,
    value: &'a str,
    check: fn(&str) -> Result<(), String>,
) -> Result<&'a str, String> {
    check(value)
        .map(|()| value)
        .map_err(|problem| format!("{column} {problem}"))
}

/// `users.csv`: `id,username,email,created_at` (`id` and `created_at` optional).
pub fn parse_users(data: &[u8]) -> Result<Parsed<UserRow>, ImportError> {
    parse(data, &["username", "email"], |r, line| {
        Ok(UserRow {
            line,
            id: r.id("id")?,
            username: checked("username", r.required("username")?, model::check_username)?
                .to_owned(),
            email: checked("email", r.required("email")?, model::check_email)?.to_owned(),
            created_at: r.timestamp("created_at")?,
        })
    })
}

fn parse_bool(text: Option<&str>) -> Result<bool, String> {
    match text.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(true),
        Some("true" | "t" | "1" | "yes") => Ok(true),
        Some("false" | "f" | "0" | "no") => Ok(false),
        Some(other) => Err(format!("is_active must be True or False, got {other:?}")),
    }
}

/// `urls.csv`: `id,user_id,short_code,original_url,title,is_active,created_at,updated_at`.
pub fn parse_urls(data: &[u8]) -> Result<Parsed<UrlRow>, ImportError> {
    parse(data, &["short_code", "original_url"], |r, line| {
        Ok(UrlRow {
            line,
            id: r.id("id")?,
            user_id: r.id("user_id")?,
            short_code: checked(
                "short_code",
                r.required("short_code")?,
                shortcode::check_custom,
            )?
            .to_owned(),
            original_url: checked(
                "original_url",
                r.required("original_url")?,
                model::check_original_url,
            )?
            .to_owned(),
            title: r.get("title").map(str::to_owned),
            is_active: parse_bool(r.get("is_active"))?,
            created_at: r.timestamp("created_at")?,
            updated_at: r.timestamp("updated_at")?,
        })
    })
}

/// `events.csv`: `id,url_id,user_id,event_type,timestamp,details` (`details` a JSON object).
pub fn parse_events(data: &[u8]) -> Result<Parsed<EventRow>, ImportError> {
    parse(data, &["url_id", "event_type"], |r, line| {
        let details = match r.get("details") {
            None => Value::Object(Map::new()),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(v @ Value::Object(_)) if !crate::model::contains_nul(&v) => v,
                Ok(Value::Object(_)) => {
                    return Err("details must not contain NUL (U+0000) characters".into())
                }
                _ => return Err("details must be a JSON object".into()),
            },
        };
        Ok(EventRow {
            line,
            id: r.id("id")?,
            url_id: r.id("url_id")?.ok_or("url_id is required")?,
            user_id: r.id("user_id")?,
            event_type: r.required("event_type")?.to_owned(),
            timestamp: r.timestamp("timestamp")?,
            details,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_a_file_with_bare_cr_line_ends_get_their_own_lines() {
        // Found by the csv_import fuzz target: with '\r' line ends every row was "line 1".
        let parsed = parse_users(b"id,username,email\r1,a,not-an-email\r2,b,b@x.co\rx,c,c@x.co\r")
            .expect("a readable file");
        let lines: Vec<u64> = parsed.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 4], "{:?}", parsed.errors);
        assert_eq!(parsed.rows.len(), 1);
    }

    #[test]
    fn users_with_and_without_optional_columns() {
        let p = parse_users(b"id,username,email,created_at\n1,ada,ada@x.io,2025-01-02 03:04:05\n")
            .unwrap();
        assert_eq!(p.rows.len(), 1);
        assert_eq!(p.rows[0].id, Some(1));
        assert_eq!(p.rows[0].line, 2);
        let p = parse_users(b"email,username\nbob@x.io,bob\n").unwrap();
        assert_eq!(p.rows[0].id, None);
        assert_eq!(p.rows[0].username, "bob");
        assert_eq!(p.rows[0].created_at, None);
    }

    #[test]
    fn bad_rows_are_reported_with_their_line_and_the_rest_go_on() {
        let csv = b"id,username,email\n1,ok,ok@x.io\nx,bad,bad@x.io\n3,,empty@x.io\n4,noemail,nope\n5,fine,fine@x.io\n";
        let p = parse_users(csv).unwrap();
        assert_eq!(p.rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 6]);
        assert_eq!(
            p.errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert!(p.errors[0].error.contains("id"));
        assert!(p.errors[1].error.contains("username"));
        assert!(p.errors[2].error.contains("email"));
    }

    #[test]
    fn missing_columns_refuse_the_file() {
        assert_eq!(
            parse_users(b"id,name\n1,x\n").unwrap_err(),
            ImportError::MissingColumns("username, email".into())
        );
        assert_eq!(parse_users(b"").unwrap_err(), ImportError::Empty);
    }

    #[test]
    fn quoted_json_details_and_booleans() {
        let p = parse_events(
            b"id,url_id,user_id,event_type,timestamp,details\n1,2,3,created,2025-05-28 04:57:21,\"{\"\"a\"\":1}\"\n2,2,,x,,\"[1]\"\n",
        )
        .unwrap();
        assert_eq!(p.rows.len(), 1);
        assert_eq!(p.rows[0].details["a"], 1);
        assert_eq!(p.errors[0].line, 3);
        let p = parse_urls(
            b"id,user_id,short_code,original_url,title,is_active\n1,1,abc,https://x.io,T,False\n2,1,d/e,https://x.io,T,True\n3,1,ghi,notaurl,T,True\n4,1,jkl,https://x.io,T,maybe\n",
        )
        .unwrap();
        assert_eq!(p.rows.len(), 1);
        assert!(!p.rows[0].is_active);
        assert_eq!(p.errors.len(), 3);
    }

    #[test]
    fn the_reference_seed_set_parses_cleanly() {
        let users = parse_users(include_bytes!("../../../seed/users.csv")).unwrap();
        let urls = parse_urls(include_bytes!("../../../seed/urls.csv")).unwrap();
        let events = parse_events(include_bytes!("../../../seed/events.csv")).unwrap();
        assert_eq!((users.rows.len(), users.errors.len()), (400, 0));
        assert_eq!((urls.rows.len(), urls.errors.len()), (2000, 0));
        assert_eq!((events.rows.len(), events.errors.len()), (3422, 0));
    }
}
