//! aio-request's fallback: a refused call becomes a `502` response.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;
use sinew_core::headers::{X_CIRCUIT_BREAKER, X_DO_NOT_RETRY};
use sinew_core::{BoxError, CircuitOpen};
use tower::{Layer, Service};

/// Put above a [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) to answer
/// its refusals with `502 Bad Gateway`, `X-Circuit-Breaker: 1` and
/// `X-Do-Not-Retry: 1` (what aio-request clients expect) instead of a
/// [`CircuitOpen`] error. The response body is `B::default()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FallbackLayer;

impl<S> Layer<S> for FallbackLayer {
    type Service = Fallback<S>;
    fn layer(&self, inner: S) -> Fallback<S> {
        Fallback { inner }
    }
}

/// The service of [`FallbackLayer`].
#[derive(Debug, Clone)]
pub struct Fallback<S> {
    inner: S,
}

impl<S, Req, B> Service<Req> for Fallback<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Default,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = FallbackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        FallbackFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The response future of [`Fallback`].
    #[derive(Debug)]
    pub struct FallbackFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, B, E> Future for FallbackFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Default,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(r)) => Poll::Ready(Ok(r)),
            Poll::Ready(Err(e)) => {
                let e: BoxError = e.into();
                if e.is::<CircuitOpen>() {
                    let mut res = Response::new(B::default());
                    *res.status_mut() = StatusCode::BAD_GATEWAY;
                    res.headers_mut()
                        .insert(X_CIRCUIT_BREAKER, HeaderValue::from_static("1"));
                    res.headers_mut()
                        .insert(X_DO_NOT_RETRY, HeaderValue::from_static("1"));
                    Poll::Ready(Ok(res))
                } else {
                    Poll::Ready(Err(e))
                }
            }
        }
    }
}
