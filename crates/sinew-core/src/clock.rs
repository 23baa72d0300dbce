//! Wall-clock time behind a trait, so tests and the CLI can fix "now".
//!
//! Monotonic time (timeouts, backoff, windows) comes from [`tokio::time`] so
//! tests can pause it; wall-clock time (signature `created`, `expires`,
//! absolute deadlines from peers) comes through a [`Clock`].

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// The current time in whole seconds since the Unix epoch (0 before it).
    fn unix_seconds(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that says what it is told; cloning shares the time.
///
/// ```
/// use sinew_core::{Clock, FixedClock};
/// let clock = FixedClock::at_unix(1_618_884_473);
/// assert_eq!(clock.unix_seconds(), 1_618_884_473);
/// clock.advance(std::time::Duration::from_secs(2));
/// assert_eq!(clock.unix_seconds(), 1_618_884_475);
/// ```
#[derive(Debug, Clone, Default)]
pub struct FixedClock {
    micros: Arc<AtomicU64>,
}

impl FixedClock {
    /// A clock fixed at `secs` seconds after the Unix epoch.
    pub fn at_unix(secs: u64) -> Self {
        Self {
            micros: Arc::new(AtomicU64::new(secs.saturating_mul(1_000_000))),
        }
    }

    /// Set the time to `secs` seconds after the Unix epoch.
    pub fn set_unix(&self, secs: u64) {
        self.micros
            .store(secs.saturating_mul(1_000_000), Ordering::SeqCst);
    }

    /// Move the clock forward.
    pub fn advance(&self, by: Duration) {
        let micros = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.micros.load(Ordering::SeqCst))
    }
}
