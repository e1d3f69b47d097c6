//! Retrying with backoff, one way everywhere: through [`backon`], with the policy built here.
//!
//! Every loop that waits for something to come back (the click writer's flush, the LISTEN
//! connection, a command waiting for the database, the migration after an outage, the embedded
//! PostgreSQL's readiness and stop) is `operation.retry(backoff(first, max))`, with the loop's
//! own give-up rule in `.when(…)` (read at every failed attempt, so a deadline set meanwhile —
//! the click drain's — counts at once) and its log line in `.notify(…)`. None gives up by count:
//! each has its own deadline or ends with the service.

use std::time::Duration;

pub use backon::{BackoffBuilder, BlockingRetryable, ExponentialBuilder, Retryable};

/// Waits of `first`, doubling after each failed attempt, capped at `max`; no jitter, no limit on
/// the number of attempts (the caller's `.when` decides when to give up). `first == max` is a
/// constant delay.
pub fn backoff(first: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(max.max(first))
        .with_factor(2.0)
        .without_max_times()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_never_run_out() {
        let delays: Vec<u64> = backoff(Duration::from_millis(50), Duration::from_secs(2))
            .build()
            .take(9)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(
            backoff(Duration::from_secs(1), Duration::from_secs(1))
                .build()
                .nth(10_000),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn a_blocking_retry_stops_when_told() {
        let mut attempts = 0;
        let result: Result<(), u32> = (|| {
            attempts += 1;
            Err(attempts)
        })
        .retry(backoff(Duration::from_millis(1), Duration::from_millis(1)))
        .sleep(std::thread::sleep)
        .when(|&n| n < 3)
        .call();
        assert_eq!(result, Err(3));
    }
}
