//! Property tests: short-code generation, pagination arithmetic and validation round trips,
//! over inputs proptest draws (and shrinks to the smallest failing case when one fails).

use gitrev_core::model::{check_email, check_original_url, NewEvent, NewUrl, NewUser};
use gitrev_core::shortcode::{self, check_custom, is_reserved};
use gitrev_core::ValidationError;
use gitrev_http::query::{Pagination, Query, MAX_PER_PAGE};
use proptest::prelude::*;
use rand::SeedableRng;
use serde_json::{json, Map, Value};

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn refused_fields(err: ValidationError) -> Vec<String> {
    err.0.into_iter().map(|(f, _)| f).collect()
}

/// Any JSON value but a string.
fn non_string() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        Just(json!([])),
        Just(json!({"nested": "object"})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_codes_are_always_valid_custom_codes(seed in any::<u64>()) {
        // The code comes from the drawn seed, so a failing case replays (and shrinks) exactly.
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let code = shortcode::generate_with(&mut rng);
        let again = shortcode::generate_with(&mut rand::rngs::StdRng::seed_from_u64(seed));
        prop_assert_eq!(&code, &again, "the same seed draws the same code");
        prop_assert_eq!(code.len(), 6);
        prop_assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));
        prop_assert!(check_custom(&code).is_ok(), "{}", code);
    }

    #[test]
    fn custom_codes_are_accepted_exactly_when_well_formed(code in "[A-Za-z0-9_\\-]{0,40}|.{0,10}") {
        let well_formed = (1..=32).contains(&code.len())
            && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && !is_reserved(&code);
        prop_assert_eq!(check_custom(&code).is_ok(), well_formed, "{:?}", code);
    }

    #[test]
    fn reserved_words_are_refused_in_any_case(
        word in prop::sample::select(vec!["health", "ready", "metrics", "users", "urls", "events"]),
        mask in any::<u32>(),
    ) {
        let mixed: String = word
            .chars()
            .enumerate()
            .map(|(i, c)| if mask >> (i % 32) & 1 == 1 { c.to_ascii_uppercase() } else { c })
            .collect();
        prop_assert!(check_custom(&mixed).is_err(), "{}", mixed);
    }

    #[test]
    fn pages_tile_the_rows_exactly(total in 0i64..5_000, per_page in 1u32..=MAX_PER_PAGE) {
        // Following `next` from page 1 visits every row once and stops after the last one.
        let mut page = Pagination::Paged { page: 1, per_page };
        let mut seen = 0i64;
        let mut pages = 0;
        loop {
            let window = page.page();
            prop_assert_eq!(window.offset, seen, "pages are contiguous");
            prop_assert_eq!(window.limit, i64::from(per_page));
            seen += window.limit.min(total - window.offset).max(0);
            pages += 1;
            match page.next(total) {
                Some((next, size)) => {
                    prop_assert_eq!(size, per_page);
                    prop_assert_eq!(next, pages + 1);
                    page = Pagination::Paged { page: next, per_page };
                }
                None => break,
            }
        }
        prop_assert_eq!(seen, total, "every row is on exactly one page");
        let expected_pages = ((total + i64::from(per_page) - 1) / i64::from(per_page)).max(1);
        prop_assert_eq!(i64::from(pages), expected_pages);
    }

    #[test]
    fn any_page_number_has_a_finite_offset(page in 1u32..=u32::MAX, per_page in 1u32..=MAX_PER_PAGE) {
        let window = Pagination::Paged { page, per_page }.page();
        prop_assert_eq!(window.offset, (i64::from(page) - 1) * i64::from(per_page));
        prop_assert!(window.offset >= 0);
        prop_assert!(window.offset.checked_add(window.limit).is_some());
    }

    #[test]
    fn page_parameters_are_422_unless_in_range(raw in ".{0,12}") {
        let query = format!("page={}", form_urlencoded::byte_serialize(raw.as_bytes()).collect::<String>());
        let mut parsed = Query::parse(Some(&query));
        let pagination = parsed.pagination(10_000);
        let valid = raw.trim().parse::<u32>().is_ok_and(|p| p >= 1);
        prop_assert_eq!(parsed.finish().is_ok(), valid, "page={:?}", raw);
        if valid {
            let is_paged = matches!(pagination, Pagination::Paged { .. });
            prop_assert!(is_paged);
        }
    }

    #[test]
    fn the_next_link_keeps_the_other_parameters(
        user_id in 1i64..1_000_000,
        page in 1u32..1_000,
        per_page in 1u32..=MAX_PER_PAGE,
    ) {
        let text = format!("user_id={user_id}&page={page}&per_page={per_page}&extra=x%20y");
        let query = Query::parse(Some(&text));
        let pagination = Pagination::Paged { page, per_page };
        let total = (i64::from(page) + 1) * i64::from(per_page);
        let link = pagination.next_link("/urls", &query, total).expect("rows remain");
        let inner = link
            .strip_prefix("</urls?")
            .and_then(|l| l.strip_suffix(">; rel=\"next\""))
            .expect("a link header value");
        let mut next = Query::parse(Some(inner));
        prop_assert_eq!(next.int("user_id"), Some(user_id));
        let extra = next.string("extra");
        prop_assert_eq!(extra.as_deref(), Some("x y"));
        prop_assert_eq!(
            next.pagination(10_000),
            Pagination::Paged { page: page + 1, per_page }
        );
    }

    #[test]
    fn valid_users_round_trip(
        username in "[^\\s\\x00]{1,40}( [^\\s\\x00]{1,10})?",
        local in "[a-z0-9._%+-]{1,30}",
        domain in "[a-z0-9-]{1,20}\\.[a-z]{2,6}",
    ) {
        let email = format!("{local}@{domain}");
        let new = NewUser::from_json(&object(json!({"username": username, "email": email})))
            .expect("a valid user");
        prop_assert_eq!(new.username, username);
        prop_assert_eq!(new.email, email);
    }

    #[test]
    fn non_string_fields_are_refused_by_name(bad in non_string(), field in prop::sample::select(vec!["username", "email"])) {
        let mut body = object(json!({"username": "ok", "email": "ok@example.com"}));
        body.insert(field.to_owned(), bad);
        let fields = refused_fields(NewUser::from_json(&body).expect_err("a non-string is refused"));
        prop_assert_eq!(fields, vec![field.to_owned()]);
    }

    #[test]
    fn emails_without_exactly_one_at_are_refused(s in "[a-z.]{0,20}(@@[a-z.]{0,10})?") {
        prop_assert!(check_email(&s).is_err(), "{}", s);
    }

    #[test]
    fn only_http_urls_with_hosts_are_accepted(
        scheme in prop::sample::select(vec!["http", "https", "ftp", "javascript", "file", "mailto"]),
        host in "[a-z]{1,12}(\\.[a-z]{2,5})?",
        path in "(/[a-z0-9]{0,8}){0,3}",
    ) {
        let url = format!("{scheme}://{host}{path}");
        let accepted = check_original_url(&url).is_ok();
        prop_assert_eq!(accepted, scheme == "http" || scheme == "https", "{}", url);
        if accepted {
            let new = NewUrl::from_json(&object(json!({"original_url": url}))).expect("valid");
            prop_assert_eq!(new.original_url, url);
            prop_assert!(new.is_active);
        }
    }

    #[test]
    fn event_details_must_be_objects(details in non_string().prop_filter("not an object or null", |v| !v.is_object() && !v.is_null())) {
        let body = object(json!({"event_type": "x", "url_id": 1, "details": details}));
        let fields = refused_fields(NewEvent::from_json(&body).expect_err("refused"));
        prop_assert_eq!(fields, vec!["details".to_owned()]);
    }
}
