use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use sinew_core::{BoxError, DeadlineExceeded};
use tokio::time::{Instant, Sleep};

pin_project! {
    /// The response future of [`DeadlineService`](crate::DeadlineService):
    /// the inner future raced against the deadline.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Expired,
        Running {
            #[pin]
            inner: F,
            #[pin]
            sleep: Option<Sleep>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn expired() -> Self {
        ResponseFuture {
            kind: Kind::Expired,
        }
    }

    pub(crate) fn new(inner: F, deadline: Option<Instant>) -> Self {
        ResponseFuture {
            kind: Kind::Running {
                inner,
                sleep: deadline.map(tokio::time::sleep_until),
            },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Expired => Poll::Ready(Err(DeadlineExceeded::new().into())),
            KindProj::Running { inner, sleep } => {
                if let Poll::Ready(out) = inner.poll(cx) {
                    return Poll::Ready(out.map_err(Into::into));
                }
                let fired = sleep.as_pin_mut().is_some_and(|s| s.poll(cx).is_ready());
                if !fired {
                    return Poll::Pending;
                }
                {
                    tracing::debug!("deadline passed: call cancelled");
                    metrics::counter!("sinew_deadline_exceeded_total", "stage" => "in_flight")
                        .increment(1);
                    Poll::Ready(Err(DeadlineExceeded::new().into()))
                }
            }
        }
    }
}
