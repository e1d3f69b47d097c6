//! Clicks, which are written after the redirect that made them was answered, and the events list
//! they are read back from.
//!
//! The synchronisation point is the server's own accounting ([`settle_clicks`]): every `GET` redirect
//! it answered queued one click, and every queued click ends up written (the sum of
//! `gitrev_click_batch_size`, counted after the batch committed), dropped at a full queue
//! (`gitrev_click_queue_overflow_total`) or lost past its retries (`gitrev_clicks_lost_total`). Once
//! those add up to the redirects it had answered (`gitrev_http_requests_total` of `/{short_code}`,
//! `GET`, a 3xx, counted before the answer is sent) when the wait began, the clicks of those
//! redirects have been dealt with, and an exact count needs no grace period. The shared server
//! serves many tests at once, so the condition compares totals that only grow: redirects answered
//! after the wait began cannot keep it from holding.
//!
//! One gap is the server's to close: the writer has two batches in flight at once, so a later batch
//! can be counted while an earlier one (holding a click answered before the wait) has not committed
//! yet, and other tests' clicks can fill the difference. What would close it is a low-water mark,
//! e.g. `gitrev_clicks_settled_total`: the clicks, in queue order, up to which every one is written,
//! dropped or lost (with `gitrev_clicks_queued_total`, the clicks accepted into the queue, to compare
//! it with). `gitrev_click_queue_depth` does not help: it is set when a batch is taken, not when a
//! click is queued.

use std::time::Duration;

use reqwest::Client;
use serde_json::{json, Value};

use super::fixtures::{code_path, create_url_with, id_of, unique_original_url};
use super::http::client;
use super::metrics::{labelled_value, metric_value, scrape};
use super::poll::poll;
use super::server::{server, TestServer};
use super::shapes::assert_event;

/// How long the clicks of redirects already answered may take to be written (or counted as dropped).
/// Generous: a click writer retrying against a database that just came back backs off up to 2 s.
const SETTLE_WAIT: Duration = Duration::from_secs(30);

/// `GET` redirects `srv` answered (every one queued a click, or counted it as dropped).
fn redirects_answered(metrics: &str) -> f64 {
    ["301", "302", "307", "308"]
        .iter()
        .map(|status| {
            labelled_value(
                metrics,
                "gitrev_http_requests_total",
                &[
                    ("route", "/{short_code}"),
                    ("method", "GET"),
                    ("status", status),
                ],
            )
        })
        .sum()
}

/// Clicks `srv` has dealt with: written, dropped at a full queue, or lost.
fn clicks_accounted(metrics: &str) -> f64 {
    [
        "gitrev_click_batch_size_sum",
        "gitrev_click_queue_overflow_total",
        "gitrev_clicks_lost_total",
    ]
    .iter()
    .map(|name| {
        metric_value(metrics, name).unwrap_or_else(|| panic!("/metrics has no {name}:\n{metrics}"))
    })
    .sum()
}

/// Waits until `srv` has written (or counted as dropped or lost) the click of every `GET` redirect it
/// had answered when this was called: after it, no click of an earlier redirect is still on its way.
pub async fn settle_clicks(srv: &TestServer) {
    let c = client();
    let answered = redirects_answered(&scrape(srv, &c).await);
    poll(
        SETTLE_WAIT,
        || async { clicks_accounted(&scrape(srv, &c).await) },
        |accounted| *accounted >= answered,
    )
    .await
    .unwrap_or_else(|accounted| {
        panic!(
            "{accounted} clicks written, dropped or lost {SETTLE_WAIT:?} after {answered} \
             redirects had been answered"
        )
    });
}

/// `GET /events?query` on the shared server, each event checked for its shape.
pub async fn events(client: &Client, query: &str) -> Vec<Value> {
    let reply = server()
        .get(client, &format!("/events?{query}"))
        .await
        .expect(200, "GET /events");
    let list = reply.array().clone();
    for event in &list {
        assert_event(event);
    }
    list
}

/// The click events of `url_id` on the shared server once every redirect answered so far has had its
/// click dealt with: the exact list, for the caller to count.
pub async fn settled_clicks(client: &Client, url_id: i64) -> Vec<Value> {
    settle_clicks(server()).await;
    events(client, &format!("url_id={url_id}&event_type=click")).await
}

/// A redirect of a url of its own, whose click is then waited for. Clicks are queued in the order
/// their redirects were answered, so once it is written any click recorded before it (by a request
/// that should have recorded none) has been written too, or is in the one batch that may still be
/// in flight beside it, which [`settled_clicks`] waits for: "no click" checks look after a fence.
pub async fn fence_clicks(client: &Client) {
    let url = create_url_with(client, json!({"original_url": unique_original_url()})).await;
    server()
        .get(client, &code_path(&url))
        .await
        .expect(302, "GET of a fresh short code");
    let clicks = settled_clicks(client, id_of(&url)).await;
    assert_eq!(clicks.len(), 1, "the fence click was recorded once");
}
