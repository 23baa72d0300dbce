#![allow(clippy::unwrap_used)]
//! RetryLayer against real HTTP servers on 127.0.0.1, in paused tokio time.

mod common;

use std::time::Duration;

use common::{backend, client, closed_port, status, with_header};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use sinew_core::error::find_source;
use sinew_core::{Body, CallContext, Deadline, DeadlineExceeded, FixedClock};
use sinew_retry::{
    Backoff, BackoffKind, Jitter, NoRetry, RetryBudget, RetryBudgetExhausted, RetryConfig,
    RetryLayer, RetryMethods, Retryable,
};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

fn req(method: Method, url: String, body: &'static str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(url)
        .body(Body::from(body))
        .unwrap()
}

/// tokio's timer wheel has a 1 ms resolution: a sleep ends on the next whole
/// millisecond.
fn tick(d: Duration) -> Duration {
    Duration::from_millis(d.as_nanos().div_ceil(1_000_000) as u64)
}

/// Exponential, no jitter: 100 ms, 200 ms, 400 ms, … (exact schedules).
fn exact() -> Backoff {
    Backoff::exponential(Duration::from_millis(100)).jitter(Jitter::None)
}

#[tokio::test(start_paused = true)]
async fn put_to_503_then_200_succeeds_on_attempt_2() {
    let server = backend(vec![status(503), status(200)]).await;
    let svc = RetryLayer::new().backoff(exact()).layer(client());
    let t0 = Instant::now();
    let resp = svc
        .oneshot(req(Method::PUT, server.url("/items/7"), "{\"n\":1}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(server.hits(), 2);
    assert_eq!(t0.elapsed(), Duration::from_millis(100));
    // The body was replayed in full.
    let bodies = server.seen.bodies.lock().unwrap().clone();
    assert_eq!(bodies, vec!["{\"n\":1}", "{\"n\":1}"]);
}

#[tokio::test(start_paused = true)]
async fn post_without_marking_is_sent_exactly_once() {
    let server = backend(vec![status(503)]).await;
    let svc = RetryLayer::new().layer(client());
    let resp = svc
        .clone()
        .oneshot(req(Method::POST, server.url("/orders"), "{}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.hits(), 1);
    // PATCH likewise.
    svc.clone()
        .oneshot(req(Method::PATCH, server.url("/orders/1"), "{}"))
        .await
        .unwrap();
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn post_with_idempotency_key_or_retryable_is_retried() {
    let server = backend(vec![status(503), status(201)]).await;
    let svc = RetryLayer::new().layer(client());
    let mut keyed = req(Method::POST, server.url("/orders"), "{}");
    keyed
        .headers_mut()
        .insert("idempotency-key", "ord-31059".parse().unwrap());
    let resp = svc.clone().oneshot(keyed).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(server.hits(), 2);

    let server = backend(vec![status(502), status(502), status(200)]).await;
    let mut marked = req(Method::PATCH, server.url("/orders/1"), "{}");
    marked.extensions_mut().insert(Retryable);
    let resp = svc.oneshot(marked).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(server.hits(), 3);
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_attempts_with_the_last_response() {
    let server = backend(vec![status(500), status(502), status(503)]).await;
    let svc = RetryLayer::new().backoff(exact()).layer(client());
    let t0 = Instant::now();
    let resp = svc
        .oneshot(req(Method::GET, server.url("/a"), ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.hits(), 3);
    assert_eq!(t0.elapsed(), Duration::from_millis(300));
    assert!(resp.extensions().get::<RetryBudgetExhausted>().is_none());
}

#[tokio::test(start_paused = true)]
async fn exact_delay_schedules_over_the_wire() {
    // Decorrelated (the default curve), seeded: call 0 of a layer seeded with
    // `s` draws what `Backoff::delays(s)` draws.
    let seed = 42;
    let curve = Backoff::decorrelated(Duration::from_millis(50));
    let expected: Duration = curve.delays(seed).take(3).map(tick).sum();
    let server = backend(vec![status(503), status(503), status(503), status(200)]).await;
    let svc = RetryLayer::new().max_attempts(4).seed(seed).layer(client());
    let t0 = Instant::now();
    let resp = svc
        .oneshot(req(Method::GET, server.url("/a"), ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(t0.elapsed(), expected);
    assert!(expected > Duration::ZERO);

    // Linear (aio-request), seeded.
    let curve = Backoff::linear(Duration::from_millis(50));
    let delays: Vec<Duration> = curve.delays(7).take(2).collect();
    for (n, d) in delays.iter().enumerate() {
        let nominal = 0.05 * (n + 1) as f64;
        assert!(d.as_secs_f64() >= nominal * 0.8 - 1e-9 && d.as_secs_f64() <= nominal * 1.2 + 1e-9);
    }
    let server = backend(vec![status(503), status(503), status(200)]).await;
    let svc = RetryLayer::aio_request().seed(7).layer(client());
    let t0 = Instant::now();
    let resp = svc
        .oneshot(req(Method::GET, server.url("/a"), ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(t0.elapsed(), tick(delays[0]) + tick(delays[1]));
}

#[tokio::test(start_paused = true)]
async fn aio_request_preset_retries_get_only() {
    let server = backend(vec![status(503)]).await;
    let svc = RetryLayer::aio_request().layer(client());
    for (method, hits) in [
        (Method::GET, 3),
        (Method::POST, 1),
        (Method::PUT, 1),
        (Method::PATCH, 1),
        (Method::DELETE, 1),
    ] {
        let before = server.hits();
        let resp = svc
            .clone()
            .oneshot(req(method.clone(), server.url("/a"), ""))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(server.hits() - before, hits, "{method}");
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_delta_seconds_is_honoured() {
    let server = backend(vec![with_header(503, "retry-after", "3"), status(200)]).await;
    let svc = RetryLayer::new().layer(client());
    let t0 = Instant::now();
    let resp = svc
        .oneshot(req(Method::GET, server.url("/a"), ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(t0.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn retry_after_http_date_is_relative_to_the_clock() {
    // The wall clock says 2021-04-20 02:07:55 UTC; the server asks for 02:08:02.
    let clock = FixedClock::at_unix(1_618_884_475);
    let server = backend(vec![
        with_header(429, "retry-after", "Tue, 20 Apr 2021 02:08:02 GMT"),
        status(200),
    ])
    .await;
    let svc = RetryLayer::new().clock(clock).layer(client());
    let t0 = Instant::now();
    let resp = svc
        .oneshot(req(Method::GET, server.url("/a"), ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(t0.elapsed(), Duration::from_secs(7));
}

#[tokio::test(start_paused = true)]
async fn a_longer_retry_after_ends_the_retries_with_the_response() {
    let server = backend(vec![with_header(503, "retry-after", "30"), status(200)]).await;
    let svc = RetryLayer::new()
        .max_retry_after(Duration::from_secs(10))
        .layer(client());
    let t0 = Instant::now();
    let resp = svc
        .oneshot(req(Method::GET, server.url("/a"), ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "30");
    assert_eq!(server.hits(), 1);
    assert_eq!(t0.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_off_retries_and_returns_the_last_response() {
    let server = backend(vec![status(503)]).await;
    let svc = RetryLayer::new()
        .max_attempts(5)
        .backoff(exact())
        .layer(client());
    // Attempt 1 at 0 ms, attempt 2 at 100 ms; the next wait (200 ms) plus the
    // 5 ms minimum would end past the 250 ms deadline: stop at 100 ms.
    let mut r = req(Method::GET, server.url("/a"), "");
    r.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(250)));
    let t0 = Instant::now();
    let resp = svc.clone().oneshot(r).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.hits(), 2);
    assert_eq!(t0.elapsed(), Duration::from_millis(100));

    // The same through the ambient call context (a handler's deadline), with
    // exactly enough room for the second wait: 100 + 200 + 5 = 305 ms.
    let before = server.hits();
    let ctx = CallContext::new().with_timeout(Duration::from_millis(305));
    let t0 = Instant::now();
    let resp = ctx
        .scope(svc.oneshot(req(Method::GET, server.url("/a"), "")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.hits() - before, 3);
    assert_eq!(t0.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cut_off_after_an_error_is_deadline_exceeded() {
    let addr = closed_port().await;
    let svc = RetryLayer::new().backoff(exact()).layer(client());
    let mut r = req(Method::GET, format!("http://{addr}/a"), "");
    r.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(150)));
    let t0 = Instant::now();
    let err = svc.oneshot(r).await.unwrap_err();
    assert!(find_source::<DeadlineExceeded>(&*err).is_some(), "{err}");
    assert_eq!(t0.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_passed_deadline_sends_nothing() {
    let server = backend(vec![status(200)]).await;
    let svc = RetryLayer::new().layer(client());
    let mut r = req(Method::GET, server.url("/a"), "");
    r.extensions_mut().insert(Deadline(Instant::now()));
    let err = svc.oneshot(r).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>());
    assert_eq!(server.hits(), 0);
}

#[tokio::test(start_paused = true)]
async fn connection_errors_are_retried_then_returned() {
    let addr = closed_port().await;
    let svc = RetryLayer::new().backoff(exact()).layer(client());
    let t0 = Instant::now();
    let err = svc
        .oneshot(req(Method::GET, format!("http://{addr}/a"), ""))
        .await
        .unwrap_err();
    assert_eq!(
        sinew_core::classify::failure_kind_of(&*err),
        sinew_core::FailureKind::Connect,
        "{err:?}"
    );
    assert_eq!(t0.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn do_not_retry_and_opt_out_are_sent_once() {
    let server = backend(vec![with_header(503, "x-do-not-retry", "1")]).await;
    let svc = RetryLayer::new().layer(client());
    let resp = svc
        .clone()
        .oneshot(req(Method::GET, server.url("/a"), ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.hits(), 1);

    let server = backend(vec![status(503)]).await;
    let mut r = req(Method::GET, server.url("/a"), "");
    r.extensions_mut().insert(NoRetry);
    svc.oneshot(r).await.unwrap();
    assert_eq!(server.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_buffer_cap_is_sent_once_and_whole() {
    let server = backend(vec![status(503), status(200)]).await;
    let svc = RetryLayer::new().layer(client());
    let payload = "x".repeat(10_000);
    let stream = http_body_util::Full::new(bytes::Bytes::from(payload.clone()));
    let body = Body::buffer(stream, 1024).await.unwrap();
    assert!(!body.is_replayable());
    let r = Request::put(server.url("/blob")).body(body).unwrap();
    let resp = svc.clone().oneshot(r).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.hits(), 1);
    assert_eq!(server.seen.bodies.lock().unwrap()[0], payload.as_bytes());

    // Within the cap the same request is replayed.
    let server = backend(vec![status(503), status(200)]).await;
    let body = Body::buffer(
        http_body_util::Full::new(bytes::Bytes::from_static(b"small")),
        1024,
    )
    .await
    .unwrap();
    let resp = svc
        .oneshot(Request::put(server.url("/blob")).body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(server.hits(), 2);
    assert_eq!(server.seen.bodies.lock().unwrap()[1], "small");
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text, "answer");
}

#[tokio::test(start_paused = true)]
async fn budget_exhaustion_marks_the_response_and_counts() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let server = backend(vec![status(503)]).await;
    // No floor and no share: the first retry is refused.
    let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.0).unwrap();
    let svc = RetryLayer::new().budget(budget).layer(client());
    let t0 = Instant::now();
    let resp = svc
        .oneshot(req(Method::GET, server.url("/a"), ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.hits(), 1);
    assert_eq!(t0.elapsed(), Duration::ZERO, "returned at once");
    let marker = resp.extensions().get::<RetryBudgetExhausted>().unwrap();
    assert_eq!(marker.attempts(), 1);

    let counters: Vec<(String, Vec<String>, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            metrics_util::debugging::DebugValue::Counter(n) => Some((
                key.key().name().to_string(),
                key.key()
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect(),
                n,
            )),
            _ => None,
        })
        .collect();
    assert!(
        counters.contains(&("sinew_retry_budget_exhausted_total".into(), vec![], 1)),
        "{counters:?}"
    );
    assert!(
        counters.contains(&(
            "sinew_retry_not_retried_total".into(),
            vec!["reason=budget_exhausted".into()],
            1
        )),
        "{counters:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn every_retry_is_counted_with_its_reason() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let server = backend(vec![status(503), status(429), status(200)]).await;
    let svc = RetryLayer::new().layer(client());
    let resp = svc
        .oneshot(req(Method::GET, server.url("/a"), ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut reasons: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "sinew_retry_attempts_total")
        .map(|(key, _, _, value)| {
            let label = key.key().labels().next().unwrap().value().to_string();
            assert_eq!(value, metrics_util::debugging::DebugValue::Counter(1));
            label
        })
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["429", "503"]);
}

#[test]
fn config_from_the_design_file() {
    let text = r#"
max_attempts = 4
backoff = "linear"
base_delay = "20ms"
max_delay = "1s"
methods = "aio-request"
budget_ratio = 0.005
budget_min_per_sec = 3
max_retry_after = "5s"
"#;
    let config: RetryConfig = toml::from_str(text).unwrap();
    assert_eq!(config.max_attempts, 4);
    assert_eq!(config.backoff, BackoffKind::Linear);
    assert_eq!(config.base_delay, Duration::from_millis(20));
    assert_eq!(config.max_delay, Duration::from_secs(1));
    assert_eq!(config.methods, RetryMethods::AioRequest);
    assert_eq!(config.budget_ratio, 0.005);
    assert_eq!(config.budget_min_per_sec, 3);
    assert_eq!(config.max_retry_after, Duration::from_secs(5));
    // Unset keys keep their defaults.
    assert_eq!(config.budget_window, Duration::from_secs(10));
    assert!(RetryLayer::from_config(&config).is_ok());

    let defaults: RetryConfig = toml::from_str("").unwrap();
    assert_eq!(defaults, RetryConfig::default());
    let round_trip: RetryConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
    assert_eq!(round_trip, config);

    let err = toml::from_str::<RetryConfig>("max_atempts = 3").unwrap_err();
    assert!(err.to_string().contains("max_atempts"), "{err}");
    let err = toml::from_str::<RetryConfig>("base_delay = \"fast\"").unwrap_err();
    assert!(err.to_string().contains("250ms"), "{err}");
    let err = toml::from_str::<RetryConfig>("methods = \"some\"").unwrap_err();
    assert!(err.to_string().contains("idempotent"), "{err}");

    let zero = RetryConfig {
        max_attempts: 0,
        ..RetryConfig::default()
    };
    assert_eq!(
        RetryLayer::from_config(&zero).unwrap_err().key(),
        "max_attempts"
    );
    let greedy = RetryConfig {
        budget_ratio: 1e6,
        ..RetryConfig::default()
    };
    assert_eq!(
        RetryLayer::from_config(&greedy).unwrap_err().key(),
        "budget_ratio"
    );
}

/// A backend that always answers `status` (or fails with `error()`), counting calls.
fn counting<F>(
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    outcome: F,
) -> impl tower::Service<
    Request<Body>,
    Response = http::Response<()>,
    Error = sinew_core::BoxError,
    Future = impl Send,
> + Clone
where
    F: Fn() -> Result<http::Response<()>, sinew_core::BoxError> + Clone + Send + 'static,
{
    tower::service_fn(move |_req: Request<Body>| {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let out = outcome();
        async move { out }
    })
}

fn unavailable() -> Result<http::Response<()>, sinew_core::BoxError> {
    Ok(http::Response::builder().status(503).body(()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_thousand_failing_calls_stay_within_the_default_budget() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let svc = RetryLayer::new().layer(counting(calls.clone(), unavailable));
    let all = (0..1000).map(|i| {
        svc.clone()
            .oneshot(req(Method::GET, format!("http://svc/items/{i}"), ""))
    });
    let results = futures_util::future::join_all(all).await;
    let extra = calls.load(Ordering::SeqCst) - 1000;
    // 20 % of 1 000 plus the floor (10/s over the 10 s window).
    assert!(extra <= 1000 * 20 / 100 + 100, "{extra}");
    assert_eq!(extra, 300, "the budget is used up to its bound");
    let marked = results
        .iter()
        .filter(|r| {
            r.as_ref()
                .unwrap()
                .extensions()
                .get::<RetryBudgetExhausted>()
                .is_some()
        })
        .count();
    // 2 000 retries were wanted and 300 granted, all while the first
    // failures came in: every call ends on a refused retry, marked.
    assert_eq!(marked, 1000);
}

#[tokio::test(start_paused = true)]
async fn a_fractional_percent_budget_through_the_layer() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    // 0.5 % of the traffic, no floor.
    let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.005).unwrap();
    let svc = RetryLayer::new()
        .budget(budget)
        .layer(counting(calls.clone(), unavailable));
    let all = (0..2000).map(|_| {
        svc.clone()
            .oneshot(req(Method::GET, "http://svc/a".into(), ""))
    });
    futures_util::future::join_all(all).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2000 + 10);
}

#[tokio::test(start_paused = true)]
async fn budget_exhaustion_after_an_error_wraps_it() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.0).unwrap();
    let svc = RetryLayer::new()
        .budget(budget)
        .layer(counting(calls.clone(), || {
            Err(Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)) as _)
        }));
    let err = svc
        .oneshot(req(Method::GET, "http://svc/a".into(), ""))
        .await
        .unwrap_err();
    let wrapped = err
        .downcast_ref::<sinew_retry::RetryBudgetExhaustedError>()
        .unwrap();
    assert_eq!(wrapped.attempts(), 1);
    assert_eq!(
        sinew_core::classify::failure_kind_of(&*err),
        sinew_core::FailureKind::Connect
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn circuit_open_is_retried_only_above_a_balancer() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let open = || Err(Box::new(sinew_core::CircuitOpen::new("10.0.0.7:8080", None)) as _);
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let svc = RetryLayer::new().layer(counting(calls.clone(), open));
    let err = svc
        .oneshot(req(Method::GET, "http://svc/a".into(), ""))
        .await
        .unwrap_err();
    assert!(find_source::<sinew_core::CircuitOpen>(&*err).is_some());
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let svc = RetryLayer::new()
        .retry_circuit_open(true)
        .layer(counting(calls.clone(), open));
    svc.oneshot(req(Method::GET, "http://svc/a".into(), ""))
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn each_attempt_is_a_fresh_numbered_copy() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let svc = RetryLayer::new().layer(tower::service_fn(move |mut r: Request<Body>| {
        // A layer below (say, signing) changes its copy of the request.
        let stale = r.headers().contains_key("x-signature");
        r.headers_mut()
            .insert("x-signature", "sig".parse().unwrap());
        log.lock()
            .unwrap()
            .push((sinew_retry::Attempt::of(&r), stale));
        async move {
            Ok::<_, std::convert::Infallible>(
                http::Response::builder().status(503).body(()).unwrap(),
            )
        }
    }));
    svc.oneshot(req(Method::GET, "http://svc/a".into(), ""))
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [(1, false), (2, false), (3, false)]);
}

proptest::proptest! {
    /// For any script of answers, the layer makes exactly the attempts the
    /// rules allow and returns the answer of its last attempt.
    #[test]
    fn attempts_follow_the_rules(
        script in proptest::collection::vec(
            proptest::sample::select(vec![200u16, 201, 404, 408, 429, 500, 502, 503]),
            1..8,
        ),
        max_attempts in 1u32..6,
        post in proptest::bool::ANY,
        seed in proptest::num::u64::ANY,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            use std::sync::atomic::{AtomicUsize, Ordering};
            let calls = std::sync::Arc::new(AtomicUsize::new(0));
            let seen = calls.clone();
            let answers = script.clone();
            let svc = RetryLayer::new()
                .max_attempts(max_attempts)
                .no_budget()
                .seed(seed)
                .layer(tower::service_fn(move |_r: Request<Body>| {
                    let i = seen.fetch_add(1, Ordering::SeqCst);
                    let status = answers[i.min(answers.len() - 1)];
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder().status(status).body(()).unwrap(),
                        )
                    }
                }));
            let method = if post { Method::POST } else { Method::GET };
            let resp = svc.oneshot(req(method, "http://svc/a".into(), "")).await.unwrap();
            let failure = |s: u16| s >= 500 || s == 408 || s == 429;
            let status_at = |i: usize| script[i.min(script.len() - 1)];
            let expected_attempts = if post {
                1
            } else {
                (0..max_attempts as usize)
                    .position(|i| !failure(status_at(i)))
                    .map_or(max_attempts as usize, |i| i + 1)
            };
            proptest::prop_assert_eq!(calls.load(Ordering::SeqCst), expected_attempts);
            proptest::prop_assert_eq!(resp.status().as_u16(), status_at(expected_attempts - 1));
            Ok(())
        })?;
    }
}
