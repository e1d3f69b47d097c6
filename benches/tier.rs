//! The link tier's lookups (issue #12) against an in-heap map of the same links.
//!
//! Run: `cargo bench --bench tier` (criterion; results in target/criterion). A tier of TIER_LINKS
//! (1,000,000) links with seven-character codes is written to a temporary file and mapped; the
//! lookups cycle through 65,536 codes drawn at random from all of them (hits) or never issued
//! (misses), so most land outside the CPU caches, as a long tail of links does.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gitrev_tier::{Link, Origin, Tier};

#[path = "support/tier_links.rs"]
mod tier_links;
use tier_links::{code, links};

fn tier(c: &mut Criterion) {
    let n: usize = std::env::var("TIER_LINKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let all = links(n as u64);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("links.tier");
    let origin = Origin {
        system_id: 1,
        database: "bench".into(),
        built_at_us: 0,
        snapshot: String::new(),
    };
    let map: HashMap<String, Link> = all.iter().map(|l| (l.code.clone(), l.clone())).collect();
    let built = gitrev_tier::write(&path, &origin, all).expect("written");
    println!(
        "tier: {} links, {} bytes, {:.1} bytes per link beside the target text",
        built.links,
        built.file_bytes,
        built.bytes_per_link()
    );
    let tier = Tier::open(&path).expect("opens").expect("exists");

    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let hits: Vec<String> = (0..65_536).map(|_| code(next() % n as u64)).collect();
    let misses: Vec<String> = (0..65_536)
        .map(|_| code(n as u64 + next() % (1 << 40)))
        .collect();
    assert!(hits.iter().all(|c| tier.get(c).is_some()));
    assert!(misses.iter().all(|c| tier.get(c).is_none()));

    let mut g = c.benchmark_group("tier");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("get_hit", |b| {
        b.iter(|| {
            i = (i + 1) & 65_535;
            black_box(tier.get(black_box(&hits[i])).map(|f| f.url_id))
        })
    });
    g.bench_function("get_miss", |b| {
        b.iter(|| {
            i = (i + 1) & 65_535;
            black_box(tier.get(black_box(&misses[i])).is_some())
        })
    });
    g.bench_function("hashmap_hit", |b| {
        b.iter(|| {
            i = (i + 1) & 65_535;
            black_box(map.get(black_box(hits[i].as_str())).map(|l| l.url_id))
        })
    });
    g.bench_function("hashmap_miss", |b| {
        b.iter(|| {
            i = (i + 1) & 65_535;
            black_box(map.contains_key(black_box(misses[i].as_str())))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("tier_open");
    g.sample_size(10);
    g.bench_function("open_and_check", |b| {
        b.iter(|| black_box(Tier::open(&path).expect("opens").expect("exists").len()))
    });
    g.finish();
}

criterion_group!(benches, tier);
criterion_main!(benches);
