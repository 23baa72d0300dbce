#![allow(clippy::unwrap_used)]
//! The server layer: every header form, every bad value, refusals, the call
//! context around the handler.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use sinew_core::{CallContext, FixedClock, Priority, ResponseBody, TraceParent};
use sinew_deadline::ServerDeadlineLayer;
use tokio::time::Instant;
use tower::{service_fn, Layer, ServiceExt};

/// What the handler saw: remaining ms (ambient), priority (ambient), and
/// whether the extension matches the ambient context.
async fn handler(req: Request<String>) -> Result<Response<String>, Infallible> {
    let ambient = CallContext::current().expect("handler runs in a scope");
    let ext = req.extensions().get::<CallContext>().copied();
    assert_eq!(ext, Some(ambient));
    let remaining = ambient
        .remaining()
        .map_or("none".to_string(), |d| d.as_millis().to_string());
    Ok(Response::new(format!("{remaining} {}", ambient.priority())))
}

async fn call(
    layer: &ServerDeadlineLayer,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let mut b = Request::builder().uri("/");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let res = layer
        .layer(service_fn(handler))
        .oneshot(b.body(String::new()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body();
    let text = match body {
        ResponseBody::Inner { body } => body,
        full => String::from_utf8(full.collect().await.unwrap().to_bytes().to_vec()).unwrap(),
    };
    (status, headers, text)
}

async fn seen(layer: &ServerDeadlineLayer, headers: &[(&str, &str)]) -> String {
    let (status, _, body) = call(layer, headers).await;
    assert_eq!(status, StatusCode::OK, "{headers:?}: {body}");
    body
}

#[tokio::test(start_paused = true)]
async fn every_header_form() {
    let clock = FixedClock::at_unix(1_795_509_600); // 2026-11-24T08:40:00Z
    let layer = ServerDeadlineLayer::new().clock(clock).trust_envoy(true);
    for (headers, expected) in [
        (vec![("x-request-timeout", "4.999")], "4999 normal"),
        (vec![("x-request-timeout", "4.99990")], "4999 normal"),
        (vec![("x-request-timeout", "2")], "2000 normal"),
        (vec![("x-request-timeout", "0.25")], "250 normal"),
        (vec![("x-request-timeout", "1e-1")], "100 normal"),
        (
            vec![("x-request-deadline-at", "2026-11-24T08:40:03")],
            "3000 normal",
        ),
        (
            vec![("x-request-deadline-at", "2026-11-24T08:40:01.500")],
            "1500 normal",
        ),
        (
            vec![("x-request-deadline-at", "2026-11-24T08:40:01.5Z")],
            "1500 normal",
        ),
        (vec![("grpc-timeout", "1H")], "300000 normal"), // capped at 5 min
        (vec![("grpc-timeout", "2M")], "120000 normal"),
        (vec![("grpc-timeout", "3S")], "3000 normal"),
        (vec![("grpc-timeout", "750m")], "750 normal"),
        (vec![("grpc-timeout", "750000u")], "750 normal"),
        (vec![("grpc-timeout", "75000000n")], "75 normal"),
        (
            vec![("x-envoy-expected-rq-timeout-ms", "1200")],
            "1200 normal",
        ),
        (vec![], "20000 normal"),
        (vec![("x-request-priority", "high")], "20000 high"),
        (vec![("x-request-priority", "LOW")], "20000 low"),
        (vec![("x-request-priority", "normal")], "20000 normal"),
        // The earliest wins, whatever header it came in.
        (
            vec![
                ("x-request-timeout", "4"),
                ("grpc-timeout", "3S"),
                ("x-request-deadline-at", "2026-11-24T08:40:02"),
                ("x-envoy-expected-rq-timeout-ms", "5000"),
            ],
            "2000 normal",
        ),
        (
            vec![
                ("x-request-timeout", "4"),
                ("x-envoy-expected-rq-timeout-ms", "900"),
            ],
            "900 normal",
        ),
        (
            vec![("x-request-timeout", "3"), ("x-request-timeout", "1")],
            "1000 normal",
        ),
        (vec![("x-request-timeout", "99999999")], "300000 normal"),
        (vec![("x-request-timeout", "1e300")], "300000 normal"),
    ] {
        assert_eq!(seen(&layer, &headers).await, expected, "{headers:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn envoy_header_ignored_unless_trusted() {
    let layer = ServerDeadlineLayer::new();
    assert_eq!(
        seen(&layer, &[("x-envoy-expected-rq-timeout-ms", "100")]).await,
        "20000 normal"
    );
    // Not even parsed when untrusted: a bad value is not an error.
    assert_eq!(
        seen(&layer, &[("x-envoy-expected-rq-timeout-ms", "soon")]).await,
        "20000 normal"
    );
}

#[tokio::test(start_paused = true)]
async fn default_and_cap_are_configurable() {
    let layer = ServerDeadlineLayer::new()
        .default_timeout(Some(Duration::from_secs(7)))
        .max_timeout(Duration::from_secs(10));
    assert_eq!(seen(&layer, &[]).await, "7000 normal");
    assert_eq!(
        seen(&layer, &[("x-request-timeout", "60")]).await,
        "10000 normal"
    );
    let none = ServerDeadlineLayer::new().default_timeout(None);
    assert_eq!(seen(&none, &[]).await, "none normal");
    assert_eq!(
        seen(&none, &[("x-request-timeout", "1")]).await,
        "1000 normal"
    );
}

#[tokio::test(start_paused = true)]
async fn every_bad_value_is_a_400_naming_the_header() {
    let clock = FixedClock::at_unix(1_795_509_600);
    let layer = ServerDeadlineLayer::new().clock(clock).trust_envoy(true);
    for (name, value, reason) in [
        ("x-request-timeout", "-1", "negative"),
        ("x-request-timeout", "-0.5", "negative"),
        ("x-request-timeout", "inf", "non_finite"),
        ("x-request-timeout", "NaN", "non_finite"),
        ("x-request-timeout", "1e999", "non_finite"),
        ("x-request-timeout", "", "empty"),
        ("x-request-timeout", "soon", "malformed"),
        ("x-request-timeout", "5s", "malformed"),
        ("x-request-timeout", "1,5", "malformed"),
        ("grpc-timeout", "", "empty"),
        ("grpc-timeout", "5", "malformed"),
        ("grpc-timeout", "5s", "malformed"),
        ("grpc-timeout", "123456789S", "malformed"),
        ("grpc-timeout", "-5S", "negative"),
        ("grpc-timeout", "1.5S", "malformed"),
        ("x-request-deadline-at", "", "empty"),
        ("x-request-deadline-at", "yesterday", "malformed"),
        ("x-request-deadline-at", "2026-11-24", "malformed"),
        (
            "x-request-deadline-at",
            "2026-13-24T08:40:00",
            "out_of_range",
        ),
        (
            "x-request-deadline-at",
            "2026-11-24T25:40:00",
            "out_of_range",
        ),
        ("x-envoy-expected-rq-timeout-ms", "-100", "negative"),
        ("x-envoy-expected-rq-timeout-ms", "1.5", "malformed"),
        ("x-envoy-expected-rq-timeout-ms", "", "empty"),
    ] {
        let (status, headers, body) = call(&layer, &[(name, value)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {value:?}");
        assert_eq!(headers["content-type"], "application/problem+json");
        assert!(headers.get("x-do-not-retry").is_none());
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["status"], 400);
        assert_eq!(doc["title"], "invalid deadline header");
        assert_eq!(doc["header"], name, "{body}");
        assert_eq!(doc["reason"], reason, "{name}: {value:?}");
        assert!(doc["detail"].as_str().unwrap().contains(name));
    }
    // A bad value among good ones still fails: no guessing.
    let (status, _, _) = call(
        &layer,
        &[("x-request-timeout", "2"), ("grpc-timeout", "2 S")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(start_paused = true)]
async fn a_bad_priority_is_a_400_of_its_own_and_every_value_is_checked() {
    let layer = ServerDeadlineLayer::new();
    let bad = [
        vec![("x-request-priority", "urgent")],
        vec![("x-request-priority", "")],
        vec![("x-request-priority", "high, low")],
        // A repeated header: every value is checked, not only the first.
        vec![
            ("x-request-priority", "high"),
            ("x-request-priority", "urgent"),
        ],
        vec![
            ("x-request-priority", "low"),
            ("x-request-priority", "normal"),
            ("x-request-priority", "hi gh"),
        ],
    ];
    for headers in bad {
        let (status, res_headers, body) = call(&layer, &headers).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{headers:?}");
        assert_eq!(res_headers["content-type"], "application/problem+json");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["title"], "invalid priority header", "{body}");
        assert_eq!(doc["reason"], "invalid_priority", "{body}");
        assert_eq!(doc["header"], "x-request-priority");
        let detail = doc["detail"].as_str().unwrap();
        assert!(
            detail.contains("x-request-priority") && detail.contains("high, normal, low"),
            "{detail}"
        );
    }
    // Several valid values: the lowest wins (as the earliest deadline does).
    for (values, want) in [
        (&["high", "low"][..], "low"),
        (&["normal", "HIGH"][..], "normal"),
        (&["high", " high "][..], "high"),
    ] {
        let headers: Vec<_> = values.iter().map(|v| ("x-request-priority", *v)).collect();
        assert_eq!(seen(&layer, &headers).await, format!("20000 {want}"));
    }
}

#[tokio::test(start_paused = true)]
async fn expired_or_too_close_is_408_without_the_handler() {
    let clock = FixedClock::at_unix(1_795_509_600);
    let layer = ServerDeadlineLayer::new().clock(clock);
    let called = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for headers in [
        vec![("x-request-timeout", "0")],
        vec![("x-request-timeout", "0.005")],
        vec![("x-request-timeout", "0.001")],
        vec![("grpc-timeout", "5m")],
        vec![("grpc-timeout", "0n")],
        vec![("x-request-deadline-at", "2026-11-24T08:39:59")],
        vec![("x-request-deadline-at", "2026-11-24T08:40:00.004")],
        vec![("x-request-deadline-at", "1999-01-01T00:00:00")],
        vec![("x-request-timeout", "10"), ("grpc-timeout", "1m")],
    ] {
        let counter = called.clone();
        let svc = layer.layer(service_fn(move |_req: Request<String>| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        }));
        let mut req = Request::new(String::new());
        for (k, v) in &headers {
            req.headers_mut().insert(*k, v.parse().unwrap());
        }
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT, "{headers:?}");
        assert_eq!(res.headers()["x-do-not-retry"], "1");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(called.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Just above the minimum is served.
    assert_eq!(
        seen(&layer, &[("x-request-timeout", "0.006")]).await,
        "6 normal"
    );
    // The minimum is configurable.
    let strict = ServerDeadlineLayer::new().min_remaining(Duration::from_millis(100));
    let (status, _, body) = call(&strict, &[("x-request-timeout", "0.1")]).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["reason"], "deadline_expired", "{body}");
}

#[tokio::test(start_paused = true)]
async fn merges_into_a_context_an_outer_layer_stored() {
    let trace =
        TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let outer_deadline = Instant::now() + Duration::from_secs(1);
    let svc = ServerDeadlineLayer::new().layer(service_fn(|req: Request<String>| async move {
        let ctx = CallContext::current().unwrap();
        assert_eq!(req.extensions().get::<CallContext>(), Some(&ctx));
        Ok::<_, Infallible>(Response::new(ctx))
    }));
    let mut req = Request::builder()
        .header("x-request-timeout", "3")
        .header("x-request-priority", "low")
        .body(String::new())
        .unwrap();
    req.extensions_mut()
        .insert(CallContext::new().with_trace(trace));
    let ctx = match svc.clone().oneshot(req).await.unwrap().into_body() {
        ResponseBody::Inner { body } => body,
        _ => panic!("refused"),
    };
    assert_eq!(ctx.trace(), Some(trace));
    assert_eq!(ctx.priority(), Priority::Low);
    assert_eq!(ctx.remaining(), Some(Duration::from_secs(3)));
    // An earlier deadline already there is kept.
    let mut req = Request::builder()
        .header("x-request-timeout", "3")
        .body(String::new())
        .unwrap();
    req.extensions_mut().insert(
        CallContext::new()
            .with_deadline(outer_deadline)
            .with_priority(Priority::High),
    );
    let ctx = match svc.oneshot(req).await.unwrap().into_body() {
        ResponseBody::Inner { body } => body,
        _ => panic!("refused"),
    };
    assert_eq!(ctx.deadline(), Some(outer_deadline));
    assert_eq!(ctx.priority(), Priority::High);
}

#[tokio::test(start_paused = true)]
async fn cancel_at_deadline_answers_504_and_drops_the_handler() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = std::sync::Mutex::new(Some(tx));
    let svc = ServerDeadlineLayer::new()
        .cancel_at_deadline(true)
        .layer(service_fn(move |_req: Request<String>| {
            let guard = tx.lock().unwrap().take();
            async move {
                let _guard = guard; // dropped with the future
                std::future::pending::<()>().await;
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        }));
    let req = Request::builder()
        .header("x-request-timeout", "0.5")
        .body(String::new())
        .unwrap();
    let start = Instant::now();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.headers()["x-do-not-retry"], "1");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["reason"], "deadline_exceeded");
    assert!(rx.await.is_err(), "the handler was dropped");
}

#[tokio::test(start_paused = true)]
async fn without_cancel_the_handler_runs_past_the_deadline() {
    let svc = ServerDeadlineLayer::new().layer(service_fn(|_req: Request<String>| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let req = Request::builder()
        .header("x-request-timeout", "1")
        .body(String::new())
        .unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn context_spawn_carries_the_context_into_tasks() {
    let svc = ServerDeadlineLayer::new().layer(service_fn(|_req: Request<String>| async {
        let seen = sinew_deadline::context::spawn(async { CallContext::current() })
            .await
            .unwrap();
        let plain = tokio::spawn(async { CallContext::current() })
            .await
            .unwrap();
        assert!(plain.is_none());
        Ok::<_, Infallible>(Response::new(seen))
    }));
    let req = Request::builder()
        .header("x-request-timeout", "1.5")
        .header("x-request-priority", "high")
        .body(String::new())
        .unwrap();
    let ctx = match svc.oneshot(req).await.unwrap().into_body() {
        ResponseBody::Inner { body } => body.unwrap(),
        _ => panic!("refused"),
    };
    assert_eq!(ctx.priority(), Priority::High);
    assert_eq!(ctx.remaining(), Some(Duration::from_millis(1500)));
}

mod no_panics {
    use super::*;
    use proptest::prelude::*;

    const NAMES: [&str; 5] = [
        "x-request-timeout",
        "x-request-deadline-at",
        "grpc-timeout",
        "x-envoy-expected-rq-timeout-ms",
        "x-request-priority",
    ];

    proptest! {
        /// Any header values, through the whole service (trusting Envoy, no
        /// cap on the deadline): an answer, never a panic.
        #[test]
        fn no_header_value_panics_the_server_layer(
            values in proptest::collection::vec((0usize..5, proptest::collection::vec(any::<u8>(), 0..40)), 0..6),
            near in proptest::collection::vec((0usize..5, "[0-9eE+.\\-:TZ nmuSMH]{0,24}"), 0..4),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
            let layer = ServerDeadlineLayer::new()
                .trust_envoy(true)
                .max_timeout(Duration::MAX)
                .cancel_at_deadline(true);
            let mut req = Request::new(String::new());
            let pairs = values.into_iter().chain(near.into_iter().map(|(i, s)| (i, s.into_bytes())));
            for (i, bytes) in pairs {
                if let Ok(v) = http::HeaderValue::from_bytes(&bytes) {
                    req.headers_mut().append(NAMES[i], v);
                }
            }
            let res = rt.block_on(layer.layer(service_fn(handler)).oneshot(req)).unwrap();
            prop_assert!(matches!(res.status().as_u16(), 200 | 400 | 408 | 504), "{}", res.status());
        }
    }
}
