//! Cost per request of the server layers next to the unwrapped service.
//!
//! `cargo bench -p sinew-deadline --bench server_layer -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{Request, Response};
use sinew_deadline::{ServerDeadlineLayer, ShedLayer};
use tower::{service_fn, Layer, Service};

fn request(with_headers: bool) -> Request<String> {
    let mut b = Request::builder().uri("/orders/42");
    if with_headers {
        b = b
            .header("x-request-timeout", "4.999")
            .header("x-request-priority", "high");
    }
    b.header("content-type", "application/json")
        .header("accept", "*/*")
        .body(String::new())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = service_fn(|req: Request<String>| async move {
        Ok::<_, Infallible>(Response::new(req.into_body()))
    });
    // Every service here is always ready (service_fn; the layers forward
    // poll_ready), so `call` is used directly.
    let mut g = c.benchmark_group("server_layer");

    let mut bare = app;
    g.bench_function("unwrapped", |b| {
        b.to_async(&rt).iter_batched(
            || request(true),
            |req| bare.call(req),
            BatchSize::SmallInput,
        )
    });

    // Reference: tower's own fixed timeout (no headers, no context).
    let mut timeout =
        tower::timeout::TimeoutLayer::new(std::time::Duration::from_secs(20)).layer(app);
    g.bench_function("tower_timeout", |b| {
        b.to_async(&rt).iter_batched(
            || request(true),
            |req| timeout.call(req),
            BatchSize::SmallInput,
        )
    });

    let mut deadline = ServerDeadlineLayer::new().layer(app);
    g.bench_function("deadline_no_headers", |b| {
        b.to_async(&rt).iter_batched(
            || request(false),
            |req| deadline.call(req),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("deadline_with_headers", |b| {
        b.to_async(&rt).iter_batched(
            || request(true),
            |req| deadline.call(req),
            BatchSize::SmallInput,
        )
    });

    let mut both = ServerDeadlineLayer::new().layer(ShedLayer::with_limit(128).layer(app));
    g.bench_function("deadline_and_shed", |b| {
        b.to_async(&rt).iter_batched(
            || request(true),
            |req| both.call(req),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("parts");
    let headers = request(true).headers().clone();
    g.bench_function("parse_headers", |b| {
        b.iter(|| {
            sinew_deadline::server::parse_headers(
                std::hint::black_box(&headers),
                &sinew_core::SystemClock,
                false,
            )
        })
    });
    g.bench_function("system_time_now", |b| b.iter(std::time::SystemTime::now));
    g.bench_function("tokio_instant_now", |b| {
        let _guard = rt.enter();
        b.iter(tokio::time::Instant::now)
    });
    g.bench_function("scope", |b| {
        let ctx = sinew_core::CallContext::new().with_priority(sinew_core::Priority::High);
        b.to_async(&rt).iter(|| ctx.scope(async { 1 }))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
