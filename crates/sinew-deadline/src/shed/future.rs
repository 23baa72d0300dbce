use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;
use sinew_core::ResponseBody;

use super::state::Slot;

type Boxed<B, E> = Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

pin_project! {
    /// The response future of [`Shed`](crate::Shed): a refusal, the inner
    /// future holding its slot, or (queueing on) a boxed wait-then-call.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Refused {
            response: Option<Response<ResponseBody<B>>>,
        },
        Running {
            #[pin]
            inner: F,
            slot: Option<Slot>,
        },
        Queued {
            fut: Boxed<B, E>,
        },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn refused(response: Response<ResponseBody<B>>) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }

    pub(crate) fn running(inner: F, slot: Slot) -> Self {
        ResponseFuture {
            kind: Kind::Running {
                inner,
                slot: Some(slot),
            },
        }
    }

    pub(crate) fn queued(fut: Boxed<B, E>) -> Self {
        ResponseFuture {
            kind: Kind::Queued { fut },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Refused { response } => {
                Poll::Ready(Ok(response.take().expect("future polled after completion")))
            }
            KindProj::Running { inner, slot } => {
                let out = std::task::ready!(inner.poll(cx));
                drop(slot.take());
                Poll::Ready(out.map(|res| res.map(ResponseBody::new)))
            }
            KindProj::Queued { fut } => fut.as_mut().poll(cx),
        }
    }
}
