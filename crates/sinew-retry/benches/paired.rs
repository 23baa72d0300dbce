//! Paired rounds of the happy path: unwrapped, `tower::retry` (never
//! retries) and `RetryLayer`, interleaved round by round so that load from
//! other processes on a shared machine hits all three alike. Prints the
//! median time per call of each and the median of the per-round ratios.
//!
//! `cargo bench -p sinew-retry --bench paired`
#![allow(missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::time::{Duration, Instant};

use http::{Request, Response};
use sinew_core::body::try_clone_request;
use sinew_core::Body;
use sinew_retry::RetryLayer;
use tower::retry::Policy;
use tower::{service_fn, Layer, Service, ServiceExt};

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

const CALLS: usize = 500;
const ROUNDS: usize = 400;

/// The time of `CALLS` calls through clones of `svc` (requests built
/// beforehand).
async fn round<S>(svc: &S) -> Duration
where
    S: Service<Request<Body>, Response = Response<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    let reqs: Vec<Request<Body>> = (0..CALLS).map(|_| request()).collect();
    let start = Instant::now();
    for req in reqs {
        let mut svc = svc.clone();
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        std::hint::black_box(resp);
    }
    start.elapsed()
}

/// The same through one service value, polled ready before every call
/// (how a service is driven inside `Buffer` or a hand-written client).
async fn round_reused<S>(svc: &S) -> Duration
where
    S: Service<Request<Body>, Response = Response<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    let reqs: Vec<Request<Body>> = (0..CALLS).map(|_| request()).collect();
    let mut svc = svc.clone();
    let start = Instant::now();
    for req in reqs {
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        std::hint::black_box(resp);
    }
    start.elapsed()
}

fn only_one(which: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let backend = service_fn(|_req: Request<Body>| ready(Ok::<_, Infallible>(Response::new(()))));
    rt.block_on(async {
        for _ in 0..40 {
            match which {
                "tower" => {
                    round(&tower::retry::RetryLayer::new(NeverRetry).layer(backend)).await;
                }
                "sinew" => {
                    round(&RetryLayer::new().layer(backend)).await;
                }
                _ => {
                    round(&backend).await;
                }
            }
        }
    });
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // `SINEW_BENCH_ONLY=tower|sinew|bare`: run 20 000 calls of one variant
    // and exit (for an instruction count under `valgrind --tool=callgrind`).
    if let Ok(only) = std::env::var("SINEW_BENCH_ONLY") {
        only_one(&only);
        return;
    }
    for reused in [false, true] {
        run(reused);
    }
}

fn run(reused: bool) {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: run a
    // few rounds only then, to check the bench works.
    let rounds = if std::env::args().any(|a| a == "--bench") {
        ROUNDS
    } else {
        3
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let backend = service_fn(|_req: Request<Body>| ready(Ok::<_, Infallible>(Response::new(()))));
    let tower_retry = tower::retry::RetryLayer::new(NeverRetry).layer(backend);
    let sinew = RetryLayer::new().layer(backend);
    let sinew_nb = RetryLayer::new().no_budget().layer(backend);

    let (mut bare, mut tower, mut ours, mut ours_nb) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ratio_tower, mut ratio_ours, mut ratio_nb) = (Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        for r in 0..rounds {
            // Rotate the order so no variant always runs first.
            let mut t = [Duration::ZERO; 4];
            for k in 0..4 {
                let i = (r + k) % 4;
                t[i] = match (i, reused) {
                    (0, false) => round(&backend).await,
                    (1, false) => round(&tower_retry).await,
                    (2, false) => round(&sinew).await,
                    (_, false) => round(&sinew_nb).await,
                    (0, true) => round_reused(&backend).await,
                    (1, true) => round_reused(&tower_retry).await,
                    (2, true) => round_reused(&sinew).await,
                    (_, true) => round_reused(&sinew_nb).await,
                };
            }
            let per_call = |d: Duration| d.as_secs_f64() * 1e9 / CALLS as f64;
            bare.push(per_call(t[0]));
            tower.push(per_call(t[1]));
            ours.push(per_call(t[2]));
            ours_nb.push(per_call(t[3]));
            ratio_tower.push(t[1].as_secs_f64() / t[0].as_secs_f64());
            ratio_ours.push(t[2].as_secs_f64() / t[1].as_secs_f64());
            ratio_nb.push(t[3].as_secs_f64() / t[1].as_secs_f64());
        }
    });
    let how = if reused {
        "one service value reused"
    } else {
        "a clone of the service per call"
    };
    println!("paired happy path, {how}: {rounds} rounds of {CALLS} calls (medians)");
    println!(
        "  future sizes: tower {} B, sinew {} B",
        std::mem::size_of_val(&tower_retry.clone().call(request())),
        std::mem::size_of_val(&sinew.clone().call(request())),
    );
    println!("  unwrapped          {:8.1} ns/call", median(&mut bare));
    println!("  tower::retry never {:8.1} ns/call", median(&mut tower));
    println!("  sinew RetryLayer   {:8.1} ns/call", median(&mut ours));
    println!("  sinew, no budget   {:8.1} ns/call", median(&mut ours_nb));
    println!(
        "  tower / unwrapped           {:6.3}",
        median(&mut ratio_tower)
    );
    println!(
        "  sinew / tower               {:6.3}",
        median(&mut ratio_ours)
    );
    println!(
        "  sinew (no budget) / tower   {:6.3}",
        median(&mut ratio_nb)
    );
}
