//! How a [`TripPolicy`] is written in a config file: one flat table whose
//! first key says which policy it is.

use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::config::{TripPolicy, Window};

/// The buckets of a time window when the file does not say (aio-request's).
const DEFAULT_BUCKETS: u32 = 10;
/// The calls a rate policy needs before it may trip, when the file does not say.
const DEFAULT_MINIMUM_CALLS: u32 = 10;
/// The window of a rate policy, when the file does not say.
const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// One policy as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicySpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    consecutive_failures: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    slow_call_rate: Option<f64>,
    #[serde(
        default,
        with = "sinew_core::config::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    slower_than: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    minimum_calls: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<WindowSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    buckets: Option<u32>,
}

impl TryFrom<PolicySpec> for TripPolicy {
    type Error = String;

    fn try_from(p: PolicySpec) -> Result<TripPolicy, String> {
        let rate_keys = p.minimum_calls.is_some() || p.window.is_some() || p.buckets.is_some();
        let window = || -> Result<Window, String> {
            match (p.window, p.buckets) {
                (Some(WindowSpec::Count(_)), Some(_)) => {
                    Err("`buckets` applies to a time window (window = \"10s\"), not a count".into())
                }
                (Some(WindowSpec::Count(0)), _) => Err("window: at least 1 call".into()),
                (Some(WindowSpec::Count(n)), None) => Ok(Window::Count(n)),
                (time, buckets) => {
                    let length = match time {
                        Some(WindowSpec::Time(d)) => d,
                        _ => DEFAULT_WINDOW,
                    };
                    let buckets = buckets.unwrap_or(DEFAULT_BUCKETS);
                    if length.is_zero() || buckets == 0 {
                        return Err("a time window needs a length and at least 1 bucket".into());
                    }
                    Ok(Window::Time { length, buckets })
                }
            }
        };
        let ratio = |name: &str, r: f64| {
            if r > 0.0 && r <= 1.0 {
                Ok(r)
            } else {
                Err(format!("{name} must be a ratio in (0, 1], got {r}"))
            }
        };
        match (p.consecutive_failures, p.failure_rate, p.slow_call_rate) {
            (Some(n), None, None) => {
                if rate_keys || p.slower_than.is_some() {
                    return Err("consecutive_failures takes no other keys".into());
                }
                if n == 0 {
                    return Err("consecutive_failures must be at least 1".into());
                }
                Ok(TripPolicy::ConsecutiveFailures(n))
            }
            (None, Some(r), None) => {
                if p.slower_than.is_some() {
                    return Err("slower_than belongs to a slow_call_rate policy".into());
                }
                Ok(TripPolicy::FailureRate {
                    ratio: ratio("failure_rate", r)?,
                    minimum_calls: p.minimum_calls.unwrap_or(DEFAULT_MINIMUM_CALLS),
                    window: window()?,
                })
            }
            (None, None, Some(r)) => Ok(TripPolicy::SlowCallRate {
                ratio: ratio("slow_call_rate", r)?,
                slower_than: p
                    .slower_than
                    .ok_or("a slow_call_rate policy needs slower_than")?,
                minimum_calls: p.minimum_calls.unwrap_or(DEFAULT_MINIMUM_CALLS),
                window: window()?,
            }),
            _ => Err(
                "write exactly one of consecutive_failures, failure_rate or slow_call_rate".into(),
            ),
        }
    }
}

impl From<TripPolicy> for PolicySpec {
    fn from(p: TripPolicy) -> PolicySpec {
        let window = |w: Window| match w {
            Window::Count(n) => (Some(WindowSpec::Count(n)), None),
            Window::Time { length, buckets } => (Some(WindowSpec::Time(length)), Some(buckets)),
        };
        match p {
            TripPolicy::ConsecutiveFailures(n) => PolicySpec {
                consecutive_failures: Some(n),
                ..PolicySpec::default()
            },
            TripPolicy::FailureRate {
                ratio,
                minimum_calls,
                window: w,
            } => {
                let (window, buckets) = window(w);
                PolicySpec {
                    failure_rate: Some(ratio),
                    minimum_calls: Some(minimum_calls),
                    window,
                    buckets,
                    ..PolicySpec::default()
                }
            }
            TripPolicy::SlowCallRate {
                ratio,
                slower_than,
                minimum_calls,
                window: w,
            } => {
                let (window, buckets) = window(w);
                PolicySpec {
                    slow_call_rate: Some(ratio),
                    slower_than: Some(slower_than),
                    minimum_calls: Some(minimum_calls),
                    window,
                    buckets,
                    ..PolicySpec::default()
                }
            }
        }
    }
}

/// `window = "10s"` (a time window) or `window = 100` (the last 100 calls).
#[derive(Debug, Clone, Copy)]
enum WindowSpec {
    Time(Duration),
    Count(u32),
}

impl Serialize for WindowSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WindowSpec::Time(d) => sinew_core::config::duration::serialize(d, s),
            WindowSpec::Count(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for WindowSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = WindowSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration like \"10s\" or a number of calls")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<WindowSpec, E> {
                sinew_core::config::duration::parse(s)
                    .map(WindowSpec::Time)
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<WindowSpec, E> {
                u32::try_from(n)
                    .map(WindowSpec::Count)
                    .map_err(|_| E::custom(format!("{n} is not a number of calls")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<WindowSpec, E> {
                u32::try_from(n)
                    .map(WindowSpec::Count)
                    .map_err(|_| E::custom(format!("{n} is not a number of calls")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::BreakerConfig;

    #[test]
    fn every_key_of_the_section() {
        let c: BreakerConfig = toml::from_str(
            r#"
policies = [
  { consecutive_failures = 3 },
  { failure_rate = 0.5, minimum_calls = 20, window = "30s", buckets = 6 },
  { slow_call_rate = 0.25, slower_than = "2s", window = 100 },
]
open_duration = "10s"
max_open_duration = "2m"
open_jitter = 0.2
half_open_probes = 2
success_threshold = 3
max_keys = 50
"#,
        )
        .unwrap();
        assert_eq!(
            c.policies,
            [
                TripPolicy::ConsecutiveFailures(3),
                TripPolicy::FailureRate {
                    ratio: 0.5,
                    minimum_calls: 20,
                    window: Window::Time {
                        length: Duration::from_secs(30),
                        buckets: 6
                    }
                },
                TripPolicy::SlowCallRate {
                    ratio: 0.25,
                    slower_than: Duration::from_secs(2),
                    minimum_calls: 10,
                    window: Window::Count(100)
                },
            ]
        );
        assert_eq!(c.open_duration, Duration::from_secs(10));
        assert_eq!(c.max_open_duration, Duration::from_secs(120));
        assert_eq!(c.open_jitter, 0.2);
        assert_eq!(
            (c.half_open_probes, c.success_threshold, c.max_keys),
            (2, 3, 50)
        );
        c.validate().unwrap();
        let back: BreakerConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let empty: BreakerConfig = toml::from_str("").unwrap();
        assert_eq!(empty, BreakerConfig::default());
    }

    #[test]
    fn bad_policies_are_named_with_their_line() {
        for (text, want) in [
            ("policies = [{ consecutive_failures = 0 }]", "at least 1"),
            ("policies = [{ failure_rate = 1.5 }]", "(0, 1]"),
            ("policies = [{ slow_call_rate = 0.5 }]", "slower_than"),
            (
                "policies = [{ failure_rate = 0.5, consecutive_failures = 2 }]",
                "exactly one",
            ),
            (
                "policies = [{ failure_rate = 0.5, window = 10, buckets = 2 }]",
                "buckets",
            ),
            (
                "policies = [{ failure_rate = 0.5, window = \"soon\" }]",
                "invalid duration",
            ),
            ("policies = [{ failure_rat = 0.5 }]", "failure_rat"),
            ("open_durration = \"1s\"", "open_durration"),
        ] {
            let e = toml::from_str::<BreakerConfig>(&format!("\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want) && e.contains("line 2"), "{text}: {e}");
        }
    }
}
