//! Reading a server's `/metrics` (Prometheus text format): a metric's value summed over its label
//! sets, or over the label sets a test picks, waiting for one to reach a value, and the group-size
//! histograms that show concurrent writes sharing statements.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Client;

use super::http::client;
use super::poll::poll;
use super::server::TestServer;

/// One sample line: its metric name, its labels and its value.
struct Sample<'a> {
    name: &'a str,
    labels: BTreeMap<&'a str, String>,
    value: f64,
}

fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value on metric line {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("no number at the end of metric line {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            Sample {
                name,
                labels,
                value,
            }
        })
}

/// `a="x",b="y \"quoted\""` into a map, unescaping the values.
fn parse_labels(text: &str) -> BTreeMap<&str, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((at, ch)) = chars.next() {
            match ch {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = at + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(key.trim_start_matches(',').trim(), value);
        rest = &after[end..];
    }
    labels
}

/// The sum of every sample of metric `name` (all label sets) in a Prometheus text body; `None` when the
/// body has no sample of that name.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    samples(text)
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .reduce(|a, b| a + b)
}

/// The sum of the samples of metric `name` whose labels include every `(label, value)` of `labels`
/// (0 when there is none: a counter that was never incremented has no sample).
pub fn labelled_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(k).is_some_and(|have| have == v))
        })
        .map(|s| s.value)
        .sum()
}

/// `GET /metrics` on `srv`: the Prometheus text.
pub async fn scrape(srv: &TestServer, client: &Client) -> String {
    srv.get(client, "/metrics")
        .await
        .expect(200, "GET /metrics")
        .text
}

/// `GET /metrics` on `srv` and the value of `name` in it; panics, showing the names served, when absent.
pub async fn read_metric(srv: &TestServer, client: &Client, name: &str) -> f64 {
    let text = scrape(srv, client).await;
    metric_value(&text, name)
        .unwrap_or_else(|| panic!("/metrics has no sample named {name}:\n{text}"))
}

/// Polls `name` on `srv` until `done` holds of its value, failing after `within`; the value.
pub async fn wait_for_metric(
    srv: &TestServer,
    name: &str,
    within: Duration,
    done: impl Fn(f64) -> bool,
) -> f64 {
    let c = client();
    poll(within, || read_metric(srv, &c, name), |v| done(*v))
        .await
        .unwrap_or_else(|last| panic!("{name} is still {last} after {within:?}"))
}

/// (statements, requests they carried) of a group-size histogram so far.
pub async fn group_totals(srv: &TestServer, c: &Client, histogram: &str) -> (f64, f64) {
    let text = scrape(srv, c).await;
    let read = |part: &str| {
        let name = format!("{histogram}_{part}");
        metric_value(&text, &name).unwrap_or_else(|| panic!("/metrics has no {name}"))
    };
    (read("count"), read("sum"))
}

/// Checks that the `n` requests sent since `before` (see `group_totals`) all went through groups, and
/// that the groups were fewer than the requests: at least two shared a statement.
pub async fn assert_grouped(
    srv: &TestServer,
    c: &Client,
    histogram: &str,
    before: (f64, f64),
    n: usize,
) {
    let after = group_totals(srv, c, histogram).await;
    let (statements, requests) = (after.0 - before.0, after.1 - before.1);
    assert_eq!(
        requests, n as f64,
        "{histogram}: every one of the {n} concurrent requests went through a group"
    );
    assert!(
        statements < n as f64,
        "{histogram}: {n} concurrent requests were written by fewer statements ({statements})"
    );
}
