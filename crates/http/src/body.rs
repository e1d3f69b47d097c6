//! Reading request bodies within a size limit, and insisting on a JSON object.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::HeaderMap;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// The whole body, or 413 when it is (or announces itself) larger than `limit` bytes, or 408 when
/// no part of it arrives for `idle` (a stalled client; a slow but steady upload is fine).
pub async fn read(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    idle: Option<Duration>,
) -> Result<Bytes, ApiError> {
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut body = Limited::new(body, limit);
    let mut out = BytesMut::with_capacity(announced.unwrap_or(0).min(limit as u64) as usize);
    loop {
        let next = match idle {
            Some(idle) => tokio::time::timeout(idle, body.frame())
                .await
                .map_err(|_| ApiError::BodyTimeout(idle.as_millis() as u64))?,
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
                return Err(ApiError::PayloadTooLarge(limit))
            }
            Some(Err(err)) => {
                return Err(ApiError::InvalidBody(format!(
                    "the request body could not be read: {err}"
                )))
            }
        }
    }
}

/// The body as a JSON object; anything else (empty, text, a form, a JSON array, string, number,
/// `null`, broken JSON) is a 400. The content type is not consulted: the bytes decide.
pub fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    const EXPECTED: &str = "the request body must be a JSON object";
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidBody(format!(
            "{EXPECTED}; the body is empty"
        )));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::InvalidBody(format!(
            "{EXPECTED}, not {}",
            match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        ))),
        Err(err) => Err(ApiError::InvalidBody(format!(
            "{EXPECTED}; it is not valid JSON ({err})"
        ))),
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
            assert!(matches!(err, ApiError::InvalidBody(_)), "{bad:?}");
        }
    }
}
