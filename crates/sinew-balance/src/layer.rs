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
use tokio::time::Instant;
use tower::discover::Change;
use tower::{Layer, Service};

use crate::endpoints::{Endpoint, EndpointState, Set, Strategy};

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
#[derive(Debug, Clone)]
pub struct BalanceConfig {
    /// How endpoints are picked (default P2C over peak-EWMA).
    pub strategy: Strategy,
    /// Outlier ejection (default on, see [`Ejection`]); `None` turns it off.
    pub ejection: Option<Ejection>,
    /// What counts as a failure.
    pub classifier: Classifier,
    /// Seed of the random strategies (for tests).
    pub seed: Option<u64>,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            strategy: Strategy::P2cEwma,
            ejection: Some(Ejection::default()),
            classifier: Classifier::default(),
            seed: None,
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

    /// Use `https` for the rewritten URIs (default `http`).
    pub fn https(mut self) -> Self {
        self.scheme = Scheme::HTTPS;
        self
    }

    /// Apply a discovery stream of `tower::discover::Change`s (inserts and
    /// removals keyed by address) in a background task, so any tower
    /// discover source plugs in. A removed endpoint gets no new calls; its
    /// calls in flight finish. The task ends with the stream.
    pub fn discover<D, E>(self, stream: D) -> Self
    where
        D: Stream<Item = Result<Change<String, Endpoint>, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let set = self.set.clone();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(change) = stream.next().await {
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
        });
        self
    }

    /// How many calls each endpoint was picked for, by address.
    pub fn picks(&self) -> Vec<(String, u64)> {
        self.set
            .snapshot()
            .iter()
            .map(|e| (e.endpoint.address.clone(), e.picks.load(Ordering::Relaxed)))
            .collect()
    }

    /// The endpoints now, with whether each is ejected.
    pub fn endpoints(&self) -> Vec<(Endpoint, bool)> {
        let now = Instant::now();
        self.set
            .snapshot()
            .iter()
            .map(|e| (e.endpoint.clone(), e.is_ejected(now)))
            .collect()
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
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let now = Instant::now();
        let all = self.layer.set.snapshot();
        let candidates: Vec<Arc<EndpointState>> =
            all.iter().filter(|e| !e.is_ejected(now)).cloned().collect();
        let Some(endpoint) = self.layer.set.pick(self.layer.config.strategy, &candidates) else {
            tracing::warn!(endpoints = all.len(), "no endpoint available");
            return ResponseFuture::none();
        };
        let mut parts = Parts::default();
        parts.scheme = Some(self.layer.scheme.clone());
        parts.authority = Some(endpoint.authority.clone());
        parts.path_and_query = req.uri().path_and_query().cloned();
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = Guard {
            endpoint,
            set: self.layer.clone(),
            started: now,
        };
        ResponseFuture::called(self.inner.call(req), guard)
    }
}

/// Keeps an endpoint's in-flight count and records the outcome.
#[derive(Debug)]
struct Guard {
    endpoint: Arc<EndpointState>,
    set: LoadBalanceLayer,
    started: Instant,
}

impl Guard {
    fn finish(&self, failure: bool) {
        let now = Instant::now();
        let e = &self.endpoint;
        e.observe(now.saturating_duration_since(self.started), now);
        let Some(ej) = self.set.config.ejection else {
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
        let all = self.set.set.snapshot();
        let ejected = all.iter().filter(|x| x.is_ejected(now)).count();
        let allowed = (ej.max_ejected * all.len() as f64).floor() as usize;
        if ejected >= allowed {
            return;
        }
        let k = e.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let wait = ej.base.saturating_mul(k).min(ej.max);
        e.eject(now + wait);
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

pin_project! {
    /// The response future of [`LoadBalance`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        guard: Option<Guard>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    fn called(inner: F, guard: Guard) -> Self {
        ResponseFuture {
            inner: Some(inner),
            guard: Some(guard),
        }
    }

    fn none() -> Self {
        ResponseFuture {
            inner: None,
            guard: None,
        }
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err(Box::new(NoEndpoints::new())));
        };
        let out = match inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r.map_err(Into::into),
        };
        if let Some(guard) = this.guard.take() {
            let classifier = &guard.set.config.classifier;
            let failure = match &out {
                Ok(r) => classifier.classify_response(r).is_failure(),
                Err(e) => classifier.classify_error(&**e).is_failure(),
            };
            guard.finish(failure);
        }
        Poll::Ready(out)
    }
}
