//! [`HedgeLayer`]: send a second copy of a slow idempotent request, keep the
//! first acceptable answer (aio-request's "parallel" strategy, done safely).
//!
//! Attempt `k + 1` starts at a fixed offset from the start of the call
//! ([`HedgeLayer::fixed`]), or at `k ·` a latency percentile recently
//! observed on the request's route ([`HedgeLayer::percentile`], like
//! aio-request's percentile-based delays). Attempts start at their offsets
//! whatever happened to the earlier ones.
//!
//! * Only requests that may be sent twice are hedged: RFC 9110's idempotent
//!   methods, or any method with an `Idempotency-Key` header or the
//!   [`Retryable`](crate::Retryable) extension, never one with
//!   [`NoRetry`](crate::NoRetry), and only when the body can be replayed.
//! * Hedges draw from a [`RetryBudget`] (default 10 % of the traffic plus
//!   10 a second over 10 s); no hedge starts with less than `min_attempt_time`
//!   left before the call's deadline.
//! * The first acceptable response (a success for the shared classifier)
//!   wins; the other attempts' futures are dropped at once, which cancels
//!   them (hyper closes their connections). If no attempt is acceptable, the
//!   first completed response is returned (or, when every attempt failed
//!   without a response, the first error).
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response};
//! use sinew_core::Body;
//! use sinew_retry::HedgeLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let started = tokio::time::Instant::now();
//! let backend = service_fn(|req: Request<Body>| async move {
//!     // The first attempt is slow; the hedge (which carries an `Attempt`) is fast.
//!     let slow = sinew_retry::Attempt::of(&req) == 1;
//!     tokio::time::sleep(Duration::from_millis(if slow { 900 } else { 20 })).await;
//!     Ok::<_, std::convert::Infallible>(Response::new(if slow { "first" } else { "hedge" }))
//! });
//! let client = ServiceBuilder::new()
//!     .layer(HedgeLayer::fixed([Duration::from_millis(100)]))
//!     .service(backend);
//! let response = client.oneshot(Request::get("http://svc/a").body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(*response.body(), "hedge");
//! assert_eq!(started.elapsed(), Duration::from_millis(120));
//! # }
//! ```

mod future;
mod histogram;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use sinew_core::body::{try_clone_request, TryCloneBody};
use sinew_core::context::effective_deadline;
use sinew_core::{BoxError, Classifier};
use tokio::time::Instant;
use tower::{Layer, Service};

pub use self::future::HedgeFuture;
use self::future::Schedule;
use self::histogram::{lock, RouteLatencies};
use crate::budget::RetryBudget;
use crate::config::{HedgeConfig, HedgeDelays};
use crate::error::ConfigError;
use crate::policy::{eligible, RetryMethods};

/// A request extension naming the request's route for percentile hedging
/// (e.g. the path template `GET /users/{id}`), so latencies of one route
/// are pooled. Without it the route is `METHOD path`; the first 1 024
/// routes are tracked apart, later ones share one histogram.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteKey(pub Arc<str>);

impl RouteKey {
    /// A route key.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        RouteKey(key.into())
    }
}

/// Hedges slow idempotent requests; see the [module docs](self).
#[derive(Clone)]
pub struct HedgeLayer {
    shared: Arc<Shared>,
}

#[derive(Clone)]
pub(crate) enum Delays {
    Fixed(Arc<[Duration]>),
    Percentile {
        percentile: f64,
        min_delay: Duration,
        max_delay: Duration,
        min_samples: u32,
        max_attempts: u32,
    },
}

#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) delays: Delays,
    pub(crate) classifier: Classifier,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) min_attempt_time: Duration,
    latencies: Option<Arc<RouteLatencies>>,
    window: Duration,
}

impl fmt::Debug for HedgeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &*self.shared;
        let mut d = f.debug_struct("HedgeLayer");
        match &s.delays {
            Delays::Fixed(list) => d.field("delays", list),
            Delays::Percentile {
                percentile,
                min_delay,
                max_delay,
                min_samples,
                max_attempts,
            } => d
                .field("percentile", percentile)
                .field("min_delay", min_delay)
                .field("max_delay", max_delay)
                .field("min_samples", min_samples)
                .field("max_attempts", max_attempts),
        };
        d.field("budget", &s.budget)
            .field("min_attempt_time", &s.min_attempt_time)
            .finish()
    }
}

fn default_budget() -> RetryBudget {
    let c = HedgeConfig::default();
    RetryBudget::new(c.budget_window, c.budget_min_per_sec, c.budget_ratio).unwrap_or_default()
}

impl HedgeLayer {
    fn with_delays(delays: Delays, window: Duration) -> Self {
        let latencies = matches!(delays, Delays::Percentile { .. })
            .then(|| Arc::new(RouteLatencies::new(window)));
        HedgeLayer {
            shared: Arc::new(Shared {
                delays,
                classifier: Classifier::default(),
                budget: Some(default_budget()),
                min_attempt_time: Duration::from_millis(5),
                latencies,
                window,
            }),
        }
    }

    /// Attempt `k + 1` starts `delays[k - 1]` after the call started (so
    /// `[50ms, 100ms]` means up to three attempts, at 0, 50 and 100 ms).
    pub fn fixed(delays: impl IntoIterator<Item = Duration>) -> Self {
        let delays: Arc<[Duration]> = delays.into_iter().collect();
        Self::with_delays(Delays::Fixed(delays), Duration::from_secs(300))
    }

    /// Hedge at the `percentile` (e.g. 0.95) of the route's recent latencies:
    /// attempt `k + 1` starts at `k · p`, `p` clamped to 50 ms ..= 10 s, up to
    /// 2 attempts, once the route has 20 samples within the last 5 minutes
    /// (change with the builder methods below).
    pub fn percentile(percentile: f64) -> Self {
        let c = HedgeConfig::default();
        let p = if percentile.is_finite() {
            percentile.clamp(0.0, 1.0)
        } else {
            0.95
        };
        Self::with_delays(
            Delays::Percentile {
                percentile: p,
                min_delay: c.min_delay,
                max_delay: c.max_delay,
                min_samples: c.min_samples,
                max_attempts: c.max_attempts,
            },
            c.window,
        )
    }

    /// A layer from a `[hedge]` config section; out-of-range values are
    /// refused with the key at fault.
    pub fn from_config(config: &HedgeConfig) -> Result<Self, ConfigError> {
        let budget = RetryBudget::new(
            config.budget_window,
            config.budget_min_per_sec,
            config.budget_ratio,
        )?;
        let layer = match config.hedge_delays() {
            HedgeDelays::Fixed(list) => Self::fixed(list),
            HedgeDelays::Percentile {
                percentile,
                min_delay,
                max_delay,
                window,
                min_samples,
                max_attempts,
            } => {
                if !(percentile > 0.0 && percentile < 1.0) {
                    return Err(ConfigError::new(
                        "percentile",
                        format!("must be between 0 and 1 (exclusive), got {percentile}"),
                    ));
                }
                if min_delay > max_delay {
                    return Err(ConfigError::new(
                        "min_delay",
                        "must not be greater than max_delay",
                    ));
                }
                if window < Duration::from_millis(2) {
                    return Err(ConfigError::new("window", "must be at least 2ms"));
                }
                Self::percentile(percentile)
                    .min_delay(min_delay)
                    .max_delay(max_delay)
                    .window(window)
                    .min_samples(min_samples)
                    .max_attempts(max_attempts)
            }
        };
        Ok(layer.budget(budget))
    }

    fn edit(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        f(Arc::make_mut(&mut self.shared));
        self
    }

    fn edit_percentile(
        self,
        f: impl FnOnce(&mut Duration, &mut Duration, &mut u32, &mut u32),
    ) -> Self {
        self.edit(|s| {
            if let Delays::Percentile {
                min_delay,
                max_delay,
                min_samples,
                max_attempts,
                ..
            } = &mut s.delays
            {
                f(min_delay, max_delay, min_samples, max_attempts);
            }
        })
    }

    /// Percentile mode: the least hedge delay (default 50 ms).
    pub fn min_delay(self, d: Duration) -> Self {
        self.edit_percentile(|min, _, _, _| *min = d)
    }

    /// Percentile mode: the greatest hedge delay (default 10 s).
    pub fn max_delay(self, d: Duration) -> Self {
        self.edit_percentile(|_, max, _, _| *max = d)
    }

    /// Percentile mode: samples a route needs before it is hedged
    /// (default 20).
    pub fn min_samples(self, n: u32) -> Self {
        self.edit_percentile(|_, _, s, _| *s = n)
    }

    /// Percentile mode: attempts in all, counting the first (default 2).
    pub fn max_attempts(self, n: u32) -> Self {
        self.edit_percentile(|_, _, _, m| *m = n.max(1))
    }

    /// Percentile mode: how long latencies are remembered (default 5 min;
    /// it resets what was recorded).
    pub fn window(self, window: Duration) -> Self {
        self.edit(|s| {
            s.window = window;
            if s.latencies.is_some() {
                s.latencies = Some(Arc::new(RouteLatencies::new(window)));
            }
        })
    }

    /// The hedge budget (clones share tokens).
    pub fn budget(self, budget: RetryBudget) -> Self {
        self.edit(|s| s.budget = Some(budget))
    }

    /// No budget: hedges are bounded by the number of delays only.
    pub fn no_budget(self) -> Self {
        self.edit(|s| s.budget = None)
    }

    /// The failure classifier deciding which responses are acceptable.
    pub fn classifier(self, classifier: Classifier) -> Self {
        self.edit(|s| s.classifier = classifier)
    }

    /// Do not start a hedge with less than `min` left before the deadline
    /// (default 5 ms).
    pub fn min_attempt_time(self, min: Duration) -> Self {
        self.edit(|s| s.min_attempt_time = min)
    }

    /// The budget in use, if any.
    pub fn hedge_budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }
}

impl<S> Layer<S> for HedgeLayer {
    type Service = Hedge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`HedgeLayer`] produces.
#[derive(Clone)]
pub struct Hedge<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for Hedge<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge").field("inner", &self.inner).finish()
    }
}

impl<S> Hedge<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, by value.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<Request<B>> for Hedge<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: TryCloneBody,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = HedgeFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = &self.shared;
        if let Some(budget) = &shared.budget {
            budget.deposit();
        }
        let route = shared.latencies.as_ref().map(|l| l.route(&req));
        let schedule = match &shared.delays {
            Delays::Fixed(list) if !list.is_empty() => Some(Schedule::Fixed(list.clone())),
            Delays::Fixed(_) => None,
            Delays::Percentile {
                percentile,
                min_delay,
                max_delay,
                min_samples,
                max_attempts,
            } => route
                .as_ref()
                .and_then(|r| lock(r).percentile(*percentile, *min_samples))
                .filter(|_| *max_attempts > 1)
                .map(|p| Schedule::Every {
                    delay: p.clamp(*min_delay, (*max_delay).max(*min_delay)),
                    max_attempts: *max_attempts,
                }),
        };
        let replay = match schedule {
            Some(schedule) => match eligible(&req, RetryMethods::Idempotent) {
                Ok(()) => try_clone_request(&req).map(|t| (schedule, self.inner.clone(), t)),
                Err(why) => {
                    tracing::trace!(reason = why.as_str(), "not hedged");
                    None
                }
            },
            None => None,
        };
        let deadline = effective_deadline(&req);
        let start = Instant::now();
        let future = self.inner.call(req);
        HedgeFuture::new(self.shared.clone(), future, replay, route, deadline, start)
    }
}
