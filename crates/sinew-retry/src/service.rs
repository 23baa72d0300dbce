//! [`Retry`]: the service [`RetryLayer`](crate::RetryLayer) produces.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use http::{Request, Response};
use sinew_core::body::{try_clone_request, TryCloneBody};
use sinew_core::context::effective_deadline;
use sinew_core::BoxError;
use tokio::time::Instant;
use tower::Service;

use crate::future::ResponseFuture;
use crate::layer::Policy;
use crate::policy::{eligible, NotReplayable};

/// Retries the requests of an inner service; see [`RetryLayer`](crate::RetryLayer).
#[derive(Clone)]
pub struct Retry<S> {
    pub(crate) inner: S,
    pub(crate) policy: Arc<Policy>,
    /// A copy of `inner` for later attempts, made on the first call and
    /// shared by every clone of this service: a call holds a handle to it and
    /// copies the service only when it retries, instead of every call
    /// copying the whole stack below.
    pub(crate) spare: Spare<S>,
}

/// The shared copy of the inner service later attempts are cloned from.
pub(crate) type Spare<S> = Arc<OnceLock<Mutex<S>>>;

impl<S> Retry<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, by value.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for Retry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("max_attempts", &self.policy.max_attempts)
            .finish()
    }
}

impl<S, B, RB> Service<Request<B>> for Retry<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: TryCloneBody,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let policy = &self.policy;
        if let Some(budget) = &policy.budget {
            budget.deposit();
        }
        let deadline = effective_deadline(&req);
        if deadline.is_some_and(|d| d <= Instant::now()) {
            tracing::debug!(
                method = %req.method(),
                "deadline passed before the first attempt; not sending"
            );
            return ResponseFuture::deadline_passed(self.policy.clone());
        }
        let mut replayable = if policy.max_attempts <= 1 {
            Err(NotReplayable::SingleAttempt)
        } else {
            eligible(&req, policy.methods)
        };
        let template = match replayable {
            Ok(()) => try_clone_request(&req),
            Err(_) => None,
        };
        let service = if template.is_some() {
            let inner = &self.inner;
            self.spare.get_or_init(|| Mutex::new(inner.clone()));
            Some(self.spare.clone())
        } else {
            if replayable.is_ok() {
                replayable = Err(NotReplayable::Body);
            }
            None
        };
        let future = self.inner.call(req);
        ResponseFuture::new(
            self.policy.clone(),
            future,
            template,
            service,
            replayable,
            deadline,
        )
    }
}
