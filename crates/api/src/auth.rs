//! The optional bearer token for writes (`GITREV_API_TOKEN`).
//!
//! Only digests are compared, and in constant time: how long a wrong guess takes says nothing
//! about how much of it was right, nor (since both sides are hashed to 32 bytes first) how long the
//! token is. The token itself is kept only as its digest and never reaches a log line.

use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;
use sha2::{Digest, Sha256};

/// The expected token, as its SHA-256 digest.
pub struct ApiToken {
    digest: [u8; 32],
}

impl ApiToken {
    pub fn new(token: &str) -> ApiToken {
        ApiToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Whether `headers` carry `authorization: Bearer <the token>` (the scheme in any case).
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return false;
        };
        let Some((scheme, presented)) = value.as_bytes().split_first_chunk::<7>() else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        let presented: [u8; 32] = Sha256::digest(presented.trim_ascii()).into();
        constant_time_eq(&presented, &self.digest)
    }
}

/// Compares every byte whatever the first difference, so the time taken does not depend on it.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(value).expect("a visible header value"),
        );
        headers
    }

    #[test]
    fn only_the_right_bearer_token_is_admitted() {
        let token = ApiToken::new("s3cret-token-0123456789");
        assert!(token.admits(&with_authorization("Bearer s3cret-token-0123456789")));
        assert!(token.admits(&with_authorization("bearer s3cret-token-0123456789")));
        for wrong in [
            "Bearer s3cret-token-012345678",
            "Bearer s3cret-token-01234567890",
            "Bearer ",
            "Bearer",
            "Basic czNjcmV0LXRva2VuLTAxMjM0NTY3ODk=",
            "s3cret-token-0123456789",
            "Token s3cret-token-0123456789",
        ] {
            assert!(!token.admits(&with_authorization(wrong)), "{wrong:?}");
        }
        assert!(!token.admits(&HeaderMap::new()), "no header at all");
    }

    #[test]
    fn equal_digests_compare_equal_and_any_one_byte_differs() {
        let a = [7u8; 32];
        assert!(constant_time_eq(&a, &a));
        for i in 0..32 {
            let mut b = a;
            b[i] ^= 1;
            assert!(!constant_time_eq(&a, &b), "byte {i}");
        }
    }
}
