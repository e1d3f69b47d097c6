//! The one error type of the HTTP layer and the only place that decides status codes and error bodies.
//!
//! Handlers return `Result<Response, ApiError>`. 4xx errors are the client's business and are not
//! logged; 5xx errors are logged once, here, and the client gets a generic message.

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use crate::store::StoreError;

/// A field name and what is wrong with it.
pub type FieldError = (String, String);

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
    /// A uniqueness conflict on `field`.
    #[error("{message}")]
    Conflict { field: String, message: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A write without the right bearer token (when `GITREV_API_TOKEN` is set).
    #[error("this endpoint needs `authorization: Bearer <token>`")]
    Unauthorized,
    /// The client did not send its body within the body read timeout.
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u64),
    /// The database cannot take the request now; the client should retry.
    #[error("{0}")]
    Unavailable(String),
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
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::Validation(_) => "validation_failed",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict { .. } => "conflict",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unauthorized => "unauthorized",
            ApiError::BodyTimeout(_) => "request_timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The JSON body: `{"error", "code", "details"?}`.
    pub fn body(&self) -> Value {
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
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(field) => ApiError::Conflict {
                field: field.to_owned(),
                message: format!("{field} already exists"),
            },
            StoreError::Unavailable(reason) => ApiError::Unavailable(reason),
            StoreError::Internal(reason) => ApiError::Internal(reason),
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
}
