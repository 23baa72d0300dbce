//! A small rolling latency histogram per route, for percentile hedging.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::Request;
use tokio::time::Instant;

use super::RouteKey;

/// Sub-buckets per power of two (12.5 % resolution).
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for latencies up to 2^40 µs (about 12 days).
const BUCKETS: usize = (SUB as usize) * 39;
/// Routes tracked one by one; the rest share one histogram.
const MAX_ROUTES: usize = 1024;

/// Bucket of a latency in microseconds: exact below 8 µs, then 8 buckets
/// per power of two.
fn index(micros: u64) -> usize {
    if micros < SUB {
        return micros as usize;
    }
    let exp = 63 - micros.leading_zeros(); // >= SUB_BITS
    let sub = (micros >> (exp - SUB_BITS)) & (SUB - 1);
    let idx = SUB as usize + (exp - SUB_BITS) as usize * SUB as usize + sub as usize;
    idx.min(BUCKETS - 1)
}

/// The upper edge (µs) of a bucket: reading a percentile from it errs late.
fn upper(idx: usize) -> u64 {
    if idx < SUB as usize {
        return idx as u64 + 1;
    }
    let exp = (idx - SUB as usize) as u32 / SUB as u32 + SUB_BITS;
    let sub = (idx - SUB as usize) as u64 % SUB;
    ((SUB + sub) << (exp - SUB_BITS)) + (1 << (exp - SUB_BITS))
}

#[derive(Clone)]
struct Counts {
    buckets: Box<[u32; BUCKETS]>,
    total: u64,
}

impl Counts {
    fn new() -> Self {
        Counts {
            buckets: Box::new([0; BUCKETS]),
            total: 0,
        }
    }

    fn clear(&mut self) {
        self.buckets.fill(0);
        self.total = 0;
    }
}

/// Two generations of counts, each covering half the window: a percentile is
/// read over the last half to whole window.
pub(crate) struct Rolling {
    generations: [Counts; 2],
    current: usize,
    started: Instant,
    half: Duration,
}

impl Rolling {
    pub(crate) fn new(window: Duration) -> Self {
        Rolling {
            generations: [Counts::new(), Counts::new()],
            current: 0,
            started: Instant::now(),
            half: (window / 2).max(Duration::from_millis(1)),
        }
    }

    fn rotate(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.started);
        if age < self.half {
            return;
        }
        if age >= self.half * 2 {
            self.generations[0].clear();
            self.generations[1].clear();
        } else {
            self.current ^= 1;
            self.generations[self.current].clear();
        }
        self.started = now;
    }

    pub(crate) fn record(&mut self, latency: Duration) {
        self.rotate(Instant::now());
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let counts = &mut self.generations[self.current];
        let slot = &mut counts.buckets[index(micros)];
        *slot = slot.saturating_add(1);
        counts.total = counts.total.saturating_add(1);
    }

    /// The `p` percentile (`0 < p < 1`) of the recorded latencies, once at
    /// least `min_samples` are in the window.
    pub(crate) fn percentile(&mut self, p: f64, min_samples: u32) -> Option<Duration> {
        self.rotate(Instant::now());
        let total = self.generations[0].total + self.generations[1].total;
        if total == 0 || total < u64::from(min_samples) {
            return None;
        }
        let rank = ((p.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for idx in 0..BUCKETS {
            seen += u64::from(self.generations[0].buckets[idx])
                + u64::from(self.generations[1].buckets[idx]);
            if seen >= rank {
                return Some(Duration::from_micros(upper(idx)));
            }
        }
        None
    }
}

/// The histograms of every route seen by a layer.
pub(crate) struct RouteLatencies {
    window: Duration,
    routes: Mutex<HashMap<Arc<str>, Arc<Mutex<Rolling>>>>,
    overflow: Arc<Mutex<Rolling>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RouteLatencies {
    pub(crate) fn new(window: Duration) -> Self {
        RouteLatencies {
            window,
            routes: Mutex::new(HashMap::new()),
            overflow: Arc::new(Mutex::new(Rolling::new(window))),
        }
    }

    /// The histogram of `req`'s route: its [`RouteKey`] extension, else
    /// `METHOD path` (no query).
    pub(crate) fn route<B>(&self, req: &Request<B>) -> Arc<Mutex<Rolling>> {
        let key: Arc<str> = match req.extensions().get::<RouteKey>() {
            Some(RouteKey(k)) => k.clone(),
            None => format!("{} {}", req.method(), req.uri().path()).into(),
        };
        let mut routes = lock(&self.routes);
        if let Some(h) = routes.get(&key) {
            return h.clone();
        }
        if routes.len() >= MAX_ROUTES {
            return self.overflow.clone();
        }
        let h = Arc::new(Mutex::new(Rolling::new(self.window)));
        routes.insert(key, h.clone());
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_are_ordered_and_bound_their_values() {
        let mut last = 0;
        for idx in 0..BUCKETS {
            assert!(upper(idx) > last, "{idx}");
            last = upper(idx);
        }
        for v in [0u64, 1, 7, 8, 9, 15, 16, 17, 100, 1000, 12_345, 1 << 30] {
            let i = index(v);
            assert!(upper(i) > v, "{v}: {}", upper(i));
            assert!(i == 0 || upper(i - 1) <= v, "{v}");
        }
    }

    proptest! {
        #[test]
        fn bucket_error_is_at_most_an_eighth(v in 8u64..(1u64 << 39)) {
            let u = upper(index(v));
            prop_assert!(u > v);
            prop_assert!((u - v) as f64 <= v as f64 / 8.0 + 1.0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn percentile_over_a_rolling_window() {
        let mut h = Rolling::new(Duration::from_secs(10));
        assert_eq!(h.percentile(0.95, 1), None);
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.percentile(0.95, 101), None);
        let p95 = h.percentile(0.95, 20).unwrap();
        // 95 ms, read from a bucket at most 12.5 % wide.
        assert!(
            p95 >= Duration::from_millis(95) && p95 <= Duration::from_millis(107),
            "{p95:?}"
        );
        let p50 = h.percentile(0.5, 20).unwrap();
        assert!(
            p50 >= Duration::from_millis(50) && p50 <= Duration::from_millis(57),
            "{p50:?}"
        );
        // Half a window later the samples are still there; a whole window
        // later they are gone.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(h.percentile(0.95, 20).is_some());
        for _ in 0..100 {
            h.record(Duration::from_millis(10));
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        let p = h.percentile(0.95, 20).unwrap();
        assert!(
            p <= Duration::from_millis(12),
            "old samples forgotten: {p:?}"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(h.percentile(0.95, 1), None);
    }
}
