use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use sinew_core::headers::X_REQUEST_PRIORITY;
use sinew_core::problem::Problem;
use sinew_core::{CallContext, Priority, ResponseBody};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::future::ResponseFuture;
use super::state::State;
use crate::config::ShedConfig;

/// A server layer that limits concurrency and sheds by priority.
///
/// At most `max_concurrency` requests run at once. When saturated, `low`
/// is refused first (it may use all but `high_reserve + normal_reserve`
/// slots), then `normal` (all but `high_reserve`); `high` may use every slot.
/// Unset reserves follow the limit and order the priorities at every limit
/// from 2 ([automatic reserves](crate::ShedConfig#automatic-reserves)).
/// Refusals are `503` problem+json (`reason` `overloaded`) with
/// `Retry-After` and without `X-Do-Not-Retry`, so a caller may retry
/// elsewhere; each is counted in `sinew_shed_requests_total{priority}`.
///
/// With a queue (`queue_size > 0`), a request that finds no slot waits for
/// one, but only while its deadline allows (deadline − `min_remaining`, at
/// most `max_queue_wait`), and is refused when that runs out. One that would
/// expire in the queue is refused at once: when it has no time to wait, or
/// less than the expected wait (a moving average of how long requests hold
/// their slot × the requests queued ahead of it, +1, ÷ the slots its
/// priority may use). Waiters are woken on every release and race for the
/// slot; a freed slot above the `low` or `normal` capacity can only be
/// taken by a higher priority.
///
/// The priority and deadline come from the [`CallContext`] that
/// [`ServerDeadlineLayer`](crate::ServerDeadlineLayer) stores in the
/// request (put that layer outside this one); without it, from the
/// `x-request-priority` header (an invalid one counts as `normal`) and the
/// ambient context.
///
/// All services made by one `ShedLayer` share one limit (an axum server
/// clones the service per connection). A slot is held until the inner
/// service's response future completes (the response head is ready) or is
/// dropped, like `tower::limit::ConcurrencyLimit`; a streaming body is not
/// counted after that (so a slow client reading a large body cannot hold a
/// slot).
///
/// ```
/// use axum::{routing::get, Router};
/// use sinew_deadline::{ServerDeadlineLayer, ShedLayer};
///
/// // axum applies the last `.layer` outermost: the deadline layer parses
/// // the headers first, then shedding reads its priority and deadline.
/// let shed = ShedLayer::with_limit(256);
/// let app: Router = Router::new()
///     .route("/orders", get(|| async { "[]" }))
///     .layer(shed.clone())
///     .layer(ServerDeadlineLayer::new());
/// assert_eq!(shed.capacity(sinew_core::Priority::Low), 192);
/// # drop(app);
/// ```
#[derive(Debug, Clone)]
pub struct ShedLayer {
    state: Arc<State>,
}

impl Default for ShedLayer {
    fn default() -> Self {
        Self::new(ShedConfig::default())
    }
}

impl ShedLayer {
    /// A layer with its own limit.
    pub fn new(config: ShedConfig) -> Self {
        ShedLayer {
            state: Arc::new(State::new(config)),
        }
    }

    /// A layer with `max_concurrency` slots and the automatic reserves
    /// (1/8 for `high` and 1/8 more for `normal` and above, but at least
    /// one slot for `high` from 2 slots and for `normal` from 3; see
    /// [`ShedConfig`](crate::ShedConfig#automatic-reserves)), no queue.
    pub fn with_limit(max_concurrency: usize) -> Self {
        Self::new(ShedConfig::with_limit(max_concurrency))
    }

    /// Requests in flight now, all priorities together.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight()
    }

    /// How many requests of `priority` may be in flight before it is shed
    /// (for `low`, one fewer while a soft `normal` reserve holds).
    pub fn capacity(&self, priority: Priority) -> usize {
        self.state.cap(priority)
    }

    /// The configuration.
    pub fn config(&self) -> &ShedConfig {
        &self.state.config
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service of [`ShedLayer`].
#[derive(Debug, Clone)]
pub struct Shed<S> {
    inner: S,
    state: Arc<State>,
}

impl<S> Shed<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

pub(crate) fn refusal<B>(
    priority: Priority,
    config: &ShedConfig,
    queued: bool,
) -> Response<ResponseBody<B>> {
    tracing::debug!(priority = priority.as_str(), queued, "request shed");
    metrics::counter!("sinew_shed_requests_total", "priority" => priority.as_str()).increment(1);
    let secs = config.retry_after.as_secs() + u64::from(config.retry_after.subsec_nanos() > 0);
    let mut res: Response<ResponseBody<B>> =
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded")
            .detail(format!(
                "the server is at its concurrency limit for {priority} priority requests"
            ))
            .with("priority", priority.as_str())
            .with("reason", "overloaded")
            .into_response();
    let value = HeaderValue::from(secs.max(1));
    res.headers_mut().insert(http::header::RETRY_AFTER, value);
    res
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Shed<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    ReqB: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let (priority, deadline) = match req.extensions().get::<CallContext>() {
            Some(ctx) => (ctx.priority(), ctx.deadline()),
            None => (
                req.headers()
                    .get(X_REQUEST_PRIORITY)
                    .and_then(|v| Priority::parse(v.as_bytes()))
                    .unwrap_or_default(),
                CallContext::current().and_then(|c| c.deadline()),
            ),
        };
        if let Some(slot) = self.state.try_acquire(priority) {
            return ResponseFuture::running(self.inner.call(req), slot);
        }
        let config = &self.state.config;
        let budget = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .saturating_sub(config.min_remaining)
                .min(config.max_queue_wait),
            None => config.max_queue_wait,
        };
        // Refuse at once a request that would expire in the queue: no time
        // to wait at all, or less than the expected wait.
        let expected = self.state.expected_wait(priority);
        let worth_waiting = budget > Duration::ZERO && expected <= budget;
        if !worth_waiting {
            tracing::trace!(
                priority = priority.as_str(),
                budget_ms = budget.as_millis() as u64,
                expected_wait_ms = expected.as_millis() as u64,
                "not queued: would expire in the queue"
            );
        }
        let place = match worth_waiting.then(|| self.state.enqueue()).flatten() {
            Some(place) => place,
            None => {
                self.state.shed(priority);
                return ResponseFuture::refused(refusal(priority, config, false));
            }
        };
        tracing::trace!(
            priority = priority.as_str(),
            budget_ms = budget.as_millis() as u64,
            "request queued"
        );
        // The ready service goes with the request; a clone stays for the next.
        let clone = self.inner.clone();
        let mut svc = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        ResponseFuture::queued(Box::pin(async move {
            let Some(slot) = place.wait(priority, budget).await else {
                state.shed(priority);
                return Ok(refusal(priority, &state.config, true));
            };
            let res = svc.call(req).await;
            drop(slot);
            res.map(|r| r.map(ResponseBody::new))
        }))
    }
}
