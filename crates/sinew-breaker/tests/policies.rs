#![allow(clippy::unwrap_used)]
//! Every policy and transition, in paused tokio time.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use proptest::prelude::*;
use sinew_breaker::{BreakerConfig, CircuitBreakerLayer, FallbackLayer, State, TripPolicy, Window};
use sinew_core::{Body, BoxError, CircuitOpen};
use tower::{service_fn, Layer, Service, ServiceExt};

const KEY: &str = "inventory:8080";

fn req() -> Request<Body> {
    Request::get("http://inventory:8080/items")
        .body(Body::empty())
        .unwrap()
}

/// A backend whose next statuses come from `script` (then 200), taking
/// `delay` each.
fn backend(
    script: Arc<std::sync::Mutex<Vec<u16>>>,
    delay: Duration,
    hits: Arc<AtomicUsize>,
) -> impl Service<Request<Body>, Response = Response<()>, Error = Infallible, Future = impl Send>
       + Clone
       + Send {
    service_fn(move |_req: Request<Body>| {
        let script = script.clone();
        let hits = hits.clone();
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            let code = {
                let mut s = script.lock().unwrap();
                if s.is_empty() {
                    200
                } else {
                    s.remove(0)
                }
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(StatusCode::from_u16(code).unwrap())
                    .body(())
                    .unwrap(),
            )
        }
    })
}

fn layer(config: BreakerConfig) -> CircuitBreakerLayer {
    CircuitBreakerLayer::from_config(BreakerConfig {
        open_jitter: 0.0,
        ..config
    })
    .unwrap()
    .seed(7)
}

async fn status<S>(svc: &S) -> Result<u16, BoxError>
where
    S: Service<Request<Body>, Response = Response<()>, Error = BoxError> + Clone,
{
    svc.clone()
        .oneshot(req())
        .await
        .map(|r| r.status().as_u16())
}

fn is_open(r: &Result<u16, BoxError>) -> bool {
    matches!(r, Err(e) if e.is::<CircuitOpen>())
}

#[tokio::test(start_paused = true)]
async fn pybreaker_five_consecutive_failures_open_it() {
    let script = Arc::new(std::sync::Mutex::new(vec![
        500, 500, 500, 500, 200, 500, 500, 500, 500, 500,
    ]));
    let hits = Arc::new(AtomicUsize::new(0));
    let l = layer(BreakerConfig::default());
    let h = l.handle();
    let svc = l.layer(backend(script, Duration::ZERO, hits.clone()));
    // Four failures, a success (resets the run), five failures: open.
    for _ in 0..9 {
        status(&svc).await.unwrap();
        assert_eq!(h.state(KEY), Some(State::Closed));
    }
    status(&svc).await.unwrap();
    assert_eq!(h.state(KEY), Some(State::Open));
    assert!(is_open(&status(&svc).await));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        10,
        "the refused call never reached the backend"
    );
}

#[tokio::test(start_paused = true)]
async fn aio_request_scenario_one_success_then_one_failure_opens() {
    let script = Arc::new(std::sync::Mutex::new(vec![200, 503]));
    let hits = Arc::new(AtomicUsize::new(0));
    let l = layer(BreakerConfig {
        policies: vec![TripPolicy::FailureRate {
            ratio: 0.5,
            minimum_calls: 2,
            window: Window::Time {
                length: Duration::from_secs(10),
                buckets: 10,
            },
        }],
        open_duration: Duration::from_secs(5),
        ..BreakerConfig::default()
    });
    let h = l.handle();
    let svc = l.layer(backend(script, Duration::ZERO, hits));
    assert_eq!(status(&svc).await.unwrap(), 200);
    assert_eq!(h.state(KEY), Some(State::Closed));
    assert_eq!(status(&svc).await.unwrap(), 503);
    assert_eq!(h.state(KEY), Some(State::Open));
}

#[tokio::test(start_paused = true)]
async fn a_time_window_forgets_old_failures() {
    let script = Arc::new(std::sync::Mutex::new(vec![503, 200, 503]));
    let l = layer(BreakerConfig {
        policies: vec![TripPolicy::FailureRate {
            ratio: 0.6,
            minimum_calls: 2,
            window: Window::Time {
                length: Duration::from_secs(10),
                buckets: 10,
            },
        }],
        ..BreakerConfig::default()
    });
    let h = l.handle();
    let svc = l.layer(backend(script, Duration::ZERO, Arc::default()));
    status(&svc).await.unwrap(); // failure at t=0
    tokio::time::advance(Duration::from_secs(11)).await;
    status(&svc).await.unwrap(); // success at t=11: the failure is gone
    status(&svc).await.unwrap(); // failure: 1 of 2 = 0.5 < 0.6
    assert_eq!(h.state(KEY), Some(State::Closed));
}

#[tokio::test(start_paused = true)]
async fn a_count_window_trips_on_the_ratio_of_the_last_n() {
    // Window of 4, ratio 0.75, minimum 4.
    let script = Arc::new(std::sync::Mutex::new(vec![503, 200, 503, 200, 503, 503]));
    let l = layer(BreakerConfig {
        policies: vec![TripPolicy::FailureRate {
            ratio: 0.75,
            minimum_calls: 4,
            window: Window::Count(4),
        }],
        ..BreakerConfig::default()
    });
    let h = l.handle();
    let svc = l.layer(backend(script, Duration::ZERO, Arc::default()));
    for _ in 0..5 {
        status(&svc).await.unwrap();
        assert_eq!(h.state(KEY), Some(State::Closed));
    }
    // Last four: 503, 200, 503, 503 → 0.75.
    status(&svc).await.unwrap();
    assert_eq!(h.state(KEY), Some(State::Open));
}

#[tokio::test(start_paused = true)]
async fn slow_calls_trip_the_slow_call_policy() {
    let l = layer(BreakerConfig {
        policies: vec![TripPolicy::SlowCallRate {
            ratio: 0.5,
            slower_than: Duration::from_millis(100),
            minimum_calls: 2,
            window: Window::Count(10),
        }],
        ..BreakerConfig::default()
    });
    let h = l.handle();
    let fast = l.layer(backend(
        Arc::default(),
        Duration::from_millis(10),
        Arc::default(),
    ));
    let slow = l.layer(backend(
        Arc::default(),
        Duration::from_millis(200),
        Arc::default(),
    ));
    status(&fast).await.unwrap();
    status(&fast).await.unwrap();
    status(&slow).await.unwrap();
    assert_eq!(h.state(KEY), Some(State::Closed), "1 slow of 3");
    status(&slow).await.unwrap();
    assert_eq!(h.state(KEY), Some(State::Open), "2 slow of 4");
}

#[tokio::test(start_paused = true)]
async fn open_probes_after_the_wait_which_doubles_and_resets_on_close() {
    let script = Arc::new(std::sync::Mutex::new(vec![500, 500, 500]));
    let hits = Arc::new(AtomicUsize::new(0));
    let l = layer(BreakerConfig {
        policies: vec![TripPolicy::ConsecutiveFailures(1)],
        open_duration: Duration::from_secs(10),
        max_open_duration: Duration::from_secs(30),
        ..BreakerConfig::default()
    });
    let h = l.handle();
    let svc = l.layer(backend(script, Duration::ZERO, hits.clone()));
    status(&svc).await.unwrap(); // open for 10 s
    let err = status(&svc).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<CircuitOpen>().unwrap().retry_after(),
        Some(Duration::from_secs(10))
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(h.state(KEY), Some(State::HalfOpen));
    status(&svc).await.unwrap(); // probe fails: open for 20 s
    assert_eq!(h.state(KEY), Some(State::Open));
    tokio::time::advance(Duration::from_secs(19)).await;
    assert!(is_open(&status(&svc).await));
    tokio::time::advance(Duration::from_secs(1)).await;
    status(&svc).await.unwrap(); // probe fails: 40 s, capped at 30 s
    let err = status(&svc).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<CircuitOpen>().unwrap().retry_after(),
        Some(Duration::from_secs(30))
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(status(&svc).await.unwrap(), 200); // probe succeeds: closed
    assert_eq!(h.state(KEY), Some(State::Closed));
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn half_open_needs_m_successes_and_one_failure_reopens() {
    let script = Arc::new(std::sync::Mutex::new(vec![500, 200, 500, 200, 200]));
    let l = layer(BreakerConfig {
        policies: vec![TripPolicy::ConsecutiveFailures(1)],
        open_duration: Duration::from_secs(1),
        success_threshold: 2,
        ..BreakerConfig::default()
    });
    let h = l.handle();
    let svc = l.layer(backend(script, Duration::ZERO, Arc::default()));
    assert!(!h.refuses(KEY), "an unknown key refuses nothing");
    status(&svc).await.unwrap(); // open
    assert!(h.refuses(KEY));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(!h.refuses(KEY), "the wait is over: a probe may go");
    status(&svc).await.unwrap(); // 200: one success
    assert_eq!(h.state(KEY), Some(State::HalfOpen));
    assert!(!h.refuses(KEY), "the probe slot is free again");
    status(&svc).await.unwrap(); // 500: re-open (2 s now)
    assert_eq!(h.state(KEY), Some(State::Open));
    tokio::time::advance(Duration::from_millis(1999)).await;
    assert!(h.refuses(KEY));
    tokio::time::advance(Duration::from_millis(1)).await;
    status(&svc).await.unwrap();
    status(&svc).await.unwrap();
    assert_eq!(h.state(KEY), Some(State::Closed));
    assert!(!h.refuses(KEY));
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_exactly_n_of_64_concurrent_callers_through() {
    for n in [1u32, 3] {
        let script = Arc::new(std::sync::Mutex::new(vec![500]));
        let hits = Arc::new(AtomicUsize::new(0));
        let l = layer(BreakerConfig {
            policies: vec![TripPolicy::ConsecutiveFailures(1)],
            open_duration: Duration::from_secs(1),
            half_open_probes: n,
            success_threshold: 100,
            ..BreakerConfig::default()
        });
        let h = l.handle();
        let svc = l.layer(backend(script, Duration::from_millis(50), hits.clone()));
        status(&svc).await.unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        hits.store(0, Ordering::SeqCst);
        let calls: Vec<_> = (0..64)
            .map(|_| {
                let svc = svc.clone();
                tokio::spawn(async move { status(&svc).await })
            })
            .collect();
        // Every probe slot is taken while the probes are in flight.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(h.refuses(KEY), "{n} probes in flight");
        let mut through = 0;
        let mut refused = 0;
        for c in calls {
            match c.await.unwrap() {
                Ok(_) => through += 1,
                Err(e) if e.is::<CircuitOpen>() => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(through, n as usize);
        assert_eq!(refused, 64 - n as usize);
        assert_eq!(hits.load(Ordering::SeqCst), n as usize);
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_gives_its_slot_back() {
    let script = Arc::new(std::sync::Mutex::new(vec![500]));
    let l = layer(BreakerConfig {
        policies: vec![TripPolicy::ConsecutiveFailures(1)],
        open_duration: Duration::from_secs(1),
        ..BreakerConfig::default()
    });
    let h = l.handle();
    let svc = l.layer(backend(script, Duration::from_secs(5), Arc::default()));
    let _ = tokio::time::timeout(Duration::from_secs(6), status(&svc)).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    // The probe is cancelled half-way.
    let cancelled = tokio::time::timeout(Duration::from_millis(10), status(&svc)).await;
    assert!(cancelled.is_err());
    assert_eq!(h.state(KEY), Some(State::HalfOpen));
    // Not wedged: the next call is a probe again, and closes it.
    assert_eq!(status(&svc).await.unwrap(), 200);
    assert_eq!(h.state(KEY), Some(State::Closed));
}

#[tokio::test(start_paused = true)]
async fn do_not_retry_responses_and_client_errors_are_successes() {
    let svc = layer(BreakerConfig {
        policies: vec![TripPolicy::ConsecutiveFailures(1)],
        ..BreakerConfig::default()
    });
    let h = svc.handle();
    let svc = svc.layer(service_fn(|req: Request<Body>| async move {
        let mut b = Response::builder();
        b = if req.uri().path() == "/dnr" {
            b.status(503).header("x-do-not-retry", "1")
        } else {
            b.status(404)
        };
        Ok::<_, Infallible>(b.body(()).unwrap())
    }));
    for path in ["/dnr", "/missing", "/dnr"] {
        let r = Request::get(format!("http://inventory:8080{path}"))
            .body(Body::empty())
            .unwrap();
        svc.clone().oneshot(r).await.unwrap();
    }
    assert_eq!(h.state(KEY), Some(State::Closed));
}

#[tokio::test(start_paused = true)]
async fn keys_are_separate_and_an_open_key_does_not_block_others() {
    let l = layer(BreakerConfig {
        policies: vec![TripPolicy::ConsecutiveFailures(1)],
        ..BreakerConfig::default()
    });
    let h = l.handle();
    let mut svc = l.layer(service_fn(|req: Request<Body>| async move {
        let code = if req.uri().host() == Some("down") {
            500
        } else {
            200
        };
        Ok::<_, Infallible>(Response::builder().status(code).body(()).unwrap())
    }));
    let call = |host: &str| {
        Request::get(format!("http://{host}/x"))
            .body(Body::empty())
            .unwrap()
    };
    svc.ready().await.unwrap().call(call("down")).await.unwrap();
    assert_eq!(h.state("down"), Some(State::Open));
    // Readiness is not withheld; the other key goes through.
    let r = svc.ready().await.unwrap().call(call("up")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(svc.ready().await.unwrap().call(call("down")).await.is_err());
    assert_eq!(h.state("up"), Some(State::Closed));
}

#[tokio::test(start_paused = true)]
async fn manual_control_and_fallback() {
    let l = layer(BreakerConfig::default());
    let h = l.handle();
    let svc = FallbackLayer.layer(l.layer(service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(String::from("fine")))
    })));
    h.force_open(KEY);
    assert_eq!(h.state(KEY), Some(State::ForcedOpen));
    assert!(h.refuses(KEY));
    let res = svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(res.headers()["x-circuit-breaker"], "1");
    assert_eq!(res.headers()["x-do-not-retry"], "1");
    h.force_closed(KEY);
    assert!(!h.refuses(KEY));
    assert_eq!(
        svc.clone().oneshot(req()).await.unwrap().into_body(),
        "fine"
    );
    h.reset(KEY);
    assert_eq!(h.state(KEY), Some(State::Closed));
}

#[tokio::test(start_paused = true)]
async fn keys_are_bounded() {
    let l = CircuitBreakerLayer::from_config(BreakerConfig {
        max_keys: 32,
        ..BreakerConfig::default()
    })
    .unwrap();
    let h = l.handle();
    let svc = l.layer(service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));
    for i in 0..1000 {
        let r = Request::get(format!("http://host-{i}/"))
            .body(Body::empty())
            .unwrap();
        svc.clone().oneshot(r).await.unwrap();
    }
    assert!(h.keys() <= 32, "{} keys", h.keys());
}

#[test]
fn bad_configs_are_refused() {
    for c in [
        BreakerConfig {
            policies: vec![],
            ..BreakerConfig::default()
        },
        BreakerConfig {
            policies: vec![TripPolicy::ConsecutiveFailures(0)],
            ..BreakerConfig::default()
        },
        BreakerConfig {
            policies: vec![TripPolicy::FailureRate {
                ratio: 1.5,
                minimum_calls: 1,
                window: Window::Count(10),
            }],
            ..BreakerConfig::default()
        },
        BreakerConfig {
            half_open_probes: 0,
            ..BreakerConfig::default()
        },
    ] {
        assert!(CircuitBreakerLayer::from_config(c).is_err());
    }
}

/// The reference model of a consecutive-failures breaker with one probe.
#[derive(Debug)]
struct Model {
    threshold: u32,
    open_for: u64,
    consecutive: u32,
    open_until: Option<u64>,
    opens: u32,
}

impl Model {
    /// Whether the call is admitted at time `now` and what it becomes.
    fn call(&mut self, now: u64, failure: bool) -> bool {
        match self.open_until {
            Some(until) if now < until => false,
            Some(_) => {
                // The probe.
                if failure {
                    self.opens += 1;
                    self.open_until = Some(now + self.open_for * (1 << self.opens.min(10)).min(8));
                } else {
                    self.open_until = None;
                    self.opens = 0;
                    self.consecutive = 0;
                }
                true
            }
            None => {
                self.consecutive = if failure { self.consecutive + 1 } else { 0 };
                if self.consecutive >= self.threshold {
                    self.consecutive = 0;
                    self.open_until = Some(now + self.open_for);
                    self.opens = 0;
                }
                true
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn the_breaker_agrees_with_the_model(
        threshold in 1u32..5,
        steps in proptest::collection::vec((any::<bool>(), 0u64..4), 1..80),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async move {
            let l = layer(BreakerConfig {
                policies: vec![TripPolicy::ConsecutiveFailures(threshold)],
                open_duration: Duration::from_secs(2),
                max_open_duration: Duration::from_secs(16),
                ..BreakerConfig::default()
            });
            let fail_next = Arc::new(AtomicU32::new(0));
            let f = fail_next.clone();
            let svc = l.layer(service_fn(move |_req: Request<Body>| {
                let failing = f.load(Ordering::SeqCst) == 1;
                async move {
                    let code = if failing { 500 } else { 200 };
                    Ok::<_, Infallible>(Response::builder().status(code).body(()).unwrap())
                }
            }));
            let mut model = Model { threshold, open_for: 2, consecutive: 0, open_until: None, opens: 0 };
            let mut now = 0u64;
            for (failure, wait) in steps {
                tokio::time::advance(Duration::from_secs(wait)).await;
                now += wait;
                fail_next.store(u32::from(failure), Ordering::SeqCst);
                let admitted = svc.clone().oneshot(req()).await.is_ok();
                let expected = model.call(now, failure);
                prop_assert_eq!(admitted, expected, "at t={} ({:?})", now, model);
            }
            Ok(())
        })?;
    }
}
