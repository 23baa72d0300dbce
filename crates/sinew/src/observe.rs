//! A hook on every attempt (after retries and balancing chose it), for
//! tools like `sinew call -v`.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode, Uri};
use sinew_core::{Body, BoxError};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

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

pub(crate) fn observe<S, R>(
    inner: S,
    hook: AttemptHook,
) -> impl Service<
    Request<Body>,
    Response = http::Response<R>,
    Error = BoxError,
    Future = impl std::future::Future<Output = Result<http::Response<R>, BoxError>> + Send,
> + Clone
       + Send
       + Sync
where
    S: Service<Request<Body>, Response = http::Response<R>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    R: Send + 'static,
{
    tower::service_fn(move |req: Request<Body>| {
        let inner = inner.clone();
        let hook = hook.clone();
        async move {
            let method = req.method().clone();
            let uri = req.uri().clone();
            let started = Instant::now();
            let result = inner.oneshot(req).await;
            let info = AttemptInfo {
                method,
                uri,
                status: result.as_ref().ok().map(|r| r.status()),
                error: result.as_ref().err().map(|e| e.to_string()),
                elapsed: started.elapsed(),
            };
            hook(&info);
            result
        }
    })
}
