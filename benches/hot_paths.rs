//! Micro-benchmarks of the functions on the redirect and POST /users paths.
//!
//! Run: `cargo bench --bench hot_paths` (criterion; results in target/criterion). These measure
//! single functions in isolation; whole-server figures come from `perf/`.

use std::hint::black_box;

use chrono::NaiveDateTime;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gitrev_api::urls::BulkReply;
use gitrev_core::import;
use gitrev_core::model::{Event, LinkOptions, Url, User};
use gitrev_http::response;
use gitrev_http::router::route;
use gitrev_links::cache::{CacheConfig, CachedLink, LinkCache};
use gitrev_links::lifecycle::Limits;
use gitrev_store::clicks::{self, Click};
use gitrev_store::urls::{ClickTarget, Link};
use hyper::StatusCode;
use serde_json::json;

fn ts() -> NaiveDateTime {
    gitrev_core::model::parse_timestamp("2025-09-19 22:25:05").expect("valid")
}

fn link(i: i64) -> Link {
    Link {
        url_id: i,
        user_id: Some(7),
        original_url: format!("https://example.com/some/path/{i}?utm_source=bench"),
        is_active: true,
        ..Link::default()
    }
}

fn router(c: &mut Criterion) {
    let mut g = c.benchmark_group("router");
    for path in [
        "/aB3xY9",
        "/users/12345",
        "/urls/42/stats",
        "/no/such/route/here",
    ] {
        g.bench_function(path, |b| b.iter(|| route(black_box(path))));
    }
    g.finish();
}

fn cache(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let cache = LinkCache::new(
        CacheConfig {
            capacity: 1_000_000,
            ttl: std::time::Duration::from_secs(300),
            negative_ttl: std::time::Duration::from_secs(1),
        },
        gitrev_telemetry::Metrics::default()
            .batch
            .cache_evictions
            .clone(),
    );
    rt.block_on(async {
        for i in 0..10_000 {
            let l = link(i);
            let code: std::sync::Arc<str> = format!("c{i:05}").into();
            cache
                .insert(CachedLink::new(code, &l, &cache.limits).expect("valid"))
                .await;
        }
    });
    c.bench_function("cache/hit", |b| {
        b.iter(|| rt.block_on(cache.peek(black_box("c04242"))))
    });
    c.bench_function("cache/miss", |b| {
        b.iter(|| rt.block_on(cache.peek(black_box("zzzzzz"))))
    });
}

fn redirect_response(c: &mut Criterion) {
    let limits = Limits::default();
    let cached = CachedLink::new("CKVfY9".into(), &link(1), &limits).expect("valid");
    c.bench_function("redirect/build_response", |b| {
        b.iter(|| response::redirect(StatusCode::FOUND, black_box(&cached).location.clone()))
    });
    // What a link's options cost the redirect's decision: a plain link against one that expires
    // (in the future) and forwards the request's query, and one with a click limit.
    let now = clicks::now_micros();
    let mut options = LinkOptions {
        expires_at: Some(clicks::micros_to_datetime(now + 3_600_000_000)),
        forward_query: true,
        ..LinkOptions::default()
    };
    let forwarding = CachedLink::new(
        "CKVfY9".into(),
        &Link {
            options: options.clone(),
            ..link(1)
        },
        &limits,
    )
    .expect("valid");
    options.max_clicks = Some(i64::MAX);
    let limited =
        CachedLink::new("CKVfY9".into(), &Link { options, ..link(1) }, &limits).expect("valid");
    let mut g = c.benchmark_group("redirect/decide");
    g.bench_function("plain", |b| {
        b.iter(|| black_box(&cached).decide(black_box(now), None, true))
    });
    g.bench_function("expiring_forwarding_no_query", |b| {
        b.iter(|| black_box(&forwarding).decide(black_box(now), None, true))
    });
    g.bench_function("expiring_forwarding_with_query", |b| {
        b.iter(|| {
            black_box(&forwarding).decide(black_box(now), Some("utm_source=x&utm_medium=y"), true)
        })
    });
    g.bench_function("limited", |b| {
        b.iter(|| black_box(&limited).decide(black_box(now), None, false))
    });
    g.finish();
}

fn json_encoding(c: &mut Criterion) {
    let user = User {
        id: 401,
        username: "prouduplink60".into(),
        email: "prouduplink60@hackstack.io".into(),
        created_at: ts(),
    };
    let url = Url {
        id: 2001,
        user_id: Some(401),
        short_code: "CKVfY9".into(),
        original_url: "https://relay.cloud/quiet/harvest/1".into(),
        title: Some("Campaign page garden".into()),
        is_active: true,
        created_at: ts(),
        updated_at: ts(),
        options: LinkOptions::default(),
    };
    let event = Event {
        id: 3423,
        url_id: 2001,
        user_id: Some(401),
        event_type: "click".into(),
        timestamp: ts(),
        details: json!({"short_code": "CKVfY9", "original_url": "https://relay.cloud/quiet/harvest/1",
                        "user_agent": "curl/8.0"}),
    };
    let mut g = c.benchmark_group("json");
    g.bench_function("user", |b| {
        b.iter(|| response::json(StatusCode::OK, black_box(&user)))
    });
    g.bench_function("url", |b| {
        b.iter(|| response::json(StatusCode::OK, black_box(&url)))
    });
    g.bench_function("event", |b| {
        b.iter(|| response::json(StatusCode::OK, black_box(&event)))
    });
    // A `POST /urls/bulk` answer of 1000 urls: straight from the urls, and (what it replaced)
    // through a `serde_json::Value`.
    let created: Vec<Url> = (0..1000)
        .map(|i| Url {
            id: 2001 + i,
            short_code: format!("CK{i:04}"),
            original_url: format!("https://relay.cloud/quiet/harvest/{i}?ref=links"),
            ..url.clone()
        })
        .collect();
    let errors: Vec<serde_json::Value> = Vec::new();
    g.throughput(Throughput::Elements(1000));
    g.bench_function("bulk_reply_1000", |b| {
        b.iter(|| {
            let reply = BulkReply {
                created: black_box(&created),
                errors: &errors,
            };
            response::json(StatusCode::CREATED, &reply)
        })
    });
    g.bench_function("bulk_reply_1000_through_value", |b| {
        b.iter(|| {
            response::json(
                StatusCode::CREATED,
                &json!({"created": black_box(&created), "errors": errors}),
            )
        })
    });
    g.finish();
}

fn csv_parsing(c: &mut Criterion) {
    let users = include_bytes!("../seed/users.csv");
    let mut g = c.benchmark_group("csv");
    g.throughput(Throughput::Elements(400));
    g.bench_function("users_400_rows", |b| {
        b.iter(|| import::parse_users(black_box(users)).expect("parses"))
    });
    g.finish();
}

/// The click writer's own work for a batch of 1000 redirect clicks over 100 urls: rows and
/// rollups, then runs (the database's part is measured by `perf/clicks.sh`).
fn click_writer(c: &mut Criterion) {
    let code: std::sync::Arc<str> = "CKVfY9".into();
    let target = ClickTarget::Stored("https://relay.cloud/quiet/harvest/1".into());
    let clicks: Vec<Click> = (0..1000)
        .map(|i| Click {
            url_id: i % 100,
            user_id: Some(i % 40),
            at: clicks::now_micros() + i,
            short_code: Some(code.clone()),
            original_url: Some(target.clone()),
            referrer: None,
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
            extra: None,
            limited: false,
        })
        .collect();
    let classified = std::sync::Arc::new(clicks::classify(
        Some("Mozilla/5.0 (X11; Linux x86_64)"),
        None,
    ));
    let links: Vec<i32> = (0..1000).map(|i| i % 100).collect();
    let contexts: Vec<(i32, std::sync::Arc<clicks::Classified>)> =
        (0..1000).map(|_| (1, classified.clone())).collect();
    let live: std::collections::HashSet<i64> = (0..100).collect();
    let mut g = c.benchmark_group("click_writer");
    g.throughput(Throughput::Elements(clicks.len() as u64));
    g.bench_function("prepare_1000", |b| {
        b.iter(|| clicks::Prepared::new(black_box(&clicks), &links, &contexts, &live))
    });
    // The batch grouped into runs (one row per link version and day), its ids given.
    let prepared = clicks::Prepared::new(&clicks, &links, &contexts, &live);
    let fresh: Vec<i64> = (1..=prepared.ids_needed() as i64).collect();
    g.bench_function("runs_1000", |b| {
        b.iter(|| black_box(&prepared).runs(black_box(&fresh)))
    });
    g.bench_function("classify_new_context", |b| {
        b.iter(|| {
            clicks::classify(
                black_box(Some(
                    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 \
                     (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
                )),
                black_box(Some("https://news.example.com/a")),
            )
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    router,
    cache,
    redirect_response,
    json_encoding,
    csv_parsing,
    click_writer
);
criterion_main!(benches);
