use std::sync::Arc;

use sinew_core::Classifier;
use tower::Layer;

use super::Metrics;
use crate::cache::SeriesCache;
use crate::config::{MetricsConfig, Naming, Scope};

/// Records client calls: a duration histogram, an in-flight gauge, a
/// `tracing` span, and the W3C `traceparent` header.
///
/// One type serves two positions in the client stack (`sinew::stack`):
///
/// * [`MetricsLayer::call`] (the default, outermost): one measurement per
///   logical call, however many attempts retry or hedging make;
/// * [`MetricsLayer::attempt`] (just above the HTTP client): one
///   measurement per attempt, and a `traceparent` with a new span id on every
///   attempt.
///
/// The response body type is not changed: durations run until the response
/// headers arrive (as aio-request measured them).
///
/// ```
/// use sinew_metrics::{MetricsLayer, Naming};
/// let outer = MetricsLayer::call();
/// let inner = MetricsLayer::attempt().naming(Naming::Otel);
/// # let _ = (outer, inner);
/// ```
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    pub(crate) scope: Scope,
    pub(crate) naming: Naming,
    pub(crate) classifier: Classifier,
    pub(crate) propagate: bool,
    /// An attempt-scoped layer below writes `traceparent` on every attempt,
    /// so this (call-scoped) one leaves the header alone.
    pub(crate) header_below: bool,
    /// Metric handles per label set, shared by clones; a builder method
    /// that changes the metric names starts a new one.
    pub(crate) cache: Arc<SeriesCache>,
}

impl Default for MetricsLayer {
    fn default() -> Self {
        MetricsLayer {
            scope: Scope::Call,
            naming: Naming::Otel,
            classifier: Classifier::default(),
            propagate: true,
            header_below: false,
            cache: Arc::default(),
        }
    }
}

impl MetricsLayer {
    /// A layer at [`Scope::Call`] with OpenTelemetry names, the default
    /// classifier and `traceparent` propagation on.
    pub fn new() -> Self {
        Self::default()
    }

    /// A layer for the outermost position: one measurement per logical call.
    pub fn call() -> Self {
        Self::default()
    }

    /// A layer for the position just above the HTTP client: one measurement
    /// per attempt.
    pub fn attempt() -> Self {
        Self::default().scope(Scope::Attempt)
    }

    /// The layer pair the config asks for: the call layer, and the attempt
    /// layer when `per_attempt` is on. With both, the `traceparent` header is
    /// the attempt layer's to write (each attempt gets its own span id), and
    /// the call layer only records the trace for the attempts to share.
    pub fn from_config(config: &MetricsConfig) -> (MetricsLayer, Option<MetricsLayer>) {
        let mut call = MetricsLayer::call().naming(config.naming);
        let attempt = config
            .per_attempt
            .then(|| MetricsLayer::attempt().naming(config.naming));
        call.header_below = attempt.is_some();
        (call, attempt)
    }

    /// Where the layer sits.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self.cache = Arc::default();
        self
    }

    /// Which names and buckets to emit.
    pub fn naming(mut self, naming: Naming) -> Self {
        self.naming = naming;
        self.cache = Arc::default();
        self
    }

    /// The classifier that decides which statuses carry an `error_type`
    /// (default: the shared sinew classifier).
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// Whether to write the `traceparent` header (default `true`).
    pub fn propagate_trace(mut self, yes: bool) -> Self {
        self.propagate = yes;
        self.header_below = false;
        self
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics {
            inner,
            layer: self.clone(),
        }
    }
}
