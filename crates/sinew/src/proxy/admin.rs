//! The admin side: `GET /healthz` (200 `ok`, 503 `draining` once the proxy
//! drains, so load balancers stop sending) and `GET /metrics` (the
//! Prometheus exposition of the recorder given to
//! [`Proxy::metrics`](super::Proxy::metrics)).

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use sinew_metrics::prometheus::MetricsHandle;
use tokio::sync::watch;
use tower::Service;

use super::serve::HttpService;
use super::ProxyBody;

#[derive(Clone)]
struct Admin {
    metrics: Option<MetricsHandle>,
    drain: watch::Receiver<bool>,
}

pub(crate) fn service(metrics: Option<MetricsHandle>, drain: watch::Receiver<bool>) -> HttpService {
    HttpService::new(Admin { metrics, drain })
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ProxyBody> {
    let mut res = Response::new(
        Full::new(body.into())
            .map_err(|n| match n {})
            .boxed_unsync(),
    );
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

impl Service<Request<Incoming>> for Admin {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Ready<Result<Response<ProxyBody>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        const PLAIN: &str = "text/plain; charset=utf-8";
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut res = text(
                StatusCode::METHOD_NOT_ALLOWED,
                PLAIN,
                "method not allowed\n",
            );
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return ready(Ok(res));
        }
        let res = match req.uri().path() {
            "/healthz" if *self.drain.borrow() => {
                text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "draining\n")
            }
            "/healthz" => text(StatusCode::OK, PLAIN, "ok\n"),
            "/metrics" => match &self.metrics {
                Some(m) => text(
                    StatusCode::OK,
                    sinew_metrics::prometheus::CONTENT_TYPE,
                    m.render(),
                ),
                None => text(
                    StatusCode::NOT_FOUND,
                    PLAIN,
                    "no metrics recorder: give the proxy one (Proxy::metrics)\n",
                ),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                PLAIN,
                "not found: GET /healthz or /metrics\n",
            ),
        };
        ready(Ok(res))
    }
}
