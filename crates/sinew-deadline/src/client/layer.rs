use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use sinew_core::context::{effective_deadline, effective_priority};
use sinew_core::{BoxError, Deadline, Priority};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::future::ResponseFuture;
use crate::config::DeadlineConfig;

/// The client layer that settles, propagates and enforces a call's deadline.
///
/// The deadline is the earliest of the request's
/// [`Deadline`](sinew_core::Deadline) extension, now + the configured
/// timeout, and the ambient [`CallContext`](sinew_core::CallContext)'s
/// deadline (what is left of the inbound caller's). Then:
///
/// * at or below `min_remaining` (default 5 ms) left: fails at once with
///   [`DeadlineExceeded`](sinew_core::DeadlineExceeded), the inner service
///   is not called;
/// * otherwise the request gets the `Deadline` extension and, when the
///   priority is not the default `normal` (an absent
///   [`Priority`](sinew_core::Priority) means `normal`), the `Priority`
///   extension (read by retry and the per-attempt
///   [`PropagateDeadlineLayer`](crate::PropagateDeadlineLayer)),
///   and, unless turned off, the `x-request-timeout` (remaining seconds, ms
///   precision), `x-request-priority` and optionally `grpc-timeout` headers;
/// * at the deadline the inner future is dropped (cancelling the call) and
///   the caller gets `DeadlineExceeded`, boxed.
///
/// The priority is the request's `Priority` extension, else the ambient
/// context's, else `normal`. A call without any deadline is passed through
/// (with its priority header).
///
/// Like `tower::timeout`, the deadline covers the call until the response
/// head arrives; reading a streamed body afterwards is up to the caller
/// (e.g. `tokio::time::timeout_at` with the request's `Deadline`).
#[derive(Debug, Clone, Default)]
pub struct DeadlineLayer {
    config: DeadlineConfig,
    write_headers: bool,
}

impl DeadlineLayer {
    /// A layer with the default configuration (no timeout of its own).
    pub fn new() -> Self {
        Self::from_config(DeadlineConfig::default())
    }

    /// A layer from a configuration (the `[deadline]` config section).
    pub fn from_config(config: DeadlineConfig) -> Self {
        DeadlineLayer {
            config,
            write_headers: true,
        }
    }

    /// Every call must finish within `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(timeout);
        self
    }

    /// Fail at once when `min` or less is left (default 5 ms).
    pub fn min_remaining(mut self, min: Duration) -> Self {
        self.config.min_remaining = min;
        self
    }

    /// Also send `grpc-timeout` (default false).
    pub fn grpc_timeout(mut self, yes: bool) -> Self {
        self.config.grpc_timeout = yes;
        self
    }

    /// Whether this layer writes the headers itself (default true). Turn it
    /// off when a [`PropagateDeadlineLayer`](crate::PropagateDeadlineLayer)
    /// below writes them per attempt anyway.
    pub fn write_headers(mut self, yes: bool) -> Self {
        self.write_headers = yes;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &DeadlineConfig {
        &self.config
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService {
            inner,
            config: self.config.clone(),
            write_headers: self.write_headers,
        }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct DeadlineService<S> {
    inner: S,
    config: DeadlineConfig,
    write_headers: bool,
}

impl<S> DeadlineService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for DeadlineService<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let now = Instant::now();
        let own = self.config.timeout.and_then(|t| now.checked_add(t));
        let deadline = match (effective_deadline(&req), own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let priority = effective_priority(&req);
        // Settle an inherited priority for the layers below, which may run
        // where the ambient context is not visible (a spawned worker). The
        // default needs no extension: absent means `Normal` everywhere, and
        // a call that sets none saves the allocation, and its copy in each
        // retry's template.
        if priority != Priority::Normal && req.extensions().get::<Priority>().is_none() {
            req.extensions_mut().insert(priority);
        }
        let remaining = deadline.map(|d| d.saturating_duration_since(now));
        if let Some(left) = remaining {
            if left <= self.config.min_remaining {
                tracing::debug!(
                    remaining_ms = left.as_millis() as u64,
                    min_remaining_ms = self.config.min_remaining.as_millis() as u64,
                    "deadline too close: call failed without sending"
                );
                metrics::counter!("sinew_deadline_exceeded_total", "stage" => "before_send")
                    .increment(1);
                return ResponseFuture::expired();
            }
        }
        if let Some(d) = deadline {
            req.extensions_mut().insert(Deadline(d));
        }
        if self.write_headers {
            super::write_headers(
                req.headers_mut(),
                remaining,
                priority,
                self.config.grpc_timeout,
            );
        }
        ResponseFuture::new(self.inner.call(req), deadline)
    }
}
