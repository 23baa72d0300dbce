#![allow(clippy::unwrap_used)]
//! The stack over a mock transport (no sockets): retries, the breaker and
//! metrics driven by it; your own layers; one classifier for every layer;
//! the default deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use sinew::breaker::{BreakerConfig, CircuitBreakerLayer, State, TripPolicy};
use sinew::retry::{Backoff, RetryLayer};
use sinew::{Body, Classifier, Client, ErrorKind};
use sinew_metrics::prometheus::PrometheusBuilder;
use sinew_metrics::MetricsConfig;
use tower::service_fn;

type Calls = Arc<Mutex<HashMap<String, usize>>>;

/// A transport that answers by path: `/flaky/N` fails with 503 the first N
/// times, `/status/C` answers C, `/dnr` answers 503 with X-Do-Not-Retry.
fn mock(
    calls: Calls,
) -> impl tower::Service<
    Request<Body>,
    Response = Response<Full<Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
       + Send
       + Sync
       + 'static {
    service_fn(move |req: Request<Body>| {
        let calls = calls.clone();
        async move {
            let path = req.uri().path().to_string();
            let n = {
                let mut c = calls.lock().unwrap();
                let n = c.entry(path.clone()).or_default();
                *n += 1;
                *n
            };
            let mut parts = path.trim_start_matches('/').split('/');
            let res = match (parts.next(), parts.next()) {
                (Some("flaky"), Some(k)) => {
                    let k: usize = k.parse().unwrap();
                    let status = if n <= k { 503 } else { 200 };
                    Response::builder().status(status).body(Full::from("flaky"))
                }
                (Some("status"), Some(code)) => Response::builder()
                    .status(code.parse::<u16>().unwrap())
                    .body(Full::from("status")),
                (Some("dnr"), _) => Response::builder()
                    .status(503)
                    .header("x-do-not-retry", "1")
                    .body(Full::from("busy")),
                _ => Response::builder().status(404).body(Full::from("no")),
            };
            Ok(res.unwrap())
        }
    })
}

fn count(calls: &Calls, path: &str) -> usize {
    calls.lock().unwrap().get(path).copied().unwrap_or(0)
}

fn retry(attempts: u32) -> RetryLayer {
    RetryLayer::new()
        .max_attempts(attempts)
        .no_budget()
        .backoff(Backoff::constant(Duration::from_millis(1)))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_mock_transport_drives_retry_breaker_and_metrics() {
    let (recorder, handle) = PrometheusBuilder::new().build();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let calls = Calls::default();
    let attempts_seen = Arc::new(AtomicUsize::new(0));
    let calls_seen = Arc::new(AtomicUsize::new(0));
    let breaker = CircuitBreakerLayer::from_config(BreakerConfig {
        policies: vec![TripPolicy::ConsecutiveFailures(3)],
        open_jitter: 0.0,
        ..BreakerConfig::default()
    })
    .unwrap();
    let counting = |n: Arc<AtomicUsize>| {
        tower::layer::layer_fn(move |inner: sinew::Stack| {
            let n = n.clone();
            tower::ServiceExt::map_request(inner, move |r: Request<Body>| {
                n.fetch_add(1, Ordering::SeqCst);
                r
            })
        })
    };
    let client = Client::builder()
        .base_url("http://inventory.mock")
        .transport(mock(calls.clone()))
        .retry(retry(3))
        .breaker(breaker)
        .metrics(MetricsConfig::default())
        .layer_per_call(counting(calls_seen.clone()))
        .layer_per_attempt(counting(attempts_seen.clone()))
        .build()
        .unwrap();

    // Fails twice, then succeeds on the third attempt.
    let res = client.get("/flaky/2").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(count(&calls, "/flaky/2"), 3);
    // Your layers: the per-call one saw the call once, the per-attempt one
    // every attempt.
    assert_eq!(calls_seen.load(Ordering::SeqCst), 1);
    assert_eq!(attempts_seen.load(Ordering::SeqCst), 3);
    let breakers = client.breakers().unwrap();
    assert_eq!(breakers.state("inventory.mock"), Some(State::Closed));

    // Three failures in a row open the endpoint's breaker; the next call is
    // refused without reaching the transport.
    let err = client.get("/status/502").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(count(&calls, "/status/502"), 3);
    assert_eq!(breakers.state("inventory.mock"), Some(State::Open));
    let err = client.get("/status/502").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen, "{err}");
    assert_eq!(count(&calls, "/status/502"), 3);

    let text = handle.render();
    let attempts = |status: &str| {
        text.lines()
            .filter(|l| l.starts_with("http_client_attempt_duration_seconds_count"))
            .filter(|l| l.contains(&format!("http_response_status_code=\"{status}\"")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum::<u64>()
    };
    assert_eq!(attempts("503"), 2, "{text}");
    assert_eq!(attempts("200"), 1, "{text}");
    assert_eq!(attempts("502"), 3, "{text}");
    assert!(
        text.contains("http_client_request_duration_seconds_count"),
        "{text}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_classifier_for_every_layer() {
    let (recorder, handle) = PrometheusBuilder::new().build();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let calls = Calls::default();
    // 404 counts as a failure for this client: retried, counted by the
    // breaker, labelled an error by metrics, and retryable in the error.
    let classifier = Classifier::default().with_failure_status(StatusCode::NOT_FOUND);
    let breaker = CircuitBreakerLayer::from_config(BreakerConfig {
        policies: vec![TripPolicy::ConsecutiveFailures(2)],
        ..BreakerConfig::default()
    })
    .unwrap();
    let client = Client::builder()
        .base_url("http://inventory.mock")
        .transport(mock(calls.clone()))
        .retry(retry(2))
        .breaker(breaker)
        .metrics(MetricsConfig::default())
        .classifier(classifier.clone())
        .build()
        .unwrap();
    assert_eq!(client.classifier(), &classifier);
    let err = client.get("/status/404").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.is_retryable());
    assert_eq!(count(&calls, "/status/404"), 2);
    assert_eq!(
        client.breakers().unwrap().state("inventory.mock"),
        Some(State::Open)
    );
    let text = handle.render();
    assert!(
        text.lines().any(
            |l| l.starts_with("http_client_request_duration_seconds_count")
                && l.contains("error_type=\"4xx\"")
        ),
        "{text}"
    );

    // The default classifier: a 404 is an answer, not a failure.
    let calls = Calls::default();
    let client = Client::builder()
        .base_url("http://inventory.mock")
        .transport(mock(calls.clone()))
        .retry(retry(2))
        .build()
        .unwrap();
    let err = client.get("/status/404").send().await.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(count(&calls, "/status/404"), 1);

    // X-Do-Not-Retry: a 503 that is not retried, and not retryable.
    let err = client.get("/dnr").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(!err.is_retryable());
    assert_eq!(count(&calls, "/dnr"), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retries_error_kinds_and_the_classifier_agree_on_every_status() {
    let calls = Calls::default();
    let client = Client::builder()
        .base_url("http://inventory.mock")
        .transport(mock(calls.clone()))
        .retry(retry(2))
        .build()
        .unwrap();
    let classifier = Classifier::default();
    for code in 200..=599u16 {
        let status = StatusCode::from_u16(code).unwrap();
        let path = format!("/status/{code}");
        let outcome = client.get(&path).send().await;
        let retried = count(&calls, &path) == 2;
        let failure = classifier.is_failure_status(status);
        assert_eq!(retried, failure, "{code}: retried {retried}");
        match outcome {
            Ok(_) => assert!(!failure && (status.is_success() || status.is_redirection())),
            Err(e) => {
                assert_eq!(e.is_retryable(), failure, "{code}");
                assert_eq!(e.kind().is_retryable(), failure, "{code}: {:?}", e.kind());
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_has_a_deadline_by_default() {
    // A server that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let client = Client::builder().build().unwrap();
    let started = tokio::time::Instant::now();
    let err = client
        .get(&format!("http://{addr}/never"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "{waited:?}"
    );

    // Off means off: only the request's own deadline bounds it then.
    let client = Client::builder().no_timeout().build().unwrap();
    let started = tokio::time::Instant::now();
    let err = client
        .get(&format!("http://{addr}/never"))
        .timeout(Duration::from_secs(90))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(started.elapsed() >= Duration::from_secs(90));

    // A connection refused is a clear error with the address and cause.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = closed.local_addr().unwrap();
    drop(closed);
    let err = Client::builder()
        .no_retry()
        .build()
        .unwrap()
        .get(&format!("http://{gone}/x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport);
    let text = err.to_string();
    assert!(text.contains(&gone.to_string()), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
}
