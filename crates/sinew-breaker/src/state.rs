//! Per-key breaker state and the registry of keys.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

use crate::config::{BreakerConfig, TripPolicy, Window};

/// A breaker's state, as [`CircuitBreakerHandle::state`](crate::CircuitBreakerHandle::state) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls go through.
    Closed,
    /// Calls are refused until a probe is allowed.
    Open,
    /// A limited number of probe calls go through.
    HalfOpen,
    /// Forced open by hand: every call is refused until reset.
    ForcedOpen,
    /// Forced closed by hand: every call goes through and nothing trips it.
    ForcedClosed,
}

impl State {
    /// `closed`, `open`, `half_open`, `forced_open`, `forced_closed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::ForcedClosed => "forced_closed",
        }
    }

    /// The value of the `sinew_circuit_breaker_state` gauge: 0 closed
    /// (or forced closed), 1 half-open, 2 open (or forced open).
    pub fn gauge(&self) -> f64 {
        match self {
            State::Closed | State::ForcedClosed => 0.0,
            State::HalfOpen => 1.0,
            State::Open | State::ForcedOpen => 2.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forced {
    Open,
    Closed,
}

/// The outcomes one rate policy remembers.
#[derive(Debug)]
enum RateWindow {
    Count {
        size: usize,
        calls: VecDeque<(bool, bool)>,
        failures: u32,
        slow: u32,
    },
    Time {
        slice: Duration,
        buckets: VecDeque<Bucket>,
        count: usize,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    start: Instant,
    calls: u32,
    failures: u32,
    slow: u32,
}

impl RateWindow {
    fn new(window: Window) -> Self {
        match window {
            Window::Count(n) => RateWindow::Count {
                size: n as usize,
                calls: VecDeque::with_capacity(n.min(1024) as usize),
                failures: 0,
                slow: 0,
            },
            Window::Time { length, buckets } => RateWindow::Time {
                slice: length / buckets.max(1),
                buckets: VecDeque::with_capacity(buckets as usize),
                count: buckets as usize,
            },
        }
    }

    fn record(&mut self, now: Instant, failure: bool, slow: bool) {
        match self {
            RateWindow::Count {
                size,
                calls,
                failures,
                slow: slows,
            } => {
                if calls.len() == *size {
                    if let Some((f, s)) = calls.pop_front() {
                        *failures -= u32::from(f);
                        *slows -= u32::from(s);
                    }
                }
                calls.push_back((failure, slow));
                *failures += u32::from(failure);
                *slows += u32::from(slow);
            }
            RateWindow::Time {
                slice,
                buckets,
                count,
            } => {
                Self::expire(*slice, buckets, now, *count);
                let current = match buckets.back_mut() {
                    Some(b) if now < b.start + *slice => b,
                    _ => {
                        buckets.push_back(Bucket {
                            start: now,
                            calls: 0,
                            failures: 0,
                            slow: 0,
                        });
                        match buckets.back_mut() {
                            Some(b) => b,
                            None => return,
                        }
                    }
                };
                current.calls += 1;
                current.failures += u32::from(failure);
                current.slow += u32::from(slow);
            }
        }
    }

    fn expire(slice: Duration, buckets: &mut VecDeque<Bucket>, now: Instant, count: usize) {
        let span = slice * count as u32;
        while let Some(first) = buckets.front() {
            if now >= first.start + span {
                buckets.pop_front();
            } else {
                break;
            }
        }
    }

    /// (calls, failures, slow) in the window now.
    fn totals(&mut self, now: Instant) -> (u32, u32, u32) {
        match self {
            RateWindow::Count {
                calls,
                failures,
                slow,
                ..
            } => (calls.len() as u32, *failures, *slow),
            RateWindow::Time {
                slice,
                buckets,
                count,
            } => {
                Self::expire(*slice, buckets, now, *count);
                buckets.iter().fold((0, 0, 0), |(c, f, s), b| {
                    (c + b.calls, f + b.failures, s + b.slow)
                })
            }
        }
    }

    fn clear(&mut self) {
        match self {
            RateWindow::Count {
                calls,
                failures,
                slow,
                ..
            } => {
                calls.clear();
                *failures = 0;
                *slow = 0;
            }
            RateWindow::Time { buckets, .. } => buckets.clear(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    forced: Option<Forced>,
    consecutive: u32,
    /// One per rate policy, in the order of `config.policies`.
    windows: Vec<RateWindow>,
    /// Opens since it was last closed (the wait doubles with each).
    opens: u32,
}

/// What [`Breaker::acquire`] grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// A normal call (closed, or forced closed).
    Call,
    /// A probe call (half-open).
    Probe,
}

/// The breaker of one key.
#[derive(Debug)]
pub(crate) struct Breaker {
    key: Arc<str>,
    /// The configuration and the jitter source, shared by every key's
    /// breaker (so a call's guard needs nothing but its breaker).
    pub(crate) policy: Arc<Policy>,
    inner: Mutex<Inner>,
    last_used_ms: AtomicU64,
    /// Closed and not forced: calls are admitted without taking the lock.
    closed: AtomicBool,
    /// A copy of `inner.consecutive`, so a success that changes nothing
    /// (closed, no failures in a row, no rate windows) takes no lock.
    consecutive: AtomicU32,
    /// Whether any rate policy keeps a window (then every outcome is
    /// recorded under the lock).
    has_windows: bool,
}

/// A transition, reported after the lock is released.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transition {
    from: State,
    to: State,
}

impl Breaker {
    fn new(key: Arc<str>, policy: Arc<Policy>) -> Self {
        let config = &policy.config;
        let windows = config
            .policies
            .iter()
            .filter_map(|p| match p {
                TripPolicy::FailureRate { window, .. }
                | TripPolicy::SlowCallRate { window, .. } => Some(RateWindow::new(*window)),
                TripPolicy::ConsecutiveFailures(_) => None,
            })
            .collect::<Vec<_>>();
        Breaker {
            key,
            policy: policy.clone(),
            has_windows: !windows.is_empty(),
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                forced: None,
                consecutive: 0,
                windows,
                opens: 0,
            }),
            last_used_ms: AtomicU64::new(0),
            closed: AtomicBool::new(true),
            consecutive: AtomicU32::new(0),
        }
    }

    /// Refresh the lock-free hints from the state (call with the lock held).
    fn sync_hints(&self, inner: &Inner) {
        self.closed.store(
            inner.forced.is_none() && matches!(inner.phase, Phase::Closed),
            Ordering::Release,
        );
        self.consecutive.store(inner.consecutive, Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the state half
        // written in a way that matters more than refusing all calls would.
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(crate) fn key(&self) -> &Arc<str> {
        &self.key
    }

    fn state_of(inner: &Inner) -> State {
        match (inner.forced, inner.phase) {
            (Some(Forced::Open), _) => State::ForcedOpen,
            (Some(Forced::Closed), _) => State::ForcedClosed,
            (None, Phase::Closed) => State::Closed,
            (None, Phase::Open { .. }) => State::Open,
            (None, Phase::HalfOpen { .. }) => State::HalfOpen,
        }
    }

    /// The state now (an open breaker whose wait is over reports half-open:
    /// the next call is a probe).
    pub(crate) fn state(&self, now: Instant) -> State {
        let inner = self.lock();
        match (inner.forced, inner.phase) {
            (None, Phase::Open { until }) if now >= until => State::HalfOpen,
            _ => Self::state_of(&inner),
        }
    }

    /// Would a call be refused now (see [`Breaker::acquire`])?
    pub(crate) fn refuses(&self, now: Instant, config: &BreakerConfig) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let inner = self.lock();
        match (inner.forced, inner.phase) {
            (Some(Forced::Open), _) => true,
            (Some(Forced::Closed), _) | (None, Phase::Closed) => false,
            (None, Phase::Open { until }) => now < until,
            (None, Phase::HalfOpen { in_flight, .. }) => in_flight >= config.half_open_probes,
        }
    }

    /// May a call go through now? `Err` carries how long until a probe.
    pub(crate) fn acquire(
        &self,
        now: Instant,
        config: &BreakerConfig,
    ) -> (Result<Admit, Option<Duration>>, Option<Transition>) {
        if self.closed.load(Ordering::Acquire) {
            return (Ok(Admit::Call), None);
        }
        let mut inner = self.lock();
        let out = self.acquire_locked(&mut inner, now, config);
        self.sync_hints(&inner);
        out
    }

    fn acquire_locked(
        &self,
        inner: &mut Inner,
        now: Instant,
        config: &BreakerConfig,
    ) -> (Result<Admit, Option<Duration>>, Option<Transition>) {
        match inner.forced {
            Some(Forced::Open) => return (Err(None), None),
            Some(Forced::Closed) => return (Ok(Admit::Call), None),
            None => {}
        }
        match inner.phase {
            Phase::Closed => (Ok(Admit::Call), None),
            Phase::Open { until } if now >= until => {
                inner.phase = Phase::HalfOpen {
                    in_flight: 1,
                    successes: 0,
                };
                (
                    Ok(Admit::Probe),
                    Some(Transition {
                        from: State::Open,
                        to: State::HalfOpen,
                    }),
                )
            }
            Phase::Open { until } => (Err(Some(until - now)), None),
            Phase::HalfOpen {
                in_flight,
                successes,
            } => {
                if in_flight < config.half_open_probes {
                    inner.phase = Phase::HalfOpen {
                        in_flight: in_flight + 1,
                        successes,
                    };
                    (Ok(Admit::Probe), None)
                } else {
                    (Err(None), None)
                }
            }
        }
    }

    /// A probe ended without an outcome (its future was dropped).
    pub(crate) fn release(&self, admit: Admit) {
        if admit != Admit::Probe {
            return;
        }
        let mut inner = self.lock();
        if let Phase::HalfOpen {
            in_flight,
            successes,
        } = inner.phase
        {
            inner.phase = Phase::HalfOpen {
                in_flight: in_flight.saturating_sub(1),
                successes,
            };
        }
        self.sync_hints(&inner);
    }

    /// Whether recording this outcome can change anything: not when the
    /// breaker is closed, has no failures in a row and keeps no rate window
    /// and the call succeeded (then no clock read or lock is needed).
    pub(crate) fn needs_record(&self, admit: Admit, failure: bool) -> bool {
        !(admit == Admit::Call
            && !failure
            && !self.has_windows
            && self.closed.load(Ordering::Acquire)
            && self.consecutive.load(Ordering::Acquire) == 0)
    }

    /// Record the outcome of a call admitted as `admit`.
    pub(crate) fn record(
        &self,
        admit: Admit,
        failure: bool,
        elapsed: Duration,
        now: Instant,
    ) -> Option<Transition> {
        if !self.needs_record(admit, failure) {
            return None;
        }
        let mut inner = self.lock();
        let out = Self::record_locked(&mut inner, admit, failure, elapsed, now, &self.policy);
        self.sync_hints(&inner);
        out
    }

    fn record_locked(
        inner: &mut Inner,
        admit: Admit,
        failure: bool,
        elapsed: Duration,
        now: Instant,
        policy: &Policy,
    ) -> Option<Transition> {
        let config = &policy.config;
        if inner.forced.is_some() {
            return None;
        }
        match (admit, inner.phase) {
            (
                Admit::Probe,
                Phase::HalfOpen {
                    in_flight,
                    successes,
                },
            ) => {
                if failure {
                    Some(Self::open(inner, now, policy, State::HalfOpen))
                } else if successes + 1 >= config.success_threshold {
                    Self::close(inner);
                    Some(Transition {
                        from: State::HalfOpen,
                        to: State::Closed,
                    })
                } else {
                    inner.phase = Phase::HalfOpen {
                        in_flight: in_flight.saturating_sub(1),
                        successes: successes + 1,
                    };
                    None
                }
            }
            (Admit::Call, Phase::Closed) => {
                inner.consecutive = if failure { inner.consecutive + 1 } else { 0 };
                let mut trip = false;
                let mut w = 0;
                for policy in &config.policies {
                    match *policy {
                        TripPolicy::ConsecutiveFailures(n) => trip |= inner.consecutive >= n,
                        TripPolicy::FailureRate {
                            ratio,
                            minimum_calls,
                            ..
                        } => {
                            let window = &mut inner.windows[w];
                            w += 1;
                            window.record(now, failure, false);
                            let (calls, failures, _) = window.totals(now);
                            trip |= calls >= minimum_calls.max(1)
                                && f64::from(failures) >= ratio * f64::from(calls);
                        }
                        TripPolicy::SlowCallRate {
                            ratio,
                            slower_than,
                            minimum_calls,
                            ..
                        } => {
                            let window = &mut inner.windows[w];
                            w += 1;
                            window.record(now, false, elapsed > slower_than);
                            let (calls, _, slow) = window.totals(now);
                            trip |= calls >= minimum_calls.max(1)
                                && f64::from(slow) >= ratio * f64::from(calls);
                        }
                    }
                }
                if trip {
                    Some(Self::open(inner, now, policy, State::Closed))
                } else {
                    None
                }
            }
            // A call admitted before the breaker opened (or a probe of an
            // earlier half-open period) ends late: it changes nothing.
            _ => None,
        }
    }

    fn open(inner: &mut Inner, now: Instant, policy: &Policy, from: State) -> Transition {
        let wait = policy.open_wait(inner.opens);
        inner.opens = inner.opens.saturating_add(1);
        inner.phase = Phase::Open { until: now + wait };
        inner.consecutive = 0;
        for w in &mut inner.windows {
            w.clear();
        }
        Transition {
            from,
            to: State::Open,
        }
    }

    fn close(inner: &mut Inner) {
        inner.phase = Phase::Closed;
        inner.consecutive = 0;
        inner.opens = 0;
        for w in &mut inner.windows {
            w.clear();
        }
    }

    /// Force open, force closed, or back to closed (`None`).
    pub(crate) fn force(&self, forced: Option<Forced>) -> Transition {
        let mut inner = self.lock();
        let from = Self::state_of(&inner);
        inner.forced = forced;
        Self::close(&mut inner);
        self.sync_hints(&inner);
        Transition {
            from,
            to: Self::state_of(&inner),
        }
    }
}

/// Manual control, for [`CircuitBreakerHandle`](crate::CircuitBreakerHandle).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Manual {
    ForceOpen,
    ForceClosed,
    Reset,
}

impl Manual {
    pub(crate) fn forced(self) -> Option<Forced> {
        match self {
            Manual::ForceOpen => Some(Forced::Open),
            Manual::ForceClosed => Some(Forced::Closed),
            Manual::Reset => None,
        }
    }
}

const SHARDS: usize = 16;

/// What every key's breaker shares: the configuration and the source of
/// the open-wait jitter.
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) config: BreakerConfig,
    rng: Mutex<StdRng>,
}

impl Policy {
    /// How long to stay open after `opens` earlier opens in a row:
    /// `open_duration · 2^opens`, capped, ± jitter.
    fn open_wait(&self, opens: u32) -> Duration {
        let config = &self.config;
        let base = config.open_duration.as_secs_f64() * 2f64.powi(opens.min(30) as i32);
        let capped = base.min(config.max_open_duration.as_secs_f64());
        let factor = if config.open_jitter > 0.0 {
            let mut rng = match self.rng.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            1.0 + rng.random_range(-config.open_jitter..config.open_jitter)
        } else {
            1.0
        };
        Duration::from_secs_f64((capped * factor).max(0.0))
    }
}

type Shard = HashMap<Arc<str>, Arc<Breaker>>;

/// All keys' breakers: a sharded map behind read-write locks, so calls to
/// known keys only share a read lock and one key's traffic never waits on
/// another's for longer than a map lookup.
#[derive(Debug)]
pub(crate) struct Registry {
    policy: Arc<Policy>,
    shards: Vec<RwLock<Shard>>,
    per_shard: usize,
    epoch: Instant,
}

impl Registry {
    pub(crate) fn new(config: BreakerConfig, seed: Option<u64>) -> Self {
        let per_shard = config.max_keys.div_ceil(SHARDS).max(1);
        Registry {
            policy: Arc::new(Policy {
                config,
                rng: Mutex::new(match seed {
                    Some(s) => StdRng::seed_from_u64(s),
                    None => StdRng::from_rng(&mut rand::rng()),
                }),
            }),
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            per_shard,
            epoch: Instant::now(),
        }
    }

    pub(crate) fn config(&self) -> &BreakerConfig {
        &self.policy.config
    }

    fn shard_index(key: &str) -> usize {
        // FNV-1a: keys are endpoint names, not attacker-chosen map keys
        // (the map itself is std's, keyed with a random SipHash).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.as_bytes() {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        (h as usize) % SHARDS
    }

    fn read(&self, key: &str) -> RwLockReadGuard<'_, Shard> {
        match self.shards[Self::shard_index(key)].read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write(&self, key: &str) -> RwLockWriteGuard<'_, Shard> {
        match self.shards[Self::shard_index(key)].write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The breaker of `key`, created on first use. When the shard is full,
    /// the least recently used closed breaker is dropped (an open one only
    /// when every breaker in the shard is open).
    pub(crate) fn get(&self, key: &str, now: Instant) -> Arc<Breaker> {
        let used = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let touch = |b: &Arc<Breaker>| {
            // Write the shared cache line only when the time moved on by
            // more than a second.
            if used.saturating_sub(b.last_used_ms.load(Ordering::Relaxed)) > 1000 {
                b.last_used_ms.store(used, Ordering::Relaxed);
            }
            b.clone()
        };
        if let Some(b) = self.read(key).get(key) {
            return touch(b);
        }
        let mut shard = self.write(key);
        // Another call may have made it between the two locks.
        if let Some(b) = shard.get(key) {
            return touch(b);
        }
        if shard.len() >= self.per_shard {
            let victim = shard
                .iter()
                .min_by_key(|(_, b)| {
                    let closed = matches!(b.state(now), State::Closed);
                    (!closed, b.last_used_ms.load(Ordering::Relaxed))
                })
                .map(|(k, _)| k.clone());
            if let Some(k) = victim {
                shard.remove(&k);
                metrics::gauge!("sinew_circuit_breaker_state", "key" => k.to_string()).set(0.0);
            }
        }
        let breaker = Arc::new(Breaker::new(Arc::from(key), self.policy.clone()));
        breaker.last_used_ms.store(used, Ordering::Relaxed);
        shard.insert(breaker.key.clone(), breaker.clone());
        breaker
    }

    /// Whether `key`'s breaker would refuse a call now (`false` for an
    /// unknown key); no reference count is taken.
    pub(crate) fn refuses(&self, key: &str, now: Instant) -> bool {
        self.read(key)
            .get(key)
            .is_some_and(|b| b.refuses(now, &self.policy.config))
    }

    /// The breaker of `key` if it exists.
    pub(crate) fn find(&self, key: &str) -> Option<Arc<Breaker>> {
        self.read(key).get(key).cloned()
    }

    /// How many keys are tracked.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| match s.read() {
                Ok(g) => g.len(),
                Err(poisoned) => poisoned.into_inner().len(),
            })
            .sum()
    }
}

/// Emit the event, counter and gauge of a transition.
pub(crate) fn report(key: &str, t: Transition) {
    if t.from == t.to {
        return;
    }
    tracing::info!(
        key,
        from = t.from.as_str(),
        to = t.to.as_str(),
        "circuit breaker transition"
    );
    metrics::counter!(
        "sinew_circuit_breaker_transitions_total",
        "from" => t.from.as_str(),
        "to" => t.to.as_str()
    )
    .increment(1);
    metrics::gauge!("sinew_circuit_breaker_state", "key" => key.to_string()).set(t.to.gauge());
}
