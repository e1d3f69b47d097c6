//! Building responses: JSON bodies, text and redirects. (Error responses are the API's: its error
//! type alone decides their status, headers and body.)

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use hyper::StatusCode;
use serde::Serialize;

use super::{Body, Response};

pub const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

fn with_body(status: StatusCode, content_type: HeaderValue, body: Bytes) -> Response {
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}

/// A JSON response. Serializing our own model types cannot fail.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("model types always serialize");
    with_body(status, APPLICATION_JSON, Bytes::from(body))
}

pub fn no_content() -> Response {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

pub fn text(status: StatusCode, content_type: String, body: impl Into<Bytes>) -> Response {
    let content_type = HeaderValue::try_from(content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("text/plain"));
    with_body(status, content_type, body.into())
}

/// A redirect to `location`, which the caller has already made a valid header value.
pub fn redirect(status: StatusCode, location: HeaderValue) -> Response {
    let mut response = Response::new(Body::default());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(LOCATION, location);
    // Said outright so a HEAD answer (which hyper sends without a body or a length) tells clients
    // there is no body to wait for.
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}
