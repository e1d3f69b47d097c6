//! Grouped writers: work that arrives together is written together.
//!
//! - [`ClickQueue`]: redirects hand their click to a bounded queue and answer at once; a writer
//!   task writes the queue in batches (one transaction each, by size or by interval; the size
//!   follows how long writes take, see [`BatchSize`]). A full queue drops the click, counts it
//!   and says so in the log — never silently. A graceful stop drains the queue before the
//!   database goes away.
//! - [`GroupWriter`]: requests that wait for their own answer (`POST /users`) are queued with a
//!   reply channel; a writer takes everything queued at that moment, writes it in one statement
//!   and answers each request with its own result. No timer: while one group is being written the
//!   next one gathers, so the group size follows the load and a lone request waits for nobody.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use gitrev_core::retry::{self, Retryable};
use gitrev_store::clicks::{BatchMark, Click, Counting, Reached, Written};
use gitrev_store::{deadline, Store, StoreError};
use gitrev_telemetry::BatchMetrics;
use prometheus::IntCounter;
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::lifecycle::Limits;

/// Click queue settings.
#[derive(Clone, Copy, Debug)]
pub struct ClickQueueConfig {
    /// Clicks waiting at most; beyond this a click is dropped and counted.
    pub capacity: usize,
    /// Most clicks per batch.
    pub max_batch: usize,
    /// How long a batch's write should take: a slower one makes the next batches smaller (see
    /// [`BatchSize`]).
    pub flush_target: Duration,
    /// Longest a click waits before its batch is written.
    pub flush_interval: Duration,
}

/// The sending side, held by the request handlers.
#[derive(Clone)]
pub struct ClickQueue {
    tx: mpsc::Sender<Click>,
    overflow: IntCounter,
    overflow_logged: Arc<AtomicU64>,
    received: IntCounter,
    settled: IntCounter,
}

impl ClickQueue {
    /// Starts the writer as a task of `tasks` (the caller owns and joins it); stop it by flipping
    /// `shutdown` to true: the task ends once every queued click is written (or the database
    /// stayed down past `drain_for`).
    /// `limits` are the replica's click counts of limited links, settled as batches are written.
    pub fn start(
        store: Store,
        config: ClickQueueConfig,
        metrics: BatchMetrics,
        limits: Limits,
        shutdown: watch::Receiver<bool>,
        drain_for: Duration,
        tasks: &mut JoinSet<()>,
    ) -> ClickQueue {
        let (tx, rx) = mpsc::channel(config.capacity);
        let overflow = metrics.click_overflow.clone();
        let queue = ClickQueue {
            tx: tx.clone(),
            overflow,
            overflow_logged: Arc::new(AtomicU64::new(0)),
            received: metrics.clicks_received.clone(),
            settled: metrics.clicks_settled.clone(),
        };
        let depth_tx = tx.downgrade();
        let sink = Sink {
            store,
            metrics,
            limits,
        };
        tasks.spawn(write_clicks(
            rx, depth_tx, sink, config, shutdown, drain_for,
        ));
        queue
    }

    /// Queues a click without waiting. `false` when it was dropped (queue full or closed).
    pub fn record(&self, click: Click) -> bool {
        // Counted before it is queued, so that whoever reads the count after this returns finds
        // every click queued before this one counted too (see `Settled`).
        self.received.inc();
        match self.tx.try_send(click) {
            Ok(()) => true,
            Err(_) => {
                self.overflow.inc();
                self.settled.inc();
                // One line per power of two of dropped clicks: loud at first, never a flood.
                let dropped = self.overflow_logged.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    warn!(
                        dropped_total = dropped,
                        "click queue full: click dropped (raise GITREV_CLICK_QUEUE)"
                    );
                }
                false
            }
        }
    }

    /// Clicks waiting to be written.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// Batches written at once: one gathers (and a second writes) while another is in flight.
/// The counter upserts sort by url id, so concurrent batches wait on each other, never deadlock.
const CLICK_WRITERS: usize = 2;

/// Where the click writer writes, what it reports to, and the limits it settles.
struct Sink {
    store: Store,
    metrics: BatchMetrics,
    limits: Limits,
}

async fn write_clicks(
    mut rx: mpsc::Receiver<Click>,
    depth: mpsc::WeakSender<Click>,
    sink: Sink,
    config: ClickQueueConfig,
    mut shutdown: watch::Receiver<bool>,
    drain_for: Duration,
) {
    let Sink {
        store,
        metrics,
        limits,
    } = sink;
    let size = Arc::new(BatchSize::new(config.max_batch, config.flush_target));
    size.show(&metrics);
    let mut batch: Vec<Click> = Vec::new();
    let mut in_flight = JoinSet::new();
    let mut ticker = tokio::time::interval(config.flush_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Set once the stop begins, and read by every flush at each retry: a batch already being
    // retried against a database that is down must give up by then too, or the stop would hang.
    let deadline: Arc<OnceLock<Instant>> = Arc::default();
    let settled = Arc::new(std::sync::Mutex::new(Settled::default()));
    // Clicks taken from the queue so far: a batch is the range [taken, taken + len) of them.
    let mut taken: u64 = 0;
    loop {
        let most = size.clicks.get();
        let full = batch.len() >= most;
        let room = most.saturating_sub(batch.len());
        tokio::select! {
            received = rx.recv_many(&mut batch, room), if !full => {
                if received == 0 {
                    // Closed and empty: every sender is gone, so the service is stopping — maybe
                    // before this loop saw the stop signal. Without a deadline, a batch being
                    // retried against a database that is down would be retried forever.
                    if deadline.get().is_none() {
                        begin_drain(&deadline, drain_for, &mut rx, batch.len());
                    }
                    break;
                }
                if batch.len() < most {
                    continue;
                }
            }
            _ = ticker.tick() => {}
            _ = shutdown.changed(), if deadline.get().is_none() => {
                begin_drain(&deadline, drain_for, &mut rx, batch.len());
                continue;
            }
        }
        if batch.is_empty() {
            continue;
        }
        while in_flight.len() >= CLICK_WRITERS {
            // Both writers may be retrying against a database that is down: the stop must still
            // be noticed here, or they would never be told to give up.
            tokio::select! {
                _ = in_flight.join_next() => {}
                _ = shutdown.changed(), if deadline.get().is_none() => {
                    begin_drain(&deadline, drain_for, &mut rx, batch.len());
                }
            }
        }
        let full_batch = std::mem::take(&mut batch);
        let (writer_store, writer_metrics) = (store.clone(), metrics.clone());
        let writer_deadline = deadline.clone();
        let (start, writer_settled) = (taken, settled.clone());
        let (writer_limits, writer_size) = (limits.clone(), size.clone());
        taken += full_batch.len() as u64;
        in_flight.spawn(async move {
            let len = full_batch.len() as u64;
            let flush = Flush {
                store: &writer_store,
                metrics: &writer_metrics,
                limits: &writer_limits,
                size: &writer_size,
                deadline: &writer_deadline,
            };
            flush.write(full_batch).await;
            settle(&writer_settled, start, len, &writer_metrics);
        });
        if let Some(sender) = depth.upgrade() {
            metrics
                .click_queue_depth
                .set((sender.max_capacity() - sender.capacity()) as i64);
        }
    }
    if !batch.is_empty() {
        let len = batch.len() as u64;
        let flush = Flush {
            store: &store,
            metrics: &metrics,
            limits: &limits,
            size: &size,
            deadline: &deadline,
        };
        flush.write(batch).await;
        settle(&settled, taken, len, &metrics);
    }
    while in_flight.join_next().await.is_some() {}
    metrics.click_queue_depth.set(0);
    info!("click writer stopped");
}

/// Which taken clicks are settled (written or lost). Two batches are in flight at once, so a later
/// one may finish first: the mark moves only over a contiguous run of finished batches, so that
/// "settled up to N" means every click up to N, never most of them.
#[derive(Default)]
struct Settled {
    mark: u64,
    /// Finished batches beyond the mark: start → end.
    ahead: std::collections::BTreeMap<u64, u64>,
}

/// Records the batch [start, start + len) as finished and moves `gitrev_clicks_settled_total` by
/// however far the mark advanced.
fn settle(settled: &std::sync::Mutex<Settled>, start: u64, len: u64, metrics: &BatchMetrics) {
    let advanced = {
        let mut s = settled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        s.ahead.insert(start, start + len);
        let before = s.mark;
        loop {
            let mark = s.mark;
            match s.ahead.remove(&mark) {
                Some(end) => s.mark = end,
                None => break,
            }
        }
        s.mark - before
    };
    metrics.clicks_settled.inc_by(advanced);
}

/// The stop has begun: take no more clicks, and give every flush until `drain_for` from now.
fn begin_drain(
    deadline: &OnceLock<Instant>,
    drain_for: Duration,
    rx: &mut mpsc::Receiver<Click>,
    batched: usize,
) {
    let _ = deadline.set(Instant::now() + drain_for);
    rx.close();
    info!(queued = rx.len() + batched, "draining the click queue");
}

/// How a failed click write is retried: 50 ms, doubling, at most 2 s apart.
const FLUSH_RETRY: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// The fewest clicks (or urls) a batch is cut down to, by a [`BatchLimit`] or by a split.
const MIN_BATCH: usize = 256;

/// The distinct urls a batch may hold at first: a write of links never seen before costs a
/// dictionary row, a run and rollup rows for each, so the limit starts low and grows only with
/// writes that prove it fast enough.
const FIRST_URLS: usize = 2_048;

/// How large a batch may be: in clicks, and in distinct urls. Both follow the time writes take.
/// A click of a url already in the batch costs little more than its row; a url costs a run and
/// rollup rows of its own (and a dictionary row, the first time this process sees it), so the
/// clicks of a few hot links are written far faster than as many of links never seen. One fixed
/// size is either small for the one or, for the other, a write past the database deadline.
pub struct BatchSize {
    pub clicks: BatchLimit,
    pub urls: BatchLimit,
}

impl BatchSize {
    pub fn new(most: usize, target: Duration) -> BatchSize {
        BatchSize {
            clicks: BatchLimit::new(most, most, target),
            urls: BatchLimit::new(FIRST_URLS.min(most), most, target),
        }
    }

    /// Cuts `clicks` (a gathered batch) into pieces of at most the url limit's distinct urls, in
    /// order.
    fn pieces(&self, clicks: &[Click]) -> Vec<std::ops::Range<usize>> {
        let most = self.urls.get();
        let mut pieces = Vec::new();
        let mut urls = HashSet::new();
        let mut start = 0;
        for (i, click) in clicks.iter().enumerate() {
            if !urls.contains(&click.url_id) && urls.len() == most {
                pieces.push(start..i);
                start = i;
                urls.clear();
            }
            urls.insert(click.url_id);
        }
        if start < clicks.len() {
            pieces.push(start..clicks.len());
        }
        pieces
    }

    /// A piece of `clicks` over `urls` distinct urls was written in `took`.
    fn observe(&self, clicks: usize, urls: usize, took: Duration) {
        self.clicks.observe(clicks, took);
        self.urls.observe(urls, took);
    }

    /// A write of `clicks` over `urls` distinct urls ran out of time.
    fn halve(&self, clicks: usize, urls: usize) {
        self.clicks.halve(clicks);
        self.urls.halve(urls);
    }

    fn show(&self, metrics: &BatchMetrics) {
        metrics.click_batch_limit.set(self.clicks.get() as i64);
        metrics.click_batch_url_limit.set(self.urls.get() as i64);
    }
}

/// One limit of a [`BatchSize`]. A write slower than the target sets it to what would have taken
/// the target at the rate the write measured; a write that filled it, faster, lets it grow
/// toward the same estimate, at most doubling, up to the configured most.
pub struct BatchLimit {
    current: AtomicUsize,
    most: usize,
    target: Duration,
}

impl BatchLimit {
    pub fn new(first: usize, most: usize, target: Duration) -> BatchLimit {
        BatchLimit {
            current: AtomicUsize::new(first.min(most)),
            most,
            target,
        }
    }

    /// The most the next batch holds.
    pub fn get(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    fn floor(&self) -> usize {
        MIN_BATCH.min(self.most)
    }

    /// A batch holding `n` was written in `took`.
    pub fn observe(&self, n: usize, took: Duration) {
        let current = self.get();
        let slow = took > self.target;
        if !slow && n < current {
            // A batch that did not fill the limit says nothing of a larger one.
            return;
        }
        // Saturates: a float too large for a usize casts to usize::MAX.
        let estimate =
            (n as f64 * self.target.as_secs_f64() / took.as_secs_f64().max(1e-6)) as usize;
        let next = if slow {
            estimate
        } else {
            estimate.clamp(current, current.saturating_mul(2))
        };
        self.current
            .store(next.clamp(self.floor(), self.most), Ordering::Relaxed);
    }

    /// A write of a batch holding `n` ran out of time: the next hold half as many at most.
    pub fn halve(&self, n: usize) {
        let next = (n / 2).min(self.get()).max(self.floor());
        self.current.store(next, Ordering::Relaxed);
    }
}

/// How the write of a piece of a batch ended without writing it.
enum Failed {
    /// Better written in halves (see [`Flush::write`]).
    Split(Attempt),
    /// Given up: a failure not worth retrying, or the stop's deadline passed.
    Lost(StoreError),
}

/// Why an attempt at writing a piece of a batch failed, and how far it got.
struct Attempt {
    err: StoreError,
    reached: Reached,
    took: Duration,
}

/// What the failed attempts at writing one piece say of it.
#[derive(Default)]
struct History {
    /// An attempt's COMMIT was sent and its answer lost: the piece may be written, so only its
    /// own marker may write it from then on.
    maybe_written: bool,
}

impl History {
    /// Takes in a failed attempt that got as far as `reached`; whether nothing of the piece is
    /// written, nor ever will be by an attempt so far.
    fn unwritten_after(&mut self, reached: Reached) -> bool {
        match reached {
            Reached::Start => !self.maybe_written,
            // The attempt took the marker: no earlier one wrote the piece.
            Reached::Marked => {
                self.maybe_written = false;
                true
            }
            Reached::Commit => {
                self.maybe_written = true;
                false
            }
        }
    }
}

/// How many urls `clicks` are of.
fn distinct_urls(clicks: &[Click]) -> usize {
    clicks
        .iter()
        .map(|c| c.url_id)
        .collect::<HashSet<_>>()
        .len()
}

/// What one write of a batch needs.
struct Flush<'a> {
    store: &'a Store,
    metrics: &'a BatchMetrics,
    limits: &'a Limits,
    size: &'a BatchSize,
    /// The stop's deadline, once set: read at every failed attempt, so a stop that begins during
    /// the retries ends them too.
    deadline: &'a OnceLock<Instant>,
}

impl Flush<'_> {
    /// Writes one batch, in pieces of at most the url limit's distinct urls, each in its own
    /// transaction under its own marker, retrying while the database is unavailable. A piece
    /// whose write ran out of time before its COMMIT was sent, and that no earlier attempt may
    /// have written, is split in two, each half under a marker of its own: nothing of it is
    /// written, so neither half can be written twice.
    async fn write(&self, batch: Vec<Click>) {
        // Pieces still to write, with their markers; the last is written next.
        let mut pieces: Vec<_> = self
            .size
            .pieces(&batch)
            .into_iter()
            .rev()
            .map(|range| (range, rand::random::<[u8; 16]>()))
            .collect();
        // Set once a piece is lost at the stop's deadline: the database is not taking writes, and
        // the rest of the batch is lost without an attempt each (each could take a deadline).
        // Before that, every piece gets its attempt, as a batch always did.
        let mut given_up = false;
        while let Some((range, marker)) = pieces.pop() {
            let clicks = &batch[range.clone()];
            if given_up {
                let err = StoreError::Unavailable("the stop's deadline passed".into());
                self.settle(clicks, Err(err));
                continue;
            }
            match self.write_piece(clicks, marker).await {
                Err(Failed::Split(attempt)) => {
                    let mid = range.start + clicks.len() / 2;
                    pieces.push((mid..range.end, rand::random()));
                    pieces.push((range.start..mid, rand::random()));
                    self.size.halve(clicks.len(), distinct_urls(clicks));
                    self.size.show(self.metrics);
                    self.metrics.click_batches_split.inc();
                    warn!(
                        clicks = clicks.len(),
                        took_ms = attempt.took.as_millis() as u64,
                        reason = %attempt.err,
                        "a click batch ran out of time; writing it in halves"
                    );
                }
                Err(Failed::Lost(err)) => {
                    given_up = self.stopped();
                    self.settle(clicks, Err(err));
                }
                Ok(written) => self.settle(clicks, Ok(written)),
            }
        }
    }

    /// Whether the stop's deadline has passed: a piece still failing then is lost.
    fn stopped(&self) -> bool {
        self.deadline.get().is_some_and(|d| Instant::now() >= *d)
    }

    /// Writes `clicks` under `marker`, retrying while the database is unavailable, until the
    /// stop's deadline or until a failure says the piece is better split.
    async fn write_piece(
        &self,
        clicks: &[Click],
        marker: [u8; 16],
    ) -> Result<(Written, Duration), Failed> {
        let mut history = History::default();
        let mut split = false;
        let written = (|| async {
            let started = Instant::now();
            let mut mark = BatchMark::attempt(marker);
            let written = self
                .store
                .record_clicks(clicks, Some(&mut mark), Counting::New)
                .await;
            let took = started.elapsed();
            match written {
                Ok(written) => Ok((written, took)),
                Err(err) => Err(Attempt {
                    err,
                    reached: mark.reached,
                    took,
                }),
            }
        })
        .retry(retry::backoff(FLUSH_RETRY.0, FLUSH_RETRY.1))
        .when(|attempt| {
            if !matches!(attempt.err, StoreError::Unavailable(_)) || self.stopped() {
                return false;
            }
            // Split when nothing of the piece is written and time, not the database being down,
            // is the likely cause: the attempt ran longer than the target.
            split = history.unwritten_after(attempt.reached)
                && clicks.len() >= 2 * MIN_BATCH
                && attempt.took > self.size.clicks.target;
            !split
        })
        .notify(|attempt, _| {
            warn!(reason = %attempt.err, clicks = clicks.len(), "cannot write clicks yet; retrying")
        })
        .await;
        written.map_err(|attempt| match split {
            true => Failed::Split(attempt),
            false => Failed::Lost(attempt.err),
        })
    }

    /// Counts a piece written (or lost) and settles the click limits it took.
    fn settle(&self, clicks: &[Click], written: Result<(Written, Duration), StoreError>) {
        // The clicks that took one of their url's `max_clicks` here, by url.
        let mut limited: HashMap<i64, i64> = HashMap::new();
        for click in clicks.iter().filter(|c| c.limited) {
            *limited.entry(click.url_id).or_default() += 1;
        }
        if !limited.is_empty() {
            let totals = written.as_ref().ok().map(|(w, _)| w.limited.as_slice());
            self.limits.settle(&limited, totals);
        }
        match written {
            Ok((written, took)) => {
                self.metrics.click_batch_size.observe(clicks.len() as f64);
                self.metrics.click_flush_seconds.observe(took.as_secs_f64());
                self.metrics.clicks_url_gone.inc_by(written.dropped);
                if written.duplicate {
                    self.metrics.click_batches_repeated.inc();
                    info!(
                        clicks = clicks.len(),
                        "a retried click batch had already been written"
                    );
                } else {
                    // A retry that found its piece written did no work: its time says nothing.
                    self.size.observe(clicks.len(), distinct_urls(clicks), took);
                    self.size.show(self.metrics);
                }
            }
            Err(err) => {
                self.metrics.click_lost.inc_by(clicks.len() as u64);
                error!(error = %err, clicks = clicks.len(), "clicks could not be written and are lost");
            }
        }
    }
}

/// A request waiting in a group, when it arrived, and where its answer goes.
type Pending<Req, Resp> = (Req, Instant, oneshot::Sender<Resp>);

/// Groups concurrent requests into one write each.
pub struct GroupWriter<Req, Resp> {
    tx: mpsc::Sender<Pending<Req, Resp>>,
}

impl<Req, Resp> Clone for GroupWriter<Req, Resp> {
    fn clone(&self) -> Self {
        GroupWriter {
            tx: self.tx.clone(),
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> GroupWriter<Req, Resp> {
    /// Starts `writers` tasks in `tasks` (the caller owns and joins them), each taking up to
    /// `max_group` queued requests at a time and answering them with `write`, which returns one
    /// answer per request, in order. The tasks end once every `GroupWriter` clone is dropped and
    /// the queue is empty, or once `stop` flips to true: then the queue is closed (a later
    /// [`GroupWriter::submit`] gets `None`) and what it holds is still written and answered.
    pub fn start<F, Fut>(
        max_group: usize,
        writers: usize,
        group_sizes: prometheus::Histogram,
        stop: watch::Receiver<bool>,
        tasks: &mut JoinSet<()>,
        write: F,
    ) -> GroupWriter<Req, Resp>
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Resp>> + Send,
    {
        let (tx, rx) = mpsc::channel::<Pending<Req, Resp>>(max_group * writers * 4);
        let rx = Arc::new(Mutex::new(rx));
        let write = Arc::new(write);
        for _ in 0..writers {
            let (rx, write, group_sizes) = (rx.clone(), write.clone(), group_sizes.clone());
            let mut stop = stop.clone();
            tasks.spawn(async move {
                let mut group = Vec::with_capacity(max_group);
                loop {
                    let received = {
                        let mut rx = rx.lock().await;
                        tokio::select! {
                            // Once closed, the queue is always ready (what is left, then 0).
                            biased;
                            received = rx.recv_many(&mut group, max_group) => received,
                            _ = stop.wait_for(|stop| *stop) => {
                                rx.close();
                                continue;
                            }
                        }
                    };
                    if received == 0 {
                        return;
                    }
                    group_sizes.observe(group.len() as f64);
                    let oldest = group
                        .iter()
                        .map(|(_, arrived, _)| *arrived)
                        .min()
                        .unwrap_or_else(Instant::now);
                    let mut requests = Vec::with_capacity(group.len());
                    let mut replies = Vec::with_capacity(group.len());
                    for (request, _, reply) in group.drain(..) {
                        requests.push(request);
                        replies.push(reply);
                    }
                    // The database deadline counts from the oldest request's arrival: time spent
                    // queued behind a slow group counts against it.
                    // A panic in one group's write fails that group's requests (their replies
                    // dropped: the caller answers 503) and is logged; the writer goes on, so one
                    // bad request cannot stop every later write of its kind.
                    let written =
                        std::panic::AssertUnwindSafe(deadline::started_at(oldest, write(requests)))
                            .catch_unwind()
                            .await;
                    let Ok(answers) = written else {
                        tracing::error!(
                            requests = replies.len(),
                            "a grouped write panicked; its requests were not answered"
                        );
                        continue;
                    };
                    debug_assert_eq!(answers.len(), replies.len());
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        // The requester may have gone (client hung up); its row stands.
                        let _ = reply.send(answer);
                    }
                }
            });
        }
        GroupWriter { tx }
    }

    /// Queues a request and waits for its own answer; `None` if the writers are gone.
    pub async fn submit(&self, request: Req) -> Option<Resp> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((request, Instant::now(), reply)).await.ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Duration = Duration::from_millis(500);

    #[test]
    fn a_slow_write_cuts_the_batch_to_what_the_target_allows_at_its_rate() {
        let limit = BatchLimit::new(50_000, 50_000, TARGET);
        limit.observe(50_000, Duration::from_secs(5));
        assert_eq!(limit.get(), 5_000, "50k clicks in 5 s: 5k in 500 ms");
        limit.observe(100, Duration::from_secs(1000));
        assert_eq!(limit.get(), MIN_BATCH, "never below the floor");
    }

    #[test]
    fn full_fast_writes_grow_the_batch_at_most_doubling_up_to_the_most() {
        let limit = BatchLimit::new(50_000, 50_000, TARGET);
        limit.observe(50_000, Duration::from_secs(5));
        limit.observe(10, Duration::from_millis(1));
        assert_eq!(limit.get(), 5_000, "a batch that was not full says nothing");
        let mut seen = Vec::new();
        for _ in 0..4 {
            let current = limit.get();
            limit.observe(current, Duration::from_millis(100));
            seen.push(limit.get());
        }
        assert_eq!(seen, [10_000, 20_000, 40_000, 50_000]);
        limit.observe(50_000, Duration::from_millis(450));
        assert_eq!(limit.get(), 50_000, "just under the target: kept");
    }

    #[test]
    fn a_write_out_of_time_halves_the_batch() {
        let limit = BatchLimit::new(50_000, 50_000, TARGET);
        limit.halve(50_000);
        assert_eq!(limit.get(), 25_000);
        limit.halve(1_000);
        assert_eq!(limit.get(), 500, "half the piece that ran out, if smaller");
        limit.halve(30_000);
        assert_eq!(limit.get(), 500, "never raised by a split");
        limit.halve(10);
        assert_eq!(limit.get(), MIN_BATCH);
        assert_eq!(
            BatchLimit::new(100, 100, TARGET).floor(),
            100,
            "a floor above the most is the most"
        );
    }

    #[test]
    fn a_batch_is_written_in_pieces_of_at_most_the_url_limit_in_order() {
        let size = BatchSize::new(50_000, TARGET);
        assert_eq!(size.urls.get(), FIRST_URLS, "the url limit starts low");
        let at = |url_id| Click {
            url_id,
            user_id: None,
            at: 0,
            short_code: None,
            original_url: None,
            referrer: None,
            user_agent: None,
            extra: None,
            limited: false,
        };
        // 5,000 clicks of one hot url among 5,000 of urls seen once.
        let clicks: Vec<Click> = (0..10_000)
            .map(|i| at(if i % 2 == 0 { 7 } else { 100_000 + i }))
            .collect();
        let pieces = size.pieces(&clicks);
        assert_eq!(pieces.first().map(|r| r.start), Some(0));
        assert_eq!(pieces.last().map(|r| r.end), Some(10_000));
        for pair in pieces.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "contiguous, in order");
        }
        let urls: Vec<usize> = pieces
            .iter()
            .map(|r| distinct_urls(&clicks[r.clone()]))
            .collect();
        assert_eq!(
            urls,
            [2_048, 2_048, 907],
            "the hot url counts once per piece"
        );
        let hot = BatchSize::new(50_000, TARGET).pieces(&vec![at(7); 30_000]);
        assert_eq!(hot.len(), 1, "clicks of one url are one piece");
        assert_eq!(hot[0], 0..30_000);
        assert!(size.pieces(&[]).is_empty());

        size.observe(4_095, 2_048, Duration::from_millis(100));
        assert_eq!(
            size.urls.get(),
            4_096,
            "a full, fast piece doubles the url limit"
        );
        assert_eq!(size.clicks.get(), 50_000, "not full in clicks: unchanged");
    }

    #[test]
    fn a_piece_is_split_only_while_no_attempt_may_have_written_it() {
        let mut history = History::default();
        assert!(history.unwritten_after(Reached::Start), "nothing sent");
        assert!(
            history.unwritten_after(Reached::Marked),
            "marked, not committed"
        );
        assert!(
            !history.unwritten_after(Reached::Commit),
            "a COMMIT whose answer was lost may have written it"
        );
        assert!(
            !history.unwritten_after(Reached::Start),
            "an attempt that never reached its marker says nothing of the lost commit"
        );
        assert!(
            history.unwritten_after(Reached::Marked),
            "an attempt that took the marker proves the lost commit did not write it"
        );
        assert!(history.unwritten_after(Reached::Start));
    }

    #[test]
    fn the_settled_mark_moves_only_over_contiguous_finished_batches() {
        let metrics = gitrev_telemetry::Metrics::default().batch;
        let settled = std::sync::Mutex::new(Settled::default());
        // The second batch (clicks 10..30) finishes before the first (0..10).
        settle(&settled, 10, 20, &metrics);
        assert_eq!(
            metrics.clicks_settled.get(),
            0,
            "a later batch alone settles nothing"
        );
        settle(&settled, 0, 10, &metrics);
        assert_eq!(metrics.clicks_settled.get(), 30, "then both, in one step");
        settle(&settled, 30, 5, &metrics);
        assert_eq!(metrics.clicks_settled.get(), 35);
    }

    fn sizes() -> prometheus::Histogram {
        prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("sizes", "group sizes"))
            .expect("valid histogram")
    }

    #[tokio::test]
    async fn group_writers_answer_what_they_hold_then_stop_and_are_joined() {
        let (stop_tx, stop) = watch::channel(false);
        let mut tasks = JoinSet::new();
        // A slow write, so that requests queue behind the first group.
        let writer: GroupWriter<u32, u32> =
            GroupWriter::start(4, 2, sizes(), stop, &mut tasks, |g| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                g.into_iter().map(|n| n * 10).collect()
            });
        assert_eq!(writer.submit(1).await, Some(10));
        let queued: Vec<_> = (0..20)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.submit(n).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let _ = stop_tx.send(true);
        // A clone is still alive, yet the tasks end: the stop closed the queue.
        let joined = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(ended) = tasks.join_next().await {
                ended.expect("no writer panicked");
            }
        })
        .await;
        assert!(joined.is_ok(), "the writers stopped");
        for (n, answer) in queued.into_iter().enumerate() {
            // Queued before the stop: answered. (Any not yet queued is refused, never left hanging.)
            if let Some(answer) = answer.await.expect("the requester") {
                assert_eq!(answer, n as u32 * 10);
            }
        }
        assert_eq!(
            writer.submit(7).await,
            None,
            "after the stop, nothing is taken"
        );
    }

    #[tokio::test]
    async fn a_group_whose_write_panics_fails_alone_and_the_writer_goes_on() {
        let (_stop_tx, stop) = watch::channel(false);
        let mut tasks = JoinSet::new();
        // One writer, so the request after the panic goes to the task that panicked.
        let writer: GroupWriter<u32, u32> =
            GroupWriter::start(4, 1, sizes(), stop, &mut tasks, |g| async move {
                assert!(!g.contains(&13), "a write that panics");
                g
            });
        assert_eq!(
            writer.submit(13).await,
            None,
            "the panicked group is not answered"
        );
        assert_eq!(writer.submit(3).await, Some(3), "the next one is written");
        assert!(
            tasks.try_join_next().is_none(),
            "the writer task still runs"
        );
    }

    #[tokio::test]
    async fn group_writers_end_with_their_last_handle() {
        let (_stop_tx, stop) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let writer: GroupWriter<u32, u32> =
            GroupWriter::start(4, 2, sizes(), stop, &mut tasks, |g| async move { g });
        assert_eq!(writer.submit(3).await, Some(3));
        drop(writer);
        let joined = tokio::time::timeout(Duration::from_secs(5), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        assert!(joined.is_ok());
    }
}
