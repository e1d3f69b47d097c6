//! Client-side deadlines on pooled connections.
//!
//! PostgreSQL's `statement_timeout` is enforced by the server: a server that never receives the
//! query (a network partition, a failover that moved the address) cannot time it out, and the
//! caller would wait until TCP gives up — minutes. So every checkout of a pooled connection arms
//! that connection's [`Watchdog`] with the operation's deadline (the statement timeout plus a
//! margin, counted from when the connection was asked for), and the checkout disarms it when it
//! ends. The task that drives the connection looks at the watchdog on a coarse tick; finding it
//! armed and expired, it drops the connection: the socket closes, every statement in flight on it
//! fails at once (503 for the request), and the pool discards it instead of reusing it.
//!
//! Why a tick in the driver and not a `tokio::time::timeout` around every operation: arming and
//! disarming are two relaxed atomic stores on the request's path, with no timer registered per
//! query and no task woken; the price is precision (the deadline plus up to one tick). The tick
//! costs each open connection a wake-up per [`tick`] whether it is used or not — 16 connections at
//! 150 ms is about a hundred wake-ups a second in all.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use super::Reachability;

tokio::task_local! {
    /// When the operation being served began, where that is earlier than its checkout: a grouped
    /// write's deadline counts from its oldest request's arrival, not from when its group was
    /// formed, so waiting in the group queue counts too.
    static STARTED: Instant;
}

/// Runs `operation` with its deadlines counted from `started`.
pub async fn started_at<F: Future>(started: Instant, operation: F) -> F::Output {
    STARTED.scope(started, operation).await
}

/// When the current operation began, if an outer [`started_at`] says so.
pub(super) fn started() -> Option<Instant> {
    STARTED.try_with(|started| *started).ok()
}

/// The deadline of the operation a connection is serving, if any.
#[derive(Debug, Default)]
pub struct Watchdog {
    /// Milliseconds on the reachability clock after which the connection is given up; 0: idle.
    armed_until: AtomicU64,
}

impl Watchdog {
    pub(super) fn arm(&self, until_ms: u64) {
        self.armed_until.store(until_ms, Ordering::Relaxed);
    }

    pub(super) fn disarm(&self) {
        self.armed_until.store(0, Ordering::Relaxed);
    }

    fn expired(&self, now_ms: u64) -> bool {
        let until = self.armed_until.load(Ordering::Relaxed);
        until != 0 && now_ms >= until
    }
}

/// How often a connection's driver looks at its watchdog: a twentieth of the deadline, between
/// 10 and 250 ms.
pub fn tick(deadline: Duration) -> Duration {
    (deadline / 20).clamp(Duration::from_millis(10), Duration::from_millis(250))
}

/// Drives `connection` until it ends or its watchdog expires; in the second case the connection
/// is dropped (closing the socket) and `reachability` learns that the database went silent.
pub(super) async fn drive<C>(
    connection: C,
    watchdog: Arc<Watchdog>,
    reachability: Arc<Reachability>,
    tick: Duration,
) where
    C: Future<Output = Result<(), tokio_postgres::Error>>,
{
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(connection);
    loop {
        tokio::select! {
            ended = &mut connection => {
                if let Err(err) = ended {
                    warn!(error = %err, "database connection closed");
                }
                return;
            }
            _ = ticker.tick() => {
                if watchdog.expired(reachability.now_ms()) {
                    reachability.deadline_passed();
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watchdog_expires_only_while_armed_and_past_its_deadline() {
        let dog = Watchdog::default();
        assert!(!dog.expired(u64::MAX), "an idle connection never expires");
        dog.arm(100);
        assert!(!dog.expired(99));
        assert!(dog.expired(100));
        dog.disarm();
        assert!(!dog.expired(1_000));
    }

    #[test]
    fn the_tick_is_a_twentieth_of_the_deadline_within_bounds() {
        assert_eq!(tick(Duration::from_secs(3)), Duration::from_millis(150));
        assert_eq!(tick(Duration::from_millis(50)), Duration::from_millis(10));
        assert_eq!(tick(Duration::from_secs(60)), Duration::from_millis(250));
    }
}
