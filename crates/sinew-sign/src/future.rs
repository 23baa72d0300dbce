//! Response futures of the services.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use sinew_core::BoxError;

type BoxFut<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

/// The response future of [`HmacSign`](crate::HmacSign).
///
/// Reading the body into memory is asynchronous, so the whole call is one
/// boxed future (one allocation per request).
pub struct SignFuture<T> {
    pub(crate) inner: BoxFut<T, BoxError>,
}

impl<T> Future for SignFuture<T> {
    type Output = Result<T, BoxError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<T> fmt::Debug for SignFuture<T> {
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
