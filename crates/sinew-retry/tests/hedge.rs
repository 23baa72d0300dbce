#![allow(clippy::unwrap_used)]
//! HedgeLayer: timing in paused tokio time, cancellation over a real wire.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use futures_util::future::join_all;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use sinew_core::{Body, Deadline};
use sinew_retry::{Attempt, HedgeConfig, HedgeLayer, RetryBudget, RouteKey};
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceExt};

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Probe {
    calls: AtomicUsize,
    first_dropped: Arc<AtomicBool>,
    first_finished: AtomicBool,
}

/// A backend whose first attempt of a call takes `first`, and hedges
/// `hedge`, answering with `status_first` / `status_hedge`.
fn backend(
    probe: Arc<Probe>,
    first: Duration,
    hedge: Duration,
    status_first: u16,
    status_hedge: u16,
) -> impl Service<Request<Body>, Response = Response<&'static str>, Error = Infallible> + Clone {
    service_fn(move |req: Request<Body>| {
        let probe = probe.clone();
        async move {
            probe.calls.fetch_add(1, Ordering::SeqCst);
            let is_first = Attempt::of(&req) == 1;
            if is_first {
                let _flag = DropFlag(probe.first_dropped.clone());
                tokio::time::sleep(first).await;
                probe.first_finished.store(true, Ordering::SeqCst);
                let mut r = Response::new("first");
                *r.status_mut() = StatusCode::from_u16(status_first).unwrap();
                Ok(r)
            } else {
                tokio::time::sleep(hedge).await;
                let mut r = Response::new("hedge");
                *r.status_mut() = StatusCode::from_u16(status_hedge).unwrap();
                Ok(r)
            }
        }
    })
}

fn get_req(path: &str) -> Request<Body> {
    Request::get(format!("http://svc{path}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_attempt_is_beaten_by_the_hedge_and_cancelled() {
    let probe = Arc::new(Probe::default());
    let svc = HedgeLayer::fixed([Duration::from_millis(100)]).layer(backend(
        probe.clone(),
        Duration::from_secs(1),
        Duration::from_millis(20),
        200,
        200,
    ));
    let t0 = Instant::now();
    let resp = svc.oneshot(get_req("/a")).await.unwrap();
    assert_eq!(*resp.body(), "hedge");
    assert_eq!(t0.elapsed(), Duration::from_millis(120));
    assert_eq!(probe.calls.load(Ordering::SeqCst), 2);
    assert!(
        probe.first_dropped.load(Ordering::SeqCst),
        "loser cancelled"
    );
    assert!(!probe.first_finished.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn a_fast_first_attempt_sends_no_hedge() {
    let probe = Arc::new(Probe::default());
    let svc =
        HedgeLayer::fixed([Duration::from_millis(100), Duration::from_millis(200)]).layer(backend(
            probe.clone(),
            Duration::from_millis(30),
            Duration::ZERO,
            200,
            200,
        ));
    let t0 = Instant::now();
    let resp = svc.oneshot(get_req("/a")).await.unwrap();
    assert_eq!(*resp.body(), "first");
    assert_eq!(t0.elapsed(), Duration::from_millis(30));
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn attempts_start_at_their_offsets() {
    // Every attempt takes 1 s; offsets 100 and 250 ms: three attempts, the
    // first answers at 1 s.
    let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let seen = starts.clone();
    let svc = HedgeLayer::fixed([Duration::from_millis(100), Duration::from_millis(250)]).layer(
        service_fn(move |req: Request<Body>| {
            seen.lock().unwrap().push((Attempt::of(&req), t0.elapsed()));
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, Infallible>(Response::new(()))
            }
        }),
    );
    svc.oneshot(get_req("/a")).await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(1));
    assert_eq!(
        *starts.lock().unwrap(),
        [
            (1, Duration::ZERO),
            (2, Duration::from_millis(100)),
            (3, Duration::from_millis(250))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn only_idempotent_requests_are_hedged() {
    let probe = Arc::new(Probe::default());
    let svc = HedgeLayer::fixed([Duration::from_millis(100)]).layer(backend(
        probe.clone(),
        Duration::from_secs(1),
        Duration::ZERO,
        200,
        200,
    ));
    let post = Request::post("http://svc/orders")
        .body(Body::from("{}"))
        .unwrap();
    let resp = svc.clone().oneshot(post).await.unwrap();
    assert_eq!(*resp.body(), "first");
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
    // With an Idempotency-Key it may be hedged.
    let keyed = Request::post("http://svc/orders")
        .header("idempotency-key", "k")
        .body(Body::from("{}"))
        .unwrap();
    let resp = svc.oneshot(keyed).await.unwrap();
    assert_eq!(*resp.body(), "hedge");
}

#[tokio::test(start_paused = true)]
async fn with_no_acceptable_response_the_first_completed_is_returned() {
    let probe = Arc::new(Probe::default());
    // First: 503 at 300 ms; hedge (at 100 ms): 500 at 150 ms.
    let svc = HedgeLayer::fixed([Duration::from_millis(100)]).layer(backend(
        probe.clone(),
        Duration::from_millis(300),
        Duration::from_millis(50),
        503,
        500,
    ));
    let t0 = Instant::now();
    let resp = svc.oneshot(get_req("/a")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(*resp.body(), "hedge");
    assert_eq!(t0.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn a_hedge_that_fails_does_not_beat_a_slower_success() {
    let probe = Arc::new(Probe::default());
    let svc = HedgeLayer::fixed([Duration::from_millis(100)]).layer(backend(
        probe.clone(),
        Duration::from_millis(300),
        Duration::from_millis(10),
        200,
        503,
    ));
    let resp = svc.oneshot(get_req("/a")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(*resp.body(), "first");
}

#[tokio::test(start_paused = true)]
async fn no_hedge_too_close_to_the_deadline() {
    let probe = Arc::new(Probe::default());
    let svc = HedgeLayer::fixed([Duration::from_millis(58)]).layer(backend(
        probe.clone(),
        Duration::from_millis(200),
        Duration::ZERO,
        200,
        200,
    ));
    let mut r = get_req("/a");
    r.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(60)));
    let resp = svc.oneshot(r).await.unwrap();
    assert_eq!(*resp.body(), "first");
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn extra_load_stays_within_the_budget() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let probe = Arc::new(Probe::default());
    // Default hedge budget: 10 % of the calls plus 10/s over 10 s.
    let svc = HedgeLayer::fixed([Duration::from_millis(50)]).layer(backend(
        probe.clone(),
        Duration::from_secs(1),
        Duration::from_millis(10),
        200,
        200,
    ));
    let calls = (0..1000).map(|i| svc.clone().oneshot(get_req(&format!("/items/{i}"))));
    let results = join_all(calls).await;
    assert!(results.iter().all(|r| r.is_ok()));
    let hedges = probe.calls.load(Ordering::SeqCst) - 1000;
    assert!(hedges <= 1000 / 10 + 100, "{hedges}");
    assert_eq!(hedges, 200, "the budget is used up to its bound");
    let won_by_hedge = results
        .iter()
        .filter(|r| *r.as_ref().unwrap().body() == "hedge")
        .count();
    assert_eq!(won_by_hedge, 200);
    let exhausted = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(k, ..)| k.key().name() == "sinew_hedge_budget_exhausted_total")
        .map(|(.., v)| v);
    assert_eq!(
        exhausted,
        Some(metrics_util::debugging::DebugValue::Counter(800))
    );
}

#[tokio::test(start_paused = true)]
async fn a_shared_budget_bounds_several_layers() {
    let probe = Arc::new(Probe::default());
    let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.01).unwrap();
    let layer = HedgeLayer::fixed([Duration::from_millis(50)]).budget(budget.clone());
    let a = layer.layer(backend(
        probe.clone(),
        Duration::from_secs(1),
        Duration::ZERO,
        200,
        200,
    ));
    let b = layer.layer(backend(
        probe.clone(),
        Duration::from_secs(1),
        Duration::ZERO,
        200,
        200,
    ));
    let calls = (0..500).flat_map(|_| {
        [
            a.clone().oneshot(get_req("/a")),
            b.clone().oneshot(get_req("/b")),
        ]
    });
    join_all(calls).await;
    // 1 % of 1 000 calls.
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1010);
}

#[tokio::test(start_paused = true)]
async fn percentile_mode_hedges_at_the_routes_p95() {
    let slow = Arc::new(AtomicBool::new(false));
    let flag = slow.clone();
    let svc = HedgeLayer::percentile(0.95)
        .min_delay(Duration::from_millis(1))
        .min_samples(20)
        .layer(service_fn(move |req: Request<Body>| {
            let slow = flag.load(Ordering::SeqCst) && Attempt::of(&req) == 1;
            async move {
                let d = if slow { 1000 } else { 10 };
                tokio::time::sleep(Duration::from_millis(d)).await;
                Ok::<_, Infallible>(Response::new(if slow { "slow" } else { "fast" }))
            }
        }));
    let route = RouteKey::new("GET /users/{id}");
    let call = |id: u32| {
        let mut r = get_req(&format!("/users/{id}"));
        r.extensions_mut().insert(route.clone());
        svc.clone().oneshot(r)
    };
    // Cold route: no hedge, the slow attempt is waited for.
    for id in 0..20 {
        assert_eq!(*call(id).await.unwrap().body(), "fast");
    }
    slow.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    let resp = call(99).await.unwrap();
    assert_eq!(*resp.body(), "fast");
    // p95 of twenty 10 ms samples, read as the upper edge of its bucket
    // (10 240 µs, which tokio's 1 ms timer rounds up to 11 ms), then the
    // 10 ms hedge.
    assert_eq!(t0.elapsed(), Duration::from_millis(11 + 10));
}

#[tokio::test(start_paused = true)]
async fn percentile_mode_waits_for_samples() {
    let svc = HedgeLayer::percentile(0.95).layer(service_fn(|_req: Request<Body>| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, Infallible>(Response::new(()))
    }));
    let t0 = Instant::now();
    svc.oneshot(get_req("/cold")).await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(1));
}

#[test]
fn hedge_config_from_the_design_file() {
    let c: HedgeConfig = toml::from_str("delays = [\"50ms\", \"100ms\"]").unwrap();
    assert_eq!(
        c.delays,
        [Duration::from_millis(50), Duration::from_millis(100)]
    );
    assert!(HedgeLayer::from_config(&c).is_ok());
    let p: HedgeConfig = toml::from_str("percentile = 0.9\nmin_delay = \"20ms\"").unwrap();
    assert_eq!(p.percentile, Some(0.9));
    assert!(HedgeLayer::from_config(&p).is_ok());
    let bad: HedgeConfig = toml::from_str("percentile = 1.5").unwrap();
    assert_eq!(
        HedgeLayer::from_config(&bad).unwrap_err().key(),
        "percentile"
    );
    assert!(toml::from_str::<HedgeConfig>("delay = [\"1s\"]").is_err());
}

/// Over a real wire: the first request to reach the server hangs; the hedge
/// is answered at once. The server must see the loser go away (its handler
/// future dropped when hyper notices the client closed the connection).
#[tokio::test]
async fn the_losers_connection_is_closed_server_side() {
    #[derive(Clone)]
    struct Wire {
        arrivals: Arc<AtomicUsize>,
        gone: tokio::sync::mpsc::UnboundedSender<()>,
    }
    struct Gone(tokio::sync::mpsc::UnboundedSender<()>);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let wire = Wire {
        arrivals: Arc::new(AtomicUsize::new(0)),
        gone: tx,
    };
    let app = Router::new()
        .route(
            "/slow-once",
            get(|State(w): State<Wire>| async move {
                if w.arrivals.fetch_add(1, Ordering::SeqCst) == 0 {
                    let _gone = Gone(w.gone.clone());
                    std::future::pending::<()>().await;
                }
                "fast"
            }),
        )
        .with_state(wire.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let svc = HedgeLayer::fixed([Duration::from_millis(30)]).layer(common::client());
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{addr}/slow-once"))
        .body(Body::empty())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), svc.oneshot(req))
        .await
        .expect("the hedge answers")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "fast");
    assert_eq!(wire.arrivals.load(Ordering::SeqCst), 2);
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the server saw the losing connection close")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn retry_above_hedge_retries_a_call_whose_attempts_all_failed() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    // Calls 1 and 2 (a call's first attempt and its hedge) fail; later ones succeed.
    let backend = service_fn(move |_req: Request<Body>| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let status = if n < 2 { 503 } else { 200 };
            Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap())
        }
    });
    let hedged = HedgeLayer::fixed([Duration::from_millis(50)]).layer(backend);
    let svc = sinew_retry::RetryLayer::new()
        .backoff(sinew_retry::Backoff::constant(Duration::from_millis(10)))
        .layer(hedged);
    let t0 = Instant::now();
    let resp = svc.oneshot(get_req("/a")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // First round: attempts at 0 and 50 ms, both 503 by 150 ms; retry after
    // 10 ms; its first attempt answers 200 at 260 ms (before its hedge).
    assert_eq!(t0.elapsed(), Duration::from_millis(260));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}
