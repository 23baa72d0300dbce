//! The response future of [`CircuitBreaker`](crate::CircuitBreaker).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use sinew_core::{BoxError, CircuitOpen};
use tokio::time::Instant;

use crate::state::{report, Admit, Breaker};

/// Reports an admitted call's outcome, or releases its probe slot when the
/// call is dropped before it ends.
#[derive(Debug)]
pub(crate) struct Guard {
    breaker: Arc<Breaker>,
    admit: Admit,
    started: Instant,
    done: bool,
}

impl Guard {
    pub(crate) fn new(breaker: Arc<Breaker>, admit: Admit, started: Instant) -> Self {
        Guard {
            breaker,
            admit,
            started,
            done: false,
        }
    }

    fn finish(&mut self, failure: bool) {
        self.done = true;
        // A success on a quiet closed breaker changes nothing: no clock read.
        if !self.breaker.needs_record(self.admit, failure) {
            return;
        }
        let now = Instant::now();
        let t = self.breaker.record(
            self.admit,
            failure,
            now.saturating_duration_since(self.started),
            now,
        );
        if let Some(t) = t {
            report(self.breaker.key(), t);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.release(self.admit);
        }
    }
}

pin_project! {
    /// The response future of [`CircuitBreaker`](crate::CircuitBreaker).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        guard: Option<Guard>,
        refused: Option<CircuitOpen>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(inner: F, guard: Guard) -> Self {
        ResponseFuture {
            inner: Some(inner),
            guard: Some(guard),
            refused: None,
        }
    }

    pub(crate) fn refused(err: CircuitOpen) -> Self {
        ResponseFuture {
            inner: None,
            guard: None,
            refused: Some(err),
        }
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            let err = this
                .refused
                .take()
                .unwrap_or_else(|| CircuitOpen::new("", None));
            return Poll::Ready(Err(Box::new(err)));
        };
        let out = match inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r.map_err(Into::into),
        };
        if let Some(mut guard) = this.guard.take() {
            let failure = match &out {
                Ok(resp) => guard
                    .breaker
                    .policy
                    .config
                    .classifier
                    .classify_response(resp)
                    .is_failure(),
                Err(e) => guard
                    .breaker
                    .policy
                    .config
                    .classifier
                    .classify_error(&**e)
                    .is_failure(),
            };
            guard.finish(failure);
        }
        Poll::Ready(out)
    }
}
