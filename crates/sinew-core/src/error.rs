//! Error types shared by several layers.
//!
//! Each layer has errors of its own; the ones here cross layer boundaries
//! (a retry layer must recognise a circuit-open rejection from below, metrics
//! must label a deadline), so they live in the shared vocabulary and every
//! layer re-exports the ones it returns.

use std::fmt;
use std::time::Duration;

/// The boxed error type sinew services return, as tower does.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The call's deadline passed (or too little of it was left to start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadlineExceeded {
    _priv: (),
}

impl DeadlineExceeded {
    /// A new `DeadlineExceeded`.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// A circuit breaker refused the call without sending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    key: String,
    retry_after: Option<Duration>,
}

impl CircuitOpen {
    /// A refusal by the breaker for `key`, which will next let a probe
    /// through after `retry_after` (unknown when `None`, e.g. forced open).
    pub fn new(key: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self {
            key: key.into(),
            retry_after,
        }
    }

    /// The breaker's key (by default the endpoint's authority).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// How long until the breaker lets a probe through, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit open for {}", self.key)?;
        if let Some(d) = self.retry_after {
            write!(f, " (next probe in {} ms)", d.as_millis())?;
        }
        Ok(())
    }
}

impl std::error::Error for CircuitOpen {}

/// No endpoint was available to send the call to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoEndpoints {
    _priv: (),
}

impl NoEndpoints {
    /// A new `NoEndpoints`.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Display for NoEndpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no endpoints available")
    }
}

impl std::error::Error for NoEndpoints {}

/// Find an error of type `E` anywhere in `error`'s `source()` chain.
///
/// ```
/// use sinew_core::error::{find_source, DeadlineExceeded, BoxError};
/// let err: BoxError = Box::new(DeadlineExceeded::new());
/// assert!(find_source::<DeadlineExceeded>(&*err).is_some());
/// ```
pub fn find_source<'a, E: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}
