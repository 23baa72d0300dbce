#![allow(clippy::unwrap_used)]
//! The Client records per-call and per-attempt metrics when asked.

use axum::routing::get;
use axum::Router;
use sinew::Client;
use sinew_metrics::prometheus::PrometheusBuilder;
use sinew_metrics::MetricsConfig;

#[tokio::test(flavor = "current_thread")]
async fn per_call_and_per_attempt_histograms() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/ok", get(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (recorder, handle) = PrometheusBuilder::new().build();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let client = Client::builder()
        .base_url(&format!("http://{addr}"))
        .metrics(MetricsConfig::default())
        .build()
        .unwrap();
    for _ in 0..3 {
        client.get("/ok").send().await.unwrap();
    }
    let text = handle.render();
    let labels = format!(
        r#"http_request_method="GET",server_address="127.0.0.1",server_port="{}",http_response_status_code="200""#,
        addr.port()
    );
    assert!(
        text.contains(&format!(
            "http_client_request_duration_seconds_count{{{labels}}} 3"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "http_client_attempt_duration_seconds_count{{{labels}}} 3"
        )),
        "{text}"
    );
}
