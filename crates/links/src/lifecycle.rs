//! What a link's options decide on the redirect path: expiry by time, click limits, the fallback
//! of an expired link and query forwarding — from what the cache holds, never a query.
//!
//! - **Expiry by time** compares `expires_at` with the instant the request is served (the same
//!   one its click carries), so a link stops at that second on every replica (their clocks agree).
//! - **Click limits** ([`Limits`]): each replica keeps, per url with a `max_clicks`, the clicks it
//!   knows to be stored (`known`: the largest total it has seen — when the link was loaded, after
//!   its own batches, and announced by every replica's click writer on `gitrev_limits`) and the
//!   clicks it has redirected but not yet written (`pending`). A click is let through only while
//!   `known + pending < max_clicks`, under one small lock, so one replica never lets more through
//!   than the limit. Another replica's clicks count here once they are written and announced: with
//!   N replicas the limit may be overshot by at most the clicks the other replicas have redirected
//!   and not yet written (at most `GITREV_CLICK_FLUSH_MS` worth of their traffic each, plus the
//!   announcement's delay) — see docs/api.md.
//! - **Query forwarding** ([`Forward`]): the target is split once, when the link is cached, into
//!   the part before its fragment, the separator the request's query needs (`?`, `&` or none) and
//!   the fragment; a request only concatenates bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::HeaderValue;

/// A url's clicks as this replica knows them.
#[derive(Debug, Default)]
pub struct ClickCounts {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    /// The most clicks this replica has seen stored.
    known: i64,
    /// Clicks this replica redirected that are not written yet.
    pending: i64,
}

impl ClickCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The lock guards two integers and no code that can panic while holding it.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one click of `max` if any is left.
    pub fn try_take(&self, max: i64) -> bool {
        let mut c = self.lock();
        if c.known.saturating_add(c.pending) < max {
            c.pending += 1;
            true
        } else {
            false
        }
    }

    /// Whether `max` clicks are used up (counting this replica's unwritten ones).
    pub fn exhausted(&self, max: i64) -> bool {
        let c = self.lock();
        c.known.saturating_add(c.pending) >= max
    }

    /// A stored total seen (a load, an announcement): it only ever raises what is known.
    pub fn observe(&self, total: i64) {
        let mut c = self.lock();
        c.known = c.known.max(total);
    }

    /// `n` clicks taken here were written; `total` is the url's stored clicks right after, when
    /// the writer learnt it.
    pub fn written(&self, n: i64, total: Option<i64>) {
        let mut c = self.lock();
        c.pending = (c.pending - n).max(0);
        c.known = match total {
            Some(total) => c.known.max(total),
            None => c.known.saturating_add(n),
        };
    }

    /// `n` clicks taken here were not recorded after all (dropped by a full queue, or lost).
    pub fn release(&self, n: i64) {
        let mut c = self.lock();
        c.pending = (c.pending - n).max(0);
    }

    /// (known, pending), for tests and logs.
    pub fn snapshot(&self) -> (i64, i64) {
        let c = *self.lock();
        (c.known, c.pending)
    }
}

/// The click counts of every url with a `max_clicks` this replica has served, by url id. Shared by
/// the link cache (which hands an entry its url's counts), the click writer (which settles them)
/// and the LISTEN task (which hears other replicas' totals). Small: one entry per limited url seen.
#[derive(Clone, Default)]
pub struct Limits {
    by_url: Arc<Mutex<HashMap<i64, Arc<ClickCounts>>>>,
}

impl Limits {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<ClickCounts>>> {
        self.by_url.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counts of `url_id`, made on first use, raised to `stored` (its total as just read).
    pub fn counts(&self, url_id: i64, stored: i64) -> Arc<ClickCounts> {
        let counts = self.map().entry(url_id).or_default().clone();
        counts.observe(stored);
        counts
    }

    /// Another replica's (or this one's) writer announced `url_id`'s total.
    pub fn observe(&self, url_id: i64, total: i64) {
        let counts = self.map().get(&url_id).cloned();
        if let Some(counts) = counts {
            counts.observe(total);
        }
    }

    /// An announcement's payload, `<url id> <clicks>`.
    pub fn observe_announced(&self, payload: &str) {
        let mut parts = payload.split(' ');
        if let (Some(Ok(url_id)), Some(Ok(total)), None) = (
            parts.next().map(str::parse::<i64>),
            parts.next().map(str::parse::<i64>),
            parts.next(),
        ) {
            self.observe(url_id, total);
        }
    }

    /// Settles a written (or lost) batch: `taken` is how many limited clicks of each url it held;
    /// `totals` the stored totals the writer got back (`None` when the batch was lost). Counts no
    /// cache entry holds and with nothing pending are forgotten (a later load reads the total).
    pub fn settle(&self, taken: &HashMap<i64, i64>, totals: Option<&[(i64, i64)]>) {
        let mut map = self.map();
        for (url_id, n) in taken {
            let Some(counts) = map.get(url_id).cloned() else {
                continue;
            };
            match totals {
                Some(totals) => {
                    let total = totals.iter().find(|(id, _)| id == url_id).map(|t| t.1);
                    counts.written(*n, total);
                }
                None => counts.release(*n),
            }
            if Arc::strong_count(&counts) == 2 && counts.snapshot().1 == 0 {
                map.remove(url_id);
            }
        }
    }

    /// Urls tracked (for tests).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A target split for appending a query string without reparsing it.
#[derive(Debug, Clone)]
pub struct Forward {
    /// The target up to its fragment, and what comes between it and an appended query.
    head: Bytes,
    separator: &'static [u8],
    /// `#…` or empty.
    fragment: Bytes,
}

impl Forward {
    /// `location` is the target's normalized form (what `url` serializes).
    pub fn new(location: &[u8]) -> Forward {
        let (head, fragment) = match location.iter().position(|&b| b == b'#') {
            Some(at) => location.split_at(at),
            None => (location, &b""[..]),
        };
        let separator: &'static [u8] = match head.iter().position(|&b| b == b'?') {
            None => b"?",
            Some(at) if at + 1 == head.len() || head.ends_with(b"&") => b"",
            Some(_) => b"&",
        };
        Forward {
            head: Bytes::copy_from_slice(head),
            separator,
            fragment: Bytes::copy_from_slice(fragment),
        }
    }

    /// The location for a request whose query string is `query` (raw, as sent); `None` when there
    /// is nothing to append (the link's own location serves).
    pub fn location(&self, query: Option<&str>) -> Option<HeaderValue> {
        let query = query.filter(|q| !q.is_empty())?.as_bytes();
        let mut out =
            BytesMut::with_capacity(self.head.len() + 1 + query.len() * 3 + self.fragment.len());
        out.put_slice(&self.head);
        out.put_slice(self.separator);
        encode_query(query, &mut out);
        out.put_slice(&self.fragment);
        HeaderValue::from_maybe_shared(out.freeze()).ok()
    }
}

/// Appends `query`, percent-encoding what may not appear in a URL's query (and so in a
/// `location`): controls, space, non-ASCII, `"`, `#`, `<`, `>` and `` ` ``. Everything else —
/// `%` escapes, `+`, `&`, `=` — is kept as sent, so the parameters decode to what the client sent.
fn encode_query(query: &[u8], out: &mut BytesMut) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in query {
        if b <= b' ' || b >= 0x7f || matches!(b, b'"' | b'#' | b'<' | b'>' | b'`') {
            out.put_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.put_u8(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn forwarded(target: &str, query: &str) -> String {
        let location = String::from(url::Url::parse(target).unwrap());
        let forward = Forward::new(location.as_bytes());
        match forward.location(Some(query)) {
            Some(v) => v.to_str().unwrap().to_owned(),
            None => location,
        }
    }

    #[test]
    fn queries_are_appended_after_the_targets_own() {
        assert_eq!(
            forwarded("https://x.io/p", "utm_source=x"),
            "https://x.io/p?utm_source=x"
        );
        assert_eq!(
            forwarded("https://x.io/p?a=1", "b=2&c=3"),
            "https://x.io/p?a=1&b=2&c=3"
        );
        assert_eq!(
            forwarded("https://x.io/p?a=1#top", "b=2"),
            "https://x.io/p?a=1&b=2#top"
        );
        assert_eq!(forwarded("https://x.io/p?", "b=2"), "https://x.io/p?b=2");
        assert_eq!(forwarded("https://x.io", "b=2"), "https://x.io/?b=2");
        assert_eq!(
            forwarded("https://x.io/p", "q=a b\"<>`#"),
            "https://x.io/p?q=a%20b%22%3C%3E%60%23"
        );
        assert_eq!(forwarded("https://x.io/p", ""), "https://x.io/p");
    }

    fn pairs(u: &url::Url) -> Vec<(String, String)> {
        u.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    proptest! {
        /// Whatever the target's query and the request's: the location parses, keeps the target's
        /// scheme, host, path and fragment, and its parameters are the target's followed by the
        /// request's, each decoding to what was sent.
        #[test]
        fn forwarding_merges_and_encodes_parameters(
            path in "(/[a-z0-9._~-]{0,8}){0,3}",
            own in proptest::collection::vec(("[a-zA-Z0-9_]{1,6}", "[a-zA-Z0-9 ./é%+-]{0,6}"), 0..4),
            fragment in proptest::option::of("[a-z0-9]{0,6}"),
            sent in proptest::collection::vec(("\\PC{1,6}", "\\PC{0,8}"), 1..5),
        ) {
            let mut target = url::Url::parse(&format!("https://example.com{path}")).unwrap();
            if !own.is_empty() {
                target.query_pairs_mut().extend_pairs(&own);
            }
            target.set_fragment(fragment.as_deref());
            // The request's query as a client would send it (form-encoded).
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&sent)
                .finish();
            let location = forwarded(target.as_str(), &query);
            let got = url::Url::parse(&location).unwrap();
            prop_assert_eq!(got.host_str(), target.host_str());
            prop_assert_eq!(got.path(), target.path());
            prop_assert_eq!(got.fragment(), target.fragment());
            let mut want = pairs(&target);
            want.extend(sent.iter().cloned());
            prop_assert_eq!(pairs(&got), want);
            prop_assert!(HeaderValue::from_str(&location).is_ok());
        }

        /// Any raw query bytes a client may send still give a valid header value.
        #[test]
        fn any_query_gives_a_header_value(query in "\\PC{1,40}") {
            let forward = Forward::new(b"https://example.com/a?b=c#d");
            let value = forward.location(Some(&query)).expect("a location");
            let text = value.to_str().expect("visible ASCII");
            prop_assert!(text.starts_with("https://example.com/a?b=c&"));
            prop_assert!(text.ends_with("#d"));
        }
    }

    #[test]
    fn one_replica_never_lets_more_than_max_through() {
        let counts = ClickCounts::default();
        counts.observe(2);
        let taken = (0..10).filter(|_| counts.try_take(5)).count();
        assert_eq!(taken, 3);
        assert!(counts.exhausted(5));
        // Two of them were lost: two more may go.
        counts.release(2);
        assert!(!counts.exhausted(5));
        assert_eq!((0..10).filter(|_| counts.try_take(5)).count(), 2);
        // The three left pending are written: the stored total says 5, nothing pending.
        counts.written(3, Some(5));
        assert_eq!(counts.snapshot(), (5, 0));
        assert!(!counts.try_take(5));
    }

    #[test]
    fn totals_only_raise_what_is_known() {
        let limits = Limits::default();
        let counts = limits.counts(7, 4);
        limits.observe_announced("7 9");
        assert_eq!(counts.snapshot(), (9, 0));
        limits.observe_announced("7 3");
        limits.observe_announced("garbage");
        limits.observe_announced("7 1 2");
        assert_eq!(counts.snapshot(), (9, 0));
        // A stale load total does not lower it either.
        assert_eq!(limits.counts(7, 2).snapshot(), (9, 0));
    }

    #[test]
    fn settling_forgets_counts_nobody_holds() {
        let limits = Limits::default();
        let counts = limits.counts(1, 0);
        assert!(counts.try_take(3));
        let taken = HashMap::from([(1, 1)]);
        limits.settle(&taken, Some(&[(1, 1)]));
        assert_eq!(counts.snapshot(), (1, 0));
        assert_eq!(limits.len(), 1, "still held by an entry");
        drop(counts);
        let again = limits.counts(1, 1);
        assert!(again.try_take(3));
        drop(again);
        limits.settle(&taken, None);
        assert!(
            limits.is_empty(),
            "nothing pending and no holder: forgotten"
        );
    }
}
