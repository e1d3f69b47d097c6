//! Click volume: loads clicks for ONE url through the service's own writer
//! (`gitrev_store::Store::record_clicks`: dictionaries, binary `COPY`, rollups, one transaction per
//! batch with its marker), as the click queue's flushers do, so that `perf/clicks.sh` can measure
//! the bytes each stored click costs and the analytics reads on a url holding millions of them.
//!
//!     cargo run --release --example click_volume -- DATABASE_URL URL_ID
//!     CLICKS=10000000 DAYS=30 BATCH=1000 WRITERS=2 SEED=9 target/release/examples/click_volume ...
//!
//! The clicks run in time order (like real traffic) evenly over the last DAYS days ending a minute
//! ago, with jitter inside each step; every click carries the url's code, owner and target as the
//! redirect's click does. Each takes one of 20 user agents (browsers on desktop, phone and tablet,
//! and bots: crawlers, link previews, HTTP libraries, and no user agent at all, about 22% of
//! clicks) and one of 50 referrers (one of them absent: "direct"), both skewed: a few are common,
//! most are rare. Deterministic for a given SEED.
//!
//! Prints one line of key=value pairs at the end: clicks, stored, seconds, clicks_per_s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use gitrev_store::clicks::{now_micros, BatchMark, Click, Counting};
use gitrev_store::urls::ClickTarget;
use gitrev_store::{Store, StoreSettings};
use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// User agents and their weights (per thousand clicks).
const AGENTS: [(Option<&str>, u32); 20] = [
    (Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"), 230),
    (Some("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"), 170),
    (Some("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36"), 110),
    (Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"), 70),
    (Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15"), 50),
    (Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"), 40),
    (Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"), 35),
    (Some("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36"), 25),
    (Some("Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1"), 20),
    (Some("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"), 15),
    (Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"), 10),
    (Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0"), 5),
    (Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"), 60),
    (Some("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"), 25),
    (Some("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"), 40),
    (Some("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"), 30),
    (Some("Twitterbot/1.0"), 20),
    (Some("curl/8.5.0"), 15),
    (Some("python-requests/2.32.3"), 10),
    (None, 20),
];

/// 50 referrers: absent ("direct"), a dozen common sites, then a long tail of small ones.
fn referrers() -> Vec<(Option<String>, u32)> {
    let mut out: Vec<(Option<String>, u32)> = vec![
        (None, 300),
        (Some("https://www.google.com/".into()), 180),
        (Some("https://t.co/Xy12AbCd".into()), 80),
        (Some("https://www.facebook.com/".into()), 60),
        (Some("https://www.linkedin.com/feed/".into()), 40),
        (
            Some("https://news.ycombinator.com/item?id=41234567".into()),
            40,
        ),
        (
            Some("https://www.reddit.com/r/programming/comments/abc123/".into()),
            35,
        ),
        (Some("https://duckduckgo.com/".into()), 25),
        (Some("https://www.bing.com/search?q=gitrev".into()), 20),
        (Some("https://mail.google.com/".into()), 20),
        (Some("https://l.instagram.com/?u=x".into()), 15),
        (Some("https://github.com/example/project".into()), 15),
        (Some("https://www.youtube.com/watch?v=abc".into()), 10),
    ];
    for i in 0..37 {
        out.push((
            Some(format!("https://blog{i}.example.net/posts/{}", i * 7)),
            5 - (i as u32 % 4),
        ));
    }
    out
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: not a number")))
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(database_url), Some(url_id)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: click_volume DATABASE_URL URL_ID");
    };
    let url_id: i64 = url_id.parse()?;
    let total = env_u64("CLICKS", 10_000_000);
    let days = env_u64("DAYS", 30) as i64;
    let batch = env_u64("BATCH", 1_000).max(1);
    let writers = env_u64("WRITERS", 2).max(1);
    let seed = env_u64("SEED", 9);

    // The url as a redirect's click carries it: code, owner, target.
    let (client, connection) =
        tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT short_code, user_id, original_url FROM urls WHERE id = $1",
            &[&url_id],
        )
        .await?;
    let code: Arc<str> = row.get::<_, String>(0).into();
    let user_id: Option<i64> = row.get(1);
    let target = ClickTarget::Stored(row.get::<_, String>(2).into());
    drop(client);

    let store = Store::new(
        &database_url,
        &StoreSettings {
            pool_size: writers as u32 + 1,
            statement_timeout_ms: 120_000,
            pool_timeout_ms: 30_000,
            connect_timeout_ms: 5_000,
            db_deadline_margin_ms: 5_000,
            maintenance_timeout_ms: 600_000,
            click_retention_days: 0,
        },
    )?;

    let end = now_micros() - 60_000_000;
    let start = end - days * 86_400_000_000;
    let step = (end - start) as f64 / total as f64;
    let agents: Arc<Vec<Option<Box<str>>>> =
        Arc::new(AGENTS.iter().map(|(a, _)| a.map(Into::into)).collect());
    let agent_pick = WeightedIndex::new(AGENTS.iter().map(|(_, w)| *w))?;
    let refs = referrers();
    let referrer_pick = WeightedIndex::new(refs.iter().map(|(_, w)| *w))?;
    let refs: Arc<Vec<Option<Box<str>>>> = Arc::new(
        refs.into_iter()
            .map(|(r, _)| r.map(String::into_boxed_str))
            .collect(),
    );

    let next = Arc::new(AtomicU64::new(0));
    let stored = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (store, next, stored) = (store.clone(), next.clone(), stored.clone());
        let (code, target, agents, refs) =
            (code.clone(), target.clone(), agents.clone(), refs.clone());
        let (agent_pick, referrer_pick) = (agent_pick.clone(), referrer_pick.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= total {
                    return Ok::<(), anyhow::Error>(());
                }
                let last = (first + batch).min(total);
                // Each batch draws from its own stream: the same clicks whatever the writers' order.
                let mut rng =
                    StdRng::seed_from_u64(seed ^ first.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let clicks: Vec<Click> = (first..last)
                    .map(|i| Click {
                        url_id,
                        user_id,
                        at: start
                            + (i as f64 * step) as i64
                            + rng.random_range(0..step.max(1.0) as i64),
                        short_code: Some(code.clone()),
                        original_url: Some(target.clone()),
                        referrer: refs[referrer_pick.sample(&mut rng)].clone(),
                        user_agent: agents[agent_pick.sample(&mut rng)].clone(),
                        extra: None,
                        limited: false,
                    })
                    .collect();
                let mut mark = BatchMark::attempt(rng.random());
                let written = store
                    .record_clicks(&clicks, Some(&mut mark), Counting::New)
                    .await
                    .map_err(|e| anyhow::anyhow!("writing clicks {first}..{last}: {e}"))?;
                let done = stored.fetch_add(written.stored, Ordering::Relaxed) + written.stored;
                if done / 1_000_000 != (done - written.stored) / 1_000_000 {
                    eprintln!(
                        "{done} clicks stored, {:.0} clicks/s",
                        done as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let stored = stored.load(Ordering::Relaxed);
    store.close().await;
    println!(
        "clicks={total} stored={stored} seconds={seconds:.1} clicks_per_s={:.0}",
        stored as f64 / seconds
    );
    anyhow::ensure!(
        stored == total,
        "only {stored} of {total} clicks were stored"
    );
    Ok(())
}
