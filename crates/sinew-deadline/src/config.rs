//! Configuration of the layers, with serde support behind the `serde`
//! feature (durations written like `"250ms"` or `"2s"`).
//!
//! [`DeadlineConfig`] has the keys of the `[deadline]` section of the sinew
//! client config file (`timeout`, `min_remaining`, `grpc_timeout`).

use std::time::Duration;

/// Configuration of the client [`DeadlineLayer`](crate::DeadlineLayer): the
/// `[deadline]` section of the client config file.
///
/// Defaults: no timeout of its own (only per-request and inherited deadlines
/// apply), `min_remaining` 5 ms, no `grpc-timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, default))]
pub struct DeadlineConfig {
    /// Every call must finish within this long (`None`: only per-request
    /// and inherited deadlines apply).
    #[cfg_attr(
        feature = "serde",
        serde(with = "opt_duration", skip_serializing_if = "Option::is_none")
    )]
    pub timeout: Option<Duration>,
    /// Fail at once, without sending, when this little or less is left.
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub min_remaining: Duration,
    /// Also send `grpc-timeout`.
    pub grpc_timeout: bool,
}

impl Default for DeadlineConfig {
    fn default() -> Self {
        DeadlineConfig {
            timeout: None,
            min_remaining: Duration::from_millis(5),
            grpc_timeout: false,
        }
    }
}

/// Configuration of the [`ServerDeadlineLayer`](crate::ServerDeadlineLayer).
///
/// Defaults: a 20 s deadline when the caller sends none (as aio-request's
/// server), deadlines capped at 5 minutes, 5 ms minimum, Envoy's header not
/// trusted, handler not cancelled at the deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, default))]
pub struct ServerDeadlineConfig {
    /// The deadline when the caller sends none (`None`: no deadline).
    #[cfg_attr(
        feature = "serde",
        serde(with = "opt_duration", skip_serializing_if = "Option::is_none")
    )]
    pub default_timeout: Option<Duration>,
    /// No caller gets more than this, whatever it sends.
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub max_timeout: Duration,
    /// A request with this little or less left is refused with `408`.
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub min_remaining: Duration,
    /// Read `x-envoy-expected-rq-timeout-ms` (only behind a trusted Envoy).
    pub trust_envoy: bool,
    /// Drop the handler at the deadline and answer `504`.
    pub cancel_at_deadline: bool,
}

impl Default for ServerDeadlineConfig {
    fn default() -> Self {
        ServerDeadlineConfig {
            default_timeout: Some(Duration::from_secs(20)),
            max_timeout: Duration::from_secs(300),
            min_remaining: Duration::from_millis(5),
            trust_envoy: false,
            cancel_at_deadline: false,
        }
    }
}

/// Configuration of the [`ShedLayer`](crate::ShedLayer).
///
/// The layer admits at most `max_concurrency` requests at once. The last
/// `high_reserve` slots are for `high` only and the `normal_reserve` slots
/// below them for `normal` and `high`, so when saturated `low` is refused
/// first, then `normal`. Defaults: 128 slots, automatic reserves (16 for
/// `high`, 16 more for `normal` and above at 128), no queue,
/// `Retry-After: 1`.
///
/// # Automatic reserves
///
/// A reserve left unset follows `max_concurrency` (n), so a small limit
/// still orders the priorities:
///
/// | n | `high_reserve` | `normal_reserve` | slots for low / normal / high |
/// |---|---|---|---|
/// | 1 | 0 | 0 (soft) | 1 / 1 / 1 |
/// | 2 | 1 | 0 (soft) | 1 / 1 / 2 |
/// | 3 | 1 | 1 | 1 / 2 / 3 |
/// | 4 | 1 | 1 | 2 / 3 / 4 |
/// | 16 | 2 | 2 | 12 / 14 / 16 |
/// | n ≥ 8 | n / 8 | n / 8 | … |
///
/// That is n / 8 each, but at least one slot for `high` from n = 2 and at
/// least one for `normal` from n = 3. Below 3 there is no whole slot left
/// to reserve for `normal` without refusing `low` even on an idle server,
/// so its reserve is *soft*: after a `normal` request is shed, `low` may use
/// one slot fewer for `retry_after` (the time the shed request was told to
/// wait), so under overload `normal` gets the shared slot first while an
/// idle server still serves `low`. Reserves set explicitly are exact (and
/// never soft).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, default))]
pub struct ShedConfig {
    /// Requests admitted at once, all priorities together.
    pub max_concurrency: usize,
    /// Slots only `high` may use (`None`: automatic, see above).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub high_reserve: Option<usize>,
    /// Slots (below the high reserve) only `normal` and `high` may use
    /// (`None`: automatic, see above).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub normal_reserve: Option<usize>,
    /// Requests that may wait for a slot at once (0: refuse at once).
    pub queue_size: usize,
    /// The longest a queued request waits (its deadline may cut it shorter).
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub max_queue_wait: Duration,
    /// A request whose deadline leaves this little or less is not queued.
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub min_remaining: Duration,
    /// The `Retry-After` sent with refusals (whole seconds, at least 1).
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub retry_after: Duration,
}

impl Default for ShedConfig {
    fn default() -> Self {
        ShedConfig {
            max_concurrency: 128,
            high_reserve: None,
            normal_reserve: None,
            queue_size: 0,
            max_queue_wait: Duration::from_secs(1),
            min_remaining: Duration::from_millis(5),
            retry_after: Duration::from_secs(1),
        }
    }
}

impl ShedConfig {
    /// `max_concurrency` slots with automatic reserves, no queue.
    pub fn with_limit(max_concurrency: usize) -> Self {
        ShedConfig {
            max_concurrency,
            ..ShedConfig::default()
        }
    }

    /// The reserves in effect, `(high, normal)`: as set, or automatic.
    ///
    /// ```
    /// use sinew_deadline::ShedConfig;
    /// assert_eq!(ShedConfig::with_limit(2).reserves(), (1, 0));
    /// assert_eq!(ShedConfig::with_limit(4).reserves(), (1, 1));
    /// assert_eq!(ShedConfig::with_limit(256).reserves(), (32, 32));
    /// ```
    pub fn reserves(&self) -> (usize, usize) {
        let n = self.max_concurrency;
        let high = self
            .high_reserve
            .unwrap_or(if n >= 2 { (n / 8).max(1) } else { 0 });
        let normal = self
            .normal_reserve
            .unwrap_or(if n >= 3 { (n / 8).max(1) } else { 0 });
        (high, normal)
    }

    /// Whether `normal`'s reserve is soft (automatic, and less than a
    /// slot: n ≤ 2).
    pub(crate) fn soft_normal_reserve(&self) -> bool {
        self.normal_reserve.is_none() && self.reserves().1 == 0
    }
}

/// serde helpers for durations written like `250ms` or `2s`, and optional
/// ones (shared with every sinew crate).
#[cfg(feature = "serde")]
pub use sinew_core::config::{duration, opt_duration};

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;

    #[test]
    fn deadline_section_keys() {
        let c: DeadlineConfig =
            toml::from_str("timeout = \"2s\"\nmin_remaining = \"10ms\"\ngrpc_timeout = true\n")
                .unwrap();
        assert_eq!(c.timeout, Some(Duration::from_secs(2)));
        assert_eq!(c.min_remaining, Duration::from_millis(10));
        assert!(c.grpc_timeout);
        let d: DeadlineConfig = toml::from_str("").unwrap();
        assert_eq!(d, DeadlineConfig::default());
        assert!(toml::from_str::<DeadlineConfig>("timeout = \"soon\"").is_err());
        assert!(toml::from_str::<DeadlineConfig>("timout = \"2s\"").is_err());
        let back: DeadlineConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn server_and_shed_configs() {
        let s: ServerDeadlineConfig = toml::from_str(
            "default_timeout = \"5s\"\nmax_timeout = \"1m\"\ntrust_envoy = true\ncancel_at_deadline = true\n",
        )
        .unwrap();
        assert_eq!(s.default_timeout, Some(Duration::from_secs(5)));
        assert_eq!(s.max_timeout, Duration::from_secs(60));
        assert!(s.trust_envoy && s.cancel_at_deadline);
        let sh: ShedConfig = toml::from_str(
            "max_concurrency = 10\nhigh_reserve = 2\nqueue_size = 4\nmax_queue_wait = \"250ms\"\n",
        )
        .unwrap();
        assert_eq!(sh.max_concurrency, 10);
        assert_eq!(sh.high_reserve, Some(2));
        assert_eq!(sh.normal_reserve, None);
        assert_eq!(sh.reserves(), (2, 1));
        let small: ShedConfig = toml::from_str("max_concurrency = 4\n").unwrap();
        assert_eq!(small.reserves(), (1, 1));
        let back: ShedConfig = toml::from_str(&toml::to_string(&sh).unwrap()).unwrap();
        assert_eq!(back, sh);
        assert_eq!(sh.max_queue_wait, Duration::from_millis(250));
        assert!(toml::from_str::<ShedConfig>("max_concurrency = -1").is_err());
    }
}
