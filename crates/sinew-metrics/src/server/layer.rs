use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::HeaderName;
use tower::Layer;

use super::ServerMetrics;
use crate::cache::SeriesCache;
use crate::config::Naming;

/// A function that names the route of a request (`/users/{id}`), or `None`
/// when it cannot tell.
pub type RouteFn = Arc<dyn Fn(&http::request::Parts) -> Option<Cow<'static, str>> + Send + Sync>;

/// Records server requests: a duration histogram measured until the
/// response body ended, an in-flight gauge and a `tracing` span; accepts a
/// valid inbound `traceparent` into the [`CallContext`](sinew_core::CallContext)
/// and runs the inner service inside that context, so the calls a handler
/// makes continue the trace.
///
/// # The route label
///
/// `http_route` is, in order: the configured [`route_fn`](Self::route_fn);
/// a [`PathTemplate`](crate::PathTemplate) request extension; axum's
/// `MatchedPath` (feature `axum`); else `unmatched`. It is never the raw
/// path, so a scanner hitting random URLs cannot create series.
///
/// axum sets `MatchedPath` inside the `Router`, so apply this layer with
/// `Router::layer` (or `route_layer`): it then wraps every route and sees the
/// template. Wrapped around the whole router from outside, every request
/// would be `unmatched` unless a `route_fn` is configured.
///
/// ```
/// use axum::{routing::get, Router};
/// use sinew_metrics::ServerMetricsLayer;
///
/// let app: Router = Router::new()
///     .route("/users/{id}", get(|| async { "user" }))
///     .layer(ServerMetricsLayer::new());
/// # let _ = app;
/// ```
#[derive(Clone)]
pub struct ServerMetricsLayer {
    pub(crate) naming: Naming,
    pub(crate) route: Option<RouteFn>,
    pub(crate) url_scheme: &'static str,
    pub(crate) accept_trace: bool,
    pub(crate) client_header: HeaderName,
    /// Metric handles per label set, shared by clones; a builder method
    /// that changes the metric names starts a new one.
    pub(crate) cache: Arc<SeriesCache>,
}

impl fmt::Debug for ServerMetricsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerMetricsLayer")
            .field("naming", &self.naming)
            .field("route_fn", &self.route.is_some())
            .field("url_scheme", &self.url_scheme)
            .field("accept_trace", &self.accept_trace)
            .field("client_header", &self.client_header)
            .finish()
    }
}

impl Default for ServerMetricsLayer {
    fn default() -> Self {
        ServerMetricsLayer {
            naming: Naming::Otel,
            route: None,
            url_scheme: "http",
            accept_trace: true,
            client_header: HeaderName::from_static("x-service-name"),
            cache: Arc::default(),
        }
    }
}

impl ServerMetricsLayer {
    /// A layer from the `[server.metrics]` config section.
    pub fn from_config(config: &crate::ServerMetricsConfig) -> Self {
        Self::default()
            .naming(config.naming)
            .accept_trace(config.accept_trace)
    }

    /// OpenTelemetry names, routes from `MatchedPath`, scheme `http`,
    /// inbound `traceparent` accepted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Which names and buckets to emit.
    pub fn naming(mut self, naming: Naming) -> Self {
        self.naming = naming;
        self.cache = Arc::default();
        self
    }

    /// Name routes with `f` (tried before `MatchedPath`). Return templates,
    /// never raw paths.
    pub fn route_fn<F>(mut self, f: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<Cow<'static, str>> + Send + Sync + 'static,
    {
        self.route = Some(Arc::new(f));
        self
    }

    /// The `url_scheme` label when the request URI has none (HTTP/1 requests
    /// carry only a path). Default `http`; set `https` behind TLS.
    pub fn url_scheme(mut self, scheme: &'static str) -> Self {
        self.url_scheme = scheme;
        self
    }

    /// Whether to accept an inbound `traceparent` (default `true`). When
    /// off, or when the header is absent or invalid, the request starts a
    /// new trace.
    pub fn accept_trace(mut self, yes: bool) -> Self {
        self.accept_trace = yes;
        self
    }

    /// The header naming the calling service, for aio-request's
    /// `request_client` label (default `x-service-name`, as aio-request).
    pub fn client_header(mut self, name: HeaderName) -> Self {
        self.client_header = name;
        self
    }
}

impl<S> Layer<S> for ServerMetricsLayer {
    type Service = ServerMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerMetrics {
            inner,
            layer: self.clone(),
        }
    }
}
