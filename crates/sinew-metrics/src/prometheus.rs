//! A ready Prometheus exporter: a recorder with explicit histogram buckets
//! (never summaries) and a `GET /metrics` service.
//!
//! ```
//! use sinew_metrics::prometheus::PrometheusBuilder;
//!
//! // A recorder for this example only; `install()` makes it the global one.
//! let (recorder, handle) = PrometheusBuilder::new().build();
//! metrics::with_local_recorder(&recorder, || {
//!     metrics::histogram!("http_server_request_duration_seconds", "http_route" => "/a")
//!         .record(0.02);
//! });
//! let text = handle.render();
//! assert!(text.contains(r#"http_server_request_duration_seconds_bucket{http_route="/a",le="0.025"} 1"#));
//! assert!(text.contains(r#"http_server_request_duration_seconds_bucket{http_route="/a",le="0.01"} 0"#));
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::{ready, Ready};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusHandle, PrometheusRecorder};
use tower::Service;

use crate::names;

/// The `Content-Type` of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Builds the Prometheus recorder.
///
/// Every histogram gets the OpenTelemetry duration buckets
/// ([`names::OTEL_DURATION_BUCKETS`]) unless a name has its own; the
/// aio-request names get aio-request's buckets.
pub struct PrometheusBuilder {
    inner: metrics_exporter_prometheus::PrometheusBuilder,
    upkeep: Option<Duration>,
}

impl fmt::Debug for PrometheusBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusBuilder")
            .field("upkeep", &self.upkeep)
            .finish_non_exhaustive()
    }
}

/// An error building or installing the exporter.
#[derive(Debug)]
pub struct ExporterError(String);

impl fmt::Display for ExporterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "prometheus exporter: {}", self.0)
    }
}

impl std::error::Error for ExporterError {}

impl Default for PrometheusBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PrometheusBuilder {
    /// OpenTelemetry buckets for every histogram, aio-request's for its
    /// names, and an upkeep every 5 s once installed.
    pub fn new() -> Self {
        let mut inner = metrics_exporter_prometheus::PrometheusBuilder::new();
        // These calls only fail on an empty bucket list; ours are constants.
        for (name, buckets) in [
            (
                names::AIO_REQUEST_LATENCY,
                names::AIO_REQUEST_LATENCY_BUCKETS,
            ),
            (
                names::AIO_REQUEST_TRANSPORT_LATENCY,
                names::AIO_REQUEST_TRANSPORT_BUCKETS,
            ),
            (
                names::AIO_REQUEST_SERVER_LATENCY,
                names::AIO_REQUEST_TRANSPORT_BUCKETS,
            ),
        ] {
            inner = match inner.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets) {
                Ok(b) => b,
                Err(_) => unreachable_builder(),
            };
        }
        inner = match inner.set_buckets(names::OTEL_DURATION_BUCKETS) {
            Ok(b) => b,
            Err(_) => unreachable_builder(),
        };
        PrometheusBuilder {
            inner,
            upkeep: Some(Duration::from_secs(5)),
        }
    }

    /// Buckets for the histogram called `name` (upper bounds, ascending).
    pub fn buckets_for(mut self, name: &str, buckets: &[f64]) -> Result<Self, ExporterError> {
        self.inner = self
            .inner
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
            .map_err(|e| ExporterError(e.to_string()))?;
        Ok(self)
    }

    /// Buckets for every histogram without buckets of its own.
    pub fn default_buckets(mut self, buckets: &[f64]) -> Result<Self, ExporterError> {
        self.inner = self
            .inner
            .set_buckets(buckets)
            .map_err(|e| ExporterError(e.to_string()))?;
        Ok(self)
    }

    /// A label added to every series (e.g. `service`).
    pub fn global_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner = self.inner.add_global_label(key, value);
        self
    }

    /// How often [`install`](Self::install) drains histogram samples when
    /// nobody scrapes (`None`: never; rendering drains them too).
    pub fn upkeep_interval(mut self, every: Option<Duration>) -> Self {
        self.upkeep = every;
        self
    }

    /// The recorder and its handle, without installing anything (for tests
    /// and local recorders).
    pub fn build(self) -> (PrometheusRecorder, MetricsHandle) {
        let recorder = self.inner.build_recorder();
        let handle = MetricsHandle(recorder.handle());
        (recorder, handle)
    }

    /// Install the recorder as the process's global `metrics` recorder,
    /// describe sinew's metrics, and (inside a tokio runtime) start the
    /// upkeep task.
    pub fn install(self) -> Result<MetricsHandle, ExporterError> {
        let upkeep = self.upkeep;
        let (recorder, handle) = self.build();
        metrics::set_global_recorder(recorder)
            .map_err(|_| ExporterError("a global metrics recorder is already installed".into()))?;
        names::describe();
        if let (Some(every), Ok(rt)) = (upkeep, tokio::runtime::Handle::try_current()) {
            let h = handle.clone();
            rt.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    h.0.run_upkeep();
                }
            });
        }
        tracing::debug!("prometheus recorder installed");
        Ok(handle)
    }
}

fn unreachable_builder() -> ! {
    // set_buckets* fail only on an empty list; the lists above are constants.
    unreachable!("non-empty bucket constants")
}

/// A handle on the installed recorder: renders the exposition and serves
/// it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MetricsHandle(PrometheusHandle);

impl MetricsHandle {
    /// The current exposition text.
    pub fn render(&self) -> String {
        self.0.render()
    }

    /// The exporter crate's handle.
    pub fn inner(&self) -> &PrometheusHandle {
        &self.0
    }

    /// A tower service answering `GET`/`HEAD` with the exposition (any
    /// path: mount it where you like) and other methods with 405.
    pub fn service(&self) -> MetricsService {
        MetricsService {
            handle: self.clone(),
        }
    }

    /// An axum router serving `GET /metrics`; merge it into your app:
    /// `app.merge(handle.router())`.
    #[cfg(feature = "axum")]
    pub fn router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        axum::Router::new().route_service("/metrics", self.service())
    }
}

/// The `GET /metrics` service of [`MetricsHandle::service`].
#[derive(Debug, Clone)]
pub struct MetricsService {
    handle: MetricsHandle,
}

impl<B> Service<Request<B>> for MetricsService {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut response = if req.method() == Method::GET || req.method() == Method::HEAD {
            let mut r = Response::new(self.handle.render());
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            r
        } else {
            let mut r = Response::new(String::from("method not allowed\n"));
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        ready(Ok(response))
    }
}
