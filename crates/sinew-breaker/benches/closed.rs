//! The closed-state overhead of the breaker next to the unwrapped service,
//! single-threaded and contended (many tasks on a 2-worker runtime).
#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use sinew_breaker::CircuitBreakerLayer;
use sinew_core::Body;
use tower::{service_fn, Layer, Service, ServiceExt};

fn req(i: u64) -> Request<Body> {
    // Four endpoints, as a balancer below would give.
    Request::get(format!("http://inventory-{}:8080/items", i % 4))
        .body(Body::empty())
        .unwrap()
}

fn backend(
) -> impl Service<Request<Body>, Response = Response<()>, Error = Infallible, Future = impl Send>
       + Clone
       + Send
       + 'static {
    service_fn(|_req: Request<Body>| async { Ok::<_, Infallible>(Response::new(())) })
}

async fn run<S>(svc: S, tasks: u64, per_task: u64)
where
    S: Service<Request<Body>, Response = Response<()>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let svc = svc.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    svc.clone().oneshot(req(t * per_task + i)).await.unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let single = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new();
    let mut g = c.benchmark_group("breaker_closed");
    g.bench_function("single/unwrapped", |b| {
        b.to_async(&single).iter(|| backend().oneshot(req(1)))
    });
    let wrapped = layer.layer(backend());
    g.bench_function("single/breaker", |b| {
        b.to_async(&single).iter(|| wrapped.clone().oneshot(req(1)))
    });
    // Contended: 64 tasks × 100 calls on 2 workers per iteration.
    g.bench_function("contended/unwrapped", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                multi.block_on(run(backend(), 64, 100));
            }
            start.elapsed()
        })
    });
    g.bench_function("contended/breaker", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                multi.block_on(run(layer.layer(backend()), 64, 100));
            }
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
