#![allow(clippy::unwrap_used)]
//! The default stack (deadline propagation and retries) against real
//! servers on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::Router;
use sinew::{CallContext, Client, ErrorKind, Priority};

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Fails with 503 the first `fail` times, then answers 200.
fn flaky(fail: usize) -> (Router, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let handler = move |State(h): State<Arc<AtomicUsize>>| async move {
        if h.fetch_add(1, Ordering::SeqCst) < fail {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    };
    let app = Router::new()
        .route("/thing", put(handler).post(handler))
        .with_state(hits.clone());
    (app, hits)
}

#[tokio::test]
async fn a_put_to_a_503_then_200_server_succeeds_on_attempt_2() {
    let (app, hits) = flaky(1);
    let client = Client::builder()
        .base_url(&serve(app).await)
        .build()
        .unwrap();
    client.put("/thing").body("x").send().await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_post_is_sent_once_unless_marked_idempotent() {
    let (app, hits) = flaky(2);
    let client = Client::builder()
        .base_url(&serve(app).await)
        .build()
        .unwrap();
    let err = client.post("/thing").body("x").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    client
        .post("/thing")
        .body("x")
        .idempotent()
        .send()
        .await
        .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn no_retry_means_one_attempt() {
    let (app, hits) = flaky(1);
    let client = Client::builder()
        .base_url(&serve(app).await)
        .no_retry()
        .build()
        .unwrap();
    assert!(client.put("/thing").send().await.is_err());
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

fn recording() -> (Router, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/seen",
            get(|State(s): State<Seen>, h: HeaderMap| async move {
                let get = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_string());
                s.lock()
                    .unwrap()
                    .push((get("x-request-timeout"), get("x-request-priority")));
                "ok"
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "late"
            }),
        )
        .with_state(seen.clone());
    (app, seen)
}

#[tokio::test]
async fn deadline_and_priority_are_sent_and_enforced() {
    let (app, seen) = recording();
    let base = serve(app).await;
    let client = Client::builder()
        .base_url(&base)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    client
        .get("/seen")
        .priority(Priority::High)
        .send()
        .await
        .unwrap();
    let (timeout, priority) = seen.lock().unwrap()[0].clone();
    let left: f64 = timeout.unwrap().parse().unwrap();
    assert!(left > 1.5 && left <= 2.0, "{left}");
    assert_eq!(priority.as_deref(), Some("high"));

    let started = std::time::Instant::now();
    let err = client
        .get("/slow")
        .timeout(Duration::from_millis(100))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(400));
}

#[tokio::test]
async fn an_inherited_context_travels_with_the_call() {
    let (app, seen) = recording();
    let client = Client::builder()
        .base_url(&serve(app).await)
        .build()
        .unwrap();
    let ctx = CallContext::new()
        .with_timeout(Duration::from_millis(800))
        .with_priority(Priority::Low);
    ctx.scope(async { client.get("/seen").send().await.unwrap() })
        .await;
    let (timeout, priority) = seen.lock().unwrap()[0].clone();
    let left: f64 = timeout.unwrap().parse().unwrap();
    assert!(left > 0.5 && left <= 0.8, "{left}");
    assert_eq!(priority.as_deref(), Some("low"));
}

#[tokio::test]
async fn config_file_builds_the_stack() {
    let (app, hits) = flaky(2);
    let base = serve(app).await;
    let dir = std::env::temp_dir().join(format!("sinew-stack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("client.toml");
    std::fs::write(
        &path,
        format!("base_url = \"{base}\"\n[retry]\nmax_attempts = 2\nbackoff = \"constant\"\nbase_delay = \"1ms\"\n"),
    )
    .unwrap();
    let client = Client::from_config(&path).unwrap();
    // Two attempts, both 503.
    assert_eq!(
        client.put("/thing").send().await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // Retries off.
    std::fs::write(
        &path,
        format!("base_url = \"{base}\"\n[retry]\nenabled = false\n"),
    )
    .unwrap();
    let client = Client::from_config(&path).unwrap();
    client.put("/thing").send().await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_open_breaker_fails_fast_with_a_typed_error() {
    use sinew::breaker::{BreakerConfig, CircuitBreakerLayer, State, TripPolicy};
    let (app, hits) = flaky(usize::MAX);
    let base = serve(app).await;
    let breaker = CircuitBreakerLayer::from_config(BreakerConfig {
        policies: vec![TripPolicy::ConsecutiveFailures(2)],
        ..BreakerConfig::default()
    })
    .unwrap();
    let handle = breaker.handle();
    let client = Client::builder()
        .base_url(&base)
        .retry(
            sinew::retry::RetryLayer::new()
                .max_attempts(2)
                .backoff(sinew::retry::Backoff::constant(Duration::from_millis(1))),
        )
        .breaker(breaker)
        .build()
        .unwrap();
    // Two attempts, both 503: the breaker opens.
    assert_eq!(
        client.put("/thing").send().await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let key = base.trim_start_matches("http://");
    assert_eq!(handle.state(key), Some(State::Open));
    // Refused without touching the network, and not retried.
    let err = client.put("/thing").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen, "{err:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn balance_from_the_config_file_spreads_and_retries_elsewhere() {
    // Two healthy servers and one that always fails.
    let ok_a = serve(Router::new().route("/who", get(|| async { "a" }))).await;
    let ok_b = serve(Router::new().route("/who", get(|| async { "b" }))).await;
    let bad =
        serve(Router::new().route("/who", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))).await;
    let strip = |u: &str| u.trim_start_matches("http://").to_string();
    let dir = std::env::temp_dir().join(format!("sinew-balance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("client.toml");
    std::fs::write(
        &path,
        format!(
            "base_url = \"http://inventory\"\n[retry]\nmax_attempts = 3\nbackoff = \"constant\"\nbase_delay = \"1ms\"\n[balance]\nstrategy = \"round-robin\"\nendpoints = [\"{}\", \"{}\", {{ address = \"{}\", weight = 1 }}]\n",
            strip(&ok_a),
            strip(&ok_b),
            strip(&bad)
        ),
    )
    .unwrap();
    let client = Client::from_config(&path).unwrap();
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for _ in 0..30 {
        let who = client
            .get("/who")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        *seen.entry(who).or_default() += 1;
    }
    // Every call succeeds: an attempt on the failing endpoint is retried on
    // the next one.
    assert_eq!(seen.values().sum::<usize>(), 30);
    assert!(seen["a"] >= 10 && seen["b"] >= 10, "{seen:?}");
    std::fs::write(
        &path,
        "[balance]\nstrategy = \"fastest\"\nendpoints = [\"127.0.0.1:1\"]\n",
    )
    .unwrap();
    let err = Client::from_config(&path).unwrap_err();
    assert!(err.to_string().contains("fastest"), "{err}");
}

fn from_toml(text: &str) -> Result<Client, sinew::Error> {
    let config = sinew::config::ClientConfig::from_toml(text, "client.toml")?;
    sinew::ClientBuilder::from_config(config).build()
}

#[tokio::test]
async fn balance_skips_an_endpoint_whose_breaker_is_open() {
    use sinew::balance::{BalanceConfig, Endpoint, LoadBalanceLayer, Strategy};
    use sinew::breaker::{BreakerConfig, CircuitBreakerLayer, State, TripPolicy};
    let ok = serve(Router::new().route("/who", get(|| async { "ok" }))).await;
    let bad =
        serve(Router::new().route("/who", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))).await;
    let (ok, bad) = (
        ok.trim_start_matches("http://").to_string(),
        bad.trim_start_matches("http://").to_string(),
    );
    let balance = LoadBalanceLayer::new(
        BalanceConfig {
            strategy: Strategy::RoundRobin,
            ejection: None,
            ..BalanceConfig::default()
        },
        vec![Endpoint::new(&ok), Endpoint::new(&bad)],
    )
    .unwrap();
    let breaker = CircuitBreakerLayer::from_config(BreakerConfig {
        policies: vec![TripPolicy::ConsecutiveFailures(2)],
        ..BreakerConfig::default()
    })
    .unwrap();
    let handle = breaker.handle();
    let client = Client::builder()
        .base_url("http://inventory")
        .retry(
            sinew::retry::RetryLayer::new()
                .max_attempts(3)
                .retry_circuit_open(true)
                .backoff(sinew::retry::Backoff::constant(Duration::from_millis(1))),
        )
        .balance(balance.clone())
        .breaker(breaker)
        .build()
        .unwrap();
    for _ in 0..20 {
        let res = client.get("/who").send().await.unwrap();
        assert_eq!(res.text().await.unwrap(), "ok");
    }
    assert_eq!(handle.state(&bad), Some(State::Open));
    // Two failures opened its breaker; after that the balancer never picked
    // it again (a pick refused by the breaker would still count here).
    let picks: std::collections::HashMap<_, _> = balance.picks().into_iter().collect();
    assert_eq!(picks[&bad], 2, "{picks:?}");
}

#[cfg(feature = "dns")]
#[tokio::test]
async fn balance_config_names_dns_and_rejects_bad_sources() {
    // `localhost` may resolve to 127.0.0.1 and ::1: listen on both, on one
    // port (::1 only where the machine has IPv6 loopback).
    let app = Router::new().route("/who", get(|| async { "dns" }));
    let mut port = 0;
    for _ in 0..20 {
        let v4 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        port = v4.local_addr().unwrap().port();
        let v6 = match tokio::net::TcpListener::bind(("::1", port)).await {
            Ok(v6) => Some(v6),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(_) => None,
        };
        if let Some(v6) = v6 {
            let app = app.clone();
            tokio::spawn(async move { axum::serve(v6, app).await });
        }
        let app = app.clone();
        tokio::spawn(async move { axum::serve(v4, app).await });
        break;
    }
    // The first call waits for the first answer instead of failing with no
    // endpoints.
    let client = from_toml(&format!(
        "base_url = \"http://inventory\"\n[balance]\ndns = \"localhost:{port}\"\nwait_for_endpoints = \"10s\"\n"
    ))
    .unwrap();
    let res = client.get("/who").send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "dns");

    let err = |text: &str| from_toml(text).unwrap_err().to_string();
    assert!(err("[balance]\nstrategy = \"round-robin\"\n").contains("list `endpoints`"));
    assert!(err("[balance]\ndns = \"no-port\"\n").contains("[balance] dns"));
    let both = err(
        "[balance]\ndns = \"a:1\"\netcd = { endpoints = [\"http://127.0.0.1:1\"], service = \"s\" }\n",
    );
    assert!(both.contains("choose one"), "{both}");
    if !cfg!(feature = "etcd") {
        let etcd =
            err("[balance]\netcd = { endpoints = [\"http://127.0.0.1:1\"], service = \"s\" }\n");
        assert!(etcd.contains("`etcd` feature"), "{etcd}");
    }
    let slash = "[balance]\netcd = { endpoints = [\"http://127.0.0.1:1\"], service = \"a/b\" }\n";
    if cfg!(feature = "etcd") {
        assert!(err(slash).contains("not a service name"));
        let url = "[balance]\netcd = { endpoints = [\"http://a b\"], service = \"s\" }\n";
        assert!(err(url).contains("not an etcd URL"), "{}", err(url));
    }
    assert!(
        err("[balance]\ndns = \"a:1\"\nwait_for_endpoints = \"soon\"\n")
            .contains("wait_for_endpoints")
    );
}
