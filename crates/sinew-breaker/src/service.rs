//! The [`CircuitBreaker`] service.

use std::task::{Context, Poll};

use http::Request;
use sinew_core::{BoxError, CircuitOpen};
use tokio::time::Instant;
use tower::Service;

use crate::future::{Guard, ResponseFuture};
use crate::layer::CircuitBreakerLayer;
use crate::state::report;

/// The service of [`CircuitBreakerLayer`]. Rejection happens in `call`, not
/// by withholding readiness, so one open key never blocks the others.
#[derive(Clone, Debug)]
pub struct CircuitBreaker<S> {
    inner: S,
    layer: CircuitBreakerLayer,
}

impl<S> CircuitBreaker<S> {
    pub(crate) fn new(inner: S, layer: CircuitBreakerLayer) -> Self {
        CircuitBreaker { inner, layer }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwrap the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The default key: the URI's authority, else the `Host` header.
fn default_key<B>(req: &Request<B>) -> &str {
    if let Some(a) = req.uri().authority() {
        return a.as_str();
    }
    req.headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
}

impl<S, B, ResB> Service<Request<B>> for CircuitBreaker<S>
where
    S: Service<Request<B>, Response = http::Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let now = Instant::now();
        let registry = &self.layer.registry;
        let breaker = match &self.layer.key_fn {
            Some(f) => registry.get(&f(req.method(), req.uri(), req.headers()), now),
            None => registry.get(default_key(&req), now),
        };
        let (admit, transition) = breaker.acquire(now, registry.config());
        if let Some(t) = transition {
            report(breaker.key(), t);
        }
        match admit {
            Ok(admit) => {
                ResponseFuture::called(self.inner.call(req), Guard::new(breaker, admit, now))
            }
            Err(retry_after) => {
                tracing::debug!(key = %breaker.key(), "circuit open: call refused");
                metrics::counter!("sinew_circuit_breaker_rejections_total").increment(1);
                ResponseFuture::refused(CircuitOpen::new(breaker.key().to_string(), retry_after))
            }
        }
    }
}
