//! [`RetryLayer`]: the retry policy, built once and shared by every service
//! it wraps.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sinew_core::{Classifier, Clock, SystemClock};
use tower::Layer;

use crate::backoff::Backoff;
use crate::budget::RetryBudget;
use crate::config::RetryConfig;
use crate::error::ConfigError;
use crate::policy::{RetryMethods, RngSource};
use crate::service::Retry;

/// Retries failed requests (per the shared [`Classifier`]) with backoff,
/// within a retry budget and the call's deadline.
///
/// Defaults: 3 attempts; decorrelated-jitter backoff from 50 ms capped at
/// 2 s; RFC 9110's idempotent methods (POST and PATCH only with an
/// `Idempotency-Key` header or the [`Retryable`](crate::Retryable)
/// extension); a budget of 20 % of the traffic plus 10 retries a second over
/// 10 s; `Retry-After` honoured up to 10 s; no attempt started with less than
/// 5 ms left before the deadline; circuit-open rejections not retried.
///
/// See the [crate docs](crate) for what exactly is retried and what the
/// caller gets when retries stop.
#[derive(Clone)]
pub struct RetryLayer {
    pub(crate) policy: Arc<Policy>,
}

/// The compiled retry policy.
#[derive(Clone)]
pub(crate) struct Policy {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) methods: RetryMethods,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) max_retry_after: Duration,
    pub(crate) min_attempt_time: Duration,
    pub(crate) retry_circuit_open: bool,
    pub(crate) classifier: Classifier,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rng: Arc<RngSource>,
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RetryLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &*self.policy;
        f.debug_struct("RetryLayer")
            .field("max_attempts", &p.max_attempts)
            .field("backoff", &p.backoff)
            .field("methods", &p.methods)
            .field("budget", &p.budget)
            .field("max_retry_after", &p.max_retry_after)
            .field("min_attempt_time", &p.min_attempt_time)
            .field("retry_circuit_open", &p.retry_circuit_open)
            .field("classifier", &p.classifier)
            .finish()
    }
}

impl RetryLayer {
    /// A layer with the defaults (see the type's docs).
    pub fn new() -> Self {
        let config = RetryConfig::default();
        RetryLayer {
            policy: Arc::new(Policy {
                max_attempts: config.max_attempts,
                backoff: config.backoff_curve(),
                methods: config.methods,
                budget: Some(RetryBudget::default()),
                max_retry_after: config.max_retry_after,
                min_attempt_time: config.min_attempt_time,
                retry_circuit_open: config.retry_circuit_open.unwrap_or(false),
                classifier: Classifier::default(),
                clock: Arc::new(SystemClock),
                rng: Arc::new(RngSource::Entropy),
            }),
        }
    }

    /// A layer from a `[retry]` config section; out-of-range values are
    /// refused with the key at fault.
    pub fn from_config(config: &RetryConfig) -> Result<Self, ConfigError> {
        if config.max_attempts == 0 {
            return Err(ConfigError::new(
                "max_attempts",
                "must be at least 1 (it counts the first attempt)",
            ));
        }
        let budget = RetryBudget::new(
            config.budget_window,
            config.budget_min_per_sec,
            config.budget_ratio,
        )?;
        Ok(Self::new()
            .max_attempts(config.max_attempts)
            .backoff(config.backoff_curve())
            .methods(config.methods)
            .budget(budget)
            .max_retry_after(config.max_retry_after)
            .min_attempt_time(config.min_attempt_time)
            .retry_circuit_open(config.retry_circuit_open.unwrap_or(false)))
    }

    /// aio-request's defaults ([`RetryConfig::aio_request`]): GET gets 3
    /// attempts, other methods one, linear delays `0.05·n s ± 20 %`.
    pub fn aio_request() -> Self {
        let config = RetryConfig::aio_request();
        Self::new()
            .max_attempts(config.max_attempts)
            .backoff(config.backoff_curve())
            .methods(config.methods)
    }

    fn edit(mut self, f: impl FnOnce(&mut Policy)) -> Self {
        f(Arc::make_mut(&mut self.policy));
        self
    }

    /// Attempts in all, counting the first (at least 1; default 3).
    pub fn max_attempts(self, n: u32) -> Self {
        self.edit(|p| p.max_attempts = n.max(1))
    }

    /// The backoff curve.
    pub fn backoff(self, backoff: Backoff) -> Self {
        self.edit(|p| p.backoff = backoff)
    }

    /// Which methods are retried.
    pub fn methods(self, methods: RetryMethods) -> Self {
        self.edit(|p| p.methods = methods)
    }

    /// The retry budget (clones of a budget share its tokens, so several
    /// layers, e.g. one per route, can share one).
    pub fn budget(self, budget: RetryBudget) -> Self {
        self.edit(|p| p.budget = Some(budget))
    }

    /// No retry budget: retries are bounded by `max_attempts` only.
    pub fn no_budget(self) -> Self {
        self.edit(|p| p.budget = None)
    }

    /// Honour `Retry-After` up to `max`; a longer wait ends the retries with
    /// the response in hand.
    pub fn max_retry_after(self, max: Duration) -> Self {
        self.edit(|p| p.max_retry_after = max)
    }

    /// Do not start an attempt with less than `min` left before the deadline.
    pub fn min_attempt_time(self, min: Duration) -> Self {
        self.edit(|p| p.min_attempt_time = min)
    }

    /// Whether a [`CircuitOpen`](sinew_core::CircuitOpen) error from below is
    /// retried (default `false`).
    ///
    /// A circuit-open rejection must not be retried against the same
    /// endpoint. In sinew's client stack the balancer sits below retry and
    /// picks an endpoint per attempt, so a retry may land elsewhere: turn
    /// this on only when this layer sits above a balancer. Without a
    /// balancer below, the retry would hit the same open breaker.
    pub fn retry_circuit_open(self, yes: bool) -> Self {
        self.edit(|p| p.retry_circuit_open = yes)
    }

    /// The failure classifier (default: the shared default classifier).
    pub fn classifier(self, classifier: Classifier) -> Self {
        self.edit(|p| p.classifier = classifier)
    }

    /// The wall clock used to read `Retry-After` HTTP-dates.
    pub fn clock(self, clock: impl Clock) -> Self {
        self.edit(|p| p.clock = Arc::new(clock))
    }

    /// Seed the jitter: call `k` of this layer draws its delays from a
    /// generator seeded with `seed` and `k` (for reproducible tests).
    pub fn seed(self, seed: u64) -> Self {
        self.edit(|p| p.rng = Arc::new(RngSource::seeded(seed)))
    }

    /// The budget in use, if any (a handle sharing its tokens).
    pub fn retry_budget(&self) -> Option<&RetryBudget> {
        self.policy.budget.as_ref()
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            policy: self.policy.clone(),
            spare: Default::default(),
        }
    }
}
