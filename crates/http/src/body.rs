//! Reading request bodies within a size limit, and insisting on a JSON object.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::HeaderMap;
use serde_json::{Map, Value};

/// Why a request body was not taken.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than the limit (or announced as such); the limit in bytes.
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// No part of the body arrived within the stall timeout, in milliseconds.
    #[error("the request body did not arrive within {0} ms")]
    Stalled(u64),
    /// Unreadable, or not the JSON object that was expected.
    #[error("{0}")]
    Invalid(String),
}

/// The whole body, or 413 when it is (or announces itself) larger than `limit` bytes, or 408 when
/// no part of it arrives for `idle` (a stalled client; a slow but steady upload is fine).
pub async fn read(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    idle: Option<Duration>,
) -> Result<Bytes, BodyError> {
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut body = Limited::new(body, limit);
    let mut out = BytesMut::with_capacity(announced.unwrap_or(0).min(limit as u64) as usize);
    loop {
        let next = match idle {
            Some(idle) => tokio::time::timeout(idle, body.frame())
                .await
                .map_err(|_| BodyError::Stalled(idle.as_millis() as u64))?,
            None => body.frame().await,
        };
        match next {
            None => return Ok(out.freeze()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            Some(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
                return Err(BodyError::TooLarge(limit))
            }
            Some(Err(err)) => {
                return Err(BodyError::Invalid(format!(
                    "the request body could not be read: {err}"
                )))
            }
        }
    }
}

/// The body as a JSON object; anything else (empty, text, a form, a JSON array, string, number,
/// `null`, broken JSON) is a 400. The content type is not consulted: the bytes decide.
pub fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, BodyError> {
    const EXPECTED: &str = "the request body must be a JSON object";
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Invalid(format!("{EXPECTED}; the body is empty")));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(BodyError::Invalid(format!(
            "{EXPECTED}, not {}",
            match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        ))),
        Err(err) => Err(BodyError::Invalid(format!(
            "{EXPECTED}; it is not valid JSON ({err})"
        ))),
    }
}

/// The body as a JSON array (`POST /urls/bulk`); anything else is a 400.
pub fn json_array(bytes: &[u8]) -> Result<Vec<Value>, BodyError> {
    const EXPECTED: &str = "the request body must be a JSON array";
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Invalid(format!("{EXPECTED}; the body is empty")));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err(BodyError::Invalid(format!(
            "{EXPECTED} of url objects, not a single value"
        ))),
        Err(err) => Err(BodyError::Invalid(format!(
            "{EXPECTED}; it is not valid JSON ({err})"
        ))),
    }
}

/// The body of every response: bytes built in full before sending (everything but an export), or
/// chunks streamed from a producer task through a small channel, so that a large export is never
/// held whole: the producer waits while the client is slow, and stops when the client goes.
pub enum Body {
    Full(Option<Bytes>),
    Stream(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>),
}

impl Body {
    pub fn new(bytes: Bytes) -> Body {
        Body::Full((!bytes.is_empty()).then_some(bytes))
    }

    /// A streamed body and the sender its producer writes to. A chunk that is an error ends the
    /// response abnormally (the client sees a truncated transfer, never a complete-looking one).
    pub fn channel(
        capacity: usize,
    ) -> (
        tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
        Body,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        (tx, Body::Stream(rx))
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::Full(None)
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Body::Full(bytes) => {
                std::task::Poll::Ready(bytes.take().map(|b| Ok(hyper::body::Frame::data(b))))
            }
            Body::Stream(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| c.map(hyper::body::Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Full(bytes) => {
                hyper::body::SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Body::Stream(_) => hyper::body::SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_objects_pass() {
        assert!(json_object(br#"{"a": 1}"#).is_ok());
        assert!(json_object(b" {} \n").is_ok());
        for bad in [
            &b""[..],
            b"   ",
            b"hello",
            b"username=a&email=b",
            br#""str""#,
            b"[1,2]",
            b"42",
            b"null",
            b"true",
            b"{broken",
            br#"{"a":1} trailing"#,
            b"\xff\xfe",
        ] {
            let err = json_object(bad).unwrap_err();
            assert!(matches!(err, BodyError::Invalid(_)), "{bad:?}");
        }
    }
}
