use std::task::{Context, Poll};

use http::{Request, Response};
use metrics::{Label, SharedString};
use sinew_core::CallContext;
use tokio::time::Instant;
use tower::Service;

use super::body::MetricsBody;
use super::future::{ResponseFuture, ServerRecording};
use super::ServerMetricsLayer;
use crate::config::Naming;
use crate::labels::{self, PathTemplate};
use crate::names;
use crate::trace::{self, Inbound, SpanIdDisplay, TraceIdDisplay};

/// The service of [`ServerMetricsLayer`].
#[derive(Debug, Clone)]
pub struct ServerMetrics<S> {
    pub(crate) inner: S,
    pub(crate) layer: ServerMetricsLayer,
}

impl<S> ServerMetrics<S> {
    /// Wrap `inner` with the default layer.
    pub fn new(inner: S) -> Self {
        ServerMetrics {
            inner,
            layer: ServerMetricsLayer::default(),
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

impl ServerMetricsLayer {
    fn route_of(&self, parts: &http::request::Parts) -> SharedString {
        if let Some(route) = self.route.as_ref().and_then(|f| f(parts)) {
            return route.into();
        }
        if let Some(t) = parts.extensions.get::<PathTemplate>() {
            return t.0.clone().into();
        }
        #[cfg(feature = "axum")]
        if let Some(m) = parts.extensions.get::<axum::extract::MatchedPath>() {
            return SharedString::from(m.as_str().to_owned());
        }
        SharedString::const_str(names::UNMATCHED_ROUTE)
    }
}

impl<S, B, ResB> Service<Request<B>> for ServerMetrics<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: http_body::Body,
{
    type Response = Response<MetricsBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let layer = &self.layer;
        let (parts, body) = req.into_parts();
        let route = layer.route_of(&parts);
        let mut req = Request::from_parts(parts, body);
        let method = labels::method(req.method());
        let scheme = match req.uri().scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => "https",
            Some(s) if s.eq_ignore_ascii_case("http") => "http",
            _ => layer.url_scheme,
        };

        // The call context: merge with what an outer layer stored, set the
        // trace, and make it ambient for the handler.
        let existing = req.extensions().get::<CallContext>().copied();
        let inbound = if layer.accept_trace {
            trace::inbound(req.headers())
        } else {
            Inbound::Absent
        };
        let trace = match inbound {
            Inbound::Valid(tp) => tp,
            Inbound::Invalid => {
                tracing::debug!("ignoring an invalid traceparent header");
                existing
                    .and_then(|c| c.trace())
                    .unwrap_or_else(trace::new_root)
            }
            Inbound::Absent => existing
                .and_then(|c| c.trace())
                .unwrap_or_else(trace::new_root),
        };
        let ctx = existing.unwrap_or_default().with_trace(trace);
        req.extensions_mut().insert(ctx);

        let labels = match layer.naming {
            Naming::Otel => vec![
                Label::new(names::HTTP_REQUEST_METHOD, method),
                Label::new(names::URL_SCHEME, scheme),
                Label::new(names::HTTP_ROUTE, route.clone()),
            ],
            Naming::AioRequest => vec![
                Label::new(
                    "request_client",
                    labels::client_name(req.headers().get(&layer.client_header)),
                ),
                Label::new("request_method", method),
                Label::new("request_path", route.clone()),
            ],
        };
        let active = metrics::gauge!(
            names::HTTP_SERVER_ACTIVE_REQUESTS,
            names::HTTP_REQUEST_METHOD => method,
            names::URL_SCHEME => scheme
        );
        active.increment(1.0);

        let span = tracing::info_span!(
            "http.server",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            http.request.method = method,
            url.scheme = scheme,
            url.path = req.uri().path(),
            http.route = &*route,
            trace_id = %TraceIdDisplay(&trace),
            parent_span_id = %SpanIdDisplay(trace.parent_id()),
            traceparent.inbound = matches!(inbound, Inbound::Valid(_)),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let future = {
            let _entered = span.enter();
            ctx.sync_scope(|| self.inner.call(req))
        };
        ResponseFuture::new(
            ctx.scope(future),
            ServerRecording::new(start, layer.naming, labels, active, span),
            ctx,
        )
    }
}
