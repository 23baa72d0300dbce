//! Feature `opentelemetry`: traces that link across two processes' worth of
//! layers, each with its own tracing subscriber, OpenTelemetry SDK and
//! in-memory exporter (as two services would have), over 127.0.0.1.
//!
//! P1 (a `checkout` span under an upstream's remote parent) calls P2's
//! `/front` through the client layers; P2's handler calls P1's `/back`
//! through its own client layers with a retry (the first `/back` answers
//! 503). Every exported span must be in one trace with the right parent.
#![cfg(feature = "opentelemetry")]
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    TracerProvider as _,
};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use sinew_core::{Body, BoxError, CallContext};
use sinew_metrics::{MetricsConfig, MetricsLayer, ServerMetricsLayer};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tracing::instrument::WithSubscriber;
use tracing::{Dispatch, Instrument};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// One service's observability: a subscriber whose OpenTelemetry layer
/// exports to its own in-memory exporter.
struct Process {
    dispatch: Dispatch,
    exporter: InMemorySpanExporter,
    _provider: SdkTracerProvider,
}

fn process(name: &'static str) -> Process {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer(name);
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
    Process {
        dispatch: Dispatch::new(subscriber),
        exporter,
        _provider: provider,
    }
}

type SinewClient =
    BoxCloneSyncService<Request<Body>, http::Response<hyper::body::Incoming>, BoxError>;

/// The client layers as the facade stacks them: the call layer, a retry,
/// the attempt layer (which writes the headers), the HTTP client.
fn client() -> SinewClient {
    let (call, attempt) = MetricsLayer::from_config(&MetricsConfig::default());
    let svc = ServiceBuilder::new()
        .layer(call)
        .layer(
            sinew_retry::RetryLayer::new()
                .backoff(sinew_retry::Backoff::constant(Duration::from_millis(1)))
                .no_budget(),
        )
        .layer(attempt.expect("per_attempt is on by default"))
        .service(Client::builder(TokioExecutor::new()).build_http::<Body>());
    BoxCloneSyncService::new(svc)
}

/// Serve `app` on 127.0.0.1 with every connection (and so every request)
/// recorded by `dispatch`'s subscriber.
async fn serve(dispatch: &Dispatch, app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dispatch = dispatch.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let app = app.clone();
            let svc = hyper::service::service_fn(move |req| app.clone().oneshot(req));
            tokio::spawn(
                async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                }
                .with_subscriber(dispatch.clone()),
            );
        }
    });
    addr
}

async fn text(resp: http::Response<hyper::body::Incoming>) -> String {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// P1's `/back`: 503 the first time, then the trace headers it received.
async fn back(State(calls): State<Arc<AtomicU32>>, headers: HeaderMap) -> (StatusCode, String) {
    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
        return (StatusCode::SERVICE_UNAVAILABLE, String::new());
    }
    let get = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (
        StatusCode::OK,
        format!("{} {}", get("traceparent"), get("tracestate")),
    )
}

/// P2's `/front`: calls P1's `/back` through its client layers, passing
/// nothing by hand; reports its ambient trace and what `/back` said.
async fn front(State((client, back)): State<(SinewClient, SocketAddr)>) -> String {
    let ambient = CallContext::current().unwrap().trace().unwrap();
    let req = Request::get(format!("http://{back}/back"))
        .body(Body::empty())
        .unwrap();
    let resp = client.oneshot(req).await.unwrap();
    format!("{ambient} {}", text(resp).await)
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn scope(span: &SpanData) -> &str {
    match attr(span, "sinew.scope") {
        Some(Value::String(s)) => s.as_str(),
        _ => "",
    }
}

/// Wait until `exporter` has `n` spans (servers end theirs when the
/// response body is done, just after the client has it).
async fn spans(exporter: &InMemorySpanExporter, n: usize) -> Vec<SpanData> {
    for _ in 0..500 {
        let spans = exporter.get_finished_spans().unwrap();
        if spans.len() >= n {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let names: Vec<_> = exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    panic!("expected {n} spans, got {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_server_client_server_is_one_trace_with_right_parents() {
    let (p1, p2) = (process("p1"), process("p2"));
    let back_calls = Arc::new(AtomicU32::new(0));
    let back_addr = serve(
        &p1.dispatch,
        Router::new()
            .route("/back", get(back))
            .layer(ServerMetricsLayer::new())
            .with_state(Arc::clone(&back_calls)),
    )
    .await;
    let front_addr = serve(
        &p2.dispatch,
        Router::new()
            .route("/front", get(front))
            .layer(ServerMetricsLayer::new())
            .with_state((client(), back_addr)),
    )
    .await;

    // P1: a `checkout` span continuing an upstream's trace (with a
    // tracestate), inside which the call to P2 is made.
    let upstream = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        "vendor=abc".parse::<TraceState>().unwrap(),
    );
    let report = async {
        let checkout = tracing::info_span!("checkout");
        checkout
            .set_parent(opentelemetry::Context::new().with_remote_span_context(upstream.clone()))
            .unwrap();
        let url = format!("http://{front_addr}/front?user=alice&token=s3cret");
        async move {
            let req = Request::get(url).body(Body::empty()).unwrap();
            text(client().oneshot(req).await.unwrap()).await
        }
        .instrument(checkout)
        .await
    }
    .with_subscriber(p1.dispatch.clone())
    .await;

    // P1: checkout, call, attempt, two /back server spans; P2: /front,
    // call, two attempts.
    let s1 = spans(&p1.exporter, 5).await;
    let s2 = spans(&p2.exporter, 4).await;
    assert_eq!((s1.len(), s2.len()), (5, 4));
    let trace = upstream.trace_id();
    for s in s1.iter().chain(&s2) {
        assert_eq!(
            s.span_context.trace_id(),
            trace,
            "{} left the trace",
            s.name
        );
        assert!(s.span_context.is_sampled());
    }

    let find = |spans: &[SpanData], name: &str, scope_: &str| -> Vec<SpanData> {
        spans
            .iter()
            .filter(|s| s.name == name && scope(s) == scope_)
            .cloned()
            .collect()
    };
    let checkout = &find(&s1, "checkout", "")[0];
    let p1_call = &find(&s1, "GET", "call")[0];
    let p1_attempt = &find(&s1, "GET", "attempt")[0];
    let mut p1_servers = find(&s1, "GET /back", "");
    p1_servers.sort_by_key(|s| s.start_time);
    let p2_server = &find(&s2, "GET /front", "")[0];
    let p2_call = &find(&s2, "GET", "call")[0];
    let mut p2_attempts = find(&s2, "GET", "attempt");
    p2_attempts.sort_by_key(|s| s.start_time);
    assert_eq!((p1_servers.len(), p2_attempts.len()), (2, 2));
    let id = |s: &SpanData| s.span_context.span_id();

    // Parents: upstream → checkout → call → attempt ⇒ P2 server → call →
    // attempts ⇒ P1 servers (one per attempt).
    assert_eq!(checkout.parent_span_id, upstream.span_id());
    assert_eq!(p1_call.parent_span_id, id(checkout));
    assert_eq!(p1_attempt.parent_span_id, id(p1_call));
    assert_eq!(p2_server.parent_span_id, id(p1_attempt));
    assert!(p2_server.parent_span_is_remote);
    assert_eq!(p2_call.parent_span_id, id(p2_server));
    assert!(!p2_call.parent_span_is_remote);
    for attempt in &p2_attempts {
        assert_eq!(attempt.parent_span_id, id(p2_call));
    }
    for (server, attempt) in p1_servers.iter().zip(&p2_attempts) {
        assert_eq!(
            server.parent_span_id,
            id(attempt),
            "each try under its attempt"
        );
        assert!(server.parent_span_is_remote);
    }

    // Kinds, the headers on the wire, tracestate forwarded end to end.
    assert_eq!(p2_server.span_kind, SpanKind::Server);
    assert_eq!(p2_attempts[1].span_kind, SpanKind::Client);
    let parts: Vec<&str> = report.split(' ').collect();
    assert_eq!(parts.len(), 3, "{report}");
    let (front_ambient, back_traceparent, back_tracestate) = (parts[0], parts[1], parts[2]);
    assert_eq!(
        back_traceparent,
        format!("00-{trace}-{}-01", id(&p2_attempts[1])),
        "/back saw the exported attempt span's id"
    );
    assert_eq!(back_tracestate, "vendor=abc");
    assert_eq!(
        front_ambient,
        format!("00-{trace}-{}-01", id(p2_server)),
        "the handler's call context is the server span"
    );

    // HTTP semantic conventions: url.full (query values redacted) and
    // http.request.resend_count on the resent attempt only.
    assert_eq!(
        attr(p1_attempt, "url.full").map(|v| v.as_str().into_owned()),
        Some(format!(
            "http://{front_addr}/front?user=REDACTED&token=REDACTED"
        ))
    );
    assert_eq!(
        attr(&p2_attempts[1], "url.full").map(|v| v.as_str().into_owned()),
        Some(format!("http://{back_addr}/back"))
    );
    assert_eq!(attr(&p2_attempts[0], "http.request.resend_count"), None);
    assert_eq!(
        attr(&p2_attempts[1], "http.request.resend_count"),
        Some(&Value::I64(1))
    );
    assert_eq!(attr(p2_call, "http.request.resend_count"), None);
    // The span's own trace_id field names the exported trace.
    assert_eq!(
        attr(p2_call, "trace_id").map(|v| v.as_str().into_owned()),
        Some(trace.to_string())
    );
    assert_eq!(
        attr(p2_call, "span_id").map(|v| v.as_str().into_owned()),
        Some(id(p2_call).to_string())
    );

    // Status: the 503 is an error on both sides, the retried call is not.
    assert!(matches!(p1_servers[0].status, Status::Error { .. }));
    assert!(matches!(p2_attempts[0].status, Status::Error { .. }));
    assert_eq!(p1_servers[1].status, Status::Unset);
    assert_eq!(p2_call.status, Status::Unset);
    assert_eq!(back_calls.load(Ordering::SeqCst), 2);
}

/// `/front` that makes its call from a task of its own.
async fn spawned_front(State(back): State<SocketAddr>) -> String {
    let handle = sinew_core::context::spawn(
        async move {
            let req = Request::get(format!("http://{back}/back"))
                .body(Body::empty())
                .unwrap();
            text(client().oneshot(req).await.unwrap()).await
        }
        .with_current_subscriber(),
    );
    handle.await.unwrap()
}

/// Work moved to another task with sinew's `context::spawn` (which carries
/// the call context, not the tracing span) still continues the trace: the
/// client span's remote parent is the server span from the call context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_call_continues_the_servers_trace() {
    let (p1, p2) = (process("p1"), process("p2"));
    let back_addr = serve(
        &p1.dispatch,
        Router::new()
            .route("/back", get(|| async { "ok" }))
            .layer(ServerMetricsLayer::new()),
    )
    .await;
    let front_addr = serve(
        &p2.dispatch,
        Router::new()
            .route("/front", get(spawned_front))
            .layer(ServerMetricsLayer::new())
            .with_state(back_addr),
    )
    .await;
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let req = Request::get(format!("http://{front_addr}/front"))
        .header("traceparent", tp)
        .body(Body::empty())
        .unwrap();
    let plain = Client::builder(TokioExecutor::new()).build_http::<Body>();
    assert_eq!(text(plain.oneshot(req).await.unwrap()).await, "ok");

    let s2 = spans(&p2.exporter, 3).await;
    let server = s2.iter().find(|s| s.name == "GET /front").unwrap();
    let call = s2.iter().find(|s| scope(s) == "call").unwrap();
    assert_eq!(
        server.span_context.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(server.parent_span_id.to_string(), "b7ad6b7169203331");
    assert_eq!(call.span_context.trace_id(), server.span_context.trace_id());
    assert_eq!(call.parent_span_id, server.span_context.span_id());
    let s1 = spans(&p1.exporter, 1).await;
    assert_eq!(
        s1[0].span_context.trace_id(),
        server.span_context.trace_id()
    );
}

/// With the feature but no OpenTelemetry layer, the layers behave as
/// without it: sinew's own ids, consistent between header and context.
#[tokio::test]
async fn without_an_opentelemetry_layer_sinew_ids_are_used() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let s = Arc::clone(&seen);
    let inner = tower::service_fn(move |req: Request<Body>| {
        let s = Arc::clone(&s);
        async move {
            let tp = req.headers()["traceparent"].to_str().unwrap().to_owned();
            s.lock().unwrap().push(tp);
            Ok::<_, Infallible>(http::Response::new(String::new()))
        }
    });
    let mine =
        sinew_core::TraceParent::parse(b"00-11111111111111111111111111111111-2222222222222222-01")
            .unwrap();
    let svc = ServiceBuilder::new()
        .layer(MetricsLayer::call())
        .service(inner);
    let req = Request::get("http://svc/x").body(Body::empty()).unwrap();
    CallContext::new()
        .with_trace(mine)
        .scope(svc.oneshot(req))
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    let sent = sinew_core::TraceParent::parse(seen[0].as_bytes()).unwrap();
    assert_eq!(sent.trace_id(), mine.trace_id());
    assert_ne!(sent.parent_id(), mine.parent_id());
}
