//! The server MetricsLayer with a local recorder: route labels, duration
//! until the end of the body, the call context and the trace.
#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use common::{first_bucket_with, series_count, value};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use sinew_core::{CallContext, Priority, TraceParent};
use sinew_metrics::prometheus::PrometheusBuilder;
use sinew_metrics::{Naming, ServerMetricsLayer};
use tower::{Service, ServiceBuilder, ServiceExt};

const SERVER: &str = "http_server_request_duration_seconds";

fn labels(route: &str, status: &str) -> String {
    format!(
        r#"http_request_method="GET",url_scheme="http",http_route="{route}",http_response_status_code="{status}""#
    )
}

async fn serve(app: &mut Router, req: Request<AxumBody>) -> Response<AxumBody> {
    ServiceExt::<Request<AxumBody>>::ready(app)
        .await
        .unwrap()
        .call(req)
        .await
        .unwrap()
}

async fn call(app: &mut Router, uri: &str) -> (StatusCode, Bytes) {
    let req = Request::get(uri).body(AxumBody::empty()).unwrap();
    let resp = serve(app, req).await;
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn ten_thousand_raw_paths_on_one_route_make_one_series() {
    let (recorder, handle) = PrometheusBuilder::new().build();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .layer(ServerMetricsLayer::new());

    for i in 0..10_000 {
        let (status, _) = call(&mut app, &format!("/users/{i}?q={i}")).await;
        assert_eq!(status, StatusCode::OK);
    }
    // Scanners hitting paths no route has: one `unmatched` series.
    for i in 0..100 {
        let (status, _) = call(&mut app, &format!("/wp-admin/{i}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    let text = handle.render();
    assert_eq!(series_count(&text, SERVER), 2, "{text}");
    assert_eq!(
        value(
            &text,
            &format!("{SERVER}_count{{{}}}", labels("/users/{id}", "200"))
        ),
        10_000.0
    );
    assert_eq!(
        value(
            &text,
            &format!("{SERVER}_count{{{}}}", labels("unmatched", "404"))
        ),
        100.0
    );
    assert!(!text.contains("/users/1"), "a raw path leaked into a label");
    assert_eq!(
        value(
            &text,
            r#"http_server_active_requests{http_request_method="GET",url_scheme="http"}"#
        ),
        0.0
    );
}

#[tokio::test(start_paused = true)]
async fn the_duration_runs_until_the_body_ends() {
    let (recorder, handle) = PrometheusBuilder::new().build();
    let _guard = metrics::set_default_local_recorder(&recorder);
    // Headers at once, then three chunks 100 ms apart.
    let slow_body = || async {
        let chunks = futures_util::stream::unfold(0u8, |n| async move {
            if n == 3 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok::<_, Infallible>(Bytes::from_static(b"chunk")), n + 1))
        });
        Response::new(AxumBody::from_stream(chunks))
    };
    let mut app = Router::new()
        .route("/stream", get(slow_body))
        .route("/quick", get(|| async { "quick" }))
        .layer(ServerMetricsLayer::new());

    let req = Request::get("/stream").body(AxumBody::empty()).unwrap();
    let resp = serve(&mut app, req).await;
    // Headers are here; the request is still in flight.
    let text = handle.render();
    assert_eq!(
        value(
            &text,
            r#"http_server_active_requests{http_request_method="GET",url_scheme="http"}"#
        ),
        1.0
    );
    assert!(!text.contains(&format!("{SERVER}_count")));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 15);
    let (_, _) = call(&mut app, "/quick").await;

    let text = handle.render();
    let stream = labels("/stream", "200");
    assert_eq!(value(&text, &format!("{SERVER}_sum{{{stream}}}")), 0.3);
    assert_eq!(first_bucket_with(&text, SERVER, &stream, 1.0), "0.5");
    assert_eq!(
        first_bucket_with(&text, SERVER, &labels("/quick", "200"), 1.0),
        "0.005"
    );
    assert_eq!(
        value(
            &text,
            r#"http_server_active_requests{http_request_method="GET",url_scheme="http"}"#
        ),
        0.0
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_dropped_early_still_records_once() {
    let (recorder, handle) = PrometheusBuilder::new().build();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut app = Router::new()
        .route(
            "/stream",
            get(|| async {
                let chunks = futures_util::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Some((Ok::<_, Infallible>(Bytes::from_static(b"x")), ()))
                });
                Response::new(AxumBody::from_stream(chunks))
            }),
        )
        .layer(ServerMetricsLayer::new());
    let req = Request::get("/stream").body(AxumBody::empty()).unwrap();
    let resp = serve(&mut app, req).await;
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    body.frame().await.unwrap().unwrap();
    drop(body); // the client went away
    let text = handle.render();
    let stream = labels("/stream", "200");
    assert_eq!(value(&text, &format!("{SERVER}_count{{{stream}}}")), 1.0);
    assert_eq!(value(&text, &format!("{SERVER}_sum{{{stream}}}")), 0.02);
}

#[tokio::test]
async fn failures_and_route_functions() {
    let (recorder, handle) = PrometheusBuilder::new().build();
    let _guard = metrics::set_default_local_recorder(&recorder);

    // A plain tower service (no axum) naming its routes with a function.
    let mut svc = ServiceBuilder::new()
        .layer(
            ServerMetricsLayer::new()
                .url_scheme("https")
                .route_fn(|parts| {
                    parts
                        .uri
                        .path()
                        .starts_with("/orders/")
                        .then_some("/orders/{id}".into())
                }),
        )
        .service_fn(|req: Request<String>| async move {
            match req.uri().path() {
                "/orders/boom" => Err(std::io::Error::other("handler failed")),
                "/orders/busy" => Ok(Response::builder()
                    .status(503)
                    .body(String::from("busy"))
                    .unwrap()),
                _ => Ok(Response::new(String::from("ok"))),
            }
        });
    for uri in ["/orders/1", "/orders/busy", "/elsewhere"] {
        let resp = svc
            .ready()
            .await
            .unwrap()
            .call(Request::get(uri).body(String::new()).unwrap())
            .await
            .unwrap();
        resp.into_body().collect().await.unwrap();
    }
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Request::get("/orders/boom").body(String::new()).unwrap())
        .await;
    assert!(err.is_err());

    let text = handle.render();
    let l = |route: &str, rest: &str| {
        format!(
            r#"{SERVER}_count{{http_request_method="GET",url_scheme="https",http_route="{route}"{rest}}}"#
        )
    };
    assert_eq!(
        value(
            &text,
            &l("/orders/{id}", r#",http_response_status_code="200""#)
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            &l(
                "/orders/{id}",
                r#",http_response_status_code="503",error_type="503""#
            )
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            &l("unmatched", r#",http_response_status_code="200""#)
        ),
        1.0
    );
    assert_eq!(
        value(&text, &l("/orders/{id}", r#",error_type="_OTHER""#)),
        1.0
    );
}

#[tokio::test]
async fn aio_request_server_naming() {
    let (recorder, handle) = PrometheusBuilder::new().build();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut app = Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .layer(ServerMetricsLayer::new().naming(Naming::AioRequest));
    for (client, n) in [(Some("Orders"), 2), (None, 1), (Some("bad client!"), 1)] {
        for _ in 0..n {
            let mut req = Request::get("/items/9");
            if let Some(c) = client {
                req = req.header("x-service-name", c);
            }
            let resp = serve(&mut app, req.body(AxumBody::empty()).unwrap()).await;
            resp.into_body().collect().await.unwrap();
        }
    }
    let text = handle.render();
    let series = |client: &str| {
        format!(
            r#"aio_request_server_latency_count{{request_client="{client}",request_method="GET",request_path="/items/{{id}}",response_status="200"}}"#
        )
    };
    assert_eq!(value(&text, &series("orders")), 2.0);
    assert_eq!(value(&text, &series("unknown")), 1.0);
    assert_eq!(value(&text, &series("other")), 1.0);
    assert!(text.contains(r#"aio_request_server_latency_bucket{request_client="orders",request_method="GET",request_path="/items/{id}",response_status="200",le="0.45"} 2"#));
    assert!(!text.contains(SERVER));
}

/// What the handler saw: its ambient call context.
async fn context_echo() -> String {
    let ctx = CallContext::current().expect("the layer sets an ambient context");
    let trace = ctx.trace().expect("a trace");
    format!("{trace} {}", ctx.priority())
}

#[tokio::test]
async fn inbound_traceparent_enters_the_call_context() {
    let mut app = Router::new()
        .route("/ctx", get(context_echo))
        .layer(ServerMetricsLayer::new())
        // An outer layer (say, the deadline layer) stored a context first:
        // the trace is merged into it, not written over it.
        .layer(tower::util::MapRequestLayer::new(
            |mut req: Request<AxumBody>| {
                req.extensions_mut()
                    .insert(CallContext::new().with_priority(Priority::High));
                req
            },
        ));
    let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let send = |tp: Option<&'static str>| {
        let mut req = Request::get("/ctx");
        if let Some(tp) = tp {
            req = req.header("traceparent", tp);
        }
        req.body(AxumBody::empty()).unwrap()
    };
    let body = |resp: Response<_>| async move {
        let b: Bytes = BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
        String::from_utf8(b.to_vec()).unwrap()
    };

    let seen = body(serve(&mut app, send(Some(good))).await).await;
    assert_eq!(seen, format!("{good} high"));

    // Invalid values are ignored: a new trace, never the peer's.
    for bad in [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "garbage",
    ] {
        let seen = body(serve(&mut app, send(Some(bad))).await).await;
        let (tp, prio) = seen.split_once(' ').unwrap();
        let tp = TraceParent::parse(tp.as_bytes()).unwrap();
        assert_ne!(
            tp.trace_id_hex(),
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "{bad}"
        );
        assert_eq!(prio, "high");
    }
    // No header: a new trace too.
    let a = body(serve(&mut app, send(None)).await).await;
    let b = body(serve(&mut app, send(None)).await).await;
    assert_ne!(a, b);
}

#[tokio::test]
async fn a_streaming_body_runs_in_the_call_context_too() {
    let mut app = Router::new()
        .route(
            "/stream",
            get(|| async {
                let chunk = futures_util::stream::once(async {
                    let trace = CallContext::current().and_then(|c| c.trace());
                    let text = trace.map(|t| t.to_string()).unwrap_or_default();
                    Ok::<_, Infallible>(Bytes::from(text))
                });
                Response::new(AxumBody::from_stream(chunk))
            }),
        )
        .layer(ServerMetricsLayer::new());
    let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let req = Request::get("/stream")
        .header("traceparent", good)
        .body(AxumBody::empty())
        .unwrap();
    let resp = serve(&mut app, req).await;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, good);
}
