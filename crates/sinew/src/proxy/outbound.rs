//! The outbound side: the local application calls a service by name —
//! `Host: inventory` on a request to the outbound port, or as an HTTP
//! proxy (`GET http://inventory/items/1`) — and the proxy sends it through
//! that service's client from [`Services`]: its instances from
//! `[registry]`, the client sections of the file, `[services.NAME]`
//! overrides.
//!
//! The deadline and priority the application forwards
//! (`X-Request-Timeout`, `X-Request-Priority`, as aio-request sends them;
//! also `X-Request-Deadline-At` and `grpc-timeout`) become the call's
//! deadline and priority: retries stop in time, and every attempt carries
//! what is left.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use sinew_core::{Body, BoxError, Deadline, SystemClock};
use tower::{Service, ServiceExt};

use super::headers::{self, ClientAddr, X_SINEW_CALLER};
use super::problem::respond;
use super::serve::HttpService;
use super::ProxyBody;
use crate::stack::Stack;
use crate::{Error, ErrorKind, Services};

const SIDE: &str = "outbound";

/// Where a service's calls go: its client's stack and base URL.
#[derive(Clone)]
struct Route {
    stack: Stack,
    scheme: Scheme,
    authority: Authority,
    /// The base URL's path, without its final `/` (usually empty).
    prefix: String,
}

struct Inner {
    services: Services,
    buffer: usize,
    routes: RwLock<HashMap<String, Route>>,
}

/// The outbound service.
#[derive(Clone)]
struct Outbound {
    inner: Arc<Inner>,
}

pub(crate) fn service(services: Services, buffer_request_body: usize) -> HttpService {
    HttpService::new(Outbound {
        inner: Arc::new(Inner {
            services,
            buffer: buffer_request_body,
            routes: RwLock::new(HashMap::new()),
        }),
    })
}

type Refusal = Box<Response<ProxyBody>>;

impl Inner {
    fn route(&self, name: &str) -> Result<Route, Refusal> {
        if let Some(r) = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(r.clone());
        }
        let client = self.services.client(name).map_err(|e| {
            let (status, reason) = match e.kind() {
                ErrorKind::InvalidRequest => (StatusCode::BAD_REQUEST, "bad_service_name"),
                _ => (StatusCode::BAD_GATEWAY, "unknown_service"),
            };
            Box::new(respond(
                SIDE,
                status,
                "service not callable",
                reason,
                e.to_string(),
            ))
        })?;
        let base = client.resolve("/", "").map_err(|e| {
            Box::new(respond(
                SIDE,
                StatusCode::BAD_GATEWAY,
                "service not callable",
                "unknown_service",
                e.to_string(),
            ))
        })?;
        let (Some(scheme), Some(authority)) = (base.scheme().cloned(), base.authority().cloned())
        else {
            return Err(Box::new(respond(
                SIDE,
                StatusCode::BAD_GATEWAY,
                "service not callable",
                "unknown_service",
                format!("the base URL of {name:?} is not absolute"),
            )));
        };
        let route = Route {
            stack: client.stack(),
            scheme,
            authority,
            prefix: base.path().trim_end_matches('/').to_string(),
        };
        self.routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), route.clone());
        Ok(route)
    }
}

/// The service a request names: the absolute-form target's host (as an
/// HTTP proxy), else `Host` (or HTTP/2's `:authority`); a port is ignored
/// (the registry knows the instances' ports).
fn service_name(req: &Request<Incoming>) -> Result<&str, Refusal> {
    let host = req.uri().host().or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(|h| match h.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => h,
            })
    });
    match host {
        Some(h) if crate::is_service_name(h) => Ok(h),
        Some(h) => Err(Box::new(respond(
            SIDE,
            StatusCode::BAD_REQUEST,
            "not a service name",
            "bad_service_name",
            format!(
                "{:?} is not a service name (letters, digits, '-', '_', '.')",
                h.chars().take(64).collect::<String>()
            ),
        ))),
        None => Err(Box::new(respond(
            SIDE,
            StatusCode::BAD_REQUEST,
            "no service named",
            "no_service",
            "name the service in Host (Host: inventory) or call through the proxy (http://inventory/...)",
        ))),
    }
}

impl Service<Request<Incoming>> for Outbound {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            Ok(match forward(&inner, req).await {
                Ok(res) => res,
                Err(refusal) => *refusal,
            })
        })
    }
}

async fn forward(inner: &Inner, req: Request<Incoming>) -> Result<Response<ProxyBody>, Refusal> {
    if req.method() == Method::CONNECT {
        return Err(Box::new(respond(
            SIDE,
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported",
            "connect_unsupported",
            "call http://SERVICE/... through the proxy; it opens no tunnels (TLS to the service is the proxy's job, with [tls])",
        )));
    }
    let name = service_name(&req)?;
    let route = inner.route(name)?;
    let (mut parts, body) = req.into_parts();
    let in_version = parts.version;

    // The application's deadline and priority become the call's.
    let parsed = sinew_deadline::server::parse_headers(&parts.headers, &SystemClock, false)
        .map_err(|e| {
            Box::new(respond(
                SIDE,
                StatusCode::BAD_REQUEST,
                e.title(),
                "invalid_header",
                e.to_string(),
            ))
        })?;
    if let Some((left, _)) = parsed.timeout {
        let now = tokio::time::Instant::now();
        let at = now.checked_add(left).unwrap_or(now);
        parts.extensions.insert(Deadline(at));
    }
    if let Some(p) = parsed.priority {
        parts.extensions.insert(p);
    }

    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .ok_or_else(|| {
            Box::new(respond(
                SIDE,
                StatusCode::BAD_REQUEST,
                "bad request target",
                "bad_target",
                "the request target must be a path (/...) or an absolute http:// URL",
            ))
        })?;
    let pq: Result<PathAndQuery, _> = if route.prefix.is_empty() {
        pq.parse()
    } else {
        format!("{}{pq}", route.prefix).parse()
    };
    let uri = pq.ok().and_then(|pq| {
        Uri::builder()
            .scheme(route.scheme.clone())
            .authority(route.authority.clone())
            .path_and_query(pq)
            .build()
            .ok()
    });
    let Some(uri) = uri else {
        return Err(Box::new(respond(
            SIDE,
            StatusCode::BAD_REQUEST,
            "bad request target",
            "bad_target",
            "the request target cannot be forwarded",
        )));
    };
    let host = headers::request_host(&parts.headers, &parts.uri).map(str::to_owned);
    parts.uri = uri;
    let h = &mut parts.headers;
    headers::strip_hop_by_hop(h, true);
    // Addressed to this proxy, or to be set by the client stack.
    h.remove(header::HOST);
    h.remove(header::PROXY_AUTHORIZATION);
    h.remove(X_SINEW_CALLER);
    if let Some(client) = parts.extensions.get::<ClientAddr>() {
        let client = *client;
        headers::append_forwarded(h, &client, in_version, host.as_deref());
    }
    parts.version = Version::HTTP_11;

    let body = request_body(body, inner.buffer).await?;
    let res = route
        .stack
        .oneshot(Request::from_parts(parts, body))
        .await
        .map_err(|e| Box::new(refusal(e)))?;
    let (mut head, body) = res.into_parts();
    headers::strip_hop_by_hop(&mut head.headers, false);
    headers::append_via(&mut head.headers, head.version);
    head.version = in_version;
    Ok(Response::from_parts(head, body))
}

/// Buffer a body declared small (so the call can be retried); stream any
/// other once.
async fn request_body(body: Incoming, buffer: usize) -> Result<Body, Refusal> {
    if body.is_end_stream() {
        return Ok(Body::empty());
    }
    let declared_small = body.size_hint().upper().is_some_and(|n| n <= buffer as u64);
    if !declared_small {
        return Ok(Body::stream(body));
    }
    Body::buffer(body, buffer).await.map_err(|e| {
        Box::new(respond(
            SIDE,
            StatusCode::BAD_REQUEST,
            "request body unreadable",
            "body_unreadable",
            format!("reading the request body failed: {e}"),
        ))
    })
}

/// The problem for a call the client stack failed.
fn refusal(e: BoxError) -> Response<ProxyBody> {
    if let Some(sinew_sign::SignError::BodyTooLarge { limit }) =
        sinew_core::error::find_source::<sinew_sign::SignError>(&*e)
    {
        return respond(
            SIDE,
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large to sign",
            "body_too_large",
            format!(
                "[sign] covers content-digest and the body exceeds its body_limit of {limit} bytes"
            ),
        );
    }
    let e = Error::from_stack(e);
    let (status, title, reason) = match e.kind() {
        ErrorKind::Timeout => (
            StatusCode::GATEWAY_TIMEOUT,
            "deadline exceeded",
            "deadline_exceeded",
        ),
        ErrorKind::CircuitOpen => (
            StatusCode::SERVICE_UNAVAILABLE,
            "circuit open",
            "circuit_open",
        ),
        ErrorKind::NoEndpoints => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no endpoints",
            "no_endpoints",
        ),
        ErrorKind::Signature => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "signing failed",
            "sign_failed",
        ),
        ErrorKind::Auth => (StatusCode::BAD_GATEWAY, "login failed", "auth_failed"),
        _ => (StatusCode::BAD_GATEWAY, "call failed", "upstream_failed"),
    };
    tracing::info!(error = %e, "outbound call failed");
    respond(SIDE, status, title, reason, e.to_string())
}
