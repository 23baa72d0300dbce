//! The tracing spans carry OpenTelemetry-style fields.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::Router;
use http::{Request, Response};
use http_body_util::BodyExt;
use sinew_core::{Body, BoxError};
use sinew_metrics::{MetricsLayer, ServerMetricsLayer};
use tower::{Service, ServiceBuilder, ServiceExt};
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn subscriber(capture: &Capture) -> impl tracing::Subscriber + Send + Sync {
    let w = capture.clone();
    tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(FmtSpan::CLOSE)
        .finish()
}

#[tokio::test]
async fn client_and_server_spans_have_otel_fields() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(subscriber(&capture));

    let mut client = ServiceBuilder::new()
        .layer(MetricsLayer::call())
        .service_fn(|_req: Request<Body>| async {
            Ok::<_, BoxError>(Response::builder().status(503).body(()).unwrap())
        });
    let req = Request::get("http://inventory:8080/items/7?secret=hunter2")
        .body(Body::empty())
        .unwrap();
    client.ready().await.unwrap().call(req).await.unwrap();

    let mut app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .layer(ServerMetricsLayer::new());
    let req = Request::get("/users/42?token=abc")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = ServiceExt::<Request<axum::body::Body>>::oneshot(&mut app, req)
        .await
        .unwrap();
    resp.into_body().collect().await.unwrap();

    let text = capture.text();
    for expected in [
        "http.client",
        "otel.kind=\"client\"",
        "http.request.method=\"GET\"",
        "server.address=inventory",
        "server.port=8080",
        "url.path=\"/items/7\"",
        "http.response.status_code=503",
        "error.type=\"503\"",
        "http.server",
        "otel.kind=\"server\"",
        "otel.name=GET /users/{id}",
        "http.route=\"/users/{id}\"",
        "url.path=\"/users/42\"",
        "http.response.status_code=200",
        "trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
        "parent_span_id=00f067aa0ba902b7",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    // The query string (where secrets hide) is never recorded.
    assert!(
        !text.contains("hunter2") && !text.contains("token=abc"),
        "{text}"
    );
}
