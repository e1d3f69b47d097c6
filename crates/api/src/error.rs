//! The error edge: the one type every handler's error becomes, and the only place that decides an
//! error's status code, headers (`retry-after`, `allow`, `www-authenticate`) and JSON body.
//!
//! Every lower error has its `From` here (the store's, a body's, a validation's) or is wrapped
//! whole (`/ready`'s), so no handler maps errors itself. 4xx errors are the client's business and
//! are not logged; 5xx errors are logged once, with their cause, by the request handler, and the
//! client gets a generic message or the name of the condition, never internal text (a driver's
//! message, an `Internal` string).

use gitrev_core::ValidationError;
use gitrev_http::body::BodyError;
use gitrev_http::response;
use gitrev_http::Response;
use gitrev_store::keys::Scope;
use gitrev_store::migrate::MigrateError;
use gitrev_store::StoreError;
use hyper::header::{HeaderValue, ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::StatusCode;
use serde_json::{json, Map, Value};

pub use gitrev_core::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not a JSON object at all.
    #[error("{0}")]
    InvalidBody(String),
    /// A JSON object (or query string) that fails validation; one entry per bad field.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    /// A link past its `expires_at` or its `max_clicks`, without an `expired_url`.
    #[error("this link has expired")]
    Expired,
    /// A uniqueness conflict on `field`.
    #[error("{message}")]
    Conflict { field: String, message: String },
    /// The route exists but not with this method; the methods it has, for `allow`.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// A bulk request with more elements than it may hold.
    #[error("a bulk request holds at most {0} elements")]
    TooManyItems(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// No valid API key (when keys are required): `authorization: Bearer <key>` missing, unknown
    /// or revoked.
    #[error("this endpoint needs a valid API key: `authorization: Bearer <key>`")]
    Unauthorized,
    /// A key bound to one user asked for what only an unbound key may do.
    #[error("{0}")]
    BoundKey(&'static str),
    /// The key's rate limit: retry after this many seconds.
    #[error("this API key is over its rate limit; retry in {0} s")]
    TooManyRequests(u64),
    /// A valid key whose scope does not include the one needed.
    #[error("this API key's scope does not allow this; it needs the {0} scope")]
    Forbidden(Scope),
    /// The client did not send its body within the body read timeout.
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u64),
    /// The database cannot take the request now; the client should retry.
    #[error("{0}")]
    Unavailable(String),
    /// `/ready`: the service cannot take traffic (the database, or its schema).
    #[error("not ready: {0}")]
    NotReady(MigrateError),
    #[error("{0}")]
    Internal(String),
}

/// Seconds a client is told to wait before retrying after a 503.
pub const RETRY_AFTER_SECS: &str = "1";

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Validation(vec![(field.to_owned(), message.into())])
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::NotFound(format!("{what} not found"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidBody(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) | ApiError::Expired => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) | ApiError::TooManyItems(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::BoundKey(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) | ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::Validation(_) => "validation_failed",
            ApiError::NotFound(_) => "not_found",
            ApiError::Expired => "expired",
            ApiError::Conflict { .. } => "conflict",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge(_) | ApiError::TooManyItems(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) | ApiError::BoundKey(_) => "forbidden",
            ApiError::TooManyRequests(_) => "rate_limited",
            ApiError::BodyTimeout(_) => "request_timeout",
            ApiError::Unavailable(_) | ApiError::NotReady(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The JSON body: `{"error", "code", "details"?}`; for `/ready`, `{"status", "reason"}`.
    pub fn body(&self) -> Value {
        if let ApiError::NotReady(why) = self {
            return json!({"status": "unavailable", "reason": not_ready_reason(why)});
        }
        let mut body = Map::new();
        let message = match self {
            ApiError::Validation(fields) => fields
                .iter()
                .map(|(field, problem)| format!("{field} {problem}"))
                .collect::<Vec<_>>()
                .join("; "),
            ApiError::Internal(_) => "internal server error".to_owned(),
            ApiError::Unavailable(_) => "the database is unavailable; retry shortly".to_owned(),
            other => other.to_string(),
        };
        body.insert("error".into(), Value::String(message));
        body.insert("code".into(), Value::String(self.code().into()));
        let details = match self {
            ApiError::Validation(fields) => Some(
                fields
                    .iter()
                    .map(|(f, p)| (f.clone(), Value::String(p.clone())))
                    .collect::<Map<_, _>>(),
            ),
            ApiError::Conflict { field, message } => {
                Some(Map::from_iter([(field.clone(), json!(message))]))
            }
            _ => None,
        };
        if let Some(details) = details {
            body.insert("details".into(), Value::Object(details));
        }
        Value::Object(body)
    }

    /// The whole answer: status, body and the headers the error calls for.
    pub fn response(&self) -> Response {
        let mut response = response::json(self.status(), &self.body());
        let headers = response.headers_mut();
        match self {
            ApiError::Unavailable(_) => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            }
            ApiError::Unauthorized => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TooManyRequests(seconds) => {
                headers.insert(RETRY_AFTER, HeaderValue::from(*seconds));
            }
            ApiError::MethodNotAllowed(allow) => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            // No `retry-after` on `/ready`: a probe's answer, not a refused request.
            _ => {}
        }
        response
    }
}

/// The condition `/ready` names; the error itself (a driver's message, checksums) goes to the log.
fn not_ready_reason(err: &MigrateError) -> String {
    match err {
        MigrateError::Store(StoreError::Unavailable(_)) => "database unavailable".into(),
        MigrateError::Store(_) => "database error".into(),
        MigrateError::Behind { current, expected } => {
            format!("schema not at expected migration (at {current}, expected {expected})")
        }
        MigrateError::Edited { name, .. } => {
            format!("applied migration {name} was edited after it was applied")
        }
        MigrateError::Unknown(version) => {
            format!("schema has migration {version}, which this build does not know")
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict("short_code") => ApiError::Conflict {
                field: "short_code".into(),
                message: "short_code is already taken".into(),
            },
            StoreError::Conflict(field) => ApiError::Conflict {
                field: field.to_owned(),
                message: format!("{field} already exists"),
            },
            StoreError::Unavailable(reason) => ApiError::Unavailable(reason),
            StoreError::Internal(reason) => ApiError::Internal(reason),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> ApiError {
        ApiError::Validation(err.0)
    }
}

impl From<BodyError> for ApiError {
    fn from(err: BodyError) -> ApiError {
        match err {
            BodyError::TooLarge(limit) => ApiError::PayloadTooLarge(limit),
            BodyError::Stalled(ms) => ApiError::BodyTimeout(ms),
            BodyError::Invalid(why) => ApiError::InvalidBody(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_body_names_each_field() {
        let err = ApiError::Validation(vec![
            ("username".into(), "must be a string".into()),
            ("email".into(), "is required".into()),
        ]);
        let body = err.body();
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["code"], "validation_failed");
        assert_eq!(
            body["error"],
            "username must be a string; email is required"
        );
        assert_eq!(body["details"]["username"], "must be a string");
        assert_eq!(body["details"]["email"], "is required");
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let body = ApiError::Internal("password=secret".into()).body();
        assert_eq!(body["error"], "internal server error");
        assert!(!body.to_string().contains("secret"));
    }

    fn body_text(response: &Response) -> String {
        match response.body() {
            gitrev_http::Body::Full(bytes) => {
                String::from_utf8(bytes.clone().unwrap_or_default().to_vec())
                    .expect("a JSON body is UTF-8")
            }
            gitrev_http::Body::Stream(_) => panic!("an error body is never streamed"),
        }
    }

    #[test]
    fn store_errors_answer_without_their_cause() {
        let driver = "FATAL: password authentication failed for user \"gitrev\" at 10.0.0.7";
        for (err, status, retry) in [
            (StoreError::Unavailable(driver.into()), 503, true),
            (StoreError::Internal(driver.into()), 500, false),
        ] {
            let response = ApiError::from(err).response();
            assert_eq!(response.status(), status);
            assert_eq!(response.headers().contains_key(RETRY_AFTER), retry);
            let text = body_text(&response);
            assert!(
                !text.contains("password") && !text.contains("10.0.0.7"),
                "{text}"
            );
        }
    }

    #[test]
    fn not_ready_names_the_condition_only() {
        let driver = "connection refused (os error 111) to 10.0.0.7:5432";
        let cases = [
            (
                MigrateError::Store(StoreError::Unavailable(driver.into())),
                "database unavailable",
            ),
            (
                MigrateError::Store(StoreError::Internal(format!("42501: {driver}"))),
                "database error",
            ),
            (
                MigrateError::Behind {
                    current: 0,
                    expected: 1,
                },
                "schema not at expected migration (at 0, expected 1)",
            ),
            (
                MigrateError::Edited {
                    name: "0001_init.sql".into(),
                    applied: "abc".into(),
                    file: "def".into(),
                },
                "applied migration 0001_init.sql was edited after it was applied",
            ),
        ];
        for (err, reason) in cases {
            let response = ApiError::NotReady(err).response();
            assert_eq!(response.status(), 503);
            assert!(
                !response.headers().contains_key(RETRY_AFTER),
                "a probe's answer"
            );
            let body: Value = serde_json::from_str(&body_text(&response)).expect("JSON");
            assert_eq!(body, json!({"status": "unavailable", "reason": reason}));
        }
    }

    #[test]
    fn each_error_sets_its_own_headers() {
        let response = ApiError::MethodNotAllowed("GET, HEAD").response();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()[ALLOW], "GET, HEAD");
        let response = ApiError::Unauthorized.response();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
        let response = ApiError::from(StoreError::Conflict("short_code")).response();
        assert_eq!(response.status(), 409);
        assert!(body_text(&response).contains("short_code is already taken"));
        let response = ApiError::from(StoreError::Conflict("email")).response();
        assert!(body_text(&response).contains("email already exists"));
        let response = ApiError::from(BodyError::TooLarge(10)).response();
        assert_eq!(response.status(), 413);
        let response = ApiError::from(BodyError::Stalled(5)).response();
        assert_eq!(response.status(), 408);
    }
}
