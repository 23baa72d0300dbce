//! [`CircuitBreakerLayer`] and its [`CircuitBreakerHandle`].

use std::sync::Arc;

use http::{HeaderMap, Method, Uri};
use tower::Layer;

use crate::config::{BreakerConfig, ConfigError};
use crate::service::CircuitBreaker;
use crate::state::{report, Manual, Registry, State};

/// A function from a request's method, URI and headers to its breaker key.
pub type KeyFn = Arc<dyn Fn(&Method, &Uri, &HeaderMap) -> String + Send + Sync>;

/// Adds a circuit breaker per key (by default per endpoint: the request's
/// authority) to a service. Clones share the breakers.
#[derive(Clone)]
pub struct CircuitBreakerLayer {
    pub(crate) registry: Arc<Registry>,
    pub(crate) key_fn: Option<KeyFn>,
}

impl std::fmt::Debug for CircuitBreakerLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("config", self.registry.config())
            .field("custom_key", &self.key_fn.is_some())
            .finish()
    }
}

impl CircuitBreakerLayer {
    /// A layer with the default configuration (5 consecutive failures, 30 s
    /// open, one probe).
    pub fn new() -> Self {
        CircuitBreakerLayer {
            registry: Arc::new(Registry::new(BreakerConfig::default(), None)),
            key_fn: None,
        }
    }

    /// A layer with `config`, checked first.
    pub fn from_config(config: BreakerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(CircuitBreakerLayer {
            registry: Arc::new(Registry::new(config, None)),
            key_fn: None,
        })
    }

    /// Seed the jitter of the open durations (for tests).
    pub fn seed(self, seed: u64) -> Self {
        let config = self.registry.config().clone();
        CircuitBreakerLayer {
            registry: Arc::new(Registry::new(config, Some(seed))),
            key_fn: self.key_fn,
        }
    }

    /// Count failures with `classifier` (the one the rest of the stack uses;
    /// the sinew facade calls this with the client's classifier). When it
    /// differs from the current one the breakers start afresh: take
    /// [`handle`](Self::handle) after this call.
    pub fn classifier(self, classifier: sinew_core::Classifier) -> Self {
        if self.registry.config().classifier == classifier {
            return self;
        }
        let config = BreakerConfig {
            classifier,
            ..self.registry.config().clone()
        };
        CircuitBreakerLayer {
            registry: Arc::new(Registry::new(config, None)),
            key_fn: self.key_fn,
        }
    }

    /// The settings this layer was built with.
    pub fn config(&self) -> &BreakerConfig {
        self.registry.config()
    }

    /// Key breakers with `f` instead of the request's authority.
    pub fn key_fn(
        mut self,
        f: impl Fn(&Method, &Uri, &HeaderMap) -> String + Send + Sync + 'static,
    ) -> Self {
        self.key_fn = Some(Arc::new(f));
        self
    }

    /// A handle to observe and control the breakers.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle {
            registry: self.registry.clone(),
        }
    }
}

impl Default for CircuitBreakerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> CircuitBreaker<S> {
        CircuitBreaker::new(inner, self.clone())
    }
}

/// Observe and control the breakers of a layer (and its services).
#[derive(Debug, Clone)]
pub struct CircuitBreakerHandle {
    registry: Arc<Registry>,
}

impl CircuitBreakerHandle {
    /// The state of `key`'s breaker; `None` when the key was never seen (or
    /// was dropped as idle).
    pub fn state(&self, key: &str) -> Option<State> {
        self.registry
            .find(key)
            .map(|b| b.state(tokio::time::Instant::now()))
    }

    /// Whether a call to `key` would be refused now: open and still
    /// waiting, forced open, or half-open with every probe slot taken. A
    /// balancer asks this to skip such endpoints; a closed breaker answers
    /// without taking its lock.
    pub fn refuses(&self, key: &str) -> bool {
        self.registry.refuses(key, tokio::time::Instant::now())
    }

    /// Refuse every call to `key` until [`reset`](Self::reset).
    pub fn force_open(&self, key: &str) {
        self.manual(key, Manual::ForceOpen)
    }

    /// Let every call to `key` through, and never trip, until
    /// [`reset`](Self::reset).
    pub fn force_closed(&self, key: &str) {
        self.manual(key, Manual::ForceClosed)
    }

    /// Back to closed, with its counts cleared.
    pub fn reset(&self, key: &str) {
        self.manual(key, Manual::Reset)
    }

    /// How many keys have a breaker.
    pub fn keys(&self) -> usize {
        self.registry.len()
    }

    fn manual(&self, key: &str, what: Manual) {
        let breaker = self.registry.get(key, tokio::time::Instant::now());
        let t = breaker.force(what.forced());
        report(key, t);
    }
}
