#![allow(clippy::unwrap_used)]
//! Against a real axum server on 127.0.0.1 that fails on command: the
//! breaker opens, fails fast without touching the network, probes, and
//! closes when the server recovers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sinew_breaker::{BreakerConfig, CircuitBreakerLayer, State, TripPolicy};
use sinew_core::CircuitOpen;
use tower::{Layer, ServiceExt};

#[derive(Default)]
struct Backend {
    failing: AtomicBool,
    hits: AtomicUsize,
}

#[tokio::test]
async fn opens_fails_fast_probes_and_closes_over_a_real_server() {
    let backend = Arc::new(Backend::default());
    let app = Router::new()
        .route(
            "/item",
            get(|AxState(b): AxState<Arc<Backend>>| async move {
                b.hits.fetch_add(1, Ordering::SeqCst);
                if b.failing.load(Ordering::SeqCst) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }),
        )
        .with_state(backend.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let layer = CircuitBreakerLayer::from_config(BreakerConfig {
        policies: vec![TripPolicy::ConsecutiveFailures(3)],
        open_duration: Duration::from_millis(300),
        open_jitter: 0.0,
        ..BreakerConfig::default()
    })
    .unwrap();
    let breakers = layer.handle();
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let client = layer.layer(http);
    let key = addr.to_string();
    let call = || {
        let req = http::Request::get(format!("http://{addr}/item"))
            .body(Full::default())
            .unwrap();
        client.clone().oneshot(req)
    };

    assert_eq!(call().await.unwrap().status(), 200);
    backend.failing.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(call().await.unwrap().status(), 503);
    }
    assert_eq!(breakers.state(&key), Some(State::Open));
    let before = backend.hits.load(Ordering::SeqCst);
    for _ in 0..20 {
        let err = call().await.unwrap_err();
        assert!(err.is::<CircuitOpen>(), "{err}");
    }
    assert_eq!(
        backend.hits.load(Ordering::SeqCst),
        before,
        "an open breaker never touches the network"
    );

    // Still failing: the probe re-opens it.
    tokio::time::sleep(Duration::from_millis(320)).await;
    assert_eq!(call().await.unwrap().status(), 503);
    assert_eq!(breakers.state(&key), Some(State::Open));

    // Recovered: after the (doubled) wait the probe closes it.
    backend.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(620)).await;
    assert_eq!(call().await.unwrap().status(), 200);
    assert_eq!(breakers.state(&key), Some(State::Closed));
    assert_eq!(call().await.unwrap().status(), 200);
}
