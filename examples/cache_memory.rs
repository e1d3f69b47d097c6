//! Memory of the link cache, measured: fills a [`LinkCache`] (and, for comparison, plain maps of
//! the same values) with N links shaped like the perf run's, and prints the resident memory each
//! costs per link.
//!
//!     cargo run --release --example cache_memory -- [N]        (default 1,000,000)
//!
//! Each variant runs in a fresh child process so one's freed memory is not another's reuse.

use std::sync::Arc;
use std::time::Duration;

use gitrev_links::cache::{CacheConfig, CachedLink, LinkCache};
use gitrev_links::lifecycle::Limits;
use gitrev_store::urls::Link;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_owned()))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn link(i: u64) -> (Arc<str>, CachedLink) {
    let code: Arc<str> = format!("L{i:07}").into();
    let stored = Link {
        url_id: i as i64,
        user_id: None,
        original_url: format!("https://example.com/landing/{i}"),
        is_active: true,
        ..Link::default()
    };
    let cached =
        CachedLink::new(code.clone(), &stored, &Limits::default()).expect("a valid target");
    (code, cached)
}

async fn fill(variant: &str, n: u64) {
    match variant {
        "link_cache" => {
            let cache = LinkCache::new(
                CacheConfig {
                    capacity: n,
                    ttl: Duration::from_secs(300),
                    negative_ttl: Duration::from_secs(1),
                },
                gitrev_telemetry::Metrics::default()
                    .batch
                    .cache_evictions
                    .clone(),
            );
            for i in 0..n {
                cache.insert(link(i).1).await;
            }
            cache.sync().await;
            report(variant, n, cache.entry_count());
        }
        "moka_no_ttl" => {
            let cache: moka::future::Cache<Arc<str>, Arc<CachedLink>> =
                moka::future::Cache::builder().max_capacity(n).build();
            for i in 0..n {
                let (code, cached) = link(i);
                cache.insert(code, Arc::new(cached)).await;
            }
            cache.run_pending_tasks().await;
            report(variant, n, cache.entry_count());
        }
        "hashmap" => {
            let mut map = std::collections::HashMap::with_capacity(n as usize);
            for i in 0..n {
                let (code, cached) = link(i);
                map.insert(code, Arc::new(cached));
            }
            report(variant, n, map.len() as u64);
        }
        other => panic!("unknown variant {other}"),
    }
}

fn report(variant: &str, n: u64, entries: u64) {
    let rss = rss_kib();
    println!(
        "{variant:>12}: {entries} entries, RSS {} MiB, {} bytes per link",
        rss / 1024,
        rss * 1024 / n.max(1)
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if let Some(variant) = first.as_deref().and_then(|a| a.strip_prefix("--variant=")) {
        let n: u64 = args
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or(1_000_000);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(fill(variant, n));
        return;
    }
    let n = first.unwrap_or_else(|| "1000000".into());
    let me = std::env::current_exe().expect("the example's own path");
    println!("RSS of the process at start: {} MiB", rss_kib() / 1024);
    for variant in ["hashmap", "moka_no_ttl", "link_cache"] {
        let status = std::process::Command::new(&me)
            .arg(format!("--variant={variant}"))
            .arg(&n)
            .status()
            .expect("running a variant");
        assert!(status.success(), "{variant} failed");
    }
}
