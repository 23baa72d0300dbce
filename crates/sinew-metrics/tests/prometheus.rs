//! The Prometheus endpoint of a running server: real traffic over
//! 127.0.0.1 through the client and server layers, then `promtool check
//! metrics` on the `/metrics` output. This file installs the global
//! recorder, so it holds a single test.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sinew_core::Body;
use sinew_metrics::prometheus::{PrometheusBuilder, CONTENT_TYPE};
use sinew_metrics::{MetricsLayer, Naming, ServerMetricsLayer};
use tower::{Service, ServiceBuilder, ServiceExt};

async fn item(Path(id): Path<u32>) -> (StatusCode, &'static str) {
    if id % 4 == 3 {
        (StatusCode::SERVICE_UNAVAILABLE, "busy")
    } else {
        (StatusCode::OK, "item")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_a_running_server_pass_promtool() {
    let handle = PrometheusBuilder::new()
        .global_label("service", "inventory")
        .install()
        .unwrap();
    // Installing twice is a clear error, not a panic.
    assert!(PrometheusBuilder::new().install().is_err());
    // Another sinew layer's counter, following the naming convention.
    metrics::describe_counter!("sinew_retry_attempts_total", "Retries scheduled");
    metrics::counter!("sinew_retry_attempts_total", "reason" => "status").increment(2);

    let app = Router::new()
        .route("/items/{id}", get(item))
        .layer(ServerMetricsLayer::new())
        .merge(handle.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };

    let http = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let mut client = ServiceBuilder::new()
        .layer(MetricsLayer::call())
        .layer(MetricsLayer::attempt())
        .service(http.clone());
    for id in 0..12 {
        let req = Request::get(format!("http://{addr}/items/{id}"))
            .body(Body::empty())
            .unwrap();
        let resp = client.ready().await.unwrap().call(req).await.unwrap();
        resp.into_body().collect().await.unwrap();
    }
    let req = Request::get(format!("http://{closed}/items/1"))
        .body(Body::empty())
        .unwrap();
    assert!(client.ready().await.unwrap().call(req).await.is_err());
    let mut legacy = ServiceBuilder::new()
        .layer(MetricsLayer::call().naming(Naming::AioRequest))
        .layer(MetricsLayer::attempt().naming(Naming::AioRequest))
        .service(http.clone());
    let req = Request::get(format!("http://{addr}/items/5"))
        .body(Body::empty())
        .unwrap();
    let resp = legacy.ready().await.unwrap().call(req).await.unwrap();
    resp.into_body().collect().await.unwrap();

    // Scrape.
    let req = Request::get(format!("http://{addr}/metrics"))
        .body(Body::empty())
        .unwrap();
    let resp = http.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();

    for expected in [
        // 9 + 1 (the aio-request-named client) successes, 3 failures.
        r#"http_server_request_duration_seconds_count{service="inventory",http_request_method="GET",url_scheme="http",http_route="/items/{id}",http_response_status_code="200"} 10"#,
        r#"http_server_request_duration_seconds_count{service="inventory",http_request_method="GET",url_scheme="http",http_route="/items/{id}",http_response_status_code="503",error_type="503"} 3"#,
        r#",http_response_status_code="200"} 9"#,
        r#",error_type="connect"} 1"#,
        r#"aio_request_latency_bucket{service="inventory",request_endpoint="#,
        r#"le="20"} 1"#,
        "# TYPE http_client_request_duration_seconds histogram",
        "# HELP http_server_request_duration_seconds",
        r#"sinew_retry_attempts_total{service="inventory",reason="status"} 2"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    // Explicit buckets, never summaries.
    assert!(!text.contains("quantile="), "{text}");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; scripts/test.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool failed:\n{report}\n{text}");
    assert!(report.trim().is_empty(), "promtool lint:\n{report}");

    // The endpoint answers other methods with 405.
    let req = Request::post(format!("http://{addr}/metrics"))
        .body(Body::empty())
        .unwrap();
    let resp = http.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()[header::ALLOW], "GET, HEAD");
}
