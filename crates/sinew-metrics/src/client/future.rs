use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;
use sinew_core::classify::{failure_kind_of, Classification, FailureKind};
use sinew_core::headers::X_CIRCUIT_BREAKER;
use sinew_core::{BoxError, Classifier};
use tokio::time::Instant;
use tracing::Span;

use crate::cache::{Handles, Name, Outcome, Value};
use crate::config::{Naming, Scope};

pin_project! {
    /// The response future of the client [`Metrics`](super::Metrics) service.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        recording: Option<Recording>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, recording: Recording) -> Self {
        ResponseFuture {
            inner,
            recording: Some(recording),
        }
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.recording.as_ref().map(|r| r.span.enter());
            ready!(this.inner.poll(cx))
        };
        let recording = this.recording.take();
        Poll::Ready(match result {
            Ok(response) => {
                if let Some(mut r) = recording {
                    r.response(&response);
                }
                Ok(response)
            }
            Err(e) => {
                let e: BoxError = e.into();
                if let Some(mut r) = recording {
                    r.error(&*e);
                }
                Err(e)
            }
        })
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// What one call or attempt records when it ends. Dropped unfinished (the
/// caller gave up, a hedge lost) it records the outcome `cancelled`.
pub(crate) struct Recording {
    pub(crate) start: Instant,
    pub(crate) naming: Naming,
    pub(crate) scope: Scope,
    pub(crate) classifier: Classifier,
    pub(crate) handles: Handles,
    pub(crate) span: Span,
    pub(crate) done: bool,
}

/// aio-request's `circuit_breaker` label value.
fn flag(yes: bool) -> &'static str {
    if yes {
        "True"
    } else {
        "False"
    }
}

impl Recording {
    fn response<B>(&mut self, response: &Response<B>) {
        let status = response.status();
        let error_type = match self.classifier.classify_response(response) {
            Classification::Success => None,
            Classification::Failure(kind) => Some(kind.as_str()),
        };
        let mut outcome = Outcome::default();
        match self.naming {
            Naming::Otel => {
                outcome.push(Name::StatusCode, Value::Status(status.as_u16()));
                if let Some(e) = error_type {
                    outcome.push(Name::ErrorType, Value::Str(e));
                }
            }
            Naming::AioRequest => {
                outcome.push(Name::ResponseStatus, Value::Status(status.as_u16()));
                if self.scope == Scope::Call {
                    let breaker = response.headers().contains_key(X_CIRCUIT_BREAKER);
                    outcome.push(Name::CircuitBreaker, Value::Str(flag(breaker)));
                }
            }
        }
        self.span
            .record("http.response.status_code", status.as_u16());
        if let Some(e) = error_type {
            self.span.record("error.type", e);
        }
        #[cfg(feature = "opentelemetry")]
        if status.as_u16() >= 400 {
            crate::otel::set_error(&self.span, error_type.unwrap_or(""));
        }
        tracing::debug!(parent: &self.span, status = status.as_u16(), error.type = error_type, "http client response");
        self.finish(outcome);
    }

    fn error(&mut self, error: &(dyn std::error::Error + 'static)) {
        let kind = failure_kind_of(error);
        let mut outcome = Outcome::default();
        match self.naming {
            Naming::Otel => outcome.push(Name::ErrorType, Value::Str(kind.as_str())),
            Naming::AioRequest => {
                // aio-request answers a timeout with 408, an open breaker
                // with a 502 marked X-Circuit-Breaker, and anything else
                // (network errors, cancellation) with 499.
                let status = match kind {
                    FailureKind::Timeout => 408,
                    FailureKind::CircuitOpen => 502,
                    _ => 499,
                };
                outcome.push(Name::ResponseStatus, Value::Status(status));
                if self.scope == Scope::Call {
                    let breaker = kind == FailureKind::CircuitOpen;
                    outcome.push(Name::CircuitBreaker, Value::Str(flag(breaker)));
                }
            }
        }
        self.span.record("error.type", kind.as_str());
        #[cfg(feature = "opentelemetry")]
        crate::otel::set_error(&self.span, kind.as_str());
        tracing::debug!(parent: &self.span, error = %error, error.type = kind.as_str(), "http client call failed");
        self.finish(outcome);
    }

    fn cancelled(&mut self) {
        let mut outcome = Outcome::default();
        match self.naming {
            Naming::Otel => outcome.push(Name::ErrorType, Value::Str(CANCELLED)),
            Naming::AioRequest => {
                outcome.push(Name::ResponseStatus, Value::Status(499));
                if self.scope == Scope::Call {
                    outcome.push(Name::CircuitBreaker, Value::Str(flag(false)));
                }
            }
        }
        self.span.record("error.type", CANCELLED);
        #[cfg(feature = "opentelemetry")]
        crate::otel::set_error(&self.span, CANCELLED);
        tracing::debug!(parent: &self.span, "http client call cancelled");
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        self.done = true;
        let seconds = self.start.elapsed().as_secs_f64();
        self.handles.record(&outcome, seconds);
    }
}

/// The `error_type` of a call or attempt dropped before it finished.
pub(crate) const CANCELLED: &str = "cancelled";

impl Drop for Recording {
    fn drop(&mut self) {
        if !self.done {
            self.cancelled();
        }
        self.handles.release();
    }
}
