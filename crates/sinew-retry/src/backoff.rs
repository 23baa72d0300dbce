//! Backoff curves: how long to wait before each retry.
//!
//! Four curves, each with a cap on a single delay ([`Backoff::max_delay`]):
//!
//! * [`Backoff::decorrelated`] (the default): Polly v8's "decorrelated jitter
//!   v2" curve (`DecorrelatedJitterBackoffV2`), implemented faithfully. Its
//!   median delay before retry `n` (0-based) is close to `base · 2^n`, the
//!   delays are spread without the spikes of AWS's formula, and successive
//!   delays are decorrelated.
//! * [`Backoff::exponential`]: `base · 2^n`, capped, then jittered
//!   ([`Jitter::Full`]: uniform in `[0, d)`; [`Jitter::Equal`]: `d/2` plus
//!   uniform in `[0, d/2)`; [`Jitter::None`]).
//! * [`Backoff::linear`]: aio-request's `linear_delays`: `base · n` for retry
//!   `n` (1-based) `± 20 %` (the jitter ratio is configurable).
//! * [`Backoff::constant`]: the same delay every time.
//!
//! PyFly's client retries after `base_delay · 2^i`: that is
//! `Backoff::exponential(base).jitter(Jitter::None)`.
//!
//! Randomness is a source of uniform numbers in `[0, 1)`:
//! [`Backoff::delays`] takes a seed (the same seed gives the same schedule,
//! for tests), [`Backoff::next_delay`] any `FnMut() -> f64`. No random
//! number crate appears in this API.
//!
//! ```
//! use std::time::Duration;
//! use sinew_retry::backoff::{Backoff, Jitter};
//!
//! let linear = Backoff::linear(Duration::from_millis(50));
//! let delays: Vec<Duration> = linear.delays(7).take(3).collect();
//! // Retry n waits 50 ms · n, ± 20 %.
//! for (n, d) in delays.iter().enumerate() {
//!     let nominal = 0.05 * (n + 1) as f64;
//!     assert!(d.as_secs_f64() >= nominal * 0.8 - 1e-9 && d.as_secs_f64() <= nominal * 1.2 + 1e-9);
//! }
//!
//! let exact = Backoff::exponential(Duration::from_millis(100))
//!     .jitter(Jitter::None)
//!     .max_delay(Duration::from_millis(500));
//! let delays: Vec<u128> = exact.delays(7).take(5).map(|d| d.as_millis()).collect();
//! assert_eq!(delays, [100, 200, 400, 500, 500]);
//! ```

use std::fmt;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// The shape of a backoff curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum BackoffKind {
    /// Polly v8 decorrelated jitter ("v2"); the default.
    #[default]
    Decorrelated,
    /// `base · 2^n` with a [`Jitter`].
    Exponential,
    /// `base · n ± jitter` (aio-request).
    Linear,
    /// The same delay every time.
    Constant,
}

impl BackoffKind {
    /// The name used in config files.
    pub fn as_str(&self) -> &'static str {
        match self {
            BackoffKind::Decorrelated => "decorrelated",
            BackoffKind::Exponential => "exponential",
            BackoffKind::Linear => "linear",
            BackoffKind::Constant => "constant",
        }
    }
}

impl fmt::Display for BackoffKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an exponential delay is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Jitter {
    /// Uniform in `[0, d)` ("full jitter"); the default.
    #[default]
    Full,
    /// `d/2` plus uniform in `[0, d/2)` ("equal jitter").
    Equal,
    /// No randomness.
    None,
}

/// A backoff curve with a cap on each delay. Cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    kind: BackoffKind,
    base: Duration,
    max_delay: Duration,
    jitter: Jitter,
    linear_jitter: f64,
}

/// The default cap on one delay.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(2);
/// The default base delay.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(50);
/// aio-request's linear jitter ratio (± 20 %).
pub const AIO_REQUEST_LINEAR_JITTER: f64 = 0.2;

impl Default for Backoff {
    /// Decorrelated jitter with a 50 ms base and a 2 s cap.
    fn default() -> Self {
        Backoff::decorrelated(DEFAULT_BASE_DELAY)
    }
}

impl Backoff {
    /// A curve of `kind` with base delay `base` and the defaults for the rest
    /// (cap 2 s, full jitter for exponential, ± 20 % for linear).
    pub fn new(kind: BackoffKind, base: Duration) -> Self {
        Backoff {
            kind,
            base,
            max_delay: DEFAULT_MAX_DELAY,
            jitter: Jitter::Full,
            linear_jitter: AIO_REQUEST_LINEAR_JITTER,
        }
    }

    /// Polly v8's decorrelated jitter v2, whose median first delay is about
    /// `base`.
    pub fn decorrelated(base: Duration) -> Self {
        Self::new(BackoffKind::Decorrelated, base)
    }

    /// `base · 2^n` for retry `n` (0-based), capped, with full jitter unless
    /// changed with [`Backoff::jitter`].
    pub fn exponential(base: Duration) -> Self {
        Self::new(BackoffKind::Exponential, base)
    }

    /// `base · n` for retry `n` (1-based) `± 20 %`, as aio-request's
    /// `linear_delays` (whose default `base` is 50 ms).
    pub fn linear(base: Duration) -> Self {
        Self::new(BackoffKind::Linear, base)
    }

    /// The same delay before every retry.
    pub fn constant(delay: Duration) -> Self {
        Self::new(BackoffKind::Constant, delay)
    }

    /// Cap each delay at `max` (default 2 s).
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// The jitter of the exponential curve (ignored by the others).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The jitter ratio of the linear curve (default 0.2, i.e. ± 20 %;
    /// clamped to `0..=1`; ignored by the others).
    pub fn linear_jitter(mut self, ratio: f64) -> Self {
        self.linear_jitter = if ratio.is_finite() {
            ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The curve's kind.
    pub fn kind(&self) -> BackoffKind {
        self.kind
    }

    /// The base delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The cap on one delay.
    pub fn cap(&self) -> Duration {
        self.max_delay
    }

    /// The delays before retry 1, 2, 3, … (an endless iterator), with
    /// jitter drawn from a generator seeded with `seed`.
    pub fn delays(&self, seed: u64) -> Delays {
        Delays {
            backoff: *self,
            state: BackoffState::default(),
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// The delay before the next retry, advancing `state`; `uniform` yields
    /// numbers uniform in `[0, 1)` for the jitter.
    pub fn next_delay(
        &self,
        state: &mut BackoffState,
        mut uniform: impl FnMut() -> f64,
    ) -> Duration {
        let retry = state.retries;
        state.retries = state.retries.saturating_add(1);
        let delay = match self.kind {
            BackoffKind::Decorrelated => {
                decorrelated_jitter_v2(retry, self.base, &mut state.prev, uniform())
            }
            BackoffKind::Exponential => {
                let nominal = exponential(self.base, retry).min(self.max_delay);
                match self.jitter {
                    Jitter::None => nominal,
                    Jitter::Full => nominal.mul_f64(uniform()),
                    Jitter::Equal => {
                        let half = nominal / 2;
                        half + half.mul_f64(uniform())
                    }
                }
            }
            BackoffKind::Linear => {
                let n = f64::from(retry.saturating_add(1));
                let nominal = self.base.as_secs_f64() * n;
                // aio-request: jitter_amount = delay · random() · jitter, with
                // a random sign.
                let mut amount = nominal * uniform() * self.linear_jitter;
                if uniform() < 0.5 {
                    amount = -amount;
                }
                secs_f64(nominal + amount)
            }
            BackoffKind::Constant => self.base,
        };
        delay.min(self.max_delay)
    }
}

/// `base · 2^retry`, saturating.
fn exponential(base: Duration, retry: u32) -> Duration {
    if retry >= 64 {
        return Duration::MAX;
    }
    base.checked_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
        .unwrap_or(Duration::MAX)
}

/// A non-negative, finite duration from seconds (negative or NaN → zero,
/// too large → `Duration::MAX`).
fn secs_f64(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }
}

/// .NET's `TimeSpan.MaxValue.Ticks - 1000`, Polly's upper bound.
const MAX_TICKS_F64: f64 = (i64::MAX - 1000) as f64;

/// Polly v8 `RetryHelper.DecorrelatedJitterBackoffV2`, computed in .NET's
/// 100 ns ticks exactly as Polly does:
///
/// ```text
/// t    = attempt + random()            // attempt is 0-based
/// next = 2^t · tanh(sqrt(4 · t))
/// d    = (next - prev) · (1 / 1.4) · base_ticks,   prev = next
/// ```
///
/// then truncated to whole ticks and bounded by `TimeSpan.MaxValue`.
pub fn decorrelated_jitter_v2(attempt: u32, base: Duration, prev: &mut f64, u: f64) -> Duration {
    const P_FACTOR: f64 = 4.0;
    const RP_SCALING_FACTOR: f64 = 1.0 / 1.4;
    if base.is_zero() {
        return Duration::ZERO;
    }
    let base_ticks = (base.as_nanos() / 100) as f64;
    let t = f64::from(attempt) + u;
    let next = 2f64.powf(t) * (P_FACTOR * t).sqrt().tanh();
    if next.is_infinite() {
        // Polly (since #2163) returns the maximum once the curve overflows.
        *prev = next;
        return Duration::MAX;
    }
    let intrinsic = next - *prev;
    *prev = next;
    let ticks = (intrinsic * RP_SCALING_FACTOR * base_ticks).min(MAX_TICKS_F64);
    if ticks.is_nan() || ticks <= 0.0 {
        return Duration::ZERO;
    }
    // `as` truncates toward zero like C#'s (long) cast.
    let ticks = ticks as u64;
    Duration::from_secs(ticks / 10_000_000) + Duration::from_nanos((ticks % 10_000_000) * 100)
}

/// Per-call state of a backoff curve: how many retries were scheduled and
/// the decorrelated curve's previous value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BackoffState {
    retries: u32,
    prev: f64,
}

impl BackoffState {
    /// A fresh state (before the first retry).
    pub fn new() -> Self {
        Self::default()
    }

    /// How many delays were drawn so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

/// The delays of a [`Backoff`], one per retry; see [`Backoff::delays`].
#[derive(Debug, Clone)]
pub struct Delays {
    backoff: Backoff,
    state: BackoffState,
    rng: SmallRng,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let rng = &mut self.rng;
        Some(
            self.backoff
                .next_delay(&mut self.state, || rng.random::<f64>()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{decorrelated_jitter_v2, exponential, secs_f64};
    use super::{Backoff, BackoffKind, BackoffState, Jitter};
    use proptest::prelude::*;
    use std::time::Duration;

    impl Backoff {
        /// The delays when the uniform source yields `values` in turn.
        fn fixed_delays(&self, values: Vec<f64>) -> impl Iterator<Item = Duration> + '_ {
            let mut state = BackoffState::default();
            let mut i = 0;
            std::iter::from_fn(move || {
                Some(self.next_delay(&mut state, || {
                    let v = values[i % values.len()];
                    i += 1;
                    v
                }))
            })
        }
    }

    /// The delays of `b` when the uniform source yields `values` in turn.
    fn with(b: &Backoff, values: Vec<f64>) -> impl Iterator<Item = Duration> + '_ {
        b.fixed_delays(values)
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    #[test]
    fn decorrelated_matches_pollys_formula_by_hand() {
        // With random() = 0.5 every time, base 1 s:
        // t0 = 0.5: 2^0.5 · tanh(√2)  = 1.256367…  → 1.256367/1.4            = 0.897405 s
        // t1 = 1.5: 2^1.5 · tanh(√6)  = 2.786572…  → (2.786572-1.256367)/1.4 = 1.093004 s
        // t2 = 2.5: 2^2.5 · tanh(√10) = 5.636619…  → (5.636619-2.786572)/1.4 = 2.035748 s
        let f = |t: f64| 2f64.powf(t) * (4.0 * t).sqrt().tanh();
        let expected = [
            f(0.5) / 1.4,
            (f(1.5) - f(0.5)) / 1.4,
            (f(2.5) - f(1.5)) / 1.4,
        ];
        // Hand-checked magnitudes (Polly documents "850ms, 1455ms, 3060ms"
        // as typical values for a 1 s base).
        assert!((expected[0] - 0.897405).abs() < 1e-6, "{}", expected[0]);
        assert!((expected[1] - 1.093004).abs() < 1e-6, "{}", expected[1]);
        assert!((expected[2] - 2.035748).abs() < 1e-6, "{}", expected[2]);
        let backoff = Backoff::decorrelated(Duration::from_secs(1)).max_delay(Duration::MAX);
        let got: Vec<Duration> = with(&backoff, vec![0.5]).take(3).collect();
        for (g, e) in got.iter().zip(expected) {
            // Whole 100 ns ticks, truncated.
            let ticks = (e * 1e7) as u64;
            assert_eq!(*g, Duration::from_nanos(ticks * 100));
        }
    }

    #[test]
    fn decorrelated_is_capped_and_zero_base_is_zero() {
        let b =
            Backoff::decorrelated(Duration::from_secs(1)).max_delay(Duration::from_millis(1500));
        let got: Vec<Duration> = with(&b, vec![0.99]).take(6).collect();
        assert!(got.iter().all(|d| *d <= Duration::from_millis(1500)));
        assert_eq!(got[5], Duration::from_millis(1500));
        let zero = Backoff::decorrelated(Duration::ZERO);
        assert!(with(&zero, vec![0.7]).take(5).all(|d| d.is_zero()));
        // Far out the curve overflows; Polly then returns the maximum.
        let mut prev = 0.0;
        assert_eq!(
            decorrelated_jitter_v2(2000, Duration::from_secs(1), &mut prev, 0.5),
            Duration::MAX
        );
    }

    #[test]
    fn exponential_schedules() {
        let base = Duration::from_millis(100);
        let none: Vec<f64> = Backoff::exponential(base)
            .jitter(Jitter::None)
            .max_delay(Duration::from_secs(1))
            .fixed_delays(vec![0.5])
            .take(6)
            .map(ms)
            .collect();
        assert_eq!(none, [100.0, 200.0, 400.0, 800.0, 1000.0, 1000.0]);
        let full: Vec<f64> = Backoff::exponential(base)
            .fixed_delays(vec![0.25])
            .take(3)
            .map(ms)
            .collect();
        assert_eq!(full, [25.0, 50.0, 100.0]);
        let equal: Vec<f64> = Backoff::exponential(base)
            .jitter(Jitter::Equal)
            .fixed_delays(vec![0.5])
            .take(3)
            .map(ms)
            .collect();
        assert_eq!(equal, [75.0, 150.0, 300.0]);
    }

    #[test]
    fn linear_is_aio_requests_formula() {
        // random() = 0.5 for the magnitude, then 0.25 (< 0.5: negative sign),
        // then 0.5 again, then 0.75 (positive).
        let b = Backoff::linear(Duration::from_millis(50));
        let got: Vec<f64> = with(&b, vec![0.5, 0.25, 0.5, 0.75])
            .take(2)
            .map(ms)
            .collect();
        // retry 1: 50 - 50·0.5·0.2 = 45; retry 2: 100 + 100·0.5·0.2 = 110.
        assert!((got[0] - 45.0).abs() < 1e-6, "{got:?}");
        assert!((got[1] - 110.0).abs() < 1e-6, "{got:?}");
        let none = Backoff::linear(Duration::from_millis(50)).linear_jitter(0.0);
        let got: Vec<f64> = with(&none, vec![0.9]).take(3).map(ms).collect();
        for (g, e) in got.iter().zip([50.0, 100.0, 150.0]) {
            assert!((g - e).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn constant_is_constant() {
        let b = Backoff::constant(Duration::from_millis(30));
        assert!(b.delays(1).take(10).all(|d| d == Duration::from_millis(30)));
    }

    proptest! {
        #[test]
        fn every_delay_is_within_its_bounds(
            kind in prop_oneof![
                Just(BackoffKind::Decorrelated),
                Just(BackoffKind::Exponential),
                Just(BackoffKind::Linear),
                Just(BackoffKind::Constant)
            ],
            jitter in prop_oneof![Just(Jitter::Full), Just(Jitter::Equal), Just(Jitter::None)],
            base_ms in 0u64..10_000,
            cap_ms in 0u64..100_000,
            seed in any::<u64>(),
        ) {
            let base = Duration::from_millis(base_ms);
            let cap = Duration::from_millis(cap_ms);
            let b = Backoff::new(kind, base).jitter(jitter).max_delay(cap);
            let mut delays = b.delays(seed);
            for retry in 0u32..40 {
                let d = delays.next().unwrap_or_default();
                prop_assert!(d <= cap);
                let nominal_exp = exponential(base, retry).min(cap);
                match kind {
                    BackoffKind::Exponential => match jitter {
                        Jitter::None => prop_assert_eq!(d, nominal_exp),
                        Jitter::Full => prop_assert!(d <= nominal_exp),
                        Jitter::Equal => prop_assert!(d >= nominal_exp / 2 && d <= nominal_exp),
                    },
                    BackoffKind::Linear => {
                        let n = f64::from(retry + 1) * base.as_secs_f64();
                        let lo = secs_f64(n * 0.8 - 1e-9).min(cap);
                        let hi = secs_f64(n * 1.2 + 1e-9).min(cap);
                        prop_assert!(d >= lo && d <= hi, "{:?} not in {:?}..{:?}", d, lo, hi);
                    }
                    BackoffKind::Constant => prop_assert_eq!(d, base.min(cap)),
                    BackoffKind::Decorrelated => {
                        // Polly: try t is spread between 0 and
                        // f·(2^(t+1) − 2^(t−1)) for t ≥ 2 and 0..f·2^(t+1)
                        // for t = 0, 1 (f = base), within a float tolerance.
                        let t = i32::try_from(retry).unwrap_or(i32::MAX);
                        let upper = if t >= 2 {
                            2f64.powi(t + 1) - 2f64.powi(t - 1)
                        } else {
                            2f64.powi(t + 1)
                        };
                        let hi = secs_f64(base.as_secs_f64() * upper * 1.0001 + 1e-6).min(cap);
                        prop_assert!(d <= hi, "retry {}: {:?} > {:?}", retry, d, hi);
                    }
                }
            }
        }

        #[test]
        fn same_seed_same_schedule(seed in any::<u64>(), base_ms in 1u64..1000) {
            let b = Backoff::decorrelated(Duration::from_millis(base_ms));
            let a: Vec<Duration> = b.delays(seed).take(8).collect();
            let c: Vec<Duration> = b.delays(seed).take(8).collect();
            prop_assert_eq!(a, c);
        }
    }
}
