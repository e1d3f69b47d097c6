//! Any query string: the known parameters parse or are refused as a 422, pagination is in range,
//! and the next-page link (when there is one) is itself a query string that parses.
#![no_main]

use gitrev_http::query::{Pagination, Query, MAX_PER_PAGE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|query: &str| {
    let mut parsed = Query::parse(Some(query));
    let _ = parsed.int("user_id");
    let _ = parsed.int("url_id");
    let _ = parsed.boolean("is_active");
    let _ = parsed.string("event_type");
    let pagination = parsed.pagination(10_000);
    if let Pagination::Paged { page, per_page } = pagination {
        assert!(page >= 1 && (1..=MAX_PER_PAGE).contains(&per_page));
    }
    let window = pagination.page();
    assert!(window.offset >= 0 && window.limit >= 1);
    if parsed.finish().is_ok() {
        if let Some(link) = pagination.next_link("/users", &parsed, i64::MAX) {
            let inner = link
                .strip_prefix("</users?")
                .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                .expect("a link header value");
            let mut next = Query::parse(Some(inner));
            let _ = next.pagination(10_000);
            assert!(next.finish().is_ok(), "the next link parses: {link}");
        }
    }
});
