//! The client MetricsLayer with a local recorder: exact counts, labels and
//! bucket placement (paused time, so durations are exact).
#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{buckets, first_bucket_with, value};
use http::{Request, Response, StatusCode};
use sinew_core::body::try_clone_request;
use sinew_core::{Body, BoxError, CallContext, CircuitOpen, DeadlineExceeded, TraceParent};
use sinew_metrics::prometheus::PrometheusBuilder;
use sinew_metrics::{MetricsLayer, Naming, PathTemplate};
use tower::{Service, ServiceBuilder, ServiceExt};

const CALL: &str = "http_client_request_duration_seconds";
const ATTEMPT: &str = "http_client_attempt_duration_seconds";

fn base(status: Option<&str>, error: Option<&str>) -> String {
    let mut s =
        String::from(r#"http_request_method="GET",server_address="inventory",server_port="8080""#);
    if let Some(st) = status {
        s.push_str(&format!(r#",http_response_status_code="{st}""#));
    }
    if let Some(e) = error {
        s.push_str(&format!(r#",error_type="{e}""#));
    }
    s
}

/// A fake HTTP client: the path says what happens.
async fn backend(req: Request<Body>) -> Result<Response<()>, BoxError> {
    let path = req.uri().path().to_owned();
    let reply = |status: u16| Ok(Response::builder().status(status).body(()).unwrap());
    match path.as_str() {
        "/ok" => {
            tokio::time::sleep(Duration::from_millis(30)).await;
            reply(200)
        }
        "/missing" => reply(404),
        "/busy" => {
            tokio::time::sleep(Duration::from_millis(120)).await;
            reply(503)
        }
        "/refused-politely" => Ok(Response::builder()
            .status(503)
            .header("x-do-not-retry", "1")
            .body(())
            .unwrap()),
        "/late" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Err(Box::new(DeadlineExceeded::new()))
        }
        "/down" => Err(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        ))),
        "/open" => Err(Box::new(CircuitOpen::new("inventory:8080", None))),
        _ => reply(500),
    }
}

fn get(path: &str) -> Request<Body> {
    Request::get(format!("http://inventory:8080{path}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn successes_failures_and_errors_are_labelled_and_bucketed() {
    let (recorder, handle) = PrometheusBuilder::new().build();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut svc = ServiceBuilder::new()
        .layer(MetricsLayer::call())
        .service_fn(backend);

    for path in ["/ok", "/ok", "/missing", "/busy", "/refused-politely"] {
        let resp = svc.ready().await.unwrap().call(get(path)).await.unwrap();
        assert!(resp.status().as_u16() >= 200);
    }
    for path in ["/late", "/down", "/open"] {
        assert!(svc.ready().await.unwrap().call(get(path)).await.is_err());
    }

    let text = handle.render();
    // Successes: no error_type; 404 is not a failure by default.
    let ok = base(Some("200"), None);
    assert_eq!(value(&text, &format!("{CALL}_count{{{ok}}}")), 2.0);
    assert_eq!(value(&text, &format!("{CALL}_sum{{{ok}}}")), 0.06);
    assert_eq!(first_bucket_with(&text, CALL, &ok, 2.0), "0.05");
    assert_eq!(
        value(
            &text,
            &format!("{CALL}_count{{{}}}", base(Some("404"), None))
        ),
        1.0
    );
    // A failure status carries the classifier's error_type…
    let busy = base(Some("503"), Some("503"));
    assert_eq!(value(&text, &format!("{CALL}_count{{{busy}}}")), 1.0);
    assert_eq!(first_bucket_with(&text, CALL, &busy, 1.0), "0.25");
    // …unless the response says X-Do-Not-Retry.
    assert_eq!(
        value(
            &text,
            &format!("{CALL}_count{{{}}}", base(Some("503"), None))
        ),
        1.0
    );
    // Errors: no status, the kind of failure.
    let late = base(None, Some("timeout"));
    assert_eq!(value(&text, &format!("{CALL}_count{{{late}}}")), 1.0);
    assert_eq!(first_bucket_with(&text, CALL, &late, 1.0), "2.5");
    assert_eq!(
        value(
            &text,
            &format!("{CALL}_count{{{}}}", base(None, Some("connect")))
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            &format!("{CALL}_count{{{}}}", base(None, Some("circuit_open")))
        ),
        1.0
    );
    // The OpenTelemetry boundaries, explicitly.
    let les: Vec<String> = buckets(&text, CALL, &ok)
        .into_iter()
        .map(|(le, _)| le)
        .collect();
    assert_eq!(
        les,
        [
            "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "2.5",
            "5", "7.5", "10", "+Inf"
        ]
    );
    // Nothing in flight any more.
    assert_eq!(
        value(
            &text,
            &format!("http_client_active_requests{{{}}}", base(None, None))
        ),
        0.0
    );
    // A call-scoped layer records no attempts.
    assert!(!text.contains(ATTEMPT));
}

/// Retries between the call and the attempt layer.
#[derive(Clone)]
struct RetryOn5xx(usize);

impl tower::retry::Policy<Request<Body>, Response<()>, BoxError> for RetryOn5xx {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<Body>,
        result: &mut Result<Response<()>, BoxError>,
    ) -> Option<Self::Future> {
        let failed = match result {
            Ok(r) => r.status().is_server_error(),
            Err(_) => true,
        };
        if failed && self.0 > 1 {
            self.0 -= 1;
            Some(std::future::ready(()))
        } else {
            None
        }
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        try_clone_request(req)
    }
}

#[tokio::test(start_paused = true)]
async fn per_attempt_retries_are_counted_once_per_attempt_and_share_the_trace() {
    let (recorder, handle) = PrometheusBuilder::new().build();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let seen: Arc<Mutex<Vec<TraceParent>>> = Arc::default();
    let attempts = Arc::new(Mutex::new(0u32));
    let backend = {
        let seen = seen.clone();
        tower::service_fn(move |req: Request<Body>| {
            let seen = seen.clone();
            let attempts = attempts.clone();
            async move {
                let tp = TraceParent::parse(req.headers()["traceparent"].as_bytes()).unwrap();
                seen.lock().unwrap().push(tp);
                tokio::time::sleep(Duration::from_millis(20)).await;
                let n = {
                    let mut a = attempts.lock().unwrap();
                    *a += 1;
                    *a
                };
                let status = if n < 3 { 503 } else { 200 };
                Ok::<_, BoxError>(Response::builder().status(status).body(()).unwrap())
            }
        })
    };
    let mut svc = ServiceBuilder::new()
        .layer(MetricsLayer::call())
        .layer(tower::retry::RetryLayer::new(RetryOn5xx(3)))
        .layer(MetricsLayer::attempt())
        .service(backend);

    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(get("/items"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let text = handle.render();
    // One logical call of 60 ms, three attempts of 20 ms.
    let ok = base(Some("200"), None);
    assert_eq!(value(&text, &format!("{CALL}_count{{{ok}}}")), 1.0);
    assert_eq!(first_bucket_with(&text, CALL, &ok, 1.0), "0.075");
    assert_eq!(
        common::series_count(&text, CALL),
        1,
        "the failed attempts are not calls"
    );
    let busy = base(Some("503"), Some("503"));
    assert_eq!(value(&text, &format!("{ATTEMPT}_count{{{busy}}}")), 2.0);
    assert_eq!(value(&text, &format!("{ATTEMPT}_count{{{ok}}}")), 1.0);
    assert_eq!(first_bucket_with(&text, ATTEMPT, &busy, 2.0), "0.025");
    assert_eq!(value(&text, &format!("{ATTEMPT}_sum{{{busy}}}")), 0.04);

    // Every attempt: the same trace id, a span id of its own.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|t| t.trace_id() == seen[0].trace_id()));
    assert_ne!(seen[0].parent_id(), seen[1].parent_id());
    assert_ne!(seen[1].parent_id(), seen[2].parent_id());
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_is_recorded_as_cancelled() {
    let (recorder, handle) = PrometheusBuilder::new().build();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut svc = ServiceBuilder::new()
        .layer(MetricsLayer::call())
        .service_fn(backend);
    let fut = svc.ready().await.unwrap().call(get("/late"));
    let mut fut = Box::pin(fut);
    // Mid-flight: one active request.
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut fut)
        .await
        .is_err());
    let text = handle.render();
    assert_eq!(
        value(
            &text,
            &format!("http_client_active_requests{{{}}}", base(None, None))
        ),
        1.0
    );
    drop(fut);
    let text = handle.render();
    let cancelled = base(None, Some("cancelled"));
    assert_eq!(value(&text, &format!("{CALL}_count{{{cancelled}}}")), 1.0);
    assert_eq!(first_bucket_with(&text, CALL, &cancelled, 1.0), "0.5");
    assert_eq!(
        value(
            &text,
            &format!("http_client_active_requests{{{}}}", base(None, None))
        ),
        0.0
    );
}

#[tokio::test(start_paused = true)]
async fn aio_request_naming_uses_its_names_labels_and_buckets() {
    let (recorder, handle) = PrometheusBuilder::new().build();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut svc = ServiceBuilder::new()
        .layer(MetricsLayer::call().naming(Naming::AioRequest))
        .layer(MetricsLayer::attempt().naming(Naming::AioRequest))
        .service_fn(backend);
    let mut templated = get("/ok");
    templated
        .extensions_mut()
        .insert(PathTemplate::from_static("/{what}"));
    svc.ready().await.unwrap().call(templated).await.unwrap();
    svc.ready().await.unwrap().call(get("/busy")).await.unwrap();
    assert!(svc.ready().await.unwrap().call(get("/open")).await.is_err());
    assert!(svc.ready().await.unwrap().call(get("/late")).await.is_err());

    let text = handle.render();
    let ep = r#"request_endpoint="http://inventory:8080",request_method="GET""#;
    let ok =
        format!(r#"{ep},request_path="/{{what}}",response_status="200",circuit_breaker="False""#);
    assert_eq!(
        value(&text, &format!("aio_request_latency_count{{{ok}}}")),
        1.0
    );
    let busy =
        format!(r#"{ep},request_path="/busy",response_status="503",circuit_breaker="False""#);
    assert_eq!(
        first_bucket_with(&text, "aio_request_latency", &busy, 1.0),
        "0.25"
    );
    let open = format!(r#"{ep},request_path="/open",response_status="502",circuit_breaker="True""#);
    assert_eq!(
        value(&text, &format!("aio_request_latency_count{{{open}}}")),
        1.0
    );
    let late =
        format!(r#"{ep},request_path="/late",response_status="408",circuit_breaker="False""#);
    assert_eq!(
        first_bucket_with(&text, "aio_request_latency", &late, 1.0),
        "5"
    );
    // aio-request's own boundaries: 15 and 20 exist, 2.5 does not.
    let les: Vec<String> = buckets(&text, "aio_request_latency", &ok)
        .into_iter()
        .map(|(le, _)| le)
        .collect();
    assert_eq!(
        les,
        [
            "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "5",
            "10", "15", "20", "+Inf"
        ]
    );
    // Per attempt: aio_request_transport_latency, no circuit_breaker label,
    // the 20 transport boundaries.
    let attempt = format!(r#"{ep},request_path="/busy",response_status="503""#);
    assert_eq!(
        value(
            &text,
            &format!("aio_request_transport_latency_count{{{attempt}}}")
        ),
        1.0
    );
    assert_eq!(
        first_bucket_with(&text, "aio_request_transport_latency", &attempt, 1.0),
        "0.15"
    );
    assert!(!text.contains(CALL) && !text.contains(ATTEMPT));
}

#[tokio::test]
async fn the_ambient_trace_is_continued_with_a_new_span_id() {
    let captured: Arc<Mutex<Option<String>>> = Arc::default();
    let cap = captured.clone();
    let mut svc = ServiceBuilder::new()
        .layer(MetricsLayer::call())
        .layer(MetricsLayer::attempt())
        .service_fn(move |req: Request<Body>| {
            let cap = cap.clone();
            async move {
                *cap.lock().unwrap() = req
                    .headers()
                    .get("traceparent")
                    .map(|v| v.to_str().unwrap().to_owned());
                Ok::<_, Infallible>(Response::new(()))
            }
        });
    let parent =
        TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    CallContext::new()
        .with_trace(parent)
        .scope(async {
            svc.ready().await.unwrap().call(get("/x")).await.unwrap();
        })
        .await;
    let sent = captured.lock().unwrap().clone().unwrap();
    let sent = TraceParent::parse(sent.as_bytes()).unwrap();
    assert_eq!(sent.trace_id(), parent.trace_id());
    assert_ne!(sent.parent_id(), parent.parent_id());
    assert_eq!(sent.flags(), 1);

    // Without a context: a new root per call.
    svc.ready().await.unwrap().call(get("/x")).await.unwrap();
    let other = captured.lock().unwrap().clone().unwrap();
    let other = TraceParent::parse(other.as_bytes()).unwrap();
    assert_ne!(other.trace_id(), parent.trace_id());

    // Propagation off: no header.
    let mut quiet = ServiceBuilder::new()
        .layer(MetricsLayer::call().propagate_trace(false))
        .service_fn(|req: Request<Body>| async move {
            assert!(req.headers().get("traceparent").is_none());
            Ok::<_, Infallible>(Response::new(()))
        });
    quiet.ready().await.unwrap().call(get("/x")).await.unwrap();
}
