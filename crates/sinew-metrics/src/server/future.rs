use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use sinew_core::CallContext;
use tokio::task::futures::TaskLocalFuture;
use tokio::time::Instant;
use tracing::Span;

use super::body::MetricsBody;
use crate::cache::{Handles, Name, Outcome, Value};
use crate::config::Naming;

pin_project! {
    /// The response future of [`ServerMetrics`](super::ServerMetrics).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: TaskLocalFuture<CallContext, F>,
        recording: Option<ServerRecording>,
        ctx: CallContext,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: TaskLocalFuture<CallContext, F>,
        recording: ServerRecording,
        ctx: CallContext,
    ) -> Self {
        ResponseFuture {
            inner,
            recording: Some(recording),
            ctx,
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    ResB: http_body::Body,
{
    type Output = Result<Response<MetricsBody<ResB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.recording.as_ref().map(|r| r.span.enter());
            ready!(this.inner.poll(cx))
        };
        let recording = this.recording.take();
        Poll::Ready(match result {
            Ok(response) => {
                let recording = recording.map(|mut r| {
                    r.status(response.status());
                    r
                });
                let ctx = *this.ctx;
                Ok(response.map(|body| MetricsBody::new(body, recording, ctx)))
            }
            Err(e) => {
                if let Some(mut r) = recording {
                    r.failed();
                }
                Err(e)
            }
        })
    }
}

/// What one server request records when its response body ends (or is
/// dropped).
pub(crate) struct ServerRecording {
    start: Instant,
    naming: Naming,
    handles: Handles,
    outcome: Outcome,
    pub(crate) span: Span,
    has_status: bool,
    done: bool,
}

impl ServerRecording {
    pub(crate) fn new(start: Instant, naming: Naming, handles: Handles, span: Span) -> Self {
        ServerRecording {
            start,
            naming,
            handles,
            outcome: Outcome::default(),
            span,
            has_status: false,
            done: false,
        }
    }

    fn status(&mut self, status: StatusCode) {
        self.has_status = true;
        let value = Value::Status(status.as_u16());
        match self.naming {
            Naming::Otel => {
                self.outcome.push(Name::StatusCode, value);
                // OpenTelemetry: a server 5xx is an error, error.type = the code.
                if status.is_server_error() {
                    self.outcome.push(Name::ErrorType, value);
                    self.span.record("error.type", status.as_str());
                }
            }
            Naming::AioRequest => self.outcome.push(Name::ResponseStatus, value),
        }
        self.span
            .record("http.response.status_code", status.as_u16());
        #[cfg(feature = "opentelemetry")]
        if status.is_server_error() {
            crate::otel::set_error(&self.span, "");
        }
    }

    /// The inner service failed: no response at all.
    fn failed(&mut self) {
        self.outcome_without_status(500, OTHER);
        tracing::debug!(parent: &self.span, "http server: inner service failed");
        self.finish();
    }

    fn outcome_without_status(&mut self, aio_status: u16, error_type: &'static str) {
        match self.naming {
            Naming::Otel => self.outcome.push(Name::ErrorType, Value::Str(error_type)),
            Naming::AioRequest => self
                .outcome
                .push(Name::ResponseStatus, Value::Status(aio_status)),
        }
        self.span.record("error.type", error_type);
        #[cfg(feature = "opentelemetry")]
        crate::otel::set_error(&self.span, error_type);
    }

    /// The response body failed after the headers were sent.
    pub(crate) fn body_failed(&mut self) {
        if self.naming == Naming::Otel && !self.outcome.has(Name::ErrorType) {
            self.outcome.push(Name::ErrorType, Value::Str(BODY_ERROR));
        }
        self.span.record("error.type", BODY_ERROR);
        #[cfg(feature = "opentelemetry")]
        crate::otel::set_error(&self.span, BODY_ERROR);
        tracing::debug!(parent: &self.span, "http server: response body failed");
        self.finish();
    }

    pub(crate) fn finish(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let seconds = self.start.elapsed().as_secs_f64();
        self.handles.record(&self.outcome, seconds);
        self.handles.release();
    }
}

/// `error_type` when the inner service returned an error instead of a
/// response (OpenTelemetry's fallback value).
const OTHER: &str = "_OTHER";
/// `error_type` when the response body failed while being sent.
const BODY_ERROR: &str = "body";
/// `error_type` when the request was dropped before the response was ready
/// (the client went away).
const CANCELLED: &str = "cancelled";

impl Drop for ServerRecording {
    fn drop(&mut self) {
        if !self.done {
            if !self.has_status {
                self.outcome_without_status(499, CANCELLED);
            }
            self.finish();
        }
    }
}
