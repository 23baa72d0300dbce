#![allow(clippy::unwrap_used)]
//! Pick sequences, distributions, P2C over real servers, ejection, discovery.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sinew_balance::{BalanceConfig, Ejection, Endpoint, LoadBalanceLayer, Strategy};
use sinew_core::{Body, NoEndpoints};
use tower::discover::Change;
use tower::{service_fn, Layer, ServiceExt};

fn config(strategy: Strategy) -> BalanceConfig {
    BalanceConfig {
        strategy,
        seed: Some(42),
        ..BalanceConfig::default()
    }
}

/// A service answering with the authority it was sent to.
fn echo_authority() -> impl tower::Service<
    Request<Body>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(|req: Request<Body>| async move {
        Ok::<_, Infallible>(Response::new(req.uri().authority().unwrap().to_string()))
    })
}

async fn picks(layer: &LoadBalanceLayer, n: usize) -> Vec<String> {
    let svc = layer.layer(echo_authority());
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let req = Request::get("http://svc/x?y=1")
            .body(Body::empty())
            .unwrap();
        out.push(svc.clone().oneshot(req).await.unwrap().into_body());
    }
    out
}

fn abc(weights: [f64; 3]) -> Vec<Endpoint> {
    ["a:1", "b:1", "c:1"]
        .iter()
        .zip(weights)
        .map(|(a, w)| Endpoint::new(*a).weight(w))
        .collect()
}

#[tokio::test]
async fn round_robin_is_exact() {
    let l = LoadBalanceLayer::new(config(Strategy::RoundRobin), abc([1.0; 3])).unwrap();
    assert_eq!(
        picks(&l, 7).await,
        ["a:1", "b:1", "c:1", "a:1", "b:1", "c:1", "a:1"]
    );
}

#[tokio::test]
async fn smooth_wrr_5_1_1_and_weight_zero_never_picked() {
    let l =
        LoadBalanceLayer::new(config(Strategy::WeightedRoundRobin), abc([5.0, 1.0, 1.0])).unwrap();
    let seq = picks(&l, 14).await;
    let expect = ["a:1", "a:1", "b:1", "a:1", "c:1", "a:1", "a:1"];
    assert_eq!(&seq[..7], expect);
    assert_eq!(&seq[7..], expect);
    let l =
        LoadBalanceLayer::new(config(Strategy::WeightedRoundRobin), abc([2.0, 0.0, 1.0])).unwrap();
    assert!(!picks(&l, 300).await.iter().any(|p| p == "b:1"));
    let l = LoadBalanceLayer::new(config(Strategy::WeightedRandom), abc([2.0, 0.0, 1.0])).unwrap();
    assert!(!picks(&l, 3000).await.iter().any(|p| p == "b:1"));
}

fn counts(seq: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for s in seq {
        *m.entry(s.clone()).or_default() += 1;
    }
    m
}

#[tokio::test]
async fn seeded_random_distributions_are_tight() {
    let n = 30_000;
    let l = LoadBalanceLayer::new(config(Strategy::Random), abc([1.0; 3])).unwrap();
    let c = counts(&picks(&l, n).await);
    for k in ["a:1", "b:1", "c:1"] {
        let share = c[k] as f64 / n as f64;
        assert!((share - 1.0 / 3.0).abs() < 0.015, "{k}: {share}");
    }
    let l = LoadBalanceLayer::new(config(Strategy::WeightedRandom), abc([6.0, 3.0, 1.0])).unwrap();
    let c = counts(&picks(&l, n).await);
    for (k, want) in [("a:1", 0.6), ("b:1", 0.3), ("c:1", 0.1)] {
        let share = c[k] as f64 / n as f64;
        assert!((share - want).abs() < 0.015, "{k}: {share}");
    }
}

#[tokio::test]
async fn least_outstanding_avoids_the_busy_endpoint() {
    let l = LoadBalanceLayer::new(config(Strategy::LeastOutstanding), abc([1.0; 3])).unwrap();
    // "a" never answers: its calls stay in flight.
    let svc = l.layer(service_fn(|req: Request<Body>| async move {
        if req.uri().host() == Some("a") {
            std::future::pending::<()>().await;
        }
        Ok::<_, Infallible>(Response::new(req.uri().authority().unwrap().to_string()))
    }));
    let stuck = tokio::spawn({
        let svc = svc.clone();
        async move {
            let req = Request::get("http://svc/").body(Body::empty()).unwrap();
            let _ = svc.oneshot(req).await;
        }
    });
    tokio::task::yield_now().await;
    for _ in 0..50 {
        let req = Request::get("http://svc/").body(Body::empty()).unwrap();
        assert_ne!(svc.clone().oneshot(req).await.unwrap().into_body(), "a:1");
    }
    stuck.abort();
}

#[tokio::test(start_paused = true)]
async fn a_failing_endpoint_is_ejected_and_returns() {
    let failing = Arc::new(AtomicBool::new(true));
    let l = LoadBalanceLayer::new(
        BalanceConfig {
            strategy: Strategy::RoundRobin,
            ejection: Some(Ejection {
                consecutive_failures: 3,
                base: Duration::from_secs(10),
                max: Duration::from_secs(60),
                max_ejected: 0.5,
            }),
            ..config(Strategy::RoundRobin)
        },
        abc([1.0; 3]),
    )
    .unwrap();
    let f = failing.clone();
    let svc = l.layer(service_fn(move |req: Request<Body>| {
        let bad = req.uri().host() == Some("b") && f.load(Ordering::SeqCst);
        async move {
            let status = if bad { 503 } else { 200 };
            Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap())
        }
    }));
    let call = || {
        let req = Request::get("http://svc/").body(Body::empty()).unwrap();
        svc.clone().oneshot(req)
    };
    for _ in 0..9 {
        call().await.unwrap();
    }
    let ejected: Vec<_> = l.endpoints().into_iter().filter(|(_, e)| *e).collect();
    assert_eq!(ejected.len(), 1);
    assert_eq!(ejected[0].0.address, "b:1");
    let before = l.picks();
    for _ in 0..30 {
        assert_eq!(call().await.unwrap().status(), StatusCode::OK);
    }
    let after = l.picks();
    let b = |p: &[(String, u64)]| p.iter().find(|(a, _)| a == "b:1").unwrap().1;
    assert_eq!(b(&after), b(&before), "no calls to an ejected endpoint");
    // It recovers and returns after its ejection time.
    failing.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(l.endpoints().iter().all(|(_, e)| !e));
    for _ in 0..3 {
        call().await.unwrap();
    }
    assert_eq!(b(&l.picks()), b(&after) + 1);
}

#[tokio::test(start_paused = true)]
async fn discovery_adds_and_removes_and_none_left_is_no_endpoints() {
    let (tx, l) = discovering(Duration::ZERO);
    let svc = l.layer(echo_authority());
    let call = || {
        let req = Request::get("http://svc/").body(Body::empty()).unwrap();
        svc.clone().oneshot(req)
    };
    let err = call().await.unwrap_err();
    assert!(err.is::<NoEndpoints>());
    tx.send(Ok(Change::Insert("a:1".into(), Endpoint::new("a:1"))))
        .unwrap();
    tx.send(Ok(Change::Insert("b:1".into(), Endpoint::new("b:1"))))
        .unwrap();
    tokio::task::yield_now().await;
    let got: Vec<String> = futures_join(vec![call(), call()]).await;
    assert_eq!(got.len(), 2);
    tx.send(Ok(Change::Remove("a:1".into()))).unwrap();
    tokio::task::yield_now().await;
    for _ in 0..5 {
        assert_eq!(call().await.unwrap().into_body(), "b:1");
    }
}

#[test]
fn discovery_given_outside_a_runtime_starts_with_the_first_call() {
    // No runtime here: building must not panic.
    let (tx, l) = discovering(Duration::from_secs(1));
    tx.send(Ok(Change::Insert("a:1".into(), Endpoint::new("a:1"))))
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let got = rt.block_on(async {
        let req = Request::get("http://svc/").body(Body::empty()).unwrap();
        l.layer(echo_authority()).oneshot(req).await
    });
    assert_eq!(got.unwrap().into_body(), "a:1");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_balancer_stops_its_discovery() {
    let (tx, l) = discovering(Duration::ZERO);
    let svc = l.layer(echo_authority());
    tokio::task::yield_now().await;
    assert!(!tx.is_closed());
    drop(l);
    tokio::task::yield_now().await;
    // A service still holds the balancer: discovery goes on.
    assert!(!tx.is_closed());
    drop(svc);
    tokio::task::yield_now().await;
    assert!(tx.is_closed(), "the discovery task still holds the stream");
}

#[tokio::test(start_paused = true)]
async fn a_removed_endpoint_finishes_its_calls_in_flight_and_gets_no_new_ones() {
    let (tx, l) = discovering(Duration::ZERO);
    tx.send(Ok(Change::Insert("a:1".into(), Endpoint::new("a:1"))))
        .unwrap();
    tokio::task::yield_now().await;
    // Every call takes 100 ms.
    let svc = l.layer(service_fn(|req: Request<Body>| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, Infallible>(Response::new(req.uri().authority().unwrap().to_string()))
    }));
    let call = || {
        let req = Request::get("http://svc/").body(Body::empty()).unwrap();
        svc.clone().oneshot(req)
    };
    let in_flight = tokio::spawn(call());
    tokio::time::sleep(Duration::from_millis(10)).await;
    tx.send(Ok(Change::Insert("b:1".into(), Endpoint::new("b:1"))))
        .unwrap();
    tx.send(Ok(Change::Remove("a:1".into()))).unwrap();
    tokio::task::yield_now().await;
    assert_eq!(l.endpoints().len(), 1);
    let res = in_flight.await.unwrap().unwrap();
    assert_eq!(res.into_body(), "a:1");
    for _ in 0..5 {
        assert_eq!(call().await.unwrap().into_body(), "b:1");
    }
}

/// A round-robin balancer fed by the returned sender, waiting up to `wait`
/// for an endpoint.
fn discovering(wait: Duration) -> (Changes, LoadBalanceLayer) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let l = LoadBalanceLayer::new(
        BalanceConfig {
            wait_for_endpoints: wait,
            ..config(Strategy::RoundRobin)
        },
        vec![],
    )
    .unwrap()
    .discover(tokio_stream_from(rx));
    (tx, l)
}

type Changes = tokio::sync::mpsc::UnboundedSender<Result<Change<String, Endpoint>, Infallible>>;

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn futures_join<F>(calls: Vec<F>) -> Vec<String>
where
    F: std::future::Future<Output = Result<Response<String>, sinew_core::BoxError>>,
{
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap().into_body());
    }
    out
}

async fn server(delay: Duration) -> String {
    let app = Router::new().route(
        "/item",
        get(move || async move {
            tokio::time::sleep(delay).await;
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr.to_string()
}

/// 1 000 calls at concurrency 10 over three real servers, one 50 ms
/// slower; the share the slow one got, and the p99 in ms.
async fn run(strategy: Strategy, addrs: &[String]) -> (f64, f64) {
    let endpoints = addrs.iter().map(Endpoint::new).collect();
    let l = LoadBalanceLayer::new(config(strategy), endpoints).unwrap();
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let svc = l.layer(http);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for _ in 0..100 {
                let t = std::time::Instant::now();
                let req = Request::get("http://svc/item")
                    .body(Full::default())
                    .unwrap();
                let res = svc.clone().oneshot(req).await.unwrap();
                res.into_body().collect().await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    lat.sort();
    let p99 = lat[(lat.len() * 99) / 100 - 1].as_secs_f64() * 1e3;
    let slow = l.picks().iter().find(|(a, _)| a == &addrs[2]).unwrap().1;
    (slow as f64 / 1000.0, p99)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_ewma_avoids_the_slow_server_round_robin_does_not() {
    let addrs = vec![
        server(Duration::ZERO).await,
        server(Duration::ZERO).await,
        server(Duration::from_millis(50)).await,
    ];
    let (rr_share, rr_p99) = run(Strategy::RoundRobin, &addrs).await;
    let (p2c_share, p2c_p99) = run(Strategy::P2cEwma, &addrs).await;
    println!("round robin: slow share {rr_share:.3}, p99 {rr_p99:.1} ms");
    println!("p2c-ewma:    slow share {p2c_share:.3}, p99 {p2c_p99:.1} ms");
    assert!((rr_share - 1.0 / 3.0).abs() < 0.02, "{rr_share}");
    assert!(p2c_share < 0.10, "{p2c_share}");
}

#[test]
fn bad_addresses_and_names() {
    assert!(LoadBalanceLayer::new(
        BalanceConfig::default(),
        vec![Endpoint::new("not an address")]
    )
    .is_err());
    assert_eq!(Strategy::parse("p2c-ewma"), Some(Strategy::P2cEwma));
    assert_eq!(
        Strategy::parse("weighted-round-robin"),
        Some(Strategy::WeightedRoundRobin)
    );
    assert_eq!(Strategy::parse("fastest"), None);
}

#[tokio::test(start_paused = true)]
async fn a_call_waits_for_an_endpoint_within_its_deadline() {
    let (tx, l) = discovering(Duration::from_secs(2));
    let svc = l.layer(echo_authority());
    let call = |deadline: Option<Duration>| {
        let mut req = Request::get("http://svc/").body(Body::empty()).unwrap();
        if let Some(d) = deadline {
            req.extensions_mut().insert(sinew_core::Deadline::after(d));
        }
        svc.clone().oneshot(req)
    };
    // Nothing comes: NoEndpoints after the configured wait, not before.
    let t0 = tokio::time::Instant::now();
    let err = call(None).await.unwrap_err();
    assert!(err.is::<NoEndpoints>());
    assert_eq!(t0.elapsed(), Duration::from_secs(2));
    // The call's deadline is shorter than the wait: it wins.
    let t0 = tokio::time::Instant::now();
    let err = call(Some(Duration::from_millis(300))).await.unwrap_err();
    assert!(err.is::<NoEndpoints>());
    assert_eq!(t0.elapsed(), Duration::from_millis(300));
    // An endpoint arrives while a call waits: the call goes there at once.
    let waiting = tokio::spawn(call(None));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let t0 = tokio::time::Instant::now();
    tx.send(Ok(Change::Insert("a:1".into(), Endpoint::new("a:1"))))
        .unwrap();
    assert_eq!(waiting.await.unwrap().unwrap().into_body(), "a:1");
    assert_eq!(t0.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_call_takes_an_endpoint_back_from_ejection() {
    // One endpoint, ejected after one failure for 1 s; max_ejected 1.0 so
    // the only endpoint may be ejected.
    let l = LoadBalanceLayer::new(
        BalanceConfig {
            wait_for_endpoints: Duration::from_secs(5),
            ejection: Some(Ejection {
                consecutive_failures: 1,
                base: Duration::from_secs(1),
                max: Duration::from_secs(10),
                max_ejected: 1.0,
            }),
            ..config(Strategy::RoundRobin)
        },
        vec![Endpoint::new("a:1")],
    )
    .unwrap();
    let fail = Arc::new(AtomicBool::new(true));
    let f = fail.clone();
    let svc = l.layer(service_fn(move |req: Request<Body>| {
        let f = f.clone();
        async move {
            let status = if f.load(Ordering::SeqCst) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            let mut r = Response::new(req.uri().authority().unwrap().to_string());
            *r.status_mut() = status;
            Ok::<_, Infallible>(r)
        }
    }));
    let call = || {
        svc.clone()
            .oneshot(Request::get("http://svc/").body(Body::empty()).unwrap())
    };
    assert_eq!(
        call().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(l.endpoints()[0].1, "ejected");
    fail.store(false, Ordering::SeqCst);
    // No traffic arrives to notice the return: the waiting call's own timer
    // does, exactly when the ejection ends.
    let t0 = tokio::time::Instant::now();
    let r = call().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(t0.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn unavailable_endpoints_are_skipped_and_rechecked() {
    // Stands in for the facade's breaker check.
    let open = Arc::new(std::sync::Mutex::new(vec!["a:1".to_string()]));
    let o = open.clone();
    let l = LoadBalanceLayer::new(
        BalanceConfig {
            available: Some(Arc::new(move |addr: &str| {
                !o.lock().unwrap().iter().any(|x| x == addr)
            })),
            wait_for_endpoints: Duration::from_secs(1),
            ..config(Strategy::RoundRobin)
        },
        abc([1.0; 3]),
    )
    .unwrap();
    let seq = picks(&l, 6).await;
    assert!(!seq.iter().any(|a| a == "a:1"), "{seq:?}");
    assert!(seq.iter().any(|a| a == "b:1") && seq.iter().any(|a| a == "c:1"));
    // All unavailable: a call waits and takes the first that comes back.
    *open.lock().unwrap() = vec!["a:1".into(), "b:1".into(), "c:1".into()];
    let o = open.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(120)).await;
        o.lock().unwrap().retain(|x| x != "c:1");
    });
    let t0 = tokio::time::Instant::now();
    assert_eq!(picks(&l, 1).await, ["c:1"]);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(120) && waited <= Duration::from_millis(200),
        "{waited:?}"
    );
}

#[tokio::test]
async fn weighted_random_follows_weights_at_100_endpoints() {
    // The fast path (a binary search over running weights) at scale.
    let eps: Vec<Endpoint> = (0..100)
        .map(|i| {
            Endpoint::new(format!("h{i}:1")).weight(if i == 7 {
                0.0
            } else if i < 50 {
                1.0
            } else {
                3.0
            })
        })
        .collect();
    let l = LoadBalanceLayer::new(config(Strategy::WeightedRandom), eps).unwrap();
    let c = counts(&picks(&l, 40_000).await);
    assert!(!c.contains_key("h7:1"));
    let low: usize = (0..50).filter_map(|i| c.get(&format!("h{i}:1"))).sum();
    let high: usize = (50..100).filter_map(|i| c.get(&format!("h{i}:1"))).sum();
    // 49 of weight 1, 50 of weight 3: low share 49/199.
    let share = low as f64 / (low + high) as f64;
    assert!((share - 49.0 / 199.0).abs() < 0.01, "{share}");
}
