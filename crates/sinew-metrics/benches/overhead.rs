//! Overhead of the client and server MetricsLayer next to an unwrapped
//! service and next to tower-http's `TraceLayer` with no-op callbacks,
//! measured in the same run. A Prometheus recorder is installed globally
//! (as in an application); no tracing subscriber is installed (spans are
//! disabled, as for `TraceLayer` with no-op callbacks).
//!
//! `cargo bench -p sinew-metrics --bench overhead -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use sinew_core::Body;
use sinew_metrics::prometheus::PrometheusBuilder;
use sinew_metrics::{MetricsLayer, ServerMetricsLayer};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::trace::TraceLayer;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Run `iters` calls of `svc` inside one `block_on`, timing only the calls.
fn run<S, ReqB, ResB>(
    rt: &tokio::runtime::Runtime,
    svc: &mut S,
    iters: u64,
    make: impl Fn() -> Request<ReqB>,
) -> Duration
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: std::fmt::Debug,
    ResB: http_body::Body,
    ResB::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            let resp = svc.ready().await.unwrap().call(make()).await.unwrap();
            let body = resp.into_body().collect().await.unwrap();
            std::hint::black_box(body);
        }
        start.elapsed()
    })
}

fn client_request() -> Request<Body> {
    Request::get("http://inventory:8080/items/7")
        .body(Body::empty())
        .unwrap()
}

fn server_request() -> Request<Empty<Bytes>> {
    Request::get("/items/7").body(Empty::new()).unwrap()
}

async fn client_backend(_req: Request<Body>) -> Result<Response<Empty<Bytes>>, Infallible> {
    Ok(Response::new(Empty::new()))
}

async fn server_backend(_req: Request<Empty<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"item 7"))))
}

fn bench(c: &mut Criterion) {
    let _handle = PrometheusBuilder::new()
        .upkeep_interval(None)
        .install()
        .unwrap();
    let rt = rt();

    let mut g = c.benchmark_group("client");
    let mut plain = tower::service_fn(client_backend);
    g.bench_function("unwrapped", |b| {
        b.iter_custom(|n| run(&rt, &mut plain, n, client_request))
    });
    let mut traced = ServiceBuilder::new()
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|_: &Request<Body>| tracing::Span::none())
                .on_request(())
                .on_response(())
                .on_body_chunk(())
                .on_eos(())
                .on_failure(()),
        )
        .service_fn(client_backend);
    g.bench_function("tower_http_trace_noop", |b| {
        b.iter_custom(|n| run(&rt, &mut traced, n, client_request))
    });
    let mut call = ServiceBuilder::new()
        .layer(MetricsLayer::call())
        .service_fn(client_backend);
    g.bench_function("metrics_call", |b| {
        b.iter_custom(|n| run(&rt, &mut call, n, client_request))
    });
    let mut both = ServiceBuilder::new()
        .layer(MetricsLayer::call())
        .layer(MetricsLayer::attempt())
        .service_fn(client_backend);
    g.bench_function("metrics_call_and_attempt", |b| {
        b.iter_custom(|n| run(&rt, &mut both, n, client_request))
    });
    g.finish();

    let mut g = c.benchmark_group("server");
    let mut plain = tower::service_fn(server_backend);
    g.bench_function("unwrapped", |b| {
        b.iter_custom(|n| run(&rt, &mut plain, n, server_request))
    });
    let mut traced = ServiceBuilder::new()
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|_: &Request<Empty<Bytes>>| tracing::Span::none())
                .on_request(())
                .on_response(())
                .on_body_chunk(())
                .on_eos(())
                .on_failure(()),
        )
        .service_fn(server_backend);
    g.bench_function("tower_http_trace_noop", |b| {
        b.iter_custom(|n| run(&rt, &mut traced, n, server_request))
    });
    let mut metered = ServiceBuilder::new()
        .layer(ServerMetricsLayer::new().route_fn(|_| Some("/items/{id}".into())))
        .service_fn(server_backend);
    g.bench_function("metrics", |b| {
        b.iter_custom(|n| run(&rt, &mut metered, n, server_request))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
