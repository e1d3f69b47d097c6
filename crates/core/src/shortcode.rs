//! Short codes: generated ones (6 characters of base62) and the rules for custom ones.
//!
//! A custom code must not shadow a route: the router sends any path whose first segment is a
//! reserved name to the API, so a link with that code could never be reached.

use rand::Rng;

pub const GENERATED_LEN: usize = 6;
pub const MAX_CUSTOM_LEN: usize = 32;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// First path segments that belong to the service, never to a link.
pub const RESERVED: &[&str] = &[
    "health",
    "ready",
    "metrics",
    "users",
    "urls",
    "events",
    "keys",
    "openapi.json",
    "favicon.ico",
    "robots.txt",
    "api",
    "admin",
    "static",
    "docs",
];

/// A fresh random code. Collisions are possible (one in 62^6 per pair) and are retried by the store.
/// Never a reserved word (`health` and `events` are six base62 characters too): the router would
/// never send that path to the redirect.
pub fn generate() -> String {
    generate_with(&mut rand::rng())
}

/// [`generate`] drawing from `rng`: a seeded generator gives the same codes every time, so a
/// property test that fails can be replayed from its seed.
pub fn generate_with(rng: &mut impl Rng) -> String {
    loop {
        let code: String = (0..GENERATED_LEN)
            .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
            .collect();
        if !is_reserved(&code) {
            return code;
        }
    }
}

pub fn is_reserved(code: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(code))
}

/// Characters a code may contain (custom codes; generated ones are a subset).
pub fn is_code_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The rules for a client-chosen code.
pub fn check_custom(code: &str) -> Result<(), String> {
    if code.is_empty() || code.len() > MAX_CUSTOM_LEN {
        return Err(format!("must be 1 to {MAX_CUSTOM_LEN} characters"));
    }
    if !code.bytes().all(is_code_char) {
        return Err("may contain only letters, digits, '_' and '-'".into());
    }
    if is_reserved(code) {
        return Err("is reserved for the service's own routes".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_codes_are_six_base62_chars() {
        for _ in 0..1000 {
            let code = generate();
            assert_eq!(code.len(), GENERATED_LEN);
            assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()), "{code}");
            assert!(
                check_custom(&code).is_ok(),
                "{code} is a valid, unreserved code"
            );
        }
    }

    #[test]
    fn generated_codes_spread_out() {
        let codes: HashSet<String> = (0..10_000).map(|_| generate()).collect();
        // 10k draws from 62^6 collide with probability ~1e-3; two collisions would mean a broken RNG.
        assert!(codes.len() >= 9_998, "only {} distinct", codes.len());
        let first_chars: HashSet<char> = codes.iter().filter_map(|c| c.chars().next()).collect();
        assert!(
            first_chars.len() > 50,
            "first characters not spread: {first_chars:?}"
        );
    }

    #[test]
    fn custom_codes() {
        assert!(check_custom("my-link_1").is_ok());
        for bad in ["", "a/b", "a b", "ü", &"x".repeat(33)] {
            assert!(check_custom(bad).is_err(), "{bad:?}");
        }
        for reserved in ["health", "USERS", "openapi.json"] {
            assert!(check_custom(reserved).is_err(), "{reserved}");
        }
    }
}
