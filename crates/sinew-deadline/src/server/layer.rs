use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use sinew_core::headers::{
    GRPC_TIMEOUT, X_DO_NOT_RETRY, X_ENVOY_EXPECTED_RQ_TIMEOUT_MS, X_REQUEST_DEADLINE_AT,
    X_REQUEST_PRIORITY, X_REQUEST_TIMEOUT,
};
use sinew_core::problem::Problem;
use sinew_core::{CallContext, Clock, Priority, ResponseBody, SystemClock};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::future::ResponseFuture;
use crate::config::ServerDeadlineConfig;
use crate::error::InvalidHeader;
use crate::parse::{self, ParseErrorKind};

/// The server layer that reads the caller's deadline and priority.
///
/// Accepted deadline headers (the earliest wins, capped by `max_timeout`;
/// `default_timeout`, 20 s, applies when none is sent):
///
/// * `x-request-timeout`: remaining seconds, decimal (aio-request);
/// * `x-request-deadline-at`: naive UTC ISO-8601 (older aio-request), read
///   against the layer's [`Clock`];
/// * `grpc-timeout`: 1–8 digits and a unit of `H M S m u n`;
/// * `x-envoy-expected-rq-timeout-ms`: only with [`trust_envoy`](Self::trust_envoy).
///
/// `x-request-priority: high|normal|low` sets the priority (default
/// `normal`; every value of a repeated header is checked, and the lowest
/// wins).
///
/// Answers, without calling the handler:
///
/// * `400` problem+json naming the header for a malformed, negative or
///   non-finite deadline (title `invalid deadline header`, `reason` what is
///   wrong: `malformed`, `negative`, …) or an unknown priority (title
///   `invalid priority header`, `reason` `invalid_priority`);
/// * `408` problem+json (`reason` `deadline_expired`) with
///   `X-Do-Not-Retry: 1` when the deadline has passed or leaves
///   `min_remaining` (5 ms) or less.
///
/// Otherwise the [`CallContext`] (merged into one an outer layer may have
/// stored, e.g. with a trace parent; an earlier deadline there is kept) is
/// put in the request extensions and made ambient around the handler with
/// [`CallContext::scope`], so clients called by the handler inherit it. With
/// [`cancel_at_deadline`](Self::cancel_at_deadline) the handler is dropped at
/// the deadline and the caller gets `504` (`reason` `deadline_exceeded`,
/// with `X-Do-Not-Retry: 1`: its deadline is gone, a retry cannot help).
/// Cancelling covers the handler until it returns the response head, not a
/// body it streams afterwards.
#[derive(Debug, Clone)]
pub struct ServerDeadlineLayer {
    config: ServerDeadlineConfig,
    clock: Arc<dyn Clock>,
}

impl Default for ServerDeadlineLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerDeadlineLayer {
    /// A layer with the default configuration.
    pub fn new() -> Self {
        Self::from_config(ServerDeadlineConfig::default())
    }

    /// A layer from a configuration.
    pub fn from_config(config: ServerDeadlineConfig) -> Self {
        ServerDeadlineLayer {
            config,
            clock: Arc::new(SystemClock),
        }
    }

    /// The deadline when the caller sends none (`None`: no deadline).
    pub fn default_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.default_timeout = timeout;
        self
    }

    /// No caller gets more than `max`.
    pub fn max_timeout(mut self, max: Duration) -> Self {
        self.config.max_timeout = max;
        self
    }

    /// Refuse with `408` when `min` or less is left (default 5 ms).
    pub fn min_remaining(mut self, min: Duration) -> Self {
        self.config.min_remaining = min;
        self
    }

    /// Read `x-envoy-expected-rq-timeout-ms` (only behind a trusted Envoy).
    pub fn trust_envoy(mut self, yes: bool) -> Self {
        self.config.trust_envoy = yes;
        self
    }

    /// Drop the handler at the deadline and answer `504`.
    pub fn cancel_at_deadline(mut self, yes: bool) -> Self {
        self.config.cancel_at_deadline = yes;
        self
    }

    /// The wall clock `x-request-deadline-at` is read against.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ServerDeadlineConfig {
        &self.config
    }
}

impl<S> Layer<S> for ServerDeadlineLayer {
    type Service = ServerDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerDeadline {
            inner,
            config: Arc::new(self.config.clone()),
            clock: self.clock.clone(),
        }
    }
}

/// The service of [`ServerDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct ServerDeadline<S> {
    inner: S,
    config: Arc<ServerDeadlineConfig>,
    clock: Arc<dyn Clock>,
}

impl<S> ServerDeadline<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// What [`parse_headers`] found in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParsedHeaders {
    /// The earliest deadline sent, as time left (zero when already past),
    /// and the header it came from.
    pub timeout: Option<(Duration, &'static str)>,
    /// The priority sent (the lowest, when several values are), if any.
    pub priority: Option<Priority>,
}

/// Read the deadline and priority headers of a request, as the server layer
/// does (uncapped, no default). `clock` is read (only) for
/// `x-request-deadline-at`.
///
/// ```
/// use std::time::Duration;
/// use sinew_core::{Priority, SystemClock};
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-request-timeout", "4.5".parse().unwrap());
/// headers.insert("grpc-timeout", "2S".parse().unwrap());
/// headers.insert("x-request-priority", "high".parse().unwrap());
/// let parsed = sinew_deadline::server::parse_headers(&headers, &SystemClock, false).unwrap();
/// assert_eq!(parsed.timeout, Some((Duration::from_secs(2), "grpc-timeout")));
/// assert_eq!(parsed.priority, Some(Priority::High));
/// ```
pub fn parse_headers(
    headers: &HeaderMap,
    clock: &dyn Clock,
    trust_envoy: bool,
) -> Result<ParsedHeaders, InvalidHeader> {
    let mut out = ParsedHeaders::default();
    let mut take = |name: HeaderName,
                    label: &'static str,
                    f: &dyn Fn(&[u8]) -> Result<Duration, ParseErrorKind>|
     -> Result<(), InvalidHeader> {
        for value in headers.get_all(&name) {
            let d = f(value.as_bytes()).map_err(|k| InvalidHeader::new(name.clone(), k))?;
            if out.timeout.is_none_or(|(best, _)| d < best) {
                out.timeout = Some((d, label));
            }
        }
        Ok(())
    };
    take(
        X_REQUEST_TIMEOUT,
        "x-request-timeout",
        &parse::request_timeout,
    )?;
    take(GRPC_TIMEOUT, "grpc-timeout", &parse::grpc_timeout)?;
    if headers.contains_key(X_REQUEST_DEADLINE_AT) {
        let now = clock.now();
        take(X_REQUEST_DEADLINE_AT, "x-request-deadline-at", &|v| {
            parse::deadline_at(v).map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
        })?;
    }
    if trust_envoy {
        take(
            X_ENVOY_EXPECTED_RQ_TIMEOUT_MS,
            "x-envoy-expected-rq-timeout-ms",
            &parse::envoy_timeout_ms,
        )?;
    }
    // Every value is checked, as for the deadline headers; of several
    // valid ones the lowest wins (as the earliest deadline does).
    for v in headers.get_all(X_REQUEST_PRIORITY) {
        let p = Priority::parse(v.as_bytes()).ok_or_else(|| {
            let kind = if v.as_bytes().trim_ascii().is_empty() {
                ParseErrorKind::Empty
            } else {
                ParseErrorKind::Malformed
            };
            InvalidHeader::new(X_REQUEST_PRIORITY, kind)
        })?;
        out.priority = Some(out.priority.map_or(p, |q| q.min(p)));
    }
    Ok(out)
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ServerDeadline<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let cfg = &*self.config;
        let parsed = match parse_headers(req.headers(), &*self.clock, cfg.trust_envoy) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(header = %e.header(), kind = e.kind().as_str(), "request refused: {}", e.title());
                let label = if e.reason() == "invalid_priority" {
                    "invalid_priority"
                } else {
                    "invalid_header"
                };
                metrics::counter!("sinew_deadline_rejections_total", "reason" => label)
                    .increment(1);
                let problem = Problem::new(StatusCode::BAD_REQUEST, e.title())
                    .detail(e.to_string())
                    .with("header", e.header().as_str())
                    .with("reason", e.reason());
                return ResponseFuture::refused(problem.into_response());
            }
        };
        let now = Instant::now();
        let timeout = parsed
            .timeout
            .map(|(d, _)| d)
            .or(cfg.default_timeout)
            .map(|d| d.min(cfg.max_timeout));
        let existing = req
            .extensions()
            .get::<CallContext>()
            .copied()
            .unwrap_or_default();
        let deadline = match (
            timeout.and_then(|t| now.checked_add(t)),
            existing.deadline(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(now);
            if left <= cfg.min_remaining {
                let source = parsed.timeout.map_or("default", |(_, s)| s);
                tracing::debug!(
                    remaining_ms = left.as_millis() as u64,
                    source,
                    "request refused: deadline expired or too close"
                );
                metrics::counter!("sinew_deadline_rejections_total", "reason" => "expired")
                    .increment(1);
                let mut res: Response<ResponseBody<ResB>> =
                    Problem::new(StatusCode::REQUEST_TIMEOUT, "deadline expired")
                        .detail(format!(
                            "the caller's deadline ({source}) leaves {} ms, at or below the minimum of {} ms",
                            left.as_millis(),
                            cfg.min_remaining.as_millis()
                        ))
                        .with("reason", "deadline_expired")
                        .into_response();
                res.headers_mut()
                    .insert(X_DO_NOT_RETRY, HeaderValue::from_static("1"));
                return ResponseFuture::refused(res);
            }
        }
        let mut ctx = existing.with_priority(parsed.priority.unwrap_or(existing.priority()));
        if let Some(d) = deadline {
            ctx = ctx.with_deadline(d);
        }
        tracing::trace!(
            remaining_ms = deadline.map(|d| d.saturating_duration_since(now).as_millis() as u64),
            priority = ctx.priority().as_str(),
            source = parsed.timeout.map_or("default", |(_, s)| s),
            "call context set"
        );
        req.extensions_mut().insert(ctx);
        let inner = ctx.sync_scope(|| self.inner.call(req));
        let cancel_at = deadline.filter(|_| cfg.cancel_at_deadline);
        ResponseFuture::running(ctx.scope(inner), cancel_at)
    }
}
