#![allow(clippy::unwrap_used)]
//! Priority-aware shedding.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use sinew_core::{CallContext, Priority, ResponseBody};
use sinew_deadline::{ShedConfig, ShedLayer};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceExt};

fn config(max: usize, high: usize, normal: usize) -> ShedConfig {
    ShedConfig {
        max_concurrency: max,
        high_reserve: Some(high),
        normal_reserve: Some(normal),
        ..ShedConfig::default()
    }
}

fn req(p: Priority) -> Request<String> {
    let mut r = Request::new(String::new());
    r.extensions_mut()
        .insert(CallContext::new().with_priority(p));
    r
}

/// A handler that holds its request until a permit is added to `gate`.
fn gated(
    gate: Arc<Semaphore>,
) -> impl Service<Request<String>, Response = Response<String>, Error = Infallible, Future = impl Send>
       + Clone
       + Send
       + 'static {
    service_fn(move |_req: Request<String>| {
        let gate = gate.clone();
        async move {
            gate.acquire().await.unwrap().forget();
            Ok::<_, Infallible>(Response::new("done".to_string()))
        }
    })
}

#[test]
fn capacities_follow_the_reserves() {
    let layer = ShedLayer::new(config(10, 2, 3));
    assert_eq!(layer.capacity(Priority::Low), 5);
    assert_eq!(layer.capacity(Priority::Normal), 8);
    assert_eq!(layer.capacity(Priority::High), 10);
    // Reserves larger than the limit leave nothing to the lower priorities.
    let layer = ShedLayer::new(config(4, 3, 3));
    assert_eq!(layer.capacity(Priority::Low), 0);
    assert_eq!(layer.capacity(Priority::Normal), 1);
    assert_eq!(layer.capacity(Priority::High), 4);
    let layer = ShedLayer::with_limit(64);
    assert_eq!(layer.capacity(Priority::Low), 48);
}

#[tokio::test(start_paused = true)]
async fn low_is_refused_first_then_normal_and_high_uses_the_reserve() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let layer = ShedLayer::new(config(10, 2, 3));
    let gate = Arc::new(Semaphore::new(0));
    let svc = layer.layer(gated(gate.clone()));
    let mut running = Vec::new();
    let mut admit = |p: Priority, n: usize| {
        for _ in 0..n {
            running.push(tokio::spawn(svc.clone().oneshot(req(p))));
        }
    };
    admit(Priority::Low, 5);
    tokio::task::yield_now().await;
    assert_eq!(layer.in_flight(), 5);
    // Low is at its cap: refused.
    let refused = svc.clone().oneshot(req(Priority::Low)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(refused.headers().get("x-do-not-retry").is_none());
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["status"], 503);
    assert_eq!(doc["priority"], "low");
    assert_eq!(doc["reason"], "overloaded");
    // Normal still gets in, up to its cap.
    admit(Priority::Normal, 3);
    tokio::task::yield_now().await;
    assert_eq!(layer.in_flight(), 8);
    let refused = svc.clone().oneshot(req(Priority::Normal)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    // High uses the reserve, up to the limit.
    admit(Priority::High, 2);
    tokio::task::yield_now().await;
    assert_eq!(layer.in_flight(), 10);
    let refused = svc.clone().oneshot(req(Priority::High)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Finishing frees the slots.
    gate.add_permits(10);
    for h in running {
        assert_eq!(h.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(layer.in_flight(), 0);
    gate.add_permits(1);
    let ok = svc.clone().oneshot(req(Priority::Low)).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    let counts: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == "sinew_shed_requests_total")
        .map(|(k, _, _, v)| {
            let label = k.key().labels().next().unwrap().value().to_string();
            (label, format!("{v:?}"))
        })
        .collect();
    for p in ["low", "normal", "high"] {
        assert!(
            counts.contains(&(p.to_string(), "Counter(1)".to_string())),
            "{p}: {counts:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn priority_from_the_header_without_a_context() {
    let layer = ShedLayer::new(config(1, 1, 0));
    let gate = Arc::new(Semaphore::new(0));
    let svc = layer.layer(gated(gate.clone()));
    let header_req = |v: &str| {
        Request::builder()
            .header("x-request-priority", v)
            .body(String::new())
            .unwrap()
    };
    let low = svc.clone().oneshot(header_req("low")).await.unwrap();
    assert_eq!(low.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Invalid priority counts as normal (refused here too).
    let odd = svc.clone().oneshot(header_req("urgent")).await.unwrap();
    assert_eq!(odd.status(), StatusCode::SERVICE_UNAVAILABLE);
    let high = tokio::spawn(svc.clone().oneshot(header_req("high")));
    tokio::task::yield_now().await;
    assert_eq!(layer.in_flight(), 1);
    gate.add_permits(1);
    assert_eq!(high.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_response_future_gives_its_slot_back() {
    let layer = ShedLayer::new(config(1, 0, 0));
    let gate = Arc::new(Semaphore::new(0));
    let svc = layer.layer(gated(gate));
    let fut = svc.clone().oneshot(req(Priority::Low));
    let h = tokio::spawn(fut);
    tokio::task::yield_now().await;
    assert_eq!(layer.in_flight(), 1);
    h.abort();
    let _ = h.await;
    assert_eq!(layer.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn queued_requests_wait_only_while_their_deadline_allows() {
    let layer = ShedLayer::new(ShedConfig {
        queue_size: 2,
        max_queue_wait: Duration::from_secs(2),
        ..config(1, 0, 0)
    });
    let gate = Arc::new(Semaphore::new(0));
    let svc = layer.layer(gated(gate.clone()));
    let holder = tokio::spawn(svc.clone().oneshot(req(Priority::Normal)));
    tokio::task::yield_now().await;

    let with_deadline = |left: Duration| {
        let mut r = Request::new(String::new());
        r.extensions_mut()
            .insert(CallContext::new().with_timeout(left));
        r
    };
    // Too little time left to wait at all: refused at once.
    let start = Instant::now();
    let res = svc
        .clone()
        .oneshot(with_deadline(Duration::from_millis(5)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(start.elapsed(), Duration::ZERO);

    // A request with 500 ms left waits until 495 ms, then is refused.
    let res = svc
        .clone()
        .oneshot(with_deadline(Duration::from_millis(500)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(start.elapsed(), Duration::from_millis(495));

    // Two wait; the queue is then full and a third is refused at once.
    let waiter_a = tokio::spawn(svc.clone().oneshot(with_deadline(Duration::from_secs(10))));
    let waiter_b = tokio::spawn(svc.clone().oneshot(req(Priority::Normal)));
    tokio::task::yield_now().await;
    let t = Instant::now();
    let res = svc
        .clone()
        .oneshot(with_deadline(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(t.elapsed(), Duration::ZERO);

    // Releasing the slot lets the waiters through, one at a time.
    tokio::time::sleep(Duration::from_millis(100)).await;
    gate.add_permits(3);
    assert_eq!(holder.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(waiter_a.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(waiter_b.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(layer.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_the_queue_wait_is_capped() {
    let layer = ShedLayer::new(ShedConfig {
        queue_size: 4,
        max_queue_wait: Duration::from_millis(250),
        ..config(1, 0, 0)
    });
    let gate = Arc::new(Semaphore::new(0));
    let svc = layer.layer(gated(gate));
    let _holder = tokio::spawn(svc.clone().oneshot(req(Priority::High)));
    tokio::task::yield_now().await;
    let start = Instant::now();
    let res = svc.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(start.elapsed(), Duration::from_millis(250));
}

#[derive(Default)]
struct Tally {
    ok: [AtomicUsize; 3],
    shed: [AtomicUsize; 3],
}

fn idx(p: Priority) -> usize {
    match p {
        Priority::Low => 0,
        Priority::Normal => 1,
        Priority::High => 2,
    }
}

/// Closed-loop clients for 3 s of (paused) time: 40 low, 8 normal and 4 high
/// clients against 24 slots; each request takes 10–19 ms; a shed client
/// waits 2 ms before its next request.
async fn mixed_load(layer: ShedLayer) -> Arc<Tally> {
    let svc = layer.layer(service_fn(|req: Request<String>| async move {
        let ms = 10 + (req.uri().path().len() % 10) as u64;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let tally = Arc::new(Tally::default());
    let end = Instant::now() + Duration::from_secs(3);
    let mut clients = Vec::new();
    for (p, n) in [
        (Priority::Low, 40),
        (Priority::Normal, 8),
        (Priority::High, 4),
    ] {
        for c in 0..n {
            let svc = svc.clone();
            let tally = tally.clone();
            clients.push(tokio::spawn(async move {
                let mut i = 0usize;
                while Instant::now() < end {
                    let path = "/".repeat(1 + (c + i) % 10);
                    let mut r = Request::builder().uri(path).body(String::new()).unwrap();
                    r.extensions_mut()
                        .insert(CallContext::new().with_priority(p));
                    let res = svc.clone().oneshot(r).await.unwrap();
                    if res.status() == StatusCode::OK {
                        tally.ok[idx(p)].fetch_add(1, Ordering::Relaxed);
                    } else {
                        assert!(matches!(res.into_body(), ResponseBody::Full { .. }));
                        tally.shed[idx(p)].fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    i += 1;
                }
            }));
        }
    }
    for c in clients {
        c.await.unwrap();
    }
    tally
}

fn success(t: &Tally, p: Priority) -> f64 {
    let ok = t.ok[idx(p)].load(Ordering::Relaxed) as f64;
    let shed = t.shed[idx(p)].load(Ordering::Relaxed) as f64;
    ok / (ok + shed)
}

#[tokio::test(start_paused = true)]
async fn saturated_mixed_load_high_keeps_99_percent_and_low_absorbs_the_refusals() {
    let tally = mixed_load(ShedLayer::new(config(24, 4, 4))).await;
    let high = success(&tally, Priority::High);
    let low = success(&tally, Priority::Low);
    let shed = |p| tally.shed[idx(p)].load(Ordering::Relaxed);
    let high_ok = tally.ok[idx(Priority::High)].load(Ordering::Relaxed);
    eprintln!(
        "success: high {high:.4} normal {:.4} low {low:.4}; shed: high {} normal {} low {}",
        success(&tally, Priority::Normal),
        shed(Priority::High),
        shed(Priority::Normal),
        shed(Priority::Low)
    );
    assert!(high_ok > 500, "high made {high_ok} calls");
    assert!(high >= 0.99, "high success {high}");
    assert!(shed(Priority::Low) > 1000, "the limit was saturated");
    assert!(
        shed(Priority::Low) > 10 * shed(Priority::Normal).max(shed(Priority::High)),
        "low absorbs the refusals: low {} normal {} high {}",
        shed(Priority::Low),
        shed(Priority::Normal),
        shed(Priority::High)
    );
    assert!(low < success(&tally, Priority::Normal), "low {low}");

    // The same load without reserves: high suffers like everyone else.
    let flat = mixed_load(ShedLayer::new(config(24, 0, 0))).await;
    let flat_high = success(&flat, Priority::High);
    eprintln!("without reserves: high success {flat_high:.4}");
    assert!(
        flat_high < 0.9,
        "without reserves high success is {flat_high}"
    );
}

/// Many threads, real time: the limit is never exceeded and every slot is
/// given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_limit_holds_under_real_concurrency() {
    let layer = ShedLayer::new(ShedConfig {
        queue_size: 8,
        ..config(8, 2, 2)
    });
    let current = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (cur, pk) = (current.clone(), peak.clone());
    let svc = layer.layer(service_fn(move |req: Request<String>| {
        let (cur, pk) = (cur.clone(), pk.clone());
        async move {
            let n = cur.fetch_add(1, Ordering::SeqCst) + 1;
            pk.fetch_max(n, Ordering::SeqCst);
            let p = req.extensions().get::<CallContext>().unwrap().priority();
            assert!(n <= 8, "{n} in flight ({p})");
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            cur.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, Infallible>(Response::new(String::new()))
        }
    }));
    let mut tasks = Vec::new();
    for t in 0..32 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let p = [Priority::Low, Priority::Normal, Priority::High][t % 3];
            for _ in 0..300 {
                svc.clone().oneshot(req(p)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(peak.load(Ordering::SeqCst) <= 8);
    assert!(peak.load(Ordering::SeqCst) >= 2);
    assert_eq!(layer.in_flight(), 0);
}

#[tokio::test]
async fn over_the_wire_with_axum() {
    use axum::routing::get;
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let layer = ShedLayer::new(ShedConfig {
        retry_after: Duration::from_millis(2500),
        ..config(1, 1, 0)
    });
    let app = axum::Router::new()
        .route(
            "/work",
            get(move || {
                let g = g.clone();
                async move {
                    g.acquire().await.unwrap().forget();
                    "done"
                }
            }),
        )
        .layer(layer.clone())
        .layer(sinew_deadline::ServerDeadlineLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let get = |p: &'static str| {
        let client = client.clone();
        async move {
            let r = Request::builder()
                .uri(format!("http://{addr}/work"))
                .header("x-request-priority", p)
                .header("x-request-timeout", "5")
                .body(http_body_util::Empty::new())
                .unwrap();
            client.request(r).await.unwrap()
        }
    };
    let high = tokio::spawn(get("high"));
    while layer.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    let low = get("low").await;
    assert_eq!(low.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(low.headers()["retry-after"], "3");
    assert!(low.headers().get("x-do-not-retry").is_none());
    gate.add_permits(1);
    let high = high.await.unwrap();
    assert_eq!(high.status(), StatusCode::OK);
    assert_eq!(
        &high.into_body().collect().await.unwrap().to_bytes()[..],
        b"done"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_that_would_expire_in_the_queue_is_refused_at_once() {
    let layer = ShedLayer::new(ShedConfig {
        queue_size: 4,
        max_queue_wait: Duration::from_secs(5),
        ..config(1, 0, 0)
    });
    // Every request holds its slot for 100 ms.
    let svc = layer.layer(service_fn(|_req: Request<String>| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let with_deadline = |left: Duration| {
        let mut r = Request::new(String::new());
        r.extensions_mut()
            .insert(CallContext::new().with_timeout(left));
        r
    };
    // Learn the hold time.
    for _ in 0..3 {
        assert_eq!(
            svc.clone()
                .oneshot(req(Priority::Low))
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    let busy = tokio::spawn(svc.clone().oneshot(req(Priority::Low)));
    tokio::task::yield_now().await;
    // 60 ms left, ~100 ms expected: refused without waiting.
    let start = Instant::now();
    let res = svc
        .clone()
        .oneshot(with_deadline(Duration::from_millis(60)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(start.elapsed(), Duration::ZERO);
    // 300 ms left: worth waiting, and served once the slot frees.
    let res = svc
        .clone()
        .oneshot(with_deadline(Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(busy.await.unwrap().unwrap().status(), StatusCode::OK);
}

/// Open-loop overload for 4 s of paused time (1 s from 64 slots, where
/// that is plenty of requests): each priority offers half
/// of what `n` slots can serve (requests hold their slot 5–15 ms, 10 on
/// average), 1.5 times the capacity in all, each priority arriving at its
/// own rate at random (repeatable) times. The admission is decided
/// in `call`, in arrival order. Returns the share of each priority's
/// requests served (low, normal, high).
async fn shares_under_overload(layer: ShedLayer, n: usize) -> [f64; 3] {
    let svc = layer.layer(service_fn(|req: Request<String>| async move {
        let ms = req.uri().path().len() as u64;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let per_ms = n as f64 / 10.0 / 2.0;
    // A fixed xorshift sequence: arrivals at random but repeatable times,
    // so no priority is favoured by its phase.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut uniform = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let ms = if n >= 64 { 1000 } else { 4000 };
    let mut i = 0usize;
    let mut offered = [0u32; 3];
    let mut answers = Vec::new();
    for _ms in 0..ms {
        let mut batch = Vec::new();
        for p in [Priority::High, Priority::Normal, Priority::Low] {
            let count = per_ms.floor() as usize + usize::from(uniform() < per_ms.fract());
            batch.extend(std::iter::repeat_n(p, count));
        }
        // In random order within the millisecond.
        for j in (1..batch.len()).rev() {
            batch.swap(j, (uniform() * (j + 1) as f64) as usize);
        }
        for p in batch {
            {
                let path = "/".repeat(5 + (i * 7) % 11);
                i += 1;
                let mut r = Request::builder().uri(path).body(String::new()).unwrap();
                r.extensions_mut()
                    .insert(CallContext::new().with_priority(p));
                let mut s = svc.clone();
                s.ready().await.unwrap();
                offered[idx(p)] += 1;
                answers.push((p, tokio::spawn(s.call(r))));
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut served = [0u32; 3];
    for (p, a) in answers {
        let res = a.await.unwrap().unwrap();
        if res.status() == StatusCode::OK {
            served[idx(p)] += 1;
        } else {
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
    }
    // Overloaded: a good part of the requests was shed, and never more
    // served than the limit allows.
    let (total, asked): (u32, u32) = (served.iter().sum(), offered.iter().sum());
    let capacity = f64::from(ms) * n as f64 / 10.0;
    assert!(
        f64::from(total) < 0.8 * f64::from(asked),
        "n = {n}: not overloaded"
    );
    assert!(
        f64::from(total) <= 1.05 * capacity,
        "n = {n}: over the limit"
    );
    [0, 1, 2].map(|j| f64::from(served[j]) / f64::from(offered[j]))
}

#[tokio::test(start_paused = true)]
async fn priorities_keep_their_order_under_overload_at_every_limit() {
    let mut failures = Vec::new();
    for n in [2, 4, 16, 256] {
        let [low, normal, high] = shares_under_overload(ShedLayer::with_limit(n), n).await;
        let [fl, fnn, fh] = shares_under_overload(ShedLayer::new(config(n, 0, 0)), n).await;
        eprintln!(
            "n = {n}: served high {high:.3} normal {normal:.3} low {low:.3}; without reserves {fh:.3} {fnn:.3} {fl:.3}"
        );
        // High is served first, then normal, and low gets what is left
        // (measured: 0.75 / 0.26 / 0.00 at 2 slots, 0.84 / 0.40 / 0.08 at
        // 4, 0.99 / 0.53 / 0.09 at 16, 1.00 / 0.62 / 0.00 at 256).
        if !(high > 1.4 * normal && normal > 1.4 * low && normal > 0.05) {
            failures.push(format!(
                "n = {n}: high {high:.3} normal {normal:.3} low {low:.3}"
            ));
        }
        // The control: the same load without reserves serves every
        // priority alike, so the order above is the reserves' doing.
        let (min, max) = (fl.min(fnn).min(fh), fl.max(fnn).max(fh));
        if max > 1.15 * min {
            failures.push(format!(
                "n = {n} without reserves: {fh:.3} {fnn:.3} {fl:.3}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(start_paused = true)]
async fn automatic_reserves_at_small_limits() {
    let caps = |n: usize| {
        let l = ShedLayer::with_limit(n);
        [Priority::Low, Priority::Normal, Priority::High].map(|p| l.capacity(p))
    };
    assert_eq!(caps(1), [1, 1, 1]);
    assert_eq!(caps(2), [1, 1, 2]);
    assert_eq!(caps(3), [1, 2, 3]);
    assert_eq!(caps(4), [2, 3, 4]);
    assert_eq!(caps(16), [12, 14, 16]);
    assert_eq!(caps(256), [192, 224, 256]);
    // A config that sets the limit alone gets the same reserves.
    let l = ShedLayer::new(ShedConfig {
        max_concurrency: 4,
        ..ShedConfig::default()
    });
    assert_eq!(l.capacity(Priority::Low), 2);

    // At 2 slots normal's reserve is soft: an idle server serves low...
    let layer = ShedLayer::with_limit(2);
    let gate = Arc::new(Semaphore::new(0));
    let svc = layer.layer(gated(gate.clone()));
    let low = tokio::spawn(svc.clone().oneshot(req(Priority::Low)));
    tokio::task::yield_now().await;
    assert_eq!(layer.in_flight(), 1);
    // ... a normal request finding the shared slot taken is shed, and for
    // Retry-After (1 s) low keeps out of that slot, so the next one goes
    // to normal.
    let shed = svc.clone().oneshot(req(Priority::Normal)).await.unwrap();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    gate.add_permits(1);
    assert_eq!(low.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(layer.in_flight(), 0);
    assert_eq!(layer.capacity(Priority::Low), 0);
    let refused = svc.clone().oneshot(req(Priority::Low)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let normal = tokio::spawn(svc.clone().oneshot(req(Priority::Normal)));
    tokio::task::yield_now().await;
    assert_eq!(layer.in_flight(), 1);
    gate.add_permits(1);
    assert_eq!(normal.await.unwrap().unwrap().status(), StatusCode::OK);
    // Once the Retry-After has passed, low has its slot back.
    tokio::time::advance(Duration::from_millis(1001)).await;
    assert_eq!(layer.capacity(Priority::Low), 1);
    gate.add_permits(1);
    let ok = svc.clone().oneshot(req(Priority::Low)).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}
