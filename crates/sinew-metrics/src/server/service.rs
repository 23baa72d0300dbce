use std::task::{Context, Poll};

use http::{Request, Response};
use std::borrow::Cow;

use metrics::Label;
use sinew_core::CallContext;
use tokio::time::Instant;
use tower::Service;

use super::body::MetricsBody;
use super::future::{ResponseFuture, ServerRecording};
use super::ServerMetricsLayer;
use crate::cache::Handles;
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
    /// The route label: borrowed from the request unless a route function
    /// made it.
    fn route_of<'a>(&self, parts: &'a http::request::Parts) -> Cow<'a, str> {
        if let Some(route) = self.route.as_ref().and_then(|f| f(parts)) {
            return route;
        }
        if let Some(t) = parts.extensions.get::<PathTemplate>() {
            return Cow::Borrowed(t.as_str());
        }
        #[cfg(feature = "axum")]
        if let Some(m) = parts.extensions.get::<axum::extract::MatchedPath>() {
            return Cow::Borrowed(m.as_str());
        }
        Cow::Borrowed(names::UNMATCHED_ROUTE)
    }

    /// The duration histogram this layer records.
    fn histogram_name(&self) -> &'static str {
        match self.naming {
            Naming::Otel => names::HTTP_SERVER_REQUEST_DURATION,
            Naming::AioRequest => names::AIO_REQUEST_SERVER_LATENCY,
        }
    }
}

/// The in-flight gauge of server requests and its labels.
fn active_gauge(method: &'static str, scheme: &'static str) -> (&'static str, Vec<Label>) {
    (
        names::HTTP_SERVER_ACTIVE_REQUESTS,
        vec![
            Label::new(names::HTTP_REQUEST_METHOD, method),
            Label::new(names::URL_SCHEME, scheme),
        ],
    )
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
        let (mut parts, body) = req.into_parts();
        let method = labels::method(&parts.method);
        let scheme = match parts.uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => "https",
            Some(s) if s.eq_ignore_ascii_case("http") => "http",
            _ => layer.url_scheme,
        };

        // The call context: merge with what an outer layer stored, set the
        // trace, and make it ambient for the handler.
        let existing = parts.extensions.get::<CallContext>().copied();
        let inbound = if layer.accept_trace {
            trace::inbound(&parts.headers)
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

        let (handles, span) = {
            let route = layer.route_of(&parts);
            let route: &str = &route;
            let name = layer.histogram_name();
            let handles = match layer.naming {
                Naming::Otel => Handles::resolve(
                    &layer.cache,
                    &[method, scheme, route],
                    start.into_std(),
                    name,
                    || {
                        let base = vec![
                            Label::new(names::HTTP_REQUEST_METHOD, method),
                            Label::new(names::URL_SCHEME, scheme),
                            Label::new(names::HTTP_ROUTE, route.to_owned()),
                        ];
                        (base, Some(active_gauge(method, scheme)))
                    },
                ),
                Naming::AioRequest => {
                    let mut buf = [0u8; labels::CLIENT_NAME_MAX];
                    let client =
                        labels::client_name(parts.headers.get(&layer.client_header), &mut buf);
                    Handles::resolve(
                        &layer.cache,
                        &[client, method, route, scheme],
                        start.into_std(),
                        name,
                        || {
                            let base = vec![
                                Label::new("request_client", client.to_owned()),
                                Label::new("request_method", method),
                                Label::new("request_path", route.to_owned()),
                            ];
                            (base, Some(active_gauge(method, scheme)))
                        },
                    )
                }
            };
            let span = tracing::info_span!(
                "http.server",
                otel.name = %format_args!("{method} {route}"),
                otel.kind = "server",
                http.request.method = method,
                url.scheme = scheme,
                url.path = parts.uri.path(),
                http.route = route,
                trace_id = crate::trace::field(tracing::field::display(TraceIdDisplay(&trace))),
                parent_span_id = %SpanIdDisplay(trace.parent_id()),
                traceparent.inbound = matches!(inbound, Inbound::Valid(_)),
                http.response.status_code = tracing::field::Empty,
                error.type = tracing::field::Empty,
            );
            (handles, span)
        };
        #[cfg(feature = "opentelemetry")]
        let ctx = crate::otel::server_span(&span, &parts.headers, inbound, existing, ctx);
        parts.extensions.insert(ctx);
        let req = Request::from_parts(parts, body);

        let future = {
            let _entered = span.enter();
            ctx.sync_scope(|| self.inner.call(req))
        };
        ResponseFuture::new(
            ctx.scope(future),
            ServerRecording::new(start, layer.naming, handles, span),
            ctx,
        )
    }
}
