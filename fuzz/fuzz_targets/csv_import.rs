//! Any CSV upload: the importers parse or refuse it with an error, and every row is either parsed
//! or reported with a line number after the header.
#![no_main]

use gitrev_core::import::{parse_events, parse_urls, parse_users};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = parse_users(data) {
        assert!(parsed.errors.iter().all(|e| e.line >= 2));
    }
    if let Ok(parsed) = parse_urls(data) {
        assert!(parsed.errors.iter().all(|e| e.line >= 2));
    }
    if let Ok(parsed) = parse_events(data) {
        assert!(parsed.errors.iter().all(|e| e.line >= 2));
    }
});
