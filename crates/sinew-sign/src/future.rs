//! Response futures of the services.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use sinew_core::BoxError;

type BoxFut<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

pin_project_lite::pin_project! {
    /// The response future of [`HmacSign`](crate::HmacSign).
    ///
    /// A body already in memory (or known empty) is signed in `call` and
    /// the inner future is polled in place; a streamed body is read into
    /// memory first, in one boxed future.
    pub struct SignFuture<F, T> {
        #[pin]
        state: SignState<F, T>,
    }
}

pin_project_lite::pin_project! {
    #[project = SignProj]
    enum SignState<F, T> {
        Direct { #[pin] fut: F },
        Buffering { fut: BoxFut<T, BoxError> },
        Failed { error: Option<BoxError> },
    }
}

impl<F, T> SignFuture<F, T> {
    pub(crate) fn direct(fut: F) -> Self {
        SignFuture {
            state: SignState::Direct { fut },
        }
    }

    pub(crate) fn buffering(fut: BoxFut<T, BoxError>) -> Self {
        SignFuture {
            state: SignState::Buffering { fut },
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        SignFuture {
            state: SignState::Failed { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for SignFuture<F, T>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            SignProj::Direct { fut } => fut.poll(cx).map_err(Into::into),
            SignProj::Buffering { fut } => fut.as_mut().poll(cx),
            SignProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "sign future polled after completion".into()))),
        }
    }
}

impl<F, T> fmt::Debug for SignFuture<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignFuture")
    }
}

/// The response future of [`VerifySignature`](crate::VerifySignature).
///
/// Reading the body into memory is asynchronous, so the whole call is one
/// boxed future (one allocation per request).
pub struct VerifyFuture<T, E> {
    pub(crate) inner: BoxFut<T, E>,
}

impl<T, E> Future for VerifyFuture<T, E> {
    type Output = Result<T, E>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<T, E> fmt::Debug for VerifyFuture<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyFuture")
    }
}
