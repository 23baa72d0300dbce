use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;
use sinew_core::headers::X_DO_NOT_RETRY;
use sinew_core::problem::Problem;
use sinew_core::{CallContext, ResponseBody};
use tokio::task::futures::TaskLocalFuture;
use tokio::time::{Instant, Sleep};

pin_project! {
    /// The response future of [`ServerDeadline`](crate::ServerDeadline): a
    /// refusal, or the handler running in its call context (raced against
    /// the deadline when cancelling is on).
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Refused {
            response: Option<Response<ResponseBody<B>>>,
        },
        Running {
            #[pin]
            inner: TaskLocalFuture<CallContext, F>,
            #[pin]
            cancel: Option<Sleep>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn refused(response: Response<ResponseBody<B>>) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }

    pub(crate) fn running(
        inner: TaskLocalFuture<CallContext, F>,
        cancel_at: Option<Instant>,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Running {
                inner,
                cancel: cancel_at.map(tokio::time::sleep_until),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Refused { response } => {
                Poll::Ready(Ok(response.take().expect("future polled after completion")))
            }
            KindProj::Running { inner, cancel } => {
                if let Poll::Ready(out) = inner.poll(cx) {
                    return Poll::Ready(out.map(|res| res.map(ResponseBody::new)));
                }
                let fired = cancel.as_pin_mut().is_some_and(|s| s.poll(cx).is_ready());
                if !fired {
                    return Poll::Pending;
                }
                {
                    tracing::debug!("deadline passed: handler cancelled");
                    metrics::counter!("sinew_deadline_rejections_total", "reason" => "cancelled")
                        .increment(1);
                    let mut res: Response<ResponseBody<B>> =
                        Problem::new(StatusCode::GATEWAY_TIMEOUT, "deadline exceeded")
                            .detail("the handler did not finish before the caller's deadline")
                            .with("reason", "deadline_exceeded")
                            .into_response();
                    res.headers_mut()
                        .insert(X_DO_NOT_RETRY, HeaderValue::from_static("1"));
                    Poll::Ready(Ok(res))
                }
            }
        }
    }
}
