//! The resources (users, urls, events), their validation and their JSON form.
//!
//! Request bodies arrive as a JSON object (`serde_json::Map`) and are checked field by field here,
//! so a client learns every bad field at once. Timestamps are rendered in exactly one place
//! ([`render_timestamp`]): UTC, `YYYY-MM-DDTHH:MM:SS`, no zone, no fraction.

use chrono::{NaiveDateTime, Timelike};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::shortcode;

/// A field name and what is wrong with it.
pub type FieldError = (String, String);

/// A JSON object (or query string) that fails validation: one entry per bad field, so a client
/// learns every problem at once. The API answers it with 422 and the fields as `details`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("validation failed")]
pub struct ValidationError(pub Vec<FieldError>);

impl ValidationError {
    /// One bad field.
    pub fn field(field: &str, message: impl Into<String>) -> ValidationError {
        ValidationError(vec![(field.to_owned(), message.into())])
    }
}

pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_TITLE_LEN: usize = 500;
pub const MAX_EVENT_TYPE_LEN: usize = 64;

pub fn render_timestamp(ts: &NaiveDateTime) -> String {
    ts.format(TIMESTAMP_FORMAT).to_string()
}

/// Parses `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS` (the seed files use the former), with
/// an optional fraction of a second.
pub fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
        .ok()
}

/// A moment in a query string (UTC), exactly one of: `YYYY-MM-DD` (its midnight) or
/// `YYYY-MM-DDTHH:MM:SS` (a space for the `T` too), with an optional fraction of up to nine
/// digits; either may end in `Z`. Four-digit years, two-digit fields, ASCII digits only; no leap
/// second. Surrounding whitespace is ignored.
pub fn parse_instant(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    let text = text.strip_suffix('Z').unwrap_or(text);
    let b = text.as_bytes();
    let digits = |from: usize, to: usize| {
        b.get(from..to)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    let date = b.len() >= 10
        && digits(0, 4)
        && b[4] == b'-'
        && digits(5, 7)
        && b[7] == b'-'
        && digits(8, 10);
    if !date {
        return None;
    }
    if b.len() == 10 {
        return chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()?
            .and_hms_opt(0, 0, 0);
    }
    let time = b.len() >= 19
        && (b[10] == b'T' || b[10] == b' ')
        && digits(11, 13)
        && b[13] == b':'
        && digits(14, 16)
        && b[16] == b':'
        && digits(17, 19)
        && &b[17..19] != b"60";
    if !time {
        return None;
    }
    let rest = &b[19..];
    let fraction = rest.is_empty()
        || (rest[0] == b'.'
            && (2..=10).contains(&rest.len())
            && rest[1..].iter().all(u8::is_ascii_digit));
    if !fraction {
        return None;
    }
    parse_timestamp(text)
}

fn ser_ts<S: Serializer>(ts: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&ts.format(TIMESTAMP_FORMAT))
}

fn ser_opt_ts<S: Serializer>(ts: &Option<NaiveDateTime>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(ts) => ser_ts(ts, s),
        None => s.serialize_none(),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    #[serde(serialize_with = "ser_ts")]
    pub created_at: NaiveDateTime,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Url {
    pub id: i64,
    pub user_id: Option<i64>,
    pub short_code: String,
    pub original_url: String,
    pub title: Option<String>,
    pub is_active: bool,
    #[serde(serialize_with = "ser_ts")]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "ser_ts")]
    pub updated_at: NaiveDateTime,
    #[serde(flatten)]
    pub options: LinkOptions,
}

/// How a link behaves beyond its target (docs/api.md, "Link lifecycle and redirect options").
/// Every field is optional on create and update; `null` sets it back to unset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LinkOptions {
    /// From this second on (UTC) the link is expired. Whole seconds.
    #[serde(serialize_with = "ser_opt_ts")]
    pub expires_at: Option<NaiveDateTime>,
    /// Once the url has this many clicks it is expired.
    pub max_clicks: Option<i64>,
    /// Where an expired link redirects (302, no click); unset: 404 `expired`.
    pub expired_url: Option<String>,
    /// 301, 302, 307 or 308; unset: the server's default.
    pub redirect_status: Option<i16>,
    /// Append the request's query string to the target's.
    pub forward_query: bool,
    /// Up to [`MAX_TAGS`] distinct tags of 1 to [`MAX_TAG_LEN`] characters; `[]` when none.
    pub tags: Vec<String>,
}

impl Url {
    /// This url with `changes` applied, and each field whose value actually changed with its new
    /// value as JSON (one `updated` event each), in a fixed order.
    pub fn apply(&self, changes: &UrlChanges) -> (Url, Vec<(&'static str, Value)>) {
        let mut new = self.clone();
        let mut changed: Vec<(&'static str, Value)> = Vec::new();
        fn set<T: PartialEq + Clone + Serialize>(
            field: &'static str,
            slot: &mut T,
            value: Option<&T>,
            changed: &mut Vec<(&'static str, Value)>,
        ) {
            if let Some(value) = value {
                if value != slot {
                    *slot = value.clone();
                    changed.push((field, serde_json::to_value(&*slot).unwrap_or(Value::Null)));
                }
            }
        }
        let c = changes;
        set("title", &mut new.title, c.title.as_ref(), &mut changed);
        set(
            "is_active",
            &mut new.is_active,
            c.is_active.as_ref(),
            &mut changed,
        );
        set(
            "original_url",
            &mut new.original_url,
            c.original_url.as_ref(),
            &mut changed,
        );
        let o = &mut new.options;
        if let Some(at) = c.expires_at {
            if at != o.expires_at {
                o.expires_at = at;
                changed.push((
                    "expires_at",
                    at.map_or(Value::Null, |t| render_timestamp(&t).into()),
                ));
            }
        }
        set(
            "max_clicks",
            &mut o.max_clicks,
            c.max_clicks.as_ref(),
            &mut changed,
        );
        set(
            "expired_url",
            &mut o.expired_url,
            c.expired_url.as_ref(),
            &mut changed,
        );
        set(
            "redirect_status",
            &mut o.redirect_status,
            c.redirect_status.as_ref(),
            &mut changed,
        );
        set(
            "forward_query",
            &mut o.forward_query,
            c.forward_query.as_ref(),
            &mut changed,
        );
        set("tags", &mut o.tags, c.tags.as_ref(), &mut changed);
        (new, changed)
    }
}

pub const MAX_TAGS: usize = 20;
pub const MAX_TAG_LEN: usize = 50;
/// The redirect statuses a link may ask for.
pub const REDIRECT_STATUSES: [i16; 4] = [301, 302, 307, 308];

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub id: i64,
    pub url_id: i64,
    pub user_id: Option<i64>,
    pub event_type: String,
    #[serde(serialize_with = "ser_ts")]
    pub timestamp: NaiveDateTime,
    /// Always a JSON object.
    pub details: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UrlStats {
    pub url_id: i64,
    /// Every click, bots included.
    pub clicks: i64,
    /// The clicks classified as bots.
    pub bot_clicks: i64,
    #[serde(serialize_with = "ser_opt_ts")]
    pub last_click_at: Option<NaiveDateTime>,
}

/// `POST /users`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewUser {
    pub username: String,
    pub email: String,
}

/// `PUT|PATCH /users/{id}`: absent fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserChanges {
    pub username: Option<String>,
    pub email: Option<String>,
}

/// `POST /urls`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewUrl {
    pub original_url: String,
    pub user_id: Option<i64>,
    pub title: Option<String>,
    /// A custom code; `None` means generate one.
    pub short_code: Option<String>,
    pub is_active: bool,
    pub options: LinkOptions,
}

/// `PUT|PATCH /urls/{id}`: `None` leaves a field alone; `title: Some(None)` clears the title.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UrlChanges {
    pub title: Option<Option<String>>,
    pub is_active: Option<bool>,
    pub original_url: Option<String>,
    pub expires_at: Option<Option<NaiveDateTime>>,
    pub max_clicks: Option<Option<i64>>,
    pub expired_url: Option<Option<String>>,
    pub redirect_status: Option<Option<i16>>,
    pub forward_query: Option<bool>,
    pub tags: Option<Vec<String>>,
}

/// `POST /events`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    pub url_id: i64,
    pub user_id: Option<i64>,
    pub details: Map<String, Value>,
}

/// `POST /keys` (the key itself is made by the store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewKey {
    /// Trimmed, 1 to [`MAX_KEY_NAME_LEN`] characters.
    pub name: String,
    /// `read`, `write` or `admin`.
    pub scope: String,
    pub user_id: Option<i64>,
    pub rate: Option<u32>,
    pub burst: Option<u32>,
}

pub const MAX_KEY_NAME_LEN: usize = 100;
/// The largest `rate` (per second) or `burst` a key may be given.
pub const MAX_KEY_LIMIT: i64 = 1_000_000;

/// Collects every field problem of one body before answering.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    fn new(obj: &'a Map<String, Value>) -> Self {
        Fields {
            obj,
            errors: Vec::new(),
        }
    }

    fn fail(&mut self, field: &str, problem: impl Into<String>) {
        self.errors.push((field.to_owned(), problem.into()));
    }

    /// A string field passed through `check`; `Ok(None)` when absent.
    fn string(
        &mut self,
        field: &str,
        required: bool,
        check: fn(&str) -> Result<(), String>,
    ) -> Option<String> {
        match self.obj.get(field) {
            None | Some(Value::Null) if required => {
                self.fail(field, "is required");
                None
            }
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match check(s) {
                Ok(()) => Some(s.clone()),
                Err(problem) => {
                    self.fail(field, problem);
                    None
                }
            },
            Some(_) => {
                self.fail(field, "must be a string");
                None
            }
        }
    }

    fn integer(&mut self, field: &str, required: bool) -> Option<i64> {
        match self.obj.get(field) {
            None | Some(Value::Null) => {
                if required {
                    self.fail(field, "is required");
                }
                None
            }
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) => Some(v),
                None => {
                    self.fail(field, "must be an integer");
                    None
                }
            },
            Some(_) => {
                self.fail(field, "must be an integer");
                None
            }
        }
    }

    /// An integer field from `min` to `max`; `None` when absent.
    fn ranged(&mut self, field: &str, min: i64, max: i64) -> Option<i64> {
        let value = self.integer(field, false)?;
        if (min..=max).contains(&value) {
            Some(value)
        } else {
            self.fail(field, format!("must be an integer from {min} to {max}"));
            None
        }
    }

    fn boolean(&mut self, field: &str) -> Option<bool> {
        match self.obj.get(field) {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.fail(field, "must be a boolean");
                None
            }
        }
    }

    /// The link options present in the body: `None` for an absent field, `Some(None)` for `null`
    /// (unset), `Some(Some(v))` for a good value; a bad value is reported and reads as absent.
    fn options(&mut self) -> OptionFields {
        let null = |f: &Self, field: &str| matches!(f.obj.get(field), Some(Value::Null));
        let expires_at = if null(self, "expires_at") {
            Some(None)
        } else {
            match self.obj.get("expires_at") {
                None => None,
                Some(Value::String(s)) => match parse_instant(s) {
                    Some(at) => Some(Some(at.with_nanosecond(0).unwrap_or(at))),
                    None => {
                        self.fail("expires_at", TIMESTAMP_PROBLEM);
                        None
                    }
                },
                Some(_) => {
                    self.fail("expires_at", TIMESTAMP_PROBLEM);
                    None
                }
            }
        };
        let max_clicks = if null(self, "max_clicks") {
            Some(None)
        } else {
            self.ranged("max_clicks", 1, i64::MAX).map(Some)
        };
        let expired_url = if null(self, "expired_url") {
            Some(None)
        } else {
            self.string("expired_url", false, check_original_url)
                .map(Some)
        };
        let redirect_status = if null(self, "redirect_status") {
            Some(None)
        } else {
            match self.integer("redirect_status", false) {
                Some(n) => match REDIRECT_STATUSES.iter().find(|s| i64::from(**s) == n) {
                    Some(status) => Some(Some(*status)),
                    None => {
                        self.fail("redirect_status", "must be 301, 302, 307 or 308");
                        None
                    }
                },
                None => None,
            }
        };
        let forward_query = if null(self, "forward_query") {
            Some(false)
        } else {
            self.boolean("forward_query")
        };
        let tags = match self.obj.get("tags") {
            None => None,
            Some(Value::Null) => Some(Vec::new()),
            Some(value) => match check_tags(value) {
                Ok(tags) => Some(tags),
                Err(problem) => {
                    self.fail("tags", problem);
                    None
                }
            },
        };
        OptionFields {
            expires_at,
            max_clicks,
            expired_url,
            redirect_status,
            forward_query,
            tags,
        }
    }

    fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, ValidationError> {
        if self.errors.is_empty() {
            Ok(value())
        } else {
            Err(ValidationError(self.errors))
        }
    }
}

/// [`LinkOptions`] as a body gave them (see [`Fields::options`]).
struct OptionFields {
    expires_at: Option<Option<NaiveDateTime>>,
    max_clicks: Option<Option<i64>>,
    expired_url: Option<Option<String>>,
    redirect_status: Option<Option<i16>>,
    forward_query: Option<bool>,
    tags: Option<Vec<String>>,
}

const TIMESTAMP_PROBLEM: &str = "must be a UTC timestamp, YYYY-MM-DDTHH:MM:SS";

/// Tags: an array of at most [`MAX_TAGS`] distinct strings of 1 to [`MAX_TAG_LEN`] characters,
/// not blank, without control characters.
pub fn check_tags(value: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err("must be an array of strings".into());
    };
    if items.len() > MAX_TAGS {
        return Err(format!("must hold at most {MAX_TAGS} tags"));
    }
    let mut tags: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(tag) = item else {
            return Err("must be an array of strings".into());
        };
        check_tag(tag)?;
        if tags.contains(tag) {
            return Err(format!("must not repeat a tag ({tag:?} is there twice)"));
        }
        tags.push(tag.clone());
    }
    Ok(tags)
}

/// One tag (also what `GET /urls?tag=` takes).
pub fn check_tag(tag: &str) -> Result<(), String> {
    if tag.chars().any(char::is_control) {
        Err("a tag must not contain control characters".into())
    } else if tag.trim().is_empty() || tag.chars().count() > MAX_TAG_LEN {
        Err(format!(
            "a tag must be 1 to {MAX_TAG_LEN} characters, not blank"
        ))
    } else {
        Ok(())
    }
}

/// PostgreSQL text cannot hold U+0000 (and JSONB cannot hold `\u0000`): refused up front as a
/// 422, never left to fail in the database as a 500 (found by Schemathesis).
const NUL: &str = "must not contain NUL (U+0000) characters";

/// Whether a JSON value holds U+0000 in any string or key, at any depth.
pub fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

pub fn check_username(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        Err(NUL.into())
    } else if s.trim().is_empty() {
        Err("must not be empty".into())
    } else if s.chars().count() > MAX_NAME_LEN {
        Err(format!("must be at most {MAX_NAME_LEN} characters"))
    } else {
        Ok(())
    }
}

pub fn check_email(s: &str) -> Result<(), String> {
    const PROBLEM: &str = "must be a valid email address";
    if s.chars().count() > MAX_NAME_LEN {
        return Err(format!("must be at most {MAX_NAME_LEN} characters"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(PROBLEM.into());
    }
    let mut parts = s.split('@');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(local), Some(domain), None)
            if !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            Ok(())
        }
        _ => Err(PROBLEM.into()),
    }
}

/// An absolute http(s) URL with a host.
pub fn check_original_url(s: &str) -> Result<(), String> {
    const PROBLEM: &str = "must be an absolute http(s) URL with a host";
    if s.len() > MAX_URL_LEN {
        return Err(format!("must be at most {MAX_URL_LEN} bytes"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(PROBLEM.into());
    }
    match url::Url::parse(s) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(())
        }
        _ => Err(PROBLEM.into()),
    }
}

fn check_title(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        Err(NUL.into())
    } else if s.chars().count() > MAX_TITLE_LEN {
        Err(format!("must be at most {MAX_TITLE_LEN} characters"))
    } else {
        Ok(())
    }
}

fn check_event_type(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        Err(NUL.into())
    } else if s.trim().is_empty() {
        Err("must not be empty".into())
    } else if s.len() > MAX_EVENT_TYPE_LEN {
        Err(format!("must be at most {MAX_EVENT_TYPE_LEN} bytes"))
    } else {
        Ok(())
    }
}

pub fn check_key_name(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        Err(NUL.into())
    } else if !(1..=MAX_KEY_NAME_LEN).contains(&s.trim().chars().count()) {
        Err(format!("must be 1 to {MAX_KEY_NAME_LEN} characters"))
    } else {
        Ok(())
    }
}

fn check_scope(s: &str) -> Result<(), String> {
    match s {
        "read" | "write" | "admin" => Ok(()),
        _ => Err("must be read, write or admin".into()),
    }
}

/// Why a key cannot be `admin` and bound to a user at once.
pub const ADMIN_UNBOUND: &str = "an admin key covers every user: it cannot be bound to one";

impl NewKey {
    pub fn from_json(obj: &Map<String, Value>) -> Result<NewKey, ValidationError> {
        let mut f = Fields::new(obj);
        let name = f.string("name", true, check_key_name);
        let scope = f.string("scope", true, check_scope);
        let user_id = f.ranged("user_id", 1, i64::MAX);
        if user_id.is_some() && scope.as_deref() == Some("admin") {
            f.fail("user_id", ADMIN_UNBOUND);
        }
        let limit = |n: i64| u32::try_from(n).ok();
        let rate = f.ranged("rate", 1, MAX_KEY_LIMIT).and_then(limit);
        let burst = f.ranged("burst", 1, MAX_KEY_LIMIT).and_then(limit);
        f.finish(|| NewKey {
            name: name.expect("checked").trim().to_owned(),
            scope: scope.expect("checked"),
            user_id,
            rate,
            burst,
        })
    }
}

impl NewUser {
    pub fn from_json(obj: &Map<String, Value>) -> Result<NewUser, ValidationError> {
        let mut f = Fields::new(obj);
        let username = f.string("username", true, check_username);
        let email = f.string("email", true, check_email);
        f.finish(|| NewUser {
            username: username.expect("checked"),
            email: email.expect("checked"),
        })
    }
}

impl UserChanges {
    pub fn from_json(obj: &Map<String, Value>) -> Result<UserChanges, ValidationError> {
        let mut f = Fields::new(obj);
        let username = f.string("username", false, check_username);
        let email = f.string("email", false, check_email);
        if matches!(obj.get("username"), Some(Value::Null)) {
            f.fail("username", "must be a string");
        }
        if matches!(obj.get("email"), Some(Value::Null)) {
            f.fail("email", "must be a string");
        }
        f.finish(|| UserChanges { username, email })
    }
}

impl NewUrl {
    pub fn from_json(obj: &Map<String, Value>) -> Result<NewUrl, ValidationError> {
        let mut f = Fields::new(obj);
        let original_url = f.string("original_url", true, check_original_url);
        let user_id = f.integer("user_id", false);
        let title = f.string("title", false, check_title);
        let short_code = f.string("short_code", false, shortcode::check_custom);
        let is_active = f.boolean("is_active").unwrap_or(true);
        let o = f.options();
        f.finish(|| NewUrl {
            original_url: original_url.expect("checked"),
            user_id,
            title,
            short_code,
            is_active,
            options: LinkOptions {
                expires_at: o.expires_at.flatten(),
                max_clicks: o.max_clicks.flatten(),
                expired_url: o.expired_url.flatten(),
                redirect_status: o.redirect_status.flatten(),
                forward_query: o.forward_query.unwrap_or(false),
                tags: o.tags.unwrap_or_default(),
            },
        })
    }
}

impl UrlChanges {
    pub fn from_json(obj: &Map<String, Value>) -> Result<UrlChanges, ValidationError> {
        let mut f = Fields::new(obj);
        let title = match obj.get("title") {
            Some(Value::Null) => Some(None),
            _ => f.string("title", false, check_title).map(Some),
        };
        let is_active = f.boolean("is_active");
        let original_url = f.string("original_url", false, check_original_url);
        if matches!(obj.get("original_url"), Some(Value::Null)) {
            f.fail("original_url", "must be a string");
        }
        let o = f.options();
        f.finish(|| UrlChanges {
            title,
            is_active,
            original_url,
            expires_at: o.expires_at,
            max_clicks: o.max_clicks,
            expired_url: o.expired_url,
            redirect_status: o.redirect_status,
            forward_query: o.forward_query,
            tags: o.tags,
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == UrlChanges::default()
    }
}

impl NewEvent {
    pub fn from_json(obj: &Map<String, Value>) -> Result<NewEvent, ValidationError> {
        let mut f = Fields::new(obj);
        let event_type = f.string("event_type", true, check_event_type);
        let url_id = f.integer("url_id", true);
        let user_id = f.integer("user_id", false);
        let details = match obj.get("details") {
            None | Some(Value::Null) => Some(Map::new()),
            Some(value @ Value::Object(map)) => {
                if contains_nul(value) {
                    f.fail("details", NUL);
                    None
                } else {
                    Some(map.clone())
                }
            }
            Some(_) => {
                f.fail("details", "must be an object");
                None
            }
        };
        f.finish(|| NewEvent {
            event_type: event_type.expect("checked"),
            url_id: url_id.expect("checked"),
            user_id,
            details: details.expect("checked"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("test body must be an object"),
        }
    }

    fn bad_fields(err: ValidationError) -> Vec<String> {
        err.0.into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn new_user_accepts_strings() {
        let u = NewUser::from_json(&obj(json!({"username": "ada", "email": "ada@x.io"}))).unwrap();
        assert_eq!(u.username, "ada");
        assert_eq!(u.email, "ada@x.io");
    }

    #[test]
    fn new_user_names_every_bad_field() {
        let err = NewUser::from_json(&obj(json!({"username": 7}))).unwrap_err();
        assert_eq!(bad_fields(err), ["username", "email"]);
        let err = NewUser::from_json(&obj(json!({"username": "a", "email": "no-at"}))).unwrap_err();
        assert_eq!(bad_fields(err), ["email"]);
        let err =
            NewUser::from_json(&obj(json!({"username": "  ", "email": ["a@b.c"]}))).unwrap_err();
        assert_eq!(bad_fields(err), ["username", "email"]);
    }

    #[test]
    fn emails() {
        for good in ["a@b.co", "first.last+tag@sub.example.org"] {
            assert!(check_email(good).is_ok(), "{good}");
        }
        for bad in [
            "", "a", "@b.co", "a@b", "a@@b.co", "a b@c.co", "a@.co", "a@co.",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn original_urls() {
        for good in [
            "http://x.io",
            "https://example.com/a?b=c#d",
            "https://[::1]:8080/",
        ] {
            assert!(check_original_url(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "hello",
            "example.com",
            "ftp://x",
            "javascript:alert(1)",
            "http://",
            "https:// x.io",
            "mailto:a@b.co",
        ] {
            assert!(check_original_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_url_defaults_and_errors() {
        let u = NewUrl::from_json(&obj(json!({"original_url": "https://x.io"}))).unwrap();
        assert!(u.is_active);
        assert_eq!(u.short_code, None);
        let err = NewUrl::from_json(&obj(json!({"original_url": 5, "user_id": "1",
            "is_active": "yes", "short_code": "users"})))
        .unwrap_err();
        assert_eq!(
            bad_fields(err),
            ["original_url", "user_id", "short_code", "is_active"]
        );
    }

    #[test]
    fn url_changes_distinguish_absent_and_null_title() {
        let c = UrlChanges::from_json(&obj(json!({"title": null}))).unwrap();
        assert_eq!(c.title, Some(None));
        let c = UrlChanges::from_json(&obj(json!({}))).unwrap();
        assert!(c.is_empty());
        assert!(UrlChanges::from_json(&obj(json!({"original_url": null}))).is_err());
    }

    #[test]
    fn events_need_object_details() {
        let e = NewEvent::from_json(&obj(json!({"event_type": "x", "url_id": 1}))).unwrap();
        assert!(e.details.is_empty());
        let err = NewEvent::from_json(&obj(json!({"event_type": "x", "url_id": 1,
            "details": "str"})))
        .unwrap_err();
        assert_eq!(bad_fields(err), ["details"]);
    }

    #[test]
    fn instants_take_fractions_zones_and_dates() {
        let at = |s: &str| parse_instant(s).map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string());
        assert_eq!(
            at("2026-12-01T23:59:59.9").as_deref(),
            Some("2026-12-01T23:59:59.900")
        );
        assert_eq!(
            at("2026-12-01 23:59:59").as_deref(),
            Some("2026-12-01T23:59:59.000")
        );
        assert_eq!(
            at("2026-12-01T10:00:00Z").as_deref(),
            Some("2026-12-01T10:00:00.000")
        );
        assert_eq!(at("2026-12-01").as_deref(), Some("2026-12-01T00:00:00.000"));
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-12-01T25:00:00",
            "1e9",
            "+12345-01-01",
            "-0001-01-01",
            "2026-1-1",
            "26-12-01",
            "2026-12-01T10:30:60",
            "2026-12-01T10:30",
            "2026-12-01T10:30:00.",
            "2026-12-01T10:30:00.1234567890",
            "２０２６-12-01",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_render_without_zone_or_fraction() {
        let ts = parse_timestamp("2025-09-19 22:25:05").unwrap();
        assert_eq!(render_timestamp(&ts), "2025-09-19T22:25:05");
        let with_fraction = ts + chrono::Duration::microseconds(123_456);
        assert_eq!(render_timestamp(&with_fraction), "2025-09-19T22:25:05");
        assert_eq!(parse_timestamp("2025-09-19T22:25:05"), Some(ts));
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
