//! Which requests may be sent again, per-request markers, `Retry-After`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderMap, Method, Request};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use sinew_core::headers::IDEMPOTENCY_KEY;
use sinew_core::Clock;

/// Which methods are retried (and, for [`HedgeLayer`](crate::HedgeLayer),
/// hedged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum RetryMethods {
    /// RFC 9110's idempotent methods (GET, HEAD, OPTIONS, TRACE, PUT,
    /// DELETE); any other method (POST, PATCH, …) only when the request
    /// carries an `Idempotency-Key` header or the [`Retryable`] extension.
    /// The default.
    #[default]
    Idempotent,
    /// Every method. Only for services known to deduplicate.
    All,
    /// aio-request's defaults: GET only (POST, PUT, PATCH, DELETE get one
    /// attempt), unless the request carries the [`Retryable`] extension or
    /// an `Idempotency-Key`.
    AioRequest,
}

impl RetryMethods {
    /// The name used in config files.
    pub fn as_str(&self) -> &'static str {
        match self {
            RetryMethods::Idempotent => "idempotent",
            RetryMethods::All => "all",
            RetryMethods::AioRequest => "aio-request",
        }
    }

    /// Whether `method` is eligible without any marking.
    #[inline]
    pub fn allows(&self, method: &Method) -> bool {
        match self {
            RetryMethods::All => true,
            RetryMethods::Idempotent => is_idempotent(method),
            RetryMethods::AioRequest => method == Method::GET,
        }
    }
}

impl fmt::Display for RetryMethods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT and DELETE are idempotent.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// A request extension marking the request safe to send more than once
/// whatever its method (e.g. a POST the server deduplicates by other means).
///
/// ```
/// let mut req = http::Request::post("http://svc/orders").body(()).unwrap();
/// req.extensions_mut().insert(sinew_retry::Retryable);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retryable;

/// A request extension opting the request out of retries and hedging,
/// whatever its method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NoRetry;

/// A request extension set on the second and later attempts of a call
/// (retries and hedges), with the attempt's number counting from 1. Its
/// absence means a first attempt; layers below (per-attempt metrics,
/// logging) can read it with [`Attempt::of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attempt(pub u32);

impl Attempt {
    /// The attempt number of `req` (1 when the extension is absent).
    pub fn of<B>(req: &Request<B>) -> u32 {
        req.extensions().get::<Attempt>().map_or(1, |a| a.0)
    }
}

/// Why a request may not be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotReplayable {
    /// Opted out with [`NoRetry`].
    OptedOut,
    /// Its method is not eligible and it carries no marking.
    Method,
    /// Its body cannot be replayed (a one-shot stream over the buffer cap).
    Body,
    /// `max_attempts` is 1.
    SingleAttempt,
}

impl NotReplayable {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NotReplayable::OptedOut => "opted_out",
            NotReplayable::Method => "method",
            NotReplayable::Body => "body_not_replayable",
            NotReplayable::SingleAttempt => "max_attempts",
        }
    }
}

/// Whether `req` may be sent more than once under `methods` (body aside).
#[inline]
pub(crate) fn eligible<B>(req: &Request<B>, methods: RetryMethods) -> Result<(), NotReplayable> {
    let ext = req.extensions();
    if ext.get::<NoRetry>().is_some() {
        return Err(NotReplayable::OptedOut);
    }
    if methods.allows(req.method())
        || ext.get::<Retryable>().is_some()
        || req.headers().contains_key(IDEMPOTENCY_KEY)
    {
        Ok(())
    } else {
        Err(NotReplayable::Method)
    }
}

/// The wait a `Retry-After` header asks for: delta-seconds, or an HTTP-date
/// relative to `clock` (a date in the past means zero). `None` when the
/// header is absent or unreadable (then the backoff applies).
pub fn retry_after(headers: &HeaderMap, clock: &dyn Clock) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?;
    let text = value.to_str().ok()?.trim();
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate absurdly long values rather than reject them: they are
        // "longer than any maximum".
        let secs = text.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(clock.now()).unwrap_or(Duration::ZERO))
}

/// Where the jitter of the backoff curves comes from.
#[derive(Debug)]
pub(crate) enum RngSource {
    /// Seeded per call from the thread-local generator.
    Entropy,
    /// Call `k` of the layer gets a generator seeded from `seed` and `k`, so
    /// a test that makes its calls in order sees the same delays every run.
    Seeded { seed: u64, calls: AtomicU64 },
}

impl RngSource {
    pub(crate) fn seeded(seed: u64) -> Self {
        RngSource::Seeded {
            seed,
            calls: AtomicU64::new(0),
        }
    }

    pub(crate) fn rng(&self) -> SmallRng {
        match self {
            RngSource::Entropy => SmallRng::from_rng(&mut rand::rng()),
            RngSource::Seeded { seed, calls } => {
                let k = calls.fetch_add(1, Ordering::Relaxed);
                SmallRng::seed_from_u64(seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sinew_core::FixedClock;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, v.parse().unwrap());
        h
    }

    #[test]
    fn retry_after_forms() {
        // 2021-04-20 02:07:55 UTC
        let clock = FixedClock::at_unix(1_618_884_475);
        assert_eq!(
            retry_after(&headers("120"), &clock),
            Some(Duration::from_secs(120))
        );
        assert_eq!(retry_after(&headers(" 0 "), &clock), Some(Duration::ZERO));
        assert_eq!(
            retry_after(&headers("Tue, 20 Apr 2021 02:08:05 GMT"), &clock),
            Some(Duration::from_secs(10))
        );
        // The obsolete RFC 850 form is accepted too.
        assert_eq!(
            retry_after(&headers("Tuesday, 20-Apr-21 02:08:05 GMT"), &clock),
            Some(Duration::from_secs(10))
        );
        // In the past: no wait.
        assert_eq!(
            retry_after(&headers("Tue, 20 Apr 2021 02:00:00 GMT"), &clock),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(&headers("99999999999999999999999"), &clock),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["-5", "1.5", "soon", "Tue, 31 Feb 2021 02:08:05 GMT"] {
            assert_eq!(retry_after(&headers(bad), &clock), None, "{bad}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), &clock), None);
    }

    #[test]
    fn method_rules() {
        let req = |m: Method| Request::builder().method(m).body(()).unwrap();
        for m in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
            Method::TRACE,
        ] {
            assert!(
                eligible(&req(m.clone()), RetryMethods::Idempotent).is_ok(),
                "{m}"
            );
        }
        assert_eq!(
            eligible(&req(Method::POST), RetryMethods::Idempotent),
            Err(NotReplayable::Method)
        );
        assert_eq!(
            eligible(&req(Method::PATCH), RetryMethods::Idempotent),
            Err(NotReplayable::Method)
        );
        let mut keyed = req(Method::POST);
        keyed
            .headers_mut()
            .insert(IDEMPOTENCY_KEY, "k1".parse().unwrap());
        assert!(eligible(&keyed, RetryMethods::Idempotent).is_ok());
        let mut marked = req(Method::PATCH);
        marked.extensions_mut().insert(Retryable);
        assert!(eligible(&marked, RetryMethods::Idempotent).is_ok());
        assert!(eligible(&req(Method::POST), RetryMethods::All).is_ok());
        // aio-request: GET only.
        assert!(eligible(&req(Method::GET), RetryMethods::AioRequest).is_ok());
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(eligible(&req(m), RetryMethods::AioRequest).is_err());
        }
        let mut out = req(Method::GET);
        out.extensions_mut().insert(NoRetry);
        assert_eq!(
            eligible(&out, RetryMethods::All),
            Err(NotReplayable::OptedOut)
        );
    }
}
