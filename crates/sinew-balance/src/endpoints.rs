//! The endpoint set, the per-endpoint load figures and the strategies.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::uri::Authority;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

/// One endpoint: `host:port` and a weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// `host:port`.
    pub address: String,
    /// The weight (weighted strategies; 0 is never picked by them).
    pub weight: f64,
}

impl Endpoint {
    /// An endpoint of weight 1.
    pub fn new(address: impl Into<String>) -> Self {
        Endpoint {
            address: address.into(),
            weight: 1.0,
        }
    }

    /// With a weight.
    pub fn weight(mut self, weight: f64) -> Self {
        self.weight = weight;
        self
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
    pub fn parse(name: &str) -> Option<Strategy> {
        Some(match name {
            "round-robin" => Strategy::RoundRobin,
            "random" => Strategy::Random,
            "weighted-random" => Strategy::WeightedRandom,
            "weighted-round-robin" => Strategy::WeightedRoundRobin,
            "least-outstanding" => Strategy::LeastOutstanding,
            "p2c-ewma" => Strategy::P2cEwma,
            _ => return None,
        })
    }
}

/// The load figures of one endpoint.
#[derive(Debug)]
pub(crate) struct EndpointState {
    pub(crate) endpoint: Endpoint,
    pub(crate) authority: Authority,
    pub(crate) in_flight: AtomicU64,
    /// Peak-EWMA of the latency, in nanoseconds (f64 bits).
    ewma_ns: AtomicU64,
    last_sample: Mutex<Option<Instant>>,
    pub(crate) consecutive_failures: AtomicU32,
    pub(crate) ejections: AtomicU32,
    ejected_until: Mutex<Option<Instant>>,
    pub(crate) picks: AtomicU64,
}

/// The decay time of the EWMA.
const TAU: Duration = Duration::from_secs(10);
/// What an endpoint without samples is assumed to cost (1 ms).
const DEFAULT_RTT_NS: f64 = 1_000_000.0;

impl EndpointState {
    pub(crate) fn new(endpoint: Endpoint) -> Option<Self> {
        let authority: Authority = endpoint.address.parse().ok()?;
        Some(EndpointState {
            endpoint,
            authority,
            in_flight: AtomicU64::new(0),
            ewma_ns: AtomicU64::new(DEFAULT_RTT_NS.to_bits()),
            last_sample: Mutex::new(None),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: Mutex::new(None),
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
        let mut last = match self.last_sample.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
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

    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        let mut until = match self.ejected_until.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match *until {
            Some(t) if now < t => true,
            Some(_) => {
                *until = None;
                tracing::info!(endpoint = %self.endpoint.address, "endpoint returns after ejection");
                false
            }
            None => false,
        }
    }

    pub(crate) fn eject(&self, until: Instant) {
        let mut u = match self.ejected_until.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *u = Some(until);
    }
}

/// The current set and the picking state.
#[derive(Debug)]
pub(crate) struct Set {
    pub(crate) endpoints: RwLock<Arc<Vec<Arc<EndpointState>>>>,
    rr: AtomicUsize,
    wrr: Mutex<Vec<(String, f64)>>,
    rng: Mutex<StdRng>,
}

impl Set {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        Set {
            endpoints: RwLock::new(Arc::new(Vec::new())),
            rr: AtomicUsize::new(0),
            wrr: Mutex::new(Vec::new()),
            rng: Mutex::new(match seed {
                Some(s) => StdRng::seed_from_u64(s),
                None => StdRng::from_entropy(),
            }),
        }
    }

    pub(crate) fn snapshot(&self) -> Arc<Vec<Arc<EndpointState>>> {
        match self.endpoints.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Vec<Arc<EndpointState>>)) {
        let mut g = match self.endpoints.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut next: Vec<_> = g.as_ref().clone();
        f(&mut next);
        *g = Arc::new(next);
        metrics::gauge!("sinew_balance_endpoints").set(g.len() as f64);
    }

    fn random(&self, n: usize) -> usize {
        let mut rng = match self.rng.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        rng.gen_range(0..n)
    }

    fn random_f64(&self) -> f64 {
        let mut rng = match self.rng.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        rng.gen::<f64>()
    }

    /// Pick among `candidates` (the endpoints neither ejected nor removed).
    pub(crate) fn pick(
        &self,
        strategy: Strategy,
        candidates: &[Arc<EndpointState>],
    ) -> Option<Arc<EndpointState>> {
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        let i = match strategy {
            Strategy::RoundRobin => self.rr.fetch_add(1, Ordering::Relaxed) % n,
            Strategy::Random => self.random(n),
            Strategy::WeightedRandom => {
                let total: f64 = candidates.iter().map(|e| e.endpoint.weight.max(0.0)).sum();
                if total <= 0.0 {
                    return None;
                }
                let mut point = self.random_f64() * total;
                let mut chosen = None;
                for (i, e) in candidates.iter().enumerate() {
                    let w = e.endpoint.weight.max(0.0);
                    if w > 0.0 && point < w {
                        chosen = Some(i);
                        break;
                    }
                    point -= w;
                }
                // Rounding at the very end: the last positive weight.
                chosen.or_else(|| candidates.iter().rposition(|e| e.endpoint.weight > 0.0))?
            }
            Strategy::WeightedRoundRobin => self.smooth_wrr(candidates)?,
            Strategy::LeastOutstanding => {
                let start = self.rr.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|k| (start + k) % n)
                    .min_by_key(|&i| candidates[i].in_flight.load(Ordering::Relaxed))?
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
                    if candidates[a].cost() <= candidates[b].cost() {
                        a
                    } else {
                        b
                    }
                }
            }
        };
        let chosen = candidates[i].clone();
        chosen.picks.fetch_add(1, Ordering::Relaxed);
        Some(chosen)
    }

    /// nginx's smooth weighted round robin over `candidates`.
    fn smooth_wrr(&self, candidates: &[Arc<EndpointState>]) -> Option<usize> {
        let mut current = match self.wrr.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // Keep the running weights of the endpoints still present.
        current.retain(|(a, _)| candidates.iter().any(|e| &e.endpoint.address == a));
        let mut total = 0.0;
        let mut best: Option<(usize, f64)> = None;
        for (i, e) in candidates.iter().enumerate() {
            let w = e.endpoint.weight;
            if w <= 0.0 || !w.is_finite() {
                continue;
            }
            total += w;
            let slot = match current.iter().position(|(a, _)| a == &e.endpoint.address) {
                Some(p) => p,
                None => {
                    current.push((e.endpoint.address.clone(), 0.0));
                    current.len() - 1
                }
            };
            current[slot].1 += w;
            if best.is_none_or(|(_, c)| current[slot].1 > c) {
                best = Some((i, current[slot].1));
            }
        }
        let (i, _) = best?;
        let addr = &candidates[i].endpoint.address;
        if let Some(slot) = current.iter_mut().find(|(a, _)| a == addr) {
            slot.1 -= total;
        }
        Some(i)
    }
}
