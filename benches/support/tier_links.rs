//! Links shaped like the perf runs' for the tier's bench and example: seven base62 characters
//! spread like generated codes, ~50-byte targets. Included by `#[path]` (`benches/tier.rs`,
//! `examples/tier_memory.rs`).

use gitrev_tier::Link;

/// The `i`-th code: seven base62 characters, distinct for every `i` below 62^7.
pub fn code(i: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
    (0..7)
        .map(|_| {
            let c = ALPHABET[(x % 62) as usize] as char;
            x /= 62;
            c
        })
        .collect()
}

/// `n` active links with codes `code(0..n)` and url ids from 1.
pub fn links(n: u64) -> Vec<Link> {
    (0..n)
        .map(|i| Link {
            code: code(i),
            url_id: i as i64 + 1,
            user_id: Some(i as i64 % 1000 + 1),
            target: format!("https://example.com/landing/{i}?utm_source=tier"),
            active: true,
            expires_at_us: None,
            expired_url: None,
            redirect_status: None,
            forward_query: false,
            limited: false,
        })
        .collect()
}
