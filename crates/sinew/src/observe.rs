//! A hook on every attempt (after retries and balancing chose it), for
//! tools like `sinew call -v`.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode, Uri};
use sinew_core::{Body, BoxError};
use tokio::time::Instant;
use tower::Service;

/// What one attempt did.
#[derive(Debug, Clone)]
pub struct AttemptInfo {
    /// The method.
    pub method: Method,
    /// The URI as sent (with the endpoint the balancer chose).
    pub uri: Uri,
    /// The status, when a response came back.
    pub status: Option<StatusCode>,
    /// The error, when none did.
    pub error: Option<String>,
    /// From sending to the response head (or the error).
    pub elapsed: Duration,
}

/// A callback for every attempt.
pub type AttemptHook = Arc<dyn Fn(&AttemptInfo) + Send + Sync>;

/// The layer that calls an [`AttemptHook`].
#[derive(Clone)]
pub(crate) struct ObserveLayer {
    hook: AttemptHook,
}

impl ObserveLayer {
    pub(crate) fn new(hook: AttemptHook) -> Self {
        ObserveLayer { hook }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            hook: self.hook.clone(),
        }
    }
}

/// The service of [`ObserveLayer`].
#[derive(Clone)]
pub(crate) struct Observe<S> {
    inner: S,
    hook: AttemptHook,
}

impl<S, R> Service<Request<Body>> for Observe<S>
where
    S: Service<Request<Body>, Response = http::Response<R>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<http::Response<R>, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let method = req.method().clone();
        let uri = req.uri().clone();
        let hook = self.hook.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let started = Instant::now();
            let result = fut.await;
            let info = AttemptInfo {
                method,
                uri,
                status: result.as_ref().ok().map(|r| r.status()),
                error: result.as_ref().err().map(|e| e.to_string()),
                elapsed: started.elapsed(),
            };
            hook(&info);
            result
        })
    }
}
