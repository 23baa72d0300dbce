//! The happy path (no retry needed): one call through `RetryLayer` next to
//! the bare service and to `tower::retry` with a policy that never retries,
//! measured in the same run.
//!
//! `cargo bench -p sinew-retry --bench retry -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::future::{ready, Ready};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{Request, Response};
use sinew_core::body::try_clone_request;
use sinew_core::Body;
use sinew_retry::{HedgeLayer, RetryLayer};
use tower::retry::Policy;
use tower::{service_fn, Layer, Service, ServiceExt};

/// tower's retry with a policy that clones the request (as any policy that
/// may retry must, before it knows the outcome) and never retries.
#[derive(Clone)]
struct NeverRetry;

impl<E> Policy<Request<Body>, Response<()>, E> for NeverRetry {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<Body>,
        _result: &mut Result<Response<()>, E>,
    ) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        try_clone_request(req)
    }
}

fn request() -> Request<Body> {
    Request::get("http://inventory.internal:8080/items/7?view=full")
        .header("accept", "application/json")
        .header("x-request-id", "0f8c2f6a-9a4e-4c1b-8f5e-2d7c1e9b3a10")
        .body(Body::empty())
        .unwrap()
}

fn backend() -> impl Service<
    Request<Body>,
    Response = Response<()>,
    Error = Infallible,
    Future = Ready<Result<Response<()>, Infallible>>,
> + Clone {
    service_fn(|_req: Request<Body>| ready(Ok::<_, Infallible>(Response::new(()))))
}

/// Calls per measured iteration (so scheduler noise on a shared machine
/// averages out); criterion reports the time per call.
const CALLS: usize = 64;

fn requests() -> Vec<Request<Body>> {
    (0..CALLS).map(|_| request()).collect()
}

/// One call per request, each through a clone of `svc` (the usual way a
/// tower client is shared).
async fn calls<S>(svc: S, reqs: Vec<Request<Body>>)
where
    S: Service<Request<Body>, Response = Response<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    for req in reqs {
        let mut svc = svc.clone();
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        std::hint::black_box(resp);
    }
}

fn happy_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("retry_happy_path");
    group.throughput(criterion::Throughput::Elements(CALLS as u64));

    let bare = backend();
    group.bench_function("unwrapped", |b| {
        b.to_async(&rt).iter_batched(
            requests,
            |reqs| calls(bare.clone(), reqs),
            BatchSize::SmallInput,
        )
    });

    let tower_retry = tower::retry::RetryLayer::new(NeverRetry).layer(backend());
    group.bench_function("tower_retry_never", |b| {
        b.to_async(&rt).iter_batched(
            requests,
            |reqs| calls(tower_retry.clone(), reqs),
            BatchSize::SmallInput,
        )
    });

    let sinew = RetryLayer::new().layer(backend());
    group.bench_function("sinew_retry", |b| {
        b.to_async(&rt).iter_batched(
            requests,
            |reqs| calls(sinew.clone(), reqs),
            BatchSize::SmallInput,
        )
    });

    let sinew_no_budget = RetryLayer::new().no_budget().layer(backend());
    group.bench_function("sinew_retry_no_budget", |b| {
        b.to_async(&rt).iter_batched(
            requests,
            |reqs| calls(sinew_no_budget.clone(), reqs),
            BatchSize::SmallInput,
        )
    });

    let hedge = HedgeLayer::fixed([std::time::Duration::from_millis(50)]).layer(backend());
    group.bench_function("sinew_hedge", |b| {
        b.to_async(&rt).iter_batched(
            requests,
            |reqs| calls(hedge.clone(), reqs),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn budget(c: &mut Criterion) {
    let mut group = c.benchmark_group("retry_budget");
    let budget = sinew_retry::RetryBudget::default();
    group.bench_function("deposit", |b| b.iter(|| budget.deposit()));
    let tower_budget = tower::retry::budget::TpsBudget::default();
    group.bench_function("tower_tps_deposit", |b| {
        b.iter(|| tower::retry::budget::Budget::deposit(&tower_budget))
    });
    group.bench_function("clock_read", |b| {
        b.iter(|| std::hint::black_box(tokio::time::Instant::now()))
    });
    group.finish();
}

criterion_group!(benches, happy_path, budget);
criterion_main!(benches);
