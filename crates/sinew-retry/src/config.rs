//! Plain config structs for [`RetryLayer`](crate::RetryLayer) and
//! [`HedgeLayer`](crate::HedgeLayer), with serde support behind the `serde`
//! feature. The keys are those of the `[retry]` and `[hedge]` sections of
//! sinew's config file (durations written like `"250ms"` or `"2s"`; unknown
//! keys are errors):
//!
//! ```toml
//! [retry]
//! max_attempts = 3
//! backoff = "decorrelated"     # decorrelated | exponential | linear | constant
//! base_delay = "50ms"
//! max_delay = "2s"
//! methods = "idempotent"       # idempotent | all | aio-request
//! budget_ratio = 0.2
//! budget_min_per_sec = 10
//! max_retry_after = "10s"
//! # beyond the design's keys (all optional):
//! budget_window = "10s"
//! jitter = "full"              # exponential only: full | equal | none
//! min_attempt_time = "5ms"
//! retry_circuit_open = true    # default: on only when a balancer sits below (sinew's client)
//!
//! [hedge]
//! delays = ["50ms", "100ms"]   # or: percentile = 0.95 (then the keys below apply)
//! # min_delay = "50ms", max_delay = "10s", window = "5m", min_samples = 20,
//! # max_attempts = 2, budget_ratio = 0.1, budget_min_per_sec = 10
//! ```

use std::time::Duration;

use crate::backoff::{Backoff, BackoffKind, Jitter};
use crate::policy::RetryMethods;

/// The `[retry]` section. `Default` is the documented defaults.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, default))]
pub struct RetryConfig {
    /// Attempts in all, counting the first (default 3; at least 1).
    pub max_attempts: u32,
    /// The backoff curve (default decorrelated).
    pub backoff: BackoffKind,
    /// The base delay of the curve (default 50 ms).
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub base_delay: Duration,
    /// The cap on one delay (default 2 s).
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub max_delay: Duration,
    /// Which methods are retried (default idempotent).
    pub methods: RetryMethods,
    /// Retries may add at most this share of the traffic (default 0.2).
    pub budget_ratio: f64,
    /// …plus this many retries per second (default 10).
    pub budget_min_per_sec: u32,
    /// The budget's sliding window (default 10 s).
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub budget_window: Duration,
    /// Honour `Retry-After` up to this long; a longer wait ends the retries
    /// with the response in hand (default 10 s).
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub max_retry_after: Duration,
    /// The jitter of the exponential curve (default full).
    pub jitter: Jitter,
    /// Do not start an attempt with less than this left before the deadline
    /// (default 5 ms, the threshold under which aio-request servers answer
    /// 408 without running the handler).
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub min_attempt_time: Duration,
    /// Retry a circuit-open rejection from below. Useful only when a load
    /// balancer sits between this layer and the breakers, so the retry goes
    /// to another endpoint. Unset (the default): off for a bare
    /// [`RetryLayer`](crate::RetryLayer); the sinew client turns it on when
    /// it has a balancer.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub retry_circuit_open: Option<bool>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            backoff: BackoffKind::Decorrelated,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            methods: RetryMethods::Idempotent,
            budget_ratio: 0.2,
            budget_min_per_sec: 10,
            budget_window: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(10),
            jitter: Jitter::Full,
            min_attempt_time: Duration::from_millis(5),
            retry_circuit_open: None,
        }
    }
}

impl RetryConfig {
    /// aio-request's defaults: GET gets 3 attempts, other methods one;
    /// linear delays of `0.05·n s ± 20 %`. The retry budget stays on (the
    /// one deliberate difference: aio-request has none).
    pub fn aio_request() -> Self {
        RetryConfig {
            max_attempts: 3,
            backoff: BackoffKind::Linear,
            base_delay: Duration::from_millis(50),
            methods: RetryMethods::AioRequest,
            ..RetryConfig::default()
        }
    }

    /// The backoff curve this config describes.
    pub fn backoff_curve(&self) -> Backoff {
        Backoff::new(self.backoff, self.base_delay)
            .max_delay(self.max_delay)
            .jitter(self.jitter)
    }
}

/// When hedged attempts start.
#[derive(Debug, Clone, PartialEq)]
pub enum HedgeDelays {
    /// Attempt `k + 1` starts `delays[k - 1]` after the call started.
    Fixed(Vec<Duration>),
    /// Attempt `k + 1` starts `k · p` after the start, where `p` is the
    /// `percentile` of the route's recent latencies of acceptable responses,
    /// clamped to `min_delay..=max_delay` (aio-request's percentile-based
    /// delays). No hedging until the route has `min_samples` samples.
    Percentile {
        /// The percentile, in `(0, 1)` (default 0.95).
        percentile: f64,
        /// The least delay (default 50 ms).
        min_delay: Duration,
        /// The greatest delay (default 10 s).
        max_delay: Duration,
        /// Latencies older than about this are forgotten (default 5 min).
        window: Duration,
        /// Samples needed before hedging (default 20).
        min_samples: u32,
        /// Attempts in all, counting the first (default 2).
        max_attempts: u32,
    },
}

/// The `[hedge]` section.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, default))]
pub struct HedgeConfig {
    /// Fixed offsets from the start of the call of attempts 2, 3, …
    /// (default `["50ms", "100ms"]`). Ignored when `percentile` is set.
    #[cfg_attr(feature = "serde", serde(with = "durations"))]
    pub delays: Vec<Duration>,
    /// Hedge at this latency percentile of the route instead (e.g. 0.95).
    pub percentile: Option<f64>,
    /// Percentile mode: the least delay (default 50 ms).
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub min_delay: Duration,
    /// Percentile mode: the greatest delay (default 10 s).
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub max_delay: Duration,
    /// Percentile mode: how long latencies are remembered (default 5 min).
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub window: Duration,
    /// Percentile mode: samples needed before hedging (default 20).
    pub min_samples: u32,
    /// Percentile mode: attempts in all (default 2).
    pub max_attempts: u32,
    /// Hedges may add at most this share of the traffic (default 0.1).
    pub budget_ratio: f64,
    /// …plus this many hedges per second (default 10).
    pub budget_min_per_sec: u32,
    /// The budget's sliding window (default 10 s).
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub budget_window: Duration,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        HedgeConfig {
            delays: vec![Duration::from_millis(50), Duration::from_millis(100)],
            percentile: None,
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(10),
            window: Duration::from_secs(300),
            min_samples: 20,
            max_attempts: 2,
            budget_ratio: 0.1,
            budget_min_per_sec: 10,
            budget_window: Duration::from_secs(10),
        }
    }
}

impl HedgeConfig {
    /// The delays this config describes.
    pub fn hedge_delays(&self) -> HedgeDelays {
        match self.percentile {
            Some(percentile) => HedgeDelays::Percentile {
                percentile,
                min_delay: self.min_delay,
                max_delay: self.max_delay,
                window: self.window,
                min_samples: self.min_samples,
                max_attempts: self.max_attempts,
            },
            None => HedgeDelays::Fixed(self.delays.clone()),
        }
    }
}

/// serde helpers for durations written like `250ms` or `2s`, and lists of
/// them (shared with every sinew crate).
#[cfg(feature = "serde")]
pub use sinew_core::config::{duration, durations};
