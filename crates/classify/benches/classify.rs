//! What classifying costs: one `agent()` call on real user agents (browsers, crawlers, a client
//! library, and a 10 kB one that the cap cuts), and building the classifier.
//!
//! `cargo bench -p gitrev-classify --bench classify -- --quick`; numbers in the crate's README.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use gitrev_classify::{referrer_host, Classifier};

const USER_AGENTS: &[(&str, &str)] = &[
    ("chrome_windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
    ("safari_iphone", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"),
    ("chrome_android", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36"),
    ("firefox_linux", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
    ("googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    ("facebookexternalhit", "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"),
    ("curl", "curl/8.5.0"),
];

fn bench(c: &mut Criterion) {
    let classifier = Classifier::new();
    let mut group = c.benchmark_group("agent");
    for (name, ua) in USER_AGENTS {
        group.bench_function(*name, |b| b.iter(|| classifier.agent(black_box(Some(ua)))));
    }
    let long = format!("{} {}", USER_AGENTS[0].1, "x".repeat(10_240));
    group.bench_function("chrome_plus_10kB", |b| {
        b.iter(|| classifier.agent(black_box(Some(&long))))
    });
    group.finish();

    c.bench_function("referrer_host", |b| {
        b.iter(|| referrer_host(black_box(Some("https://WWW.Example.com/path?q=1"))))
    });

    let mut group = c.benchmark_group("classifier");
    group.sample_size(10);
    group.bench_function("new", |b| b.iter(Classifier::new));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
