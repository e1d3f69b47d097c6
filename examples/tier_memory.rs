//! Memory and start cost of the link tier (issue #12), measured: writes a tier of N links shaped
//! like the perf runs' (seven-character codes, ~50-byte targets), then, in a fresh child process,
//! maps it, looks every code up once and reports its anonymous memory (`RssAnon`: heap, what the
//! target bounds) apart from the file pages the kernel mapped in (`RssFile`: shared, evictable).
//!
//!     cargo run --release --example tier_memory -- [N]        (default 1,000,000)

use std::time::Instant;

use gitrev_tier::{Origin, Tier};

#[path = "../benches/support/tier_links.rs"]
mod tier_links;
use tier_links::{code, links};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_owned()))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn child(path: &str, n: u64) {
    let anon_before = status_kib("RssAnon:");
    let t = Instant::now();
    let tier = Tier::open(path.as_ref()).expect("opens").expect("exists");
    let opened = t.elapsed();
    let t = Instant::now();
    let first = tier.get(&code(n / 2)).map(|f| f.url_id);
    let first_lookup = t.elapsed();
    assert_eq!(first, Some(n as i64 / 2 + 1));
    let t = Instant::now();
    let mut found = 0u64;
    let mut buf = String::with_capacity(8);
    for i in 0..n {
        buf.clear();
        buf.push_str(&code(i));
        found += u64::from(tier.get(&buf).is_some());
    }
    let all = t.elapsed();
    assert_eq!(found, n);
    println!(
        "open (map + checks) {:.1} ms; first lookup {:.1} µs; {n} lookups in {:.2} s ({:.0} ns each)",
        opened.as_secs_f64() * 1e3,
        first_lookup.as_secs_f64() * 1e6,
        all.as_secs_f64(),
        all.as_secs_f64() * 1e9 / n as f64
    );
    println!(
        "RssAnon {} MiB before opening, {} MiB after every link was looked up; RssFile {} MiB (the mapped tier, shared and evictable)",
        anon_before / 1024,
        status_kib("RssAnon:") / 1024,
        status_kib("RssFile:") / 1024
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(&args[2], args[3].parse().expect("a count"));
        return;
    }
    let n: u64 = args
        .get(1)
        .map_or(1_000_000, |v| v.parse().expect("a count"));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("links.tier");
    let links = links(n);
    let t = Instant::now();
    let origin = Origin {
        system_id: 1,
        database: "example".into(),
        built_at_us: 0,
        snapshot: String::new(),
    };
    let built = gitrev_tier::write(&path, &origin, links).expect("written");
    println!(
        "{} links: built and written in {:.2} s; {} bytes, {:.1} bytes per link beside {:.1} bytes of target text",
        built.links,
        t.elapsed().as_secs_f64(),
        built.file_bytes,
        built.bytes_per_link(),
        built.url_text_bytes as f64 / built.links as f64
    );
    let status = std::process::Command::new(&args[0])
        .args(["child", path.to_str().expect("utf-8 path"), &n.to_string()])
        .status()
        .expect("child runs");
    assert!(status.success());
}
