//! The endpoint set, the per-endpoint load figures and the strategies.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::Waker;
use std::time::Duration;

use http::uri::Authority;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

/// One endpoint: `host:port`, a weight and free-form metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// `host:port`.
    pub address: String,
    /// The weight (weighted strategies; 0 is never picked by them).
    pub weight: f64,
    /// What the registry said about it (zone, version, ...).
    pub metadata: BTreeMap<String, String>,
}

impl Endpoint {
    /// An endpoint of weight 1.
    pub fn new(address: impl Into<String>) -> Self {
        Endpoint {
            address: address.into(),
            weight: 1.0,
            metadata: BTreeMap::new(),
        }
    }

    /// With a weight.
    pub fn weight(mut self, weight: f64) -> Self {
        self.weight = weight;
        self
    }

    /// With one metadata entry.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The weight the weighted strategies use: negative, NaN and infinite
    /// weights count as 0.
    pub(crate) fn usable_weight(&self) -> f64 {
        if self.weight.is_finite() && self.weight > 0.0 {
            self.weight
        } else {
            0.0
        }
    }
}

/// How the next endpoint is picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// In turn.
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// At random, in proportion to the weights (a uniform point on the
    /// cumulative weights, as aio-service-caller does).
    WeightedRandom,
    /// nginx's smooth weighted round robin: spread evenly, weight 0 never
    /// picked (aio-service-caller's is bursty and can pick weight 0).
    WeightedRoundRobin,
    /// The fewest calls in flight.
    LeastOutstanding,
    /// Power of two choices over peak-EWMA latency × (calls in flight + 1).
    #[default]
    P2cEwma,
}

impl Strategy {
    /// Parse the config names (`round-robin`, `random`, `weighted-random`,
    /// `weighted-round-robin`, `least-outstanding`, `p2c-ewma`).
    ///
    /// aio-service-caller's `lb-type` names are accepted too:
    /// `round_robin`, `random`, `weight_random`, `weight_round_robin`.
    pub fn parse(name: &str) -> Option<Strategy> {
        Some(match name {
            "round-robin" | "round_robin" => Strategy::RoundRobin,
            "random" => Strategy::Random,
            "weighted-random" | "weight_random" => Strategy::WeightedRandom,
            "weighted-round-robin" | "weight_round_robin" => Strategy::WeightedRoundRobin,
            "least-outstanding" => Strategy::LeastOutstanding,
            "p2c-ewma" => Strategy::P2cEwma,
            _ => return None,
        })
    }

    /// The config name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round-robin",
            Strategy::Random => "random",
            Strategy::WeightedRandom => "weighted-random",
            Strategy::WeightedRoundRobin => "weighted-round-robin",
            Strategy::LeastOutstanding => "least-outstanding",
            Strategy::P2cEwma => "p2c-ewma",
        }
    }
}

/// The load figures of one endpoint.
#[derive(Debug)]
pub(crate) struct EndpointState {
    pub(crate) endpoint: Endpoint,
    pub(crate) authority: Authority,
    /// `authority` as text, for the availability check.
    pub(crate) key: String,
    pub(crate) in_flight: AtomicU64,
    /// Peak-EWMA of the latency, in nanoseconds (f64 bits).
    ewma_ns: AtomicU64,
    last_sample: Mutex<Option<Instant>>,
    pub(crate) consecutive_failures: AtomicU32,
    pub(crate) ejections: AtomicU32,
    /// Until when it is ejected, in [`Set::nanos`]; 0 when it is not.
    ejected_until: AtomicU64,
    /// The running weight of smooth weighted round robin (f64 bits),
    /// changed only under [`Set::wrr`].
    wrr_current: AtomicU64,
    pub(crate) picks: AtomicU64,
}

/// The decay time of the EWMA.
const TAU: Duration = Duration::from_secs(10);
/// What an endpoint without samples is assumed to cost (1 ms).
const DEFAULT_RTT_NS: f64 = 1_000_000.0;

impl EndpointState {
    pub(crate) fn new(endpoint: Endpoint) -> Option<Self> {
        let authority: Authority = endpoint.address.parse().ok()?;
        // A host without a port would be sent to port 80 by accident.
        authority.port_u16()?;
        Some(EndpointState {
            key: authority.as_str().to_owned(),
            endpoint,
            authority,
            in_flight: AtomicU64::new(0),
            ewma_ns: AtomicU64::new(DEFAULT_RTT_NS.to_bits()),
            last_sample: Mutex::new(None),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            wrr_current: AtomicU64::new(0f64.to_bits()),
            picks: AtomicU64::new(0),
        })
    }

    fn ewma(&self) -> f64 {
        f64::from_bits(self.ewma_ns.load(Ordering::Relaxed))
    }

    /// The P2C cost: latency × (in flight + 1).
    fn cost(&self) -> f64 {
        self.ewma() * (self.in_flight.load(Ordering::Relaxed) as f64 + 1.0)
    }

    /// Record a latency sample: peaks are taken at once, lower samples
    /// decay in with time constant [`TAU`].
    pub(crate) fn observe(&self, rtt: Duration, now: Instant) {
        let sample = rtt.as_nanos() as f64;
        let mut last = lock(&self.last_sample);
        let prev = self.ewma();
        let next = if sample > prev {
            sample
        } else {
            let elapsed = last
                .map(|t| now.saturating_duration_since(t).as_secs_f64())
                .unwrap_or(0.0);
            let w = (-elapsed / TAU.as_secs_f64()).exp();
            prev * w + sample * (1.0 - w)
        };
        *last = Some(now);
        self.ewma_ns.store(next.to_bits(), Ordering::Relaxed);
    }

    /// Whether it is ejected at `now_ns` ([`Set::nanos`]); an ejection that
    /// is over is cleared (and logged) by the first caller to notice.
    pub(crate) fn is_ejected(&self, now_ns: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        if until == 0 {
            return false;
        }
        if now_ns < until {
            return true;
        }
        if self
            .ejected_until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            tracing::info!(endpoint = %self.endpoint.address, "endpoint returns after ejection");
        }
        false
    }
}

/// One version of the endpoint set.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) list: Vec<Arc<EndpointState>>,
    /// Running sums of the usable weights, for weighted random.
    cumulative: Vec<f64>,
}

impl Snapshot {
    fn new(list: Vec<Arc<EndpointState>>) -> Self {
        let cumulative = cumulative(&list);
        Snapshot { list, cumulative }
    }
}

fn cumulative(list: &[Arc<EndpointState>]) -> Vec<f64> {
    let mut sum = 0.0;
    list.iter()
        .map(|e| {
            sum += e.endpoint.usable_weight();
            sum
        })
        .collect()
}

/// Whether an endpoint may be picked now (an open circuit breaker says
/// no); asked of the endpoint a strategy chose, and of every endpoint when
/// that one may not.
pub type Availability = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The current set and the picking state.
pub(crate) struct Set {
    endpoints: RwLock<Arc<Snapshot>>,
    /// The origin of the nanosecond clock of ejections.
    base: Instant,
    /// The latest end of any ejection so far ([`Set::nanos`]): when `now`
    /// is past it nothing is ejected, and picks need no filtering.
    ejected_max: AtomicU64,
    rr: AtomicUsize,
    wrr: Mutex<()>,
    /// Seeded generator (tests); the thread's generator otherwise.
    rng: Option<Mutex<StdRng>>,
    /// Calls waiting for an endpoint, woken when the set changes.
    waiters: Mutex<Vec<Waker>>,
    /// Bumped each time the waiters are woken (see [`Set::wait`]).
    wake_generation: AtomicU64,
    /// The discovery tasks feeding this set; aborted when it is dropped.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Discovery tasks given before a runtime was there; spawned by the
    /// first call.
    pending: Mutex<Vec<DiscoveryTask>>,
    has_pending: AtomicBool,
}

/// A discovery task not yet spawned.
pub(crate) type DiscoveryTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Drop for Set {
    fn drop(&mut self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

/// A mutex's guard, also after a panic elsewhere poisoned it (the data
/// behind these locks stays consistent between statements).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl std::fmt::Debug for Set {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Set")
            .field("endpoints", &self.snapshot().list.len())
            .finish_non_exhaustive()
    }
}

impl Set {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        Set {
            endpoints: RwLock::new(Arc::new(Snapshot::default())),
            base: Instant::now(),
            ejected_max: AtomicU64::new(0),
            rr: AtomicUsize::new(0),
            wrr: Mutex::new(()),
            rng: seed.map(|s| Mutex::new(StdRng::seed_from_u64(s))),
            waiters: Mutex::new(Vec::new()),
            wake_generation: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
            pending: Mutex::new(Vec::new()),
            has_pending: AtomicBool::new(false),
        }
    }

    /// Run a discovery task now if a tokio runtime is current, else at the
    /// first call ([`Set::start_pending`]).
    pub(crate) fn start(&self, task: DiscoveryTask) {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => lock(&self.tasks).push(rt.spawn(task).abort_handle()),
            Err(_) => {
                lock(&self.pending).push(task);
                self.has_pending.store(true, Ordering::Release);
            }
        }
    }

    /// Spawn the discovery tasks that waited for a runtime.
    pub(crate) fn start_pending(&self) {
        if !self.has_pending.load(Ordering::Acquire) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let tasks: Vec<_> = {
            let mut p = lock(&self.pending);
            self.has_pending.store(false, Ordering::Release);
            p.drain(..).collect()
        };
        let mut handles = lock(&self.tasks);
        for t in tasks {
            handles.push(rt.spawn(t).abort_handle());
        }
    }

    /// `now` on the clock of ejections: nanoseconds since the set was made,
    /// plus one (0 means "not ejected").
    pub(crate) fn nanos(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.base).as_nanos() as u64 + 1
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        match self.endpoints.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Vec<Arc<EndpointState>>)) {
        let len = {
            let mut g = match self.endpoints.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            let mut next: Vec<_> = g.list.clone();
            f(&mut next);
            let len = next.len();
            *g = Arc::new(Snapshot::new(next));
            len
        };
        metrics::gauge!("sinew_balance_endpoints").set(len as f64);
        self.wake_waiters();
    }

    /// Wake `waker` at the next change of the set. `registered` is the
    /// caller's note of its last registration: a caller already registered
    /// since the last wake-up (with the same waker) is not added again, so
    /// each poll costs O(1) however many calls wait (no list scan).
    pub(crate) fn wait(&self, waker: &Waker, registered: &mut Option<(u64, Waker)>) {
        let generation = self.wake_generation.load(Ordering::Acquire);
        if let Some((g, w)) = registered {
            if *g == generation && w.will_wake(waker) {
                return;
            }
        }
        lock(&self.waiters).push(waker.clone());
        *registered = Some((generation, waker.clone()));
    }

    fn wake_waiters(&self) {
        let waiters = {
            let mut list = lock(&self.waiters);
            self.wake_generation.fetch_add(1, Ordering::AcqRel);
            std::mem::take(&mut *list)
        };
        for w in waiters {
            w.wake();
        }
    }

    /// Eject `e` until `until`.
    pub(crate) fn eject(&self, e: &EndpointState, until: Instant) {
        let until = self.nanos(until);
        e.ejected_until.store(until, Ordering::Release);
        self.ejected_max.fetch_max(until, Ordering::AcqRel);
    }

    /// The earliest end of a running ejection, if any.
    pub(crate) fn next_return(&self, now: Instant) -> Option<Instant> {
        let now_ns = self.nanos(now);
        self.snapshot()
            .list
            .iter()
            .map(|e| e.ejected_until.load(Ordering::Acquire))
            .filter(|&u| u > now_ns)
            .min()
            .map(|u| self.base + Duration::from_nanos(u - 1))
    }

    fn random(&self, n: usize) -> usize {
        match &self.rng {
            Some(rng) => lock(rng).random_range(0..n),
            None => rand::rng().random_range(0..n),
        }
    }

    fn random_f64(&self) -> f64 {
        match &self.rng {
            Some(rng) => lock(rng).random::<f64>(),
            None => rand::rng().random::<f64>(),
        }
    }

    /// Pick an endpoint of `snap` that is neither ejected nor unavailable.
    ///
    /// When nothing is ejected the strategy runs over the whole list (no
    /// copy, O(1) for the random strategies and P2C); only when the one it
    /// chose may not be used does it run again over the usable ones.
    pub(crate) fn pick(
        &self,
        strategy: Strategy,
        snap: &Snapshot,
        available: Option<&Availability>,
        now: Instant,
    ) -> Option<Arc<EndpointState>> {
        let now_ns = self.nanos(now);
        let usable =
            |e: &EndpointState| !e.is_ejected(now_ns) && available.is_none_or(|f| f(&e.key));
        if self.ejected_max.load(Ordering::Acquire) < now_ns {
            let i = self.choose(strategy, &snap.list, &snap.cumulative)?;
            let e = &snap.list[i];
            if available.is_none_or(|f| f(&e.key)) {
                return Some(self.chosen(e));
            }
        }
        let candidates: Vec<Arc<EndpointState>> =
            snap.list.iter().filter(|e| usable(e)).cloned().collect();
        let cumulative = match strategy {
            Strategy::WeightedRandom => cumulative(&candidates),
            _ => Vec::new(),
        };
        let i = self.choose(strategy, &candidates, &cumulative)?;
        Some(self.chosen(&candidates[i]))
    }

    fn chosen(&self, e: &Arc<EndpointState>) -> Arc<EndpointState> {
        e.picks.fetch_add(1, Ordering::Relaxed);
        e.clone()
    }

    /// Run `strategy` over `list` (`cumulative` are its running weights).
    fn choose(
        &self,
        strategy: Strategy,
        list: &[Arc<EndpointState>],
        cumulative: &[f64],
    ) -> Option<usize> {
        let n = list.len();
        if n == 0 {
            return None;
        }
        Some(match strategy {
            Strategy::RoundRobin => self.rr.fetch_add(1, Ordering::Relaxed) % n,
            Strategy::Random => self.random(n),
            Strategy::WeightedRandom => {
                let total = cumulative.last().copied().unwrap_or(0.0);
                if total <= 0.0 {
                    return None;
                }
                let point = self.random_f64() * total;
                // The first endpoint whose running sum passes the point
                // (weight-0 endpoints add nothing, so are never it).
                let i = cumulative.partition_point(|&c| c <= point);
                if i < n {
                    i
                } else {
                    // Rounding at the very end: the last positive weight.
                    list.iter()
                        .rposition(|e| e.endpoint.usable_weight() > 0.0)?
                }
            }
            Strategy::WeightedRoundRobin => self.smooth_wrr(list)?,
            Strategy::LeastOutstanding => {
                let start = self.rr.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|k| (start + k) % n)
                    .min_by_key(|&i| list[i].in_flight.load(Ordering::Relaxed))?
            }
            Strategy::P2cEwma => {
                if n == 1 {
                    0
                } else {
                    let a = self.random(n);
                    let mut b = self.random(n - 1);
                    if b >= a {
                        b += 1;
                    }
                    if list[a].cost() <= list[b].cost() {
                        a
                    } else {
                        b
                    }
                }
            }
        })
    }

    /// nginx's smooth weighted round robin over `list`, in one pass: every
    /// endpoint's running weight grows by its weight, the largest is picked
    /// and lowered by the total.
    fn smooth_wrr(&self, list: &[Arc<EndpointState>]) -> Option<usize> {
        let _turn = lock(&self.wrr);
        let mut total = 0.0;
        let mut best: Option<(usize, f64)> = None;
        for (i, e) in list.iter().enumerate() {
            let w = e.endpoint.usable_weight();
            if w <= 0.0 {
                continue;
            }
            total += w;
            let current = f64::from_bits(e.wrr_current.load(Ordering::Relaxed)) + w;
            e.wrr_current.store(current.to_bits(), Ordering::Relaxed);
            if best.is_none_or(|(_, c)| current > c) {
                best = Some((i, current));
            }
        }
        let (i, current) = best?;
        list[i]
            .wrr_current
            .store((current - total).to_bits(), Ordering::Relaxed);
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_call_registers_once_per_wake_up_without_scanning() {
        let set = Set::new(Some(1));
        let waker = futures_util::task::noop_waker();
        let mut calls: Vec<Option<(u64, Waker)>> = vec![None; 1000];
        // Every call polled many times: one entry each, however often.
        for _ in 0..50 {
            for registered in calls.iter_mut() {
                set.wait(&waker, registered);
            }
        }
        assert_eq!(lock(&set.waiters).len(), 1000);
        // A change wakes them all and empties the list; the next polls
        // register again, once each.
        set.update(|list| list.clear());
        assert!(lock(&set.waiters).is_empty());
        for _ in 0..50 {
            for registered in calls.iter_mut() {
                set.wait(&waker, registered);
            }
        }
        assert_eq!(lock(&set.waiters).len(), 1000);
    }
}
