use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use sinew_core::CallContext;

use super::future::ServerRecording;

pin_project! {
    /// The response body of [`ServerMetrics`](super::ServerMetrics): the
    /// inner body, recording the request's duration when it ends (end of
    /// stream, an error, or being dropped, e.g. when the client goes away or
    /// for a `HEAD` response that is never polled). The inner body is polled
    /// inside the request's call context, so a streaming body that makes
    /// calls continues the trace too.
    pub struct MetricsBody<B> {
        #[pin]
        inner: B,
        recording: Option<ServerRecording>,
        ctx: CallContext,
    }
}

impl<B: Body> MetricsBody<B> {
    pub(crate) fn new(inner: B, recording: Option<ServerRecording>, ctx: CallContext) -> Self {
        let mut recording = recording;
        if inner.is_end_stream() {
            // An empty body is finished as soon as the headers are.
            if let Some(mut r) = recording.take() {
                r.finish();
            }
        }
        MetricsBody {
            inner,
            recording,
            ctx,
        }
    }
}

impl<B> std::fmt::Debug for MetricsBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsBody")
            .field("recording", &self.recording.is_some())
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for MetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let ctx = *this.ctx;
        let frame = ready!(ctx.sync_scope(|| this.inner.as_mut().poll_frame(cx)));
        match &frame {
            None => {
                if let Some(mut r) = this.recording.take() {
                    r.finish();
                }
            }
            Some(Err(_)) => {
                if let Some(mut r) = this.recording.take() {
                    r.body_failed();
                }
            }
            Some(Ok(_)) => {
                if this.inner.is_end_stream() {
                    if let Some(mut r) = this.recording.take() {
                        r.finish();
                    }
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
