//! The cost of one pick (and the call through an in-process service), for
//! every strategy, with 3 and 100 endpoints, next to tower's p2c balancer in
//! the same run.
#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use sinew_balance::{BalanceConfig, Endpoint, LoadBalanceLayer, Strategy};
use sinew_core::Body;
use tower::{service_fn, Layer, Service, ServiceExt};

fn endpoints(n: usize) -> Vec<Endpoint> {
    (0..n)
        .map(|i| {
            Endpoint::new(format!("10.0.{}.{}:8080", i / 250, i % 250)).weight(1.0 + (i % 3) as f64)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("pick");
    for n in [3usize, 100] {
        for (name, strategy) in [
            ("round-robin", Strategy::RoundRobin),
            ("random", Strategy::Random),
            ("weighted-random", Strategy::WeightedRandom),
            ("weighted-round-robin", Strategy::WeightedRoundRobin),
            ("least-outstanding", Strategy::LeastOutstanding),
            ("p2c-ewma", Strategy::P2cEwma),
        ] {
            let layer = rt.block_on(async {
                LoadBalanceLayer::new(
                    BalanceConfig {
                        strategy,
                        seed: Some(1),
                        ..BalanceConfig::default()
                    },
                    endpoints(n),
                )
                .unwrap()
            });
            let svc = layer.layer(service_fn(|_req: Request<Body>| async {
                Ok::<_, Infallible>(Response::new(()))
            }));
            g.bench_function(format!("{name}/{n}"), |b| {
                b.to_async(&rt).iter(|| {
                    svc.clone()
                        .oneshot(Request::get("http://svc/x").body(Body::empty()).unwrap())
                })
            });
        }
        // tower's p2c over peak-EWMA, the same endpoints as services.
        let services: Vec<_> = (0..n)
            .map(|_| {
                tower::load::PeakEwma::new(
                    service_fn(|_req: Request<Body>| async {
                        Ok::<_, Infallible>(Response::new(()))
                    }),
                    Duration::from_millis(1),
                    10e9,
                    tower::load::CompleteOnResponse::default(),
                )
            })
            .collect();
        let mut balance =
            tower::balance::p2c::Balance::new(tower::discover::ServiceList::new(services));
        g.bench_function(format!("tower-p2c/{n}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = std::time::Instant::now();
                    for _ in 0..iters {
                        let req = Request::get("http://svc/x").body(Body::empty()).unwrap();
                        balance.ready().await.unwrap().call(req).await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
