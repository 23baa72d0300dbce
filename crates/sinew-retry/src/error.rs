//! The errors and markers of the retry and hedge layers.

use std::fmt;

pub use sinew_core::error::{BoxError, DeadlineExceeded};

/// Put in a response's extensions when the retry layer returned it because
/// the retry budget was spent (the response is the last failure as it came).
///
/// ```
/// # use sinew_retry::RetryBudgetExhausted;
/// # let response = http::Response::new(());
/// if let Some(marker) = response.extensions().get::<RetryBudgetExhausted>() {
///     eprintln!("gave up after {} attempt(s): retry budget spent", marker.attempts());
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudgetExhausted {
    attempts: u32,
}

impl RetryBudgetExhausted {
    pub(crate) fn new(attempts: u32) -> Self {
        Self { attempts }
    }

    /// The attempts made before the budget stopped the retries.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

impl fmt::Display for RetryBudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retry budget exhausted after {} attempt(s)",
            self.attempts
        )
    }
}

/// The retry budget was spent after an error: the error is kept as the
/// [`source`](std::error::Error::source), so the shared classifier still sees
/// what failed (`failure_kind_of` walks the chain).
#[derive(Debug)]
pub struct RetryBudgetExhaustedError {
    marker: RetryBudgetExhausted,
    source: BoxError,
}

impl RetryBudgetExhaustedError {
    pub(crate) fn new(attempts: u32, source: BoxError) -> Self {
        Self {
            marker: RetryBudgetExhausted::new(attempts),
            source,
        }
    }

    /// The attempts made before the budget stopped the retries.
    pub fn attempts(&self) -> u32 {
        self.marker.attempts
    }

    /// The last attempt's error.
    pub fn last_error(&self) -> &BoxError {
        &self.source
    }

    /// The last attempt's error, by value.
    pub fn into_last_error(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for RetryBudgetExhaustedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.marker, self.source)
    }
}

impl std::error::Error for RetryBudgetExhaustedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// A configuration value was out of range; says which key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    key: &'static str,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: &'static str, reason: impl Into<String>) -> Self {
        Self {
            key,
            reason: reason.into(),
        }
    }

    /// The config key at fault (as written in the config file).
    pub fn key(&self) -> &'static str {
        self.key
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}
