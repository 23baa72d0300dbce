use std::task::{Context, Poll};

use http::{Request, Response};
use metrics::Label;
use sinew_core::headers::TRACEPARENT;
use sinew_core::{BoxError, CallContext, TraceParent};
use tokio::time::Instant;
use tower::Service;

use super::future::{Recording, ResponseFuture};
use super::MetricsLayer;
use crate::cache::{Handles, PortStr};
use crate::config::{Naming, Scope};
use crate::labels::{self, PathTemplate, Peer};
use crate::names;
use crate::trace::TraceIdDisplay;

/// The service of the client [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct Metrics<S> {
    pub(crate) inner: S,
    pub(crate) layer: MetricsLayer,
}

impl<S> Metrics<S> {
    /// Wrap `inner` with the default (call-scoped) layer.
    pub fn new(inner: S) -> Self {
        Metrics {
            inner,
            layer: MetricsLayer::default(),
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwrap the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The trace a client request belongs to: a [`TraceParent`] extension (set by
/// an outer sinew-metrics layer, so all attempts share it), else a valid
/// `traceparent` header the caller set, else the ambient call context's
/// trace, else a new root. The result is stored as an extension.
fn trace_of<B>(req: &mut Request<B>) -> TraceParent {
    if let Some(tp) = req.extensions().get::<TraceParent>() {
        return *tp;
    }
    let tp = req
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| TraceParent::parse(v.as_bytes()))
        .or_else(|| CallContext::current().and_then(|c| c.trace()))
        .unwrap_or_else(crate::trace::new_root);
    req.extensions_mut().insert(tp);
    tp
}

/// The OpenTelemetry labels of a client request.
fn otel_labels(method: &'static str, peer: &Peer<'_>) -> Vec<Label> {
    vec![
        Label::new(names::HTTP_REQUEST_METHOD, method),
        Label::new(names::SERVER_ADDRESS, peer.address.to_owned()),
        Label::new(names::SERVER_PORT, labels::port(peer.port)),
    ]
}

impl MetricsLayer {
    /// The duration histogram this layer records.
    fn histogram_name(&self) -> &'static str {
        match (self.naming, self.scope) {
            (Naming::Otel, Scope::Call) => names::HTTP_CLIENT_REQUEST_DURATION,
            (Naming::Otel, Scope::Attempt) => names::HTTP_CLIENT_ATTEMPT_DURATION,
            (Naming::AioRequest, Scope::Call) => names::AIO_REQUEST_LATENCY,
            (Naming::AioRequest, Scope::Attempt) => names::AIO_REQUEST_TRANSPORT_LATENCY,
        }
    }
}

impl<S, B, ResB> Service<Request<B>> for Metrics<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let layer = &self.layer;
        #[cfg(feature = "opentelemetry")]
        let otel_parent = crate::otel::client_parent(&req);
        let trace = trace_of(&mut req);
        let span_id = if layer.propagate {
            let id = crate::trace::new_span_id();
            if !layer.header_below {
                if let Some(value) = crate::trace::header_value(&trace, &id) {
                    req.headers_mut().insert(TRACEPARENT, value);
                }
            }
            id
        } else {
            trace.parent_id()
        };

        let peer = Peer::of(&req);
        let method = labels::method(req.method());
        let template = req.extensions().get::<PathTemplate>();
        let name = layer.histogram_name();
        let port = PortStr::new(peer.port);
        let handles = match layer.naming {
            Naming::Otel => Handles::resolve(
                &layer.cache,
                &[method, peer.address, port.as_str()],
                start.into_std(),
                name,
                || {
                    let base = otel_labels(method, &peer);
                    let gauge = (layer.scope == Scope::Call)
                        .then(|| (names::HTTP_CLIENT_ACTIVE_REQUESTS, base.clone()));
                    (base, gauge)
                },
            ),
            Naming::AioRequest => {
                let path = match template {
                    Some(t) => t.as_str(),
                    None => req.uri().path(),
                };
                Handles::resolve(
                    &layer.cache,
                    &[method, peer.scheme, peer.address, port.as_str(), path],
                    start.into_std(),
                    name,
                    || {
                        let base = vec![
                            Label::new("request_endpoint", peer.endpoint()),
                            Label::new("request_method", method),
                            Label::new("request_path", path.to_owned()),
                        ];
                        let gauge = (layer.scope == Scope::Call).then(|| {
                            (
                                names::HTTP_CLIENT_ACTIVE_REQUESTS,
                                otel_labels(method, &peer),
                            )
                        });
                        (base, gauge)
                    },
                )
            }
        };

        let span = tracing::info_span!(
            "http.client",
            otel.name = method,
            otel.kind = "client",
            http.request.method = method,
            server.address = %peer.address,
            server.port = peer.port,
            url.path = req.uri().path(),
            url.template = template.map(|t| t.as_str()),
            sinew.scope = layer.scope.as_str(),
            trace_id = crate::trace::field(tracing::field::display(TraceIdDisplay(&trace))),
            span_id = crate::trace::field(tracing::field::display(crate::trace::SpanIdDisplay(span_id))),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        #[cfg(feature = "opentelemetry")]
        crate::otel::client_span(
            &span,
            &mut req,
            otel_parent,
            layer.propagate && !layer.header_below,
            layer.scope,
            &trace,
            span_id,
        );
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ResponseFuture::new(
            future,
            Recording {
                start,
                naming: layer.naming,
                scope: layer.scope,
                classifier: layer.classifier.clone(),
                handles,
                span,
                done: false,
            },
        )
    }
}
