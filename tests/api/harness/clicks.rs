//! Clicks, which are written after the redirect that made them was answered, and the events list
//! they are read back from.
//!
//! The synchronisation point is the server's own ([`settle_clicks`]): every click a request hands
//! to the click queue is counted in `gitrev_clicks_received_total` before the request is answered,
//! and `gitrev_clicks_settled_total` is a low-water mark in queue order up to which every click is
//! written, dropped at a full queue or lost. Once the mark reaches what had been received when the
//! wait began, every click of a request answered before then has been dealt with — whichever request
//! made it, one that should have made none included — and an exact count needs no grace period. The
//! shared server serves many tests at once; both are totals that only grow, so other tests' later
//! clicks can neither keep the condition from holding nor make it hold early.

use std::time::Duration;

use reqwest::Client;
use serde_json::Value;

use super::http::client;
use super::metrics::read_metric;
use super::poll::poll;
use super::server::{server, TestServer};
use super::shapes::assert_event;

/// How long the clicks of requests already answered may take to be written (or counted as dropped).
/// Generous: a click writer retrying against a database that just came back backs off up to 2 s.
const SETTLE_WAIT: Duration = Duration::from_secs(30);

/// Waits until `srv` has written (or counted as dropped or lost) every click it had received when
/// this was called: after it, no click of an earlier request is still on its way.
pub async fn settle_clicks(srv: &TestServer) {
    let c = client();
    let received = read_metric(srv, &c, "gitrev_clicks_received_total").await;
    poll(
        SETTLE_WAIT,
        || async { read_metric(srv, &c, "gitrev_clicks_settled_total").await },
        |settled| *settled >= received,
    )
    .await
    .unwrap_or_else(|settled| {
        panic!("{settled} clicks settled {SETTLE_WAIT:?} after {received} had been received")
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

/// The click events of `url_id` on the shared server once every click received so far has been dealt
/// with: the exact list, for the caller to count.
pub async fn settled_clicks(client: &Client, url_id: i64) -> Vec<Value> {
    settle_clicks(server()).await;
    events(client, &format!("url_id={url_id}&event_type=click")).await
}
