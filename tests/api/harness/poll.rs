//! Waiting on a fact. Every wait in the suite goes through here: it probes something observable (a
//! status, a metric, a row, a process) until it holds or a deadline passes, and hands back the last
//! value either way, so the caller's assertion shows what was seen. No test sleeps for a fixed time
//! to let something happen; the short pause between probes below is the only sleep, and it waits
//! for nothing in particular.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The pause between two probes.
const EVERY: Duration = Duration::from_millis(25);

/// Probes until `done` holds (`Ok` with that value) or `within` passes (`Err` with the last value).
pub async fn poll<T, F, Fut>(
    within: Duration,
    mut probe: F,
    done: impl Fn(&T) -> bool,
) -> Result<T, T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + within;
    loop {
        let value = probe().await;
        if done(&value) {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(value);
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// `poll` for a thread outside any runtime (process control runs on plain threads).
pub fn poll_blocking<T>(
    within: Duration,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> Result<T, T> {
    let deadline = Instant::now() + within;
    loop {
        let value = probe();
        if done(&value) {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(value);
        }
        std::thread::sleep(EVERY);
    }
}

/// Polls `state`, which tasks of the test keep filling, until `done` holds of it; fails, naming
/// `what` it waited for, after `within`.
pub async fn wait_for_state<T>(
    state: &Mutex<T>,
    within: Duration,
    what: &str,
    done: impl Fn(&T) -> bool,
) {
    let probe = || {
        let state = state
            .lock()
            .expect("no task panics while holding the state");
        std::future::ready(done(&state))
    };
    poll(within, probe, |held| *held)
        .await
        .unwrap_or_else(|_| panic!("{what}: not seen within {within:?}"));
}
