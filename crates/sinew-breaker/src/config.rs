//! What trips a breaker and how it recovers.

use std::time::Duration;

use sinew_core::Classifier;

/// The window a rate policy looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `n` calls.
    Count(u32),
    /// The calls of the last `length`, kept in `buckets` slices (aio-request
    /// uses 10 buckets over its `sampling_duration`).
    Time {
        /// How far back the window reaches.
        length: Duration,
        /// How many slices it is kept in.
        buckets: u32,
    },
}

/// One way a breaker trips. A breaker with several trips when any of them
/// says so.
///
/// In a config file (feature `serde`), one inline table per policy:
/// `{ consecutive_failures = 5 }`,
/// `{ failure_rate = 0.5, minimum_calls = 10, window = "10s", buckets = 10 }`
/// (a time window; `window = 100` is the last 100 calls) or
/// `{ slow_call_rate = 0.5, slower_than = "1s", minimum_calls = 10, window = "10s" }`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(
        try_from = "crate::config_file::PolicySpec",
        into = "crate::config_file::PolicySpec"
    )
)]
pub enum TripPolicy {
    /// This many failures in a row (pybreaker, PyFly; default 5).
    ConsecutiveFailures(u32),
    /// failures / calls ≥ `ratio` over the window, once at least
    /// `minimum_calls` were seen (aio-request, resilience4j).
    FailureRate {
        /// The share of failures that trips it (0..=1).
        ratio: f64,
        /// Calls needed in the window before it may trip.
        minimum_calls: u32,
        /// The window.
        window: Window,
    },
    /// slow calls / calls ≥ `ratio` over the window; a call is slow when its
    /// response head took longer than `slower_than`.
    SlowCallRate {
        /// The share of slow calls that trips it (0..=1).
        ratio: f64,
        /// A call slower than this is slow.
        slower_than: Duration,
        /// Calls needed in the window before it may trip.
        minimum_calls: u32,
        /// The window.
        window: Window,
    },
}

/// The breaker's settings. `Default` is the documented defaults.
///
/// With the `serde` feature this is the `[breaker]` section of sinew's config
/// file (every key optional; unknown keys are errors):
///
/// ```toml
/// [breaker]
/// policies = [{ failure_rate = 0.5, minimum_calls = 10, window = "10s" }]
/// open_duration = "30s"
/// max_open_duration = "5m"
/// open_jitter = 0.1
/// half_open_probes = 1
/// success_threshold = 1
/// max_keys = 10000
/// ```
///
/// | field | default |
/// |---|---|
/// | `policies` | `[ConsecutiveFailures(5)]` |
/// | `open_duration` | 30 s (PyFly's recovery timeout) |
/// | `max_open_duration` | 5 min (the cap of the growing wait) |
/// | `open_jitter` | 0.1 (± 10 % on each wait) |
/// | `half_open_probes` | 1 |
/// | `success_threshold` | 1 (successful probes needed to close) |
/// | `max_keys` | 10 000 (least recently used closed keys are dropped first) |
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct BreakerConfig {
    /// What trips it.
    pub policies: Vec<TripPolicy>,
    /// How long it stays open the first time.
    #[cfg_attr(feature = "serde", serde(with = "sinew_core::config::duration"))]
    pub open_duration: Duration,
    /// The longest it stays open (the wait doubles with each failed probe).
    #[cfg_attr(feature = "serde", serde(with = "sinew_core::config::duration"))]
    pub max_open_duration: Duration,
    /// Random spread of each wait, as a share (0.1 = ± 10 %).
    pub open_jitter: f64,
    /// Probe calls allowed at once when half-open.
    pub half_open_probes: u32,
    /// Successful probes needed to close.
    pub success_threshold: u32,
    /// The most keys (endpoints) tracked at once.
    pub max_keys: usize,
    /// What counts as a failure (the shared classifier; not in config
    /// files: the sinew facade hands one classifier to every layer).
    #[cfg_attr(feature = "serde", serde(skip))]
    pub classifier: Classifier,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            policies: vec![TripPolicy::ConsecutiveFailures(5)],
            open_duration: Duration::from_secs(30),
            max_open_duration: Duration::from_secs(300),
            open_jitter: 0.1,
            half_open_probes: 1,
            success_threshold: 1,
            max_keys: 10_000,
            classifier: Classifier::default(),
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub(crate) String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid circuit breaker configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl BreakerConfig {
    /// Check the settings; every layer constructor calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError(m.to_string()));
        if self.policies.is_empty() {
            return bad("at least one trip policy is needed");
        }
        for p in &self.policies {
            match *p {
                TripPolicy::ConsecutiveFailures(0) => {
                    return bad("ConsecutiveFailures needs a threshold of at least 1")
                }
                TripPolicy::FailureRate { ratio, window, .. }
                | TripPolicy::SlowCallRate { ratio, window, .. } => {
                    if !(ratio > 0.0 && ratio <= 1.0) {
                        return bad("a rate threshold must be in (0, 1]");
                    }
                    match window {
                        Window::Count(0) => return bad("a count window needs at least 1 call"),
                        Window::Time { length, buckets } if length.is_zero() || buckets == 0 => {
                            return bad("a time window needs a length and at least 1 bucket")
                        }
                        _ => {}
                    }
                }
                TripPolicy::ConsecutiveFailures(_) => {}
            }
        }
        if self.half_open_probes == 0 || self.success_threshold == 0 {
            return bad("half_open_probes and success_threshold must be at least 1");
        }
        if !(0.0..1.0).contains(&self.open_jitter) {
            return bad("open_jitter must be in [0, 1)");
        }
        if self.max_keys == 0 {
            return bad("max_keys must be at least 1");
        }
        Ok(())
    }
}
