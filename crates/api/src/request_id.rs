//! `x-request-id`: taken from the request when the client (or a proxy) sent a sane one,
//! generated otherwise, and echoed on the response and in log lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use hyper::header::{HeaderName, HeaderValue};
use hyper::HeaderMap;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longer ids are replaced: they end up in every log line.
const MAX_LEN: usize = 128;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A per-process random prefix, so ids from different replicas don't collide.
fn prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| format!("{:08x}", rand::random::<u32>()))
}

fn acceptable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The request's id: the client's `x-request-id` if acceptable, else a fresh one.
pub fn from_request(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&HEADER) {
        Some(value) if acceptable(value) => value.clone(),
        _ => generate(),
    }
}

pub fn generate() -> HeaderValue {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    HeaderValue::try_from(format!("{}-{n:x}", prefix())).expect("hex digits and a dash")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_sane_id_and_replaces_others() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_static("abc-123"));
        assert_eq!(from_request(&headers), "abc-123");
        headers.insert(HEADER, HeaderValue::from_static("has space"));
        assert_ne!(from_request(&headers), "has space");
        headers.insert(HEADER, HeaderValue::try_from("x".repeat(200)).unwrap());
        assert!(from_request(&headers).len() < 200);
    }

    #[test]
    fn generated_ids_are_distinct() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(acceptable(&a));
    }
}
