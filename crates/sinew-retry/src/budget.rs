//! The retry budget: retries may add at most a fraction of the original
//! traffic, plus a small floor per second (Finagle's `RetryBudget`).
//!
//! Every original request [deposits](RetryBudget::deposit) `ratio` of a token;
//! every retry (or hedge) [withdraws](RetryBudget::try_withdraw) one whole
//! token. Deposits and withdrawals count for `window` (default 10 s, kept in
//! 10 buckets of tokio time, so the window slides and tests can pause time).
//! A reserve of `min_per_sec · window` tokens lets a client that sends little
//! traffic still retry.
//!
//! Over any window, then, the retries granted are at most
//! `ratio · requests + min_per_sec · window` (plus the deposits of at most one
//! bucket that expire while the window slides).
//!
//! Tokens are fixed-point integers with 10⁹ units per retry, so a ratio of
//! 0.1 %, 0.005 % or 0.3 is honoured exactly (tower's `TpsBudget` rounds
//! `1 / ratio` down to an integer, so 0.3 grants one retry in 3 and tiny
//! ratios drift).
//!
//! The budget is lock-free and cheap on the path every request takes: a
//! deposit is one atomic increment, and only every eighth deposit reads the
//! clock to move the pending deposits into the current bucket (a withdrawal
//! moves them first, so it always sees every deposit). Pending deposits are
//! thus dated at most seven deposits late, which can only keep up to
//! `7 · ratio` tokens alive a little longer. A withdrawal adds, checks the
//! balance and gives the token back if the balance went negative, so
//! concurrent withdrawals can never overdraw the budget (at worst two racing
//! for the last token both lose).
//!
//! ```
//! use std::time::Duration;
//! use sinew_retry::RetryBudget;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // 0.5 % of the traffic, no floor.
//! let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.005).unwrap();
//! for _ in 0..1000 {
//!     budget.deposit();
//! }
//! let granted = (0..100).filter(|_| budget.try_withdraw()).count();
//! assert_eq!(granted, 5);
//! # }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ConfigError;

/// Units per whole retry token.
const SCALE: i64 = 1_000_000_000;
/// Buckets per window.
const BUCKETS: u64 = 10;
/// Marks a bucket being reset.
const ROTATING: u64 = u64::MAX;
/// Deposits between two clock reads.
const FLUSH_EVERY: u64 = 8;
/// The largest accepted ratio (Finagle accepts 0..=1000; we accept 0..=100 so
/// a bucket cannot overflow under any realistic load).
pub const MAX_RATIO: f64 = 100.0;

/// A retry budget shared by every clone (clones share the same tokens).
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    start: Instant,
    bucket_nanos: u64,
    slots: [Slot; BUCKETS as usize],
    /// Deposits not yet dated into a bucket.
    pending: AtomicU64,
    deposit: i64,
    reserve: i64,
    window: Duration,
    ratio: f64,
    min_per_sec: u32,
}

#[derive(Default)]
struct Slot {
    epoch: AtomicU64,
    value: AtomicI64,
}

impl Default for RetryBudget {
    /// 20 % of the traffic plus 10 retries a second over 10 s (Finagle's
    /// defaults).
    fn default() -> Self {
        Self::build(Duration::from_secs(10), 10, 0.2)
    }
}

impl RetryBudget {
    /// A budget over `window` (at least 100 ms, at most one hour) granting
    /// `ratio` retries per request (`0.0..=100.0`) plus `min_per_sec`
    /// retries per second.
    pub fn new(window: Duration, min_per_sec: u32, ratio: f64) -> Result<Self, ConfigError> {
        if !(ratio.is_finite() && (0.0..=MAX_RATIO).contains(&ratio)) {
            return Err(ConfigError::new(
                "budget_ratio",
                format!("must be a number from 0 to {MAX_RATIO}, got {ratio}"),
            ));
        }
        if window < Duration::from_millis(100) || window > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "budget_window",
                format!("must be between 100ms and 1h, got {window:?}"),
            ));
        }
        Ok(Self::build(window, min_per_sec, ratio))
    }

    fn build(window: Duration, min_per_sec: u32, ratio: f64) -> Self {
        let deposit = (ratio * SCALE as f64).round() as i64;
        let reserve_tokens = f64::from(min_per_sec) * window.as_secs_f64();
        let reserve = (reserve_tokens * SCALE as f64)
            .round()
            .min(i64::MAX as f64 / 4.0) as i64;
        let bucket_nanos = u64::try_from(window.as_nanos() / u128::from(BUCKETS))
            .unwrap_or(u64::MAX)
            .max(1);
        RetryBudget {
            inner: Arc::new(Inner {
                start: Instant::now(),
                bucket_nanos,
                slots: Default::default(),
                pending: AtomicU64::new(0),
                deposit,
                reserve,
                window,
                ratio,
                min_per_sec,
            }),
        }
    }

    /// The window deposits and withdrawals count for.
    pub fn window(&self) -> Duration {
        self.inner.window
    }

    /// Retries granted per original request.
    pub fn ratio(&self) -> f64 {
        self.inner.ratio
    }

    /// The floor, in retries per second.
    pub fn min_per_sec(&self) -> u32 {
        self.inner.min_per_sec
    }

    /// Record one original request.
    #[inline]
    pub fn deposit(&self) {
        let inner = &*self.inner;
        if inner.deposit == 0 {
            return;
        }
        let n = inner.pending.fetch_add(1, Ordering::AcqRel) + 1;
        if n.is_multiple_of(FLUSH_EVERY) {
            inner.flush(inner.epoch_now());
        }
    }

    /// Take one retry token; `false` when the budget is spent.
    pub fn try_withdraw(&self) -> bool {
        let inner = &*self.inner;
        let epoch = inner.epoch_now();
        inner.flush(epoch);
        inner.add(epoch, -SCALE);
        if inner.reserve.saturating_add(inner.sum(epoch)) >= 0 {
            true
        } else {
            inner.add(epoch, SCALE);
            false
        }
    }

    /// The whole retries available now.
    pub fn available(&self) -> u64 {
        let inner = &*self.inner;
        let epoch = inner.epoch_now();
        inner.flush(epoch);
        let balance = inner.reserve.saturating_add(inner.sum(epoch)).max(0);
        (balance / SCALE) as u64
    }
}

impl Inner {
    /// The number of the current bucket, counting from 1.
    fn epoch_now(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.start);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        (nanos / self.bucket_nanos).saturating_add(1)
    }

    /// Date the pending deposits into `epoch`'s bucket.
    fn flush(&self, epoch: u64) {
        let n = self.pending.swap(0, Ordering::AcqRel);
        if n != 0 {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            self.add(epoch, n.saturating_mul(self.deposit));
        }
    }

    fn add(&self, epoch: u64, amount: i64) {
        let slot = &self.slots[(epoch % BUCKETS) as usize];
        loop {
            let current = slot.epoch.load(Ordering::Acquire);
            if current == ROTATING {
                std::hint::spin_loop();
                continue;
            }
            if current >= epoch {
                // The current bucket (or, when another thread read the clock
                // a moment later, the next one): add to it.
                slot.value.fetch_add(amount, Ordering::AcqRel);
                return;
            }
            // A stale bucket: reset it for this epoch. Only the winner of the
            // exchange resets; the others wait for the two stores below.
            if slot
                .epoch
                .compare_exchange(current, ROTATING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.value.store(amount, Ordering::Release);
                slot.epoch.store(epoch, Ordering::Release);
                return;
            }
        }
    }

    /// The sum of the buckets inside the window ending at `epoch`.
    fn sum(&self, epoch: u64) -> i64 {
        self.slots
            .iter()
            .filter_map(|slot| {
                let e = slot.epoch.load(Ordering::Acquire);
                let live = e != ROTATING && e != 0 && e <= epoch && epoch - e < BUCKETS;
                live.then(|| slot.value.load(Ordering::Acquire))
            })
            .fold(0i64, i64::saturating_add)
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("window", &self.inner.window)
            .field("ratio", &self.inner.ratio)
            .field("min_per_sec", &self.inner.min_per_sec)
            .field("available", &self.available())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(b: &RetryBudget) -> usize {
        let mut n = 0;
        while b.try_withdraw() {
            n += 1;
            assert!(n < 10_000_000, "budget never ran out");
        }
        n
    }

    #[tokio::test(start_paused = true)]
    async fn default_is_twenty_percent_plus_floor() {
        let b = RetryBudget::default();
        // Floor: 10/s over 10 s.
        assert_eq!(b.available(), 100);
        for _ in 0..1000 {
            b.deposit();
        }
        assert_eq!(b.available(), 300);
        assert_eq!(drain(&b), 300);
        assert!(!b.try_withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_percents_are_exact() {
        for (ratio, deposits, expected) in [
            (0.005, 1000, 5),    // 0.5 %
            (0.001, 10_000, 10), // 0.1 %
            (0.0015, 2000, 3),   // 0.15 %
            (0.00005, 100_000, 5),
            (0.3, 1000, 300), // tower's TpsBudget grants 333 here
            (0.07, 100, 7),
        ] {
            let b = RetryBudget::new(Duration::from_secs(10), 0, ratio).unwrap();
            for _ in 0..deposits {
                b.deposit();
            }
            assert_eq!(drain(&b), expected, "ratio {ratio}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_and_withdrawals_expire_with_the_window() {
        let b = RetryBudget::new(Duration::from_secs(10), 0, 0.5).unwrap();
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(drain(&b), 5);
        // Still inside the window: nothing new.
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!b.try_withdraw());
        // The first bucket has slid out: deposits and withdrawals with it.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.available(), 0);
        for _ in 0..4 {
            b.deposit();
        }
        assert_eq!(drain(&b), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_comes_back_as_retries_expire() {
        let b = RetryBudget::new(Duration::from_secs(1), 10, 0.0).unwrap();
        assert_eq!(drain(&b), 10);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(!b.try_withdraw());
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(drain(&b), 10);
        // Sliding: withdrawals spread over buckets come back bucket by bucket.
        tokio::time::advance(Duration::from_millis(1000)).await;
        for _ in 0..5 {
            assert!(b.try_withdraw());
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        for _ in 0..5 {
            assert!(b.try_withdraw());
        }
        assert!(!b.try_withdraw());
        tokio::time::advance(Duration::from_millis(500)).await;
        // The first five expired, the last five not yet.
        assert_eq!(drain(&b), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_are_dated_at_most_seven_late() {
        let b = RetryBudget::new(Duration::from_secs(1), 0, 0.5).unwrap();
        // Eight deposits: the eighth dates all of them now.
        for _ in 0..8 {
            b.deposit();
        }
        // Three more stay pending until the clock is next read.
        for _ in 0..3 {
            b.deposit();
        }
        tokio::time::advance(Duration::from_millis(950)).await;
        // Read at 950 ms: the three are dated now, the eight are still live.
        assert_eq!(b.available(), 5);
        tokio::time::advance(Duration::from_millis(50)).await;
        // The eight expired with their bucket; the three live on.
        assert_eq!(b.available(), 1);
        tokio::time::advance(Duration::from_millis(950)).await;
        assert_eq!(b.available(), 0);
    }

    #[test]
    fn rejects_bad_config() {
        assert!(RetryBudget::new(Duration::from_secs(10), 10, -0.1).is_err());
        assert!(RetryBudget::new(Duration::from_secs(10), 10, f64::NAN).is_err());
        assert!(RetryBudget::new(Duration::from_secs(10), 10, 1000.0).is_err());
        assert!(RetryBudget::new(Duration::from_millis(10), 10, 0.2).is_err());
        let e = RetryBudget::new(Duration::from_secs(10), 10, 2e9).unwrap_err();
        assert!(e.to_string().contains("budget_ratio"), "{e}");
    }

    #[test]
    fn concurrent_withdrawals_never_overdraw() {
        let b = RetryBudget::new(Duration::from_secs(60), 0, 0.25).unwrap();
        for _ in 0..4000 {
            b.deposit();
        }
        let granted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let b = b.clone();
                    s.spawn(move || (0..1000).filter(|_| b.try_withdraw()).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert!(granted <= 1000, "{granted}");
        // Racing losers may give a token back late; what is left is granted now.
        assert_eq!(granted + drain(&b), 1000);
    }

    proptest! {
        #[test]
        fn grants_exactly_ratio_times_deposits_plus_floor(
            ratio in 0.0f64..2.0,
            deposits in 0usize..3000,
            min_per_sec in 0u32..20,
            window_s in 1u64..30,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(async {
                let b = RetryBudget::new(Duration::from_secs(window_s), min_per_sec, ratio).unwrap();
                for _ in 0..deposits {
                    b.deposit();
                }
                let unit = (ratio * 1e9).round() as i128;
                let expected = (unit * deposits as i128
                    + i128::from(min_per_sec) * i128::from(window_s) * 1_000_000_000)
                    / 1_000_000_000;
                let granted = drain(&b) as i128;
                prop_assert_eq!(granted, expected);
                // …and never more than ratio·requests + floor (up to the
                // rounding of one unit per deposit).
                let bound = ratio * deposits as f64 + f64::from(min_per_sec) * window_s as f64;
                prop_assert!(granted as f64 <= bound + deposits as f64 * 1e-9 + 1e-6);
                Ok(())
            })?;
        }
    }
}
