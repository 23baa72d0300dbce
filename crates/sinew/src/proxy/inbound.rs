//! The inbound side: a caller's request passes the server stack of
//! `[server]` (metrics → verification → deadline and priority → shedding)
//! and goes on to the local application, which learns who called
//! (`X-Sinew-Caller`), how long is left (`X-Request-Timeout`) and the
//! priority (`X-Request-Priority`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use sinew_core::headers::{
    GRPC_TIMEOUT, X_REQUEST_DEADLINE_AT, X_REQUEST_PRIORITY, X_REQUEST_TIMEOUT,
};
use sinew_core::{Body, BoxError, CallContext};
use tower::{Layer, Service};

use super::config::InboundConfig;
use super::headers::{self, ClientAddr, X_SINEW_CALLER};
use super::problem::respond;
use super::routes::Routes;
use super::serve::HttpService;
use super::ProxyBody;
use crate::server::ServerStack;
use crate::Error;

const SIDE: &str = "inbound";

/// The inbound service: route templates, then `stack`, then the
/// application at `config.upstream`.
pub(crate) fn service(config: &InboundConfig, stack: &ServerStack) -> Result<HttpService, Error> {
    let routes = Routes::new(&config.routes).map_err(|e| {
        Error::new(
            crate::ErrorKind::Config,
            format!("[proxy.inbound] routes: {e}"),
        )
    })?;
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_nodelay(true);
    let client = HyperClient::builder(TokioExecutor::new())
        .http2_only(config.upstream_http2)
        .pool_idle_timeout(Duration::from_secs(90))
        .build(http);
    let forward = Forward {
        inner: Arc::new(ForwardInner {
            client,
            upstream: config.upstream.clone(),
            request_timeout: config.request_timeout.duration(),
        }),
    };
    let edge = Edge {
        inner: stack.layer(forward),
        routes: Arc::new(routes),
    };
    Ok(HttpService::new(edge))
}

/// Outermost: the route template for the metrics, and what the proxy
/// refuses before any layer sees it.
#[derive(Clone)]
struct Edge<S> {
    inner: S,
    routes: Arc<Routes>,
}

impl<S, RB> Service<Request<Incoming>> for Edge<S>
where
    S: Service<Request<Incoming>, Response = Response<RB>, Error = Infallible>,
    S::Future: Send + 'static,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        if req.method() == Method::CONNECT {
            return Box::pin(std::future::ready(Ok(respond(
                SIDE,
                StatusCode::METHOD_NOT_ALLOWED,
                "CONNECT is not supported",
                "connect_unsupported",
                "the inbound side forwards HTTP requests to the application, not tunnels",
            ))));
        }
        if !self.routes.is_empty() {
            if let Some(t) = self.routes.find(req.uri().path()) {
                req.extensions_mut().insert(t);
            }
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            Ok(res.map(|b| b.map_err(Into::into).boxed_unsync()))
        })
    }
}

struct ForwardInner {
    client: HyperClient<HttpConnector, Body>,
    upstream: Authority,
    request_timeout: Option<Duration>,
}

/// Innermost: the request, as the layers left it, to the application.
#[derive(Clone)]
struct Forward {
    inner: Arc<ForwardInner>,
}

impl<B> Service<Request<B>> for Forward
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        let (mut parts, body) = req.into_parts();
        let in_version = parts.version;
        if let Err(res) = prepare(&mut parts, &inner.upstream) {
            return Box::pin(std::future::ready(Ok(*res)));
        }
        let req = Request::from_parts(parts, into_sinew_body(body));
        let sent = inner.client.request(req);
        let timeout = inner.request_timeout;
        Box::pin(async move {
            let outcome = match timeout {
                Some(t) => tokio::time::timeout(t, sent).await.ok(),
                None => Some(sent.await),
            };
            Ok(match outcome {
                None => respond(
                    SIDE,
                    StatusCode::GATEWAY_TIMEOUT,
                    "application timed out",
                    "upstream_timeout",
                    "the application did not answer within the proxy's request_timeout",
                ),
                Some(Err(e)) if e.is_connect() => {
                    tracing::warn!(error = %e, "inbound: cannot connect to the application");
                    respond(
                        SIDE,
                        StatusCode::BAD_GATEWAY,
                        "application unreachable",
                        "upstream_unreachable",
                        "the proxy could not connect to the application",
                    )
                }
                Some(Err(e)) => {
                    tracing::info!(error = %e, "inbound: the exchange with the application failed");
                    respond(
                        SIDE,
                        StatusCode::BAD_GATEWAY,
                        "application failed",
                        "upstream_failed",
                        "the connection to the application failed before it answered",
                    )
                }
                Some(Ok(res)) => {
                    let (mut head, body) = res.into_parts();
                    headers::strip_hop_by_hop(&mut head.headers, false);
                    headers::append_via(&mut head.headers, head.version);
                    head.version = in_version;
                    Response::from_parts(head, body.map_err(Into::into).boxed_unsync())
                }
            })
        })
    }
}

/// Rewrite the request for the application: its URI, the hop-by-hop
/// fields, the forwarding fields, the verified caller, the deadline left
/// and the priority.
#[allow(clippy::result_large_err)]
fn prepare(
    parts: &mut http::request::Parts,
    upstream: &Authority,
) -> Result<(), Box<Response<ProxyBody>>> {
    let host = headers::request_host(&parts.headers, &parts.uri).map(str::to_owned);
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(upstream.clone())
        .path_and_query(path)
        .build();
    parts.uri = match uri {
        Ok(u) => u,
        Err(_) => {
            return Err(Box::new(respond(
                SIDE,
                StatusCode::BAD_REQUEST,
                "bad request target",
                "bad_target",
                "the request target cannot be forwarded",
            )))
        }
    };
    let h = &mut parts.headers;
    headers::strip_hop_by_hop(h, true);
    if let Some(client) = parts.extensions.get::<ClientAddr>() {
        headers::append_forwarded(h, client, parts.version, host.as_deref());
    }
    // HTTP/2 carries the host in :authority; the application reads Host.
    if !h.contains_key(http::header::HOST) {
        if let Some(v) = host.as_deref().and_then(|s| HeaderValue::from_str(s).ok()) {
            h.insert(http::header::HOST, v);
        }
    }
    // Who called: only ever what verification found.
    h.remove(X_SINEW_CALLER);
    if let Some(caller) = parts.extensions.get::<sinew_sign::VerifiedCaller>() {
        if let Ok(v) = HeaderValue::from_str(&caller.key_id) {
            h.insert(X_SINEW_CALLER, v);
        }
    }
    // The deadline and priority as the deadline layer settled them (the
    // caller's, capped, or the default), written afresh: what is left now.
    if let Some(ctx) = parts.extensions.get::<CallContext>() {
        let grpc = h.contains_key(GRPC_TIMEOUT);
        h.remove(X_REQUEST_DEADLINE_AT);
        h.remove(X_REQUEST_TIMEOUT);
        h.remove(GRPC_TIMEOUT);
        if let Some(left) = ctx.remaining() {
            h.insert(
                X_REQUEST_TIMEOUT,
                sinew_deadline::parse::format_request_timeout(left),
            );
            if grpc {
                h.insert(
                    GRPC_TIMEOUT,
                    sinew_deadline::parse::format_grpc_timeout(left),
                );
            }
        }
        h.insert(
            X_REQUEST_PRIORITY,
            HeaderValue::from_static(ctx.priority().as_str()),
        );
    }
    parts.version = Version::HTTP_11;
    Ok(())
}

/// The body as a sinew [`Body`], without wrapping one that already is.
pub(crate) fn into_sinew_body<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut slot = Some(body);
    if let Some(b) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Body>>() {
        if let Some(b) = b.take() {
            return b;
        }
    }
    match slot {
        Some(b) if b.is_end_stream() => Body::empty(),
        Some(b) => Body::stream(b),
        None => Body::empty(),
    }
}
