//! `traceparent` continuity through two hops over 127.0.0.1: a test client
//! calls server A, whose handler calls server B through the client layers.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sinew_core::{Body, CallContext, TraceParent};
use sinew_metrics::client::Metrics;
use sinew_metrics::{MetricsLayer, ServerMetricsLayer};
use tower::{ServiceBuilder, ServiceExt};

type SinewClient = Metrics<Metrics<Client<HttpConnector, Body>>>;

fn client() -> SinewClient {
    ServiceBuilder::new()
        .layer(MetricsLayer::call())
        .layer(MetricsLayer::attempt())
        .service(Client::builder(TokioExecutor::new()).build_http::<Body>())
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn get_text(client: impl Into<Option<SinewClient>>, url: String, tp: Option<&str>) -> String {
    let mut req = Request::get(url);
    if let Some(tp) = tp {
        req = req.header("traceparent", tp);
    }
    let req = req.body(Body::empty()).unwrap();
    let resp = match client.into() {
        Some(c) => c.oneshot(req).await.unwrap(),
        None => Client::builder(TokioExecutor::new())
            .build_http::<Body>()
            .oneshot(req)
            .await
            .unwrap(),
    };
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// B: reports the traceparent it received and its ambient trace.
async fn hop_b(headers: HeaderMap) -> String {
    let inbound = headers
        .get("traceparent")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let ctx = CallContext::current().unwrap().trace().unwrap();
    format!("{inbound} {ctx}")
}

/// A: reports its ambient trace, then what B said (called through the
/// client layers, with nothing passed by hand).
async fn hop_a(State((client, b)): State<(SinewClient, SocketAddr)>) -> String {
    let ctx = CallContext::current().unwrap().trace().unwrap();
    let from_b = get_text(client, format!("http://{b}/b"), None).await;
    format!("{ctx} {from_b}")
}

fn parse(s: &str) -> TraceParent {
    TraceParent::parse(s.as_bytes()).unwrap_or_else(|| panic!("not a traceparent: {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_survives_two_hops() {
    let b = serve(
        Router::new()
            .route("/b", get(hop_b))
            .layer(ServerMetricsLayer::new()),
    )
    .await;
    let a = serve(
        Router::new()
            .route("/a", get(hop_a))
            .layer(ServerMetricsLayer::new())
            .with_state((client(), b)),
    )
    .await;

    // The caller's trace.
    let origin = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let report = get_text(None, format!("http://{a}/a"), Some(origin)).await;
    let parts: Vec<&str> = report.split(' ').collect();
    assert_eq!(parts.len(), 3, "{report}");
    let (a_ctx, b_inbound, b_ctx) = (parse(parts[0]), parse(parts[1]), parse(parts[2]));
    let origin = parse(origin);
    // A took the caller's trace into its context…
    assert_eq!(a_ctx, origin);
    // …its outbound call carried the same trace id with a new span id…
    assert_eq!(b_inbound.trace_id(), origin.trace_id());
    assert_ne!(b_inbound.parent_id(), origin.parent_id());
    assert_eq!(b_inbound.flags(), origin.flags());
    // …and B took that into its context.
    assert_eq!(b_ctx, b_inbound);

    // No inbound trace: A starts one, and B continues it.
    let report = get_text(None, format!("http://{a}/a"), None).await;
    let parts: Vec<&str> = report.split(' ').collect();
    let (a_ctx, b_inbound) = (parse(parts[0]), parse(parts[1]));
    assert_ne!(a_ctx.trace_id(), origin.trace_id());
    assert_eq!(b_inbound.trace_id(), a_ctx.trace_id());

    // A forged, invalid trace is not trusted.
    let report = get_text(
        None,
        format!("http://{a}/a"),
        Some("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"),
    )
    .await;
    let a_ctx = parse(report.split(' ').next().unwrap());
    assert_ne!(a_ctx.trace_id(), origin.trace_id());

    // Through the client layers from a context of our own: three hops.
    let mine = parse("00-11111111111111111111111111111111-2222222222222222-00");
    let report = mine
        .scope_trace(get_text(client(), format!("http://{a}/a"), None))
        .await;
    let parts: Vec<&str> = report.split(' ').collect();
    let (a_ctx, b_inbound) = (parse(parts[0]), parse(parts[1]));
    assert_eq!(a_ctx.trace_id(), mine.trace_id());
    assert_ne!(a_ctx.parent_id(), mine.parent_id());
    assert_eq!(a_ctx.flags(), 0);
    assert_eq!(b_inbound.trace_id(), mine.trace_id());
}

trait ScopeTrace {
    fn scope_trace<F: std::future::Future>(
        self,
        fut: F,
    ) -> tokio::task::futures::TaskLocalFuture<CallContext, F>;
}

impl ScopeTrace for TraceParent {
    fn scope_trace<F: std::future::Future>(
        self,
        fut: F,
    ) -> tokio::task::futures::TaskLocalFuture<CallContext, F> {
        CallContext::new().with_trace(self).scope(fut)
    }
}
