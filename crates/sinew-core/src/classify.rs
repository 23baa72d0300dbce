//! The one failure classifier shared by every sinew layer.
//!
//! Retry, circuit breaker, metrics and the balancer's outlier detection all
//! ask the same [`Classifier`] whether an outcome was a failure, so a status
//! that trips the breaker is also the status that is retried and counted.
//!
//! Defaults (docs/architecture.md): transport errors, timeouts, 5xx, 408 and 429 are
//! failures; every other status is a success; a response carrying
//! `X-Do-Not-Retry` is a success whatever its status. Whether a failure may be
//! *retried* is a separate question that the retry layer answers.

use std::error::Error as StdError;
use std::fmt;

use http::{HeaderMap, Response, StatusCode};

use crate::error::{CircuitOpen, DeadlineExceeded, NoEndpoints};
use crate::headers::X_DO_NOT_RETRY;

/// Why an outcome counts as a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// A response whose status the classifier counts as a failure.
    Status(StatusCode),
    /// The call ran out of time (a deadline or a timeout).
    Timeout,
    /// A circuit breaker refused the call without sending it.
    CircuitOpen,
    /// No endpoint was available to send the call to.
    NoEndpoints,
    /// The connection could not be established.
    Connect,
    /// Any other error below HTTP: reset, broken pipe, protocol error, ….
    Transport,
}

impl FailureKind {
    /// A short, stable, low-cardinality name for metrics labels
    /// (`error_type` in the OpenTelemetry conventions).
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureKind::Status(s) => status_str(*s),
            FailureKind::Timeout => "timeout",
            FailureKind::CircuitOpen => "circuit_open",
            FailureKind::NoEndpoints => "no_endpoints",
            FailureKind::Connect => "connect",
            FailureKind::Transport => "transport",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status code as a static string, for metrics labels.
fn status_str(status: StatusCode) -> &'static str {
    // Only the statuses a classifier can call failures need a name; anything
    // else is grouped by class.
    match status.as_u16() {
        408 => "408",
        429 => "429",
        500 => "500",
        501 => "501",
        502 => "502",
        503 => "503",
        504 => "504",
        400..=407 | 409..=428 | 430..=499 => "4xx",
        505..=599 => "5xx",
        _ => "other_status",
    }
}

/// The verdict on one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Classification {
    /// The call succeeded (as far as resilience layers are concerned).
    Success,
    /// The call failed, and why.
    Failure(FailureKind),
}

impl Classification {
    /// `true` for [`Classification::Failure`].
    pub fn is_failure(&self) -> bool {
        matches!(self, Classification::Failure(_))
    }

    /// `true` for [`Classification::Success`].
    pub fn is_success(&self) -> bool {
        matches!(self, Classification::Success)
    }
}

/// Decides which outcomes are failures. Cheap to clone.
///
/// ```
/// use http::StatusCode;
/// use sinew_core::Classifier;
///
/// // Count 404 as a failure too (say, for a service that must always exist).
/// let c = Classifier::default().with_failure_status(StatusCode::NOT_FOUND);
/// assert!(c.is_failure_status(StatusCode::NOT_FOUND));
/// assert!(c.is_failure_status(StatusCode::BAD_GATEWAY));
/// assert!(!c.is_failure_status(StatusCode::CONFLICT));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Classifier {
    /// One bit per status code 0..1024.
    failures: [u64; 16],
    honour_do_not_retry: bool,
}

impl Default for Classifier {
    fn default() -> Self {
        let mut c = Classifier {
            failures: [0; 16],
            honour_do_not_retry: true,
        };
        for code in 500..600 {
            c.set(code, true);
        }
        c.set(408, true);
        c.set(429, true);
        c
    }
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<u16> = (100..1000).filter(|c| self.get(*c)).collect();
        f.debug_struct("Classifier")
            .field("failure_statuses", &codes)
            .field("honour_do_not_retry", &self.honour_do_not_retry)
            .finish()
    }
}

impl Classifier {
    /// The default classifier: 5xx, 408, 429 and errors are failures.
    pub fn new() -> Self {
        Self::default()
    }

    fn set(&mut self, code: u16, on: bool) {
        let code = usize::from(code);
        if code >= 1024 {
            return;
        }
        let (word, bit) = (code / 64, code % 64);
        if on {
            self.failures[word] |= 1 << bit;
        } else {
            self.failures[word] &= !(1 << bit);
        }
    }

    fn get(&self, code: u16) -> bool {
        let code = usize::from(code);
        code < 1024 && self.failures[code / 64] & (1 << (code % 64)) != 0
    }

    /// Also count `status` as a failure.
    pub fn with_failure_status(mut self, status: StatusCode) -> Self {
        self.set(status.as_u16(), true);
        self
    }

    /// Count `status` as a success.
    pub fn without_failure_status(mut self, status: StatusCode) -> Self {
        self.set(status.as_u16(), false);
        self
    }

    /// Count every 4xx as a failure (`true`), or only 408 and 429 (`false`,
    /// the default).
    pub fn client_errors_are_failures(mut self, yes: bool) -> Self {
        for code in 400..500 {
            if code != 408 && code != 429 {
                self.set(code, yes);
            }
        }
        self
    }

    /// Whether `X-Do-Not-Retry` turns a response into a success (default
    /// `true`, as aio-request expects).
    pub fn honour_do_not_retry(mut self, yes: bool) -> Self {
        self.honour_do_not_retry = yes;
        self
    }

    /// Whether `status`, without further headers, is a failure.
    pub fn is_failure_status(&self, status: StatusCode) -> bool {
        self.get(status.as_u16())
    }

    /// Classify a response by its status and headers.
    pub fn classify_parts(&self, status: StatusCode, headers: &HeaderMap) -> Classification {
        if !self.is_failure_status(status) {
            return Classification::Success;
        }
        if self.honour_do_not_retry && do_not_retry(headers) {
            return Classification::Success;
        }
        Classification::Failure(FailureKind::Status(status))
    }

    /// Classify a response.
    pub fn classify_response<B>(&self, response: &Response<B>) -> Classification {
        self.classify_parts(response.status(), response.headers())
    }

    /// Classify an error from an inner service. Errors are always failures;
    /// this finds out which kind by walking the error's `source()` chain.
    pub fn classify_error(&self, error: &(dyn StdError + 'static)) -> Classification {
        Classification::Failure(failure_kind_of(error))
    }
}

/// Whether the headers carry `X-Do-Not-Retry` with a true value (anything but
/// `0`, `false` or empty).
pub fn do_not_retry(headers: &HeaderMap) -> bool {
    headers.get(X_DO_NOT_RETRY).is_some_and(|v| {
        let v = v.as_bytes().trim_ascii();
        !(v.is_empty() || v == b"0" || v.eq_ignore_ascii_case(b"false"))
    })
}

/// What kind of failure an error is, found by walking its `source()` chain.
pub fn failure_kind_of(error: &(dyn StdError + 'static)) -> FailureKind {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(err) = current {
        if err.is::<DeadlineExceeded>() || err.is::<tokio::time::error::Elapsed>() {
            return FailureKind::Timeout;
        }
        if err.is::<CircuitOpen>() {
            return FailureKind::CircuitOpen;
        }
        if err.is::<NoEndpoints>() {
            return FailureKind::NoEndpoints;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return match io.kind() {
                TimedOut => FailureKind::Timeout,
                ConnectionRefused | AddrNotAvailable | HostUnreachable | NetworkUnreachable => {
                    FailureKind::Connect
                }
                _ => FailureKind::Transport,
            };
        }
        // tower's and others' timeout errors are named "Elapsed"/"timed out";
        // we cannot depend on every crate, so recognise the common message.
        let text = err.to_string();
        if text == "request timed out" || text == "deadline has elapsed" {
            return FailureKind::Timeout;
        }
        current = err.source();
    }
    FailureKind::Transport
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn resp(status: u16, dnr: Option<&str>) -> Response<()> {
        let mut b = Response::builder().status(status);
        if let Some(v) = dnr {
            b = b.header("x-do-not-retry", v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn defaults_follow_design() {
        let c = Classifier::default();
        for code in [200u16, 201, 204, 301, 304, 400, 401, 403, 404, 409, 422] {
            assert_eq!(
                c.classify_response(&resp(code, None)),
                Classification::Success,
                "{code}"
            );
        }
        for code in [408u16, 429, 500, 502, 503, 504, 599] {
            assert_eq!(
                c.classify_response(&resp(code, None)),
                Classification::Failure(FailureKind::Status(StatusCode::from_u16(code).unwrap())),
                "{code}"
            );
        }
    }

    #[test]
    fn do_not_retry_is_success() {
        let c = Classifier::default();
        assert!(c.classify_response(&resp(503, Some("1"))).is_success());
        assert!(c.classify_response(&resp(503, Some("true"))).is_success());
        assert!(c.classify_response(&resp(503, Some("0"))).is_failure());
        assert!(c.classify_response(&resp(503, Some(""))).is_failure());
        let strict = Classifier::default().honour_do_not_retry(false);
        assert!(strict.classify_response(&resp(503, Some("1"))).is_failure());
    }

    #[test]
    fn client_errors_toggle() {
        let c = Classifier::default().client_errors_are_failures(true);
        assert!(c.is_failure_status(StatusCode::NOT_FOUND));
        let c = c.client_errors_are_failures(false);
        assert!(!c.is_failure_status(StatusCode::NOT_FOUND));
        assert!(c.is_failure_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(c.is_failure_status(StatusCode::REQUEST_TIMEOUT));
    }

    #[derive(Debug)]
    struct Wrap(Box<dyn StdError + Send + Sync>);
    impl fmt::Display for Wrap {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl StdError for Wrap {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn errors_are_classified_through_the_chain() {
        let c = Classifier::default();
        let refused = Wrap(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(
            c.classify_error(&refused),
            Classification::Failure(FailureKind::Connect)
        );
        let reset = Wrap(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(
            c.classify_error(&reset),
            Classification::Failure(FailureKind::Transport)
        );
        let late = Wrap(Box::new(DeadlineExceeded::new()));
        assert_eq!(
            c.classify_error(&late),
            Classification::Failure(FailureKind::Timeout)
        );
        let open = CircuitOpen::new("a:1", Some(Duration::from_secs(1)));
        assert_eq!(
            c.classify_error(&open),
            Classification::Failure(FailureKind::CircuitOpen)
        );
        assert_eq!(FailureKind::CircuitOpen.as_str(), "circuit_open");
        assert_eq!(
            c.classify_error(&NoEndpoints::new()),
            Classification::Failure(FailureKind::NoEndpoints)
        );
    }
}
