//! [`LoadBalanceLayer`], its service and its future.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use http::uri::{Parts, Scheme};
use http::{Request, Response, Uri};
use pin_project_lite::pin_project;
use sinew_core::{BoxError, Classifier, NoEndpoints};
use tokio::time::{Instant, Sleep};
use tower::discover::Change;
use tower::{Layer, Service};

use crate::endpoints::{Availability, Endpoint, EndpointState, Set, Strategy};

/// Passive health checking: eject an endpoint after consecutive failures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ejection {
    /// Failures in a row (per the shared classifier) that eject it
    /// (default 5).
    pub consecutive_failures: u32,
    /// How long the first ejection lasts; the k-th lasts k times as long
    /// (default 30 s).
    pub base: Duration,
    /// The longest ejection (default 5 min).
    pub max: Duration,
    /// At most this share of the endpoints is ejected at once (default 0.5).
    pub max_ejected: f64,
}

impl Default for Ejection {
    fn default() -> Self {
        Ejection {
            consecutive_failures: 5,
            base: Duration::from_secs(30),
            max: Duration::from_secs(300),
            max_ejected: 0.5,
        }
    }
}

/// The balancer's settings.
#[derive(Clone)]
pub struct BalanceConfig {
    /// How endpoints are picked (default P2C over peak-EWMA).
    pub strategy: Strategy,
    /// Outlier ejection (default on, see [`Ejection`]); `None` turns it off.
    pub ejection: Option<Ejection>,
    /// What counts as a failure.
    pub classifier: Classifier,
    /// Seed of the random strategies (for tests).
    pub seed: Option<u64>,
    /// When no endpoint is available, wait this long for one (within the
    /// call's deadline) before failing with
    /// [`NoEndpoints`](sinew_core::NoEndpoints); zero (the default) fails at
    /// once.
    pub wait_for_endpoints: Duration,
    /// Asked whether an endpoint may be picked now (by `host:port`); the
    /// facade says no for an endpoint whose circuit breaker is open. `None`:
    /// every endpoint may be.
    pub available: Option<Availability>,
}

impl std::fmt::Debug for BalanceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BalanceConfig")
            .field("strategy", &self.strategy)
            .field("ejection", &self.ejection)
            .field("classifier", &self.classifier)
            .field("seed", &self.seed)
            .field("wait_for_endpoints", &self.wait_for_endpoints)
            .field("available", &self.available.is_some())
            .finish()
    }
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            strategy: Strategy::P2cEwma,
            ejection: Some(Ejection::default()),
            classifier: Classifier::default(),
            seed: None,
            wait_for_endpoints: Duration::ZERO,
            available: None,
        }
    }
}

/// Picks an endpoint for every request and rewrites its URI's scheme and
/// authority to it, then calls the service below (the per-endpoint stack:
/// breaker, signing, per-attempt metrics, the client; those key their state
/// by the authority, so one inner service serves every endpoint).
///
/// Clones share the endpoint set and the load figures.
#[derive(Clone, Debug)]
pub struct LoadBalanceLayer {
    set: Arc<Set>,
    config: Arc<BalanceConfig>,
    scheme: Scheme,
}

/// An endpoint address that cannot be a URI authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEndpoint(pub String);

impl std::fmt::Display for InvalidEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid endpoint address {:?}: write it as host:port",
            self.0
        )
    }
}

impl std::error::Error for InvalidEndpoint {}

impl LoadBalanceLayer {
    /// A balancer over a static list of endpoints.
    pub fn new(config: BalanceConfig, endpoints: Vec<Endpoint>) -> Result<Self, InvalidEndpoint> {
        let layer = LoadBalanceLayer {
            set: Arc::new(Set::new(config.seed)),
            config: Arc::new(config),
            scheme: Scheme::HTTP,
        };
        let mut states = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            let address = e.address.clone();
            states.push(Arc::new(
                EndpointState::new(e).ok_or(InvalidEndpoint(address))?,
            ));
        }
        layer.set.update(|v| *v = states);
        Ok(layer)
    }

    /// Pick only endpoints (by `host:port`) for which `f` says yes, on top
    /// of any [`BalanceConfig::available`] check already set. The facade
    /// uses it to skip endpoints whose circuit breaker is open.
    pub fn available_if(mut self, f: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        let mut config = (*self.config).clone();
        config.available = Some(match config.available.take() {
            Some(before) => Arc::new(move |a: &str| before(a) && f(a)),
            None => Arc::new(f),
        });
        self.config = Arc::new(config);
        self
    }

    /// Judge outcomes for outlier ejection with `classifier` (the one the
    /// rest of the stack uses; the sinew facade calls this with the
    /// client's classifier). Clones made before share the endpoints, not
    /// the classifier.
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        if self.config.classifier != classifier {
            let mut config = (*self.config).clone();
            config.classifier = classifier;
            self.config = Arc::new(config);
        }
        self
    }

    /// Use `https` for the rewritten URIs (default `http`).
    pub fn https(mut self) -> Self {
        self.scheme = Scheme::HTTPS;
        self
    }

    /// Apply a discovery stream of `tower::discover::Change`s (inserts and
    /// removals keyed by address) in a background task, so any tower
    /// discover source plugs in. A removed endpoint gets no new calls; its
    /// calls in flight finish. The task ends with the stream or when the
    /// last clone of this layer and its services is dropped.
    ///
    /// Outside a tokio runtime the task starts with the first call.
    pub fn discover<D, E>(self, stream: D) -> Self
    where
        D: Stream<Item = Result<Change<String, Endpoint>, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let set = Arc::downgrade(&self.set);
        self.set.start(Box::pin(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(change) = stream.next().await {
                let Some(set) = set.upgrade() else {
                    return;
                };
                apply(&set, change);
            }
        }));
        self
    }

    /// How many calls each endpoint was picked for, by address.
    pub fn picks(&self) -> Vec<(String, u64)> {
        self.set
            .snapshot()
            .list
            .iter()
            .map(|e| (e.endpoint.address.clone(), e.picks.load(Ordering::Relaxed)))
            .collect()
    }

    /// The endpoints now, with whether each is ejected.
    pub fn endpoints(&self) -> Vec<(Endpoint, bool)> {
        let now = self.set.nanos(Instant::now());
        self.set
            .snapshot()
            .list
            .iter()
            .map(|e| (e.endpoint.clone(), e.is_ejected(now)))
            .collect()
    }
}

/// Apply one discovered change to the set.
fn apply<E: std::fmt::Display>(set: &Set, change: Result<Change<String, Endpoint>, E>) {
    match change {
        Ok(Change::Insert(key, endpoint)) => match EndpointState::new(endpoint) {
            Some(state) => {
                tracing::info!(endpoint = %key, "endpoint added");
                let state = Arc::new(state);
                set.update(|v| {
                    v.retain(|e| e.endpoint.address != key);
                    v.push(state);
                });
            }
            None => tracing::warn!(endpoint = %key, "invalid endpoint ignored"),
        },
        Ok(Change::Remove(key)) => {
            tracing::info!(endpoint = %key, "endpoint removed");
            set.update(|v| v.retain(|e| e.endpoint.address != key));
        }
        Err(e) => tracing::warn!(error = %e, "discovery error; keeping the endpoints"),
    }
}

impl<S> Layer<S> for LoadBalanceLayer {
    type Service = LoadBalance<S>;
    fn layer(&self, inner: S) -> LoadBalance<S> {
        LoadBalance {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`LoadBalanceLayer`].
#[derive(Clone, Debug)]
pub struct LoadBalance<S> {
    inner: S,
    layer: LoadBalanceLayer,
}

impl<S, B, ResB> Service<Request<B>> for LoadBalance<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let now = Instant::now();
        let layer = &self.layer;
        layer.set.start_pending();
        let snap = layer.set.snapshot();
        if let Some(endpoint) = layer.set.pick(
            layer.config.strategy,
            &snap,
            layer.config.available.as_ref(),
            now,
        ) {
            let (fut, guard) = layer.send(&mut self.inner, req, endpoint, now);
            return ResponseFuture::called(fut, guard, layer.clone());
        }
        // None now: wait for one, up to the configured time and the call's
        // deadline, or fail at once.
        let mut limit = now + layer.config.wait_for_endpoints;
        if let Some(deadline) = sinew_core::context::effective_deadline(&req) {
            limit = limit.min(deadline);
        }
        if limit <= now {
            tracing::warn!(endpoints = snap.list.len(), "no endpoint available");
            return ResponseFuture::failed(layer.clone());
        }
        // The clone is made ready in the future; `self.inner` stays ready.
        let svc = self.inner.clone();
        ResponseFuture::waiting(svc, req, limit, layer.clone())
    }
}

impl LoadBalanceLayer {
    /// Point `req` at `endpoint` and call `svc` (which is ready).
    fn send<S, B, ResB>(
        &self,
        svc: &mut S,
        mut req: Request<B>,
        endpoint: Arc<EndpointState>,
        now: Instant,
    ) -> (S::Future, Guard)
    where
        S: Service<Request<B>, Response = Response<ResB>>,
    {
        let mut parts = Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(endpoint.authority.clone());
        parts.path_and_query = req.uri().path_and_query().cloned();
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = Guard {
            endpoint,
            started: now,
        };
        (svc.call(req), guard)
    }
}

/// Keeps an endpoint's in-flight count and records the outcome.
#[derive(Debug)]
struct Guard {
    endpoint: Arc<EndpointState>,
    started: Instant,
}

impl Guard {
    fn finish(&self, layer: &LoadBalanceLayer, failure: bool) {
        let now = Instant::now();
        let e = &self.endpoint;
        e.observe(now.saturating_duration_since(self.started), now);
        let Some(ej) = layer.config.ejection else {
            return;
        };
        if !failure {
            e.consecutive_failures.store(0, Ordering::Relaxed);
            return;
        }
        let n = e.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n < ej.consecutive_failures {
            return;
        }
        let set = &layer.set;
        let snap = set.snapshot();
        let now_ns = set.nanos(now);
        let ejected = snap.list.iter().filter(|x| x.is_ejected(now_ns)).count();
        let allowed = (ej.max_ejected * snap.list.len() as f64).floor() as usize;
        if ejected >= allowed || e.is_ejected(now_ns) {
            return;
        }
        let k = e.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let wait = ej.base.saturating_mul(k).min(ej.max);
        set.eject(e, now + wait);
        e.consecutive_failures.store(0, Ordering::Relaxed);
        tracing::warn!(endpoint = %e.endpoint.address, seconds = wait.as_secs_f64(), "endpoint ejected");
        metrics::counter!("sinew_balance_ejections_total").increment(1);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How often a waiting call looks again when only availability (an open
/// breaker) may change, which sends no signal.
const RECHECK: Duration = Duration::from_millis(50);

pin_project! {
    #[project = StateProj]
    enum State<S, B, F> {
        Called { #[pin] fut: F, guard: Option<Guard> },
        // Boxed: the rare waiting call holds the service and the request, and
        // the common (called) future stays small to move.
        Waiting { wait: Box<Waiting<S, B>> },
        Failed,
    }
}

/// What a call waiting for an endpoint holds.
struct Waiting<S, B> {
    svc: S,
    req: Option<Request<B>>,
    limit: Instant,
    sleep: Pin<Box<Sleep>>,
    chosen: Option<Arc<EndpointState>>,
    registered: Option<(u64, std::task::Waker)>,
}

pin_project! {
    /// The response future of [`LoadBalance`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B, S::Future>,
        layer: LoadBalanceLayer,
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn called(fut: S::Future, guard: Guard, layer: LoadBalanceLayer) -> Self {
        ResponseFuture {
            state: State::Called {
                fut,
                guard: Some(guard),
            },
            layer,
        }
    }

    fn waiting(svc: S, req: Request<B>, limit: Instant, layer: LoadBalanceLayer) -> Self {
        ResponseFuture {
            state: State::Waiting {
                wait: Box::new(Waiting {
                    svc,
                    req: Some(req),
                    limit,
                    sleep: Box::pin(tokio::time::sleep_until(limit)),
                    chosen: None,
                    registered: None,
                }),
            },
            layer,
        }
    }

    fn failed(layer: LoadBalanceLayer) -> Self {
        ResponseFuture {
            state: State::Failed,
            layer,
        }
    }
}

impl<S, B, ResB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { fut, guard } => {
                    let out = match fut.poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(r) => r.map_err(Into::into),
                    };
                    if let Some(guard) = guard.take() {
                        let classifier = &this.layer.config.classifier;
                        let failure = match &out {
                            Ok(r) => classifier.classify_response(r).is_failure(),
                            Err(e) => classifier.classify_error(&**e).is_failure(),
                        };
                        guard.finish(this.layer, failure);
                    }
                    return Poll::Ready(out);
                }
                StateProj::Failed => return Poll::Ready(Err(Box::new(NoEndpoints::new()))),
                StateProj::Waiting { wait } => {
                    let Waiting {
                        svc,
                        req,
                        limit,
                        sleep,
                        chosen,
                        registered,
                    } = &mut **wait;
                    let now = Instant::now();
                    if chosen.is_none() {
                        let layer = &*this.layer;
                        // Register before looking, so a change between the
                        // look and the registration still wakes us.
                        layer.set.wait(cx.waker(), registered);
                        let snap = layer.set.snapshot();
                        *chosen = layer.set.pick(
                            layer.config.strategy,
                            &snap,
                            layer.config.available.as_ref(),
                            now,
                        );
                    }
                    let Some(endpoint) = chosen.take() else {
                        if now >= *limit {
                            tracing::warn!("no endpoint became available in time");
                            this.state.set(State::Failed);
                            continue;
                        }
                        // Wake at the limit, when an ejection ends, or to
                        // recheck availability.
                        let mut wake = *limit;
                        if let Some(t) = this.layer.set.next_return(now) {
                            wake = wake.min(t);
                        }
                        if this.layer.config.available.is_some() {
                            wake = wake.min(now + RECHECK);
                        }
                        sleep.as_mut().reset(wake);
                        match sleep.as_mut().poll(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(()) => continue,
                        }
                    };
                    match svc.poll_ready(cx) {
                        Poll::Pending => {
                            *chosen = Some(endpoint);
                            return Poll::Pending;
                        }
                        Poll::Ready(Err(e)) => {
                            this.state.set(State::Failed);
                            return Poll::Ready(Err(e.into()));
                        }
                        Poll::Ready(Ok(())) => {}
                    }
                    let Some(req) = req.take() else {
                        this.state.set(State::Failed);
                        continue;
                    };
                    let (fut, guard) = this.layer.send(svc, req, endpoint, now);
                    this.state.set(State::Called {
                        fut,
                        guard: Some(guard),
                    });
                }
            }
        }
    }
}
