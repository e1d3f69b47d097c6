//! What a client-side deadline costs per database checkout, by mechanism (issue #13).
//!
//! Run: `cargo bench --bench deadline` (criterion; results in target/criterion). Self-contained:
//! only tokio, criterion and std, no gitrev code, so the figures are the mechanisms' own. Every
//! case runs on a current-thread tokio runtime with the time driver enabled, `iters` operations
//! in one `block_on`, so the runtime's entry is not part of the per-operation figure:
//!
//! - `watchdog_arm_disarm`: two relaxed `AtomicU64` stores, what `Store::conn` does per checkout
//!   (arm with the deadline, disarm when the checkout drops);
//! - `timeout_ready`: `tokio::time::timeout(3 s, fut)` where `fut` is ready at its first poll, so
//!   no timer is registered (a checkout finding an idle connection);
//! - `timeout_pending_once`: the same around `tokio::task::yield_now()`, which is pending once:
//!   the timeout's sleep is polled and its timer registered (and removed on drop);
//! - `yield_now_bare`: that `yield_now()` alone, the baseline for `timeout_pending_once`;
//! - `instant_now` and `task_local_scope`: the other per-request additions of the change (a clock
//!   read per grouped request; the grouped write's start time in a task-local).

use std::future::{ready, Future};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tokio::runtime::{Builder, Runtime};

const DEADLINE: Duration = Duration::from_secs(3);

tokio::task_local! {
    static STARTED: Instant;
}

fn runtime() -> Runtime {
    Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
}

/// `iters` runs of `op` awaited one after another inside one `block_on`; the elapsed time.
fn run<F, Fut>(rt: &Runtime, iters: u64, mut op: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(op().await);
        }
        start.elapsed()
    })
}

fn deadline(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("deadline");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));

    let watchdog = Arc::new(AtomicU64::new(0));
    g.bench_function("watchdog_arm_disarm", |b| {
        b.iter_custom(|iters| {
            run(&rt, iters, || {
                let dog = black_box(&watchdog);
                dog.store(black_box(123_456), Ordering::Relaxed);
                dog.store(0, Ordering::Relaxed);
                ready(())
            })
        })
    });

    g.bench_function("timeout_ready", |b| {
        b.iter_custom(|iters| {
            run(&rt, iters, || async {
                tokio::time::timeout(DEADLINE, ready(black_box(1u64)))
                    .await
                    .expect("ready at once")
            })
        })
    });

    g.bench_function("timeout_pending_once", |b| {
        b.iter_custom(|iters| {
            run(&rt, iters, || async {
                tokio::time::timeout(DEADLINE, tokio::task::yield_now())
                    .await
                    .expect("ready on the second poll")
            })
        })
    });

    g.bench_function("yield_now_bare", |b| {
        b.iter_custom(|iters| run(&rt, iters, tokio::task::yield_now))
    });

    g.bench_function("instant_now", |b| {
        b.iter_custom(|iters| run(&rt, iters, || ready(Instant::now())))
    });

    let started = Instant::now();
    g.bench_function("task_local_scope", |b| {
        b.iter_custom(|iters| {
            run(&rt, iters, || {
                STARTED.scope(black_box(started), async {
                    STARTED.try_with(|s| *s).expect("in scope")
                })
            })
        })
    });

    g.finish();
}

criterion_group!(benches, deadline);
criterion_main!(benches);
