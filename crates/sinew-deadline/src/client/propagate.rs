use std::task::{Context, Poll};

use http::Request;
use sinew_core::context::{effective_deadline, effective_priority};
use tokio::time::Instant;
use tower::{Layer, Service};

/// The per-attempt layer that (re)writes `x-request-timeout`,
/// `x-request-priority` and optionally `grpc-timeout` just before sending.
///
/// Place it below retry/hedging (and above signing, so a signature may cover
/// these headers) so every attempt carries what is left of the deadline at
/// the moment it is sent. It reads
/// the request's [`Deadline`](sinew_core::Deadline) and
/// [`Priority`](sinew_core::Priority) extensions (set by
/// [`DeadlineLayer`](crate::DeadlineLayer)) and falls back to the ambient
/// [`CallContext`](sinew_core::CallContext). It never fails a request: the
/// enforcing is `DeadlineLayer`'s job.
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateDeadlineLayer {
    grpc_timeout: bool,
}

impl PropagateDeadlineLayer {
    /// A layer writing `x-request-timeout` and `x-request-priority`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also write `grpc-timeout`.
    pub fn grpc_timeout(mut self, yes: bool) -> Self {
        self.grpc_timeout = yes;
        self
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline {
            inner,
            grpc_timeout: self.grpc_timeout,
        }
    }
}

/// The service of [`PropagateDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct PropagateDeadline<S> {
    inner: S,
    grpc_timeout: bool,
}

impl<S> PropagateDeadline<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for PropagateDeadline<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let now = Instant::now();
        let remaining = effective_deadline(&req).map(|d| d.saturating_duration_since(now));
        let priority = effective_priority(&req);
        super::write_headers(req.headers_mut(), remaining, priority, self.grpc_timeout);
        self.inner.call(req)
    }
}
