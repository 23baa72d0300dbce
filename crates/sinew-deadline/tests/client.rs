#![allow(clippy::unwrap_used)]
//! The client layers, with paused time.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, Request, Response};
use sinew_core::{BoxError, CallContext, Deadline, DeadlineExceeded, Priority};
use sinew_deadline::{DeadlineLayer, PropagateDeadlineLayer};
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};

type Seen = Arc<Mutex<Vec<(HeaderMap, Option<Deadline>, Option<Priority>)>>>;

/// A service that records what it was sent and answers after `delay`.
fn recorder(
    delay: Duration,
) -> (
    Seen,
    impl Service<
            Request<String>,
            Response = Response<String>,
            Error = Infallible,
            Future = impl Send,
        > + Clone,
) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let svc = service_fn(move |req: Request<String>| {
        s.lock().unwrap().push((
            req.headers().clone(),
            req.extensions().get::<Deadline>().copied(),
            req.extensions().get::<Priority>().copied(),
        ));
        async move {
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(Response::new(String::new()))
        }
    });
    (seen, svc)
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test(start_paused = true)]
async fn sends_the_configured_timeout_and_priority() {
    let (seen, svc) = recorder(Duration::ZERO);
    let svc = DeadlineLayer::new()
        .timeout(Duration::from_secs(5))
        .grpc_timeout(true)
        .layer(svc);
    let start = Instant::now();
    svc.oneshot(Request::new(String::new())).await.unwrap();
    let seen = seen.lock().unwrap();
    let (h, deadline, priority) = &seen[0];
    assert_eq!(header(h, "x-request-timeout").as_deref(), Some("5.000"));
    assert_eq!(header(h, "grpc-timeout").as_deref(), Some("5000000u"));
    assert_eq!(header(h, "x-request-priority").as_deref(), Some("normal"));
    assert_eq!(*deadline, Some(Deadline(start + Duration::from_secs(5))));
    // The default priority needs no extension (absent means normal).
    assert_eq!(*priority, None);
}

#[tokio::test(start_paused = true)]
async fn the_earliest_deadline_wins() {
    let layer = DeadlineLayer::new().timeout(Duration::from_secs(5));
    let sent = |req: Request<String>, ctx: Option<CallContext>| {
        let (seen, svc) = recorder(Duration::ZERO);
        let layer = layer.clone();
        async move {
            let fut = layer.layer(svc).oneshot(req);
            match ctx {
                Some(ctx) => ctx.scope(fut).await.unwrap(),
                None => fut.await.unwrap(),
            };
            let h = seen.lock().unwrap()[0].0.clone();
            (
                header(&h, "x-request-timeout").unwrap(),
                header(&h, "x-request-priority").unwrap(),
            )
        }
    };
    // Own timeout only.
    assert_eq!(sent(Request::new(String::new()), None).await.0, "5.000");
    // A per-request deadline earlier than the timeout.
    let mut req = Request::new(String::new());
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(1500)));
    assert_eq!(sent(req, None).await.0, "1.500");
    // A later per-request deadline loses to the timeout.
    let mut req = Request::new(String::new());
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_secs(9)));
    assert_eq!(sent(req, None).await.0, "5.000");
    // The ambient (inherited) deadline and priority.
    let ctx = CallContext::new()
        .with_timeout(Duration::from_millis(2250))
        .with_priority(Priority::Low);
    assert_eq!(
        sent(Request::new(String::new()), Some(ctx)).await,
        ("2.250".to_string(), "low".to_string())
    );
    // The request's own priority beats the ambient one.
    let mut req = Request::new(String::new());
    req.extensions_mut().insert(Priority::High);
    assert_eq!(
        sent(req, Some(ctx)).await,
        ("2.250".to_string(), "high".to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn no_deadline_at_all_sends_only_the_priority() {
    let (seen, svc) = recorder(Duration::from_secs(100));
    let res = DeadlineLayer::new()
        .layer(svc)
        .oneshot(Request::new(String::new()))
        .await;
    assert!(res.is_ok());
    let h = &seen.lock().unwrap()[0].0;
    assert!(h.get("x-request-timeout").is_none());
    assert_eq!(header(h, "x-request-priority").as_deref(), Some("normal"));
}

#[tokio::test(start_paused = true)]
async fn the_inner_future_is_dropped_at_the_deadline() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = Mutex::new(Some(tx));
    let svc = service_fn(move |_req: Request<String>| {
        let guard = tx.lock().unwrap().take();
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(String::new()))
        }
    });
    let start = Instant::now();
    let err = DeadlineLayer::new()
        .timeout(Duration::from_millis(300))
        .layer(svc)
        .oneshot(Request::new(String::new()))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert!(err.downcast_ref::<DeadlineExceeded>().is_some(), "{err}");
    assert!(rx.await.is_err(), "the inner future was dropped");
}

#[tokio::test(start_paused = true)]
async fn a_response_before_the_deadline_passes_through() {
    let (_, svc) = recorder(Duration::from_millis(299));
    let res = DeadlineLayer::new()
        .timeout(Duration::from_millis(300))
        .layer(svc)
        .oneshot(Request::new(String::new()))
        .await;
    assert!(res.is_ok());
    let (_, svc) = recorder(Duration::from_millis(301));
    let res = DeadlineLayer::new()
        .timeout(Duration::from_millis(300))
        .layer(svc)
        .oneshot(Request::new(String::new()))
        .await;
    assert!(res.unwrap_err().is::<DeadlineExceeded>());
}

#[tokio::test(start_paused = true)]
async fn too_little_left_fails_at_once_without_calling() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = service_fn(move |_req: Request<String>| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(String::new())) }
    });
    let svc = DeadlineLayer::new().layer(svc);
    for left in [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_millis(5),
    ] {
        let ctx = CallContext::new().with_timeout(left);
        let start = Instant::now();
        let err = ctx
            .scope(svc.clone().oneshot(Request::new(String::new())))
            .await
            .unwrap_err();
        assert!(err.is::<DeadlineExceeded>());
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
    // An expired per-request deadline, too.
    let mut req = Request::new(String::new());
    req.extensions_mut().insert(Deadline(Instant::now()));
    tokio::time::advance(Duration::from_millis(10)).await;
    assert!(svc
        .clone()
        .oneshot(req)
        .await
        .unwrap_err()
        .is::<DeadlineExceeded>());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // 6 ms is enough; the minimum is configurable.
    let ctx = CallContext::new().with_timeout(Duration::from_millis(6));
    ctx.scope(svc.clone().oneshot(Request::new(String::new())))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let strict = DeadlineLayer::new()
        .min_remaining(Duration::from_millis(50))
        .layer(service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let ctx = CallContext::new().with_timeout(Duration::from_millis(40));
    assert!(ctx
        .scope(strict.oneshot(Request::new(String::new())))
        .await
        .is_err());
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_boxed() {
    let svc = service_fn(|_req: Request<String>| async {
        Err::<Response<String>, BoxError>("connection refused".into())
    });
    let err = DeadlineLayer::new()
        .timeout(Duration::from_secs(1))
        .layer(svc)
        .oneshot(Request::new(String::new()))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "connection refused");
}

/// A tiny retry loop standing in for sinew-retry: it resends a clone of the
/// request after 300 ms, as a retry layer between the two would.
#[derive(Clone)]
struct TwoAttempts<S>(S);

impl<S> Service<Request<String>> for TwoAttempts<S>
where
    S: Service<Request<String>, Response = Response<String>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<String>, Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<String>) -> Self::Future {
        let mut inner = self.0.clone();
        Box::pin(async move {
            let retry = sinew_core::body::try_clone_request(&req).unwrap();
            inner.ready().await?.call(req).await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            inner.ready().await?.call(retry).await
        })
    }
}

#[tokio::test(start_paused = true)]
async fn per_attempt_layer_recomputes_the_timeout_for_every_attempt() {
    let (seen, svc) = recorder(Duration::from_millis(100));
    let client = ServiceBuilder::new()
        .layer(DeadlineLayer::new().timeout(Duration::from_secs(2)))
        .layer_fn(TwoAttempts)
        .layer(PropagateDeadlineLayer::new().grpc_timeout(true))
        .service(svc);
    let mut req = Request::new(String::new());
    req.extensions_mut().insert(Priority::High);
    client.oneshot(req).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let timeouts: Vec<_> = seen
        .iter()
        .map(|s| header(&s.0, "x-request-timeout").unwrap())
        .collect();
    assert_eq!(timeouts, ["2.000", "1.600"]);
    let grpc: Vec<_> = seen
        .iter()
        .map(|s| header(&s.0, "grpc-timeout").unwrap())
        .collect();
    assert_eq!(grpc, ["2000000u", "1600000u"]);
    assert!(seen
        .iter()
        .all(|s| header(&s.0, "x-request-priority").as_deref() == Some("high")));
    // Both attempts carry the same absolute deadline for the layers below.
    assert_eq!(seen[0].1, seen[1].1);
}

#[tokio::test(start_paused = true)]
async fn without_the_per_attempt_layer_a_retry_would_resend_a_stale_timeout() {
    // Shows why PropagateDeadlineLayer exists: the same stack without it.
    let (seen, svc) = recorder(Duration::from_millis(100));
    let client = ServiceBuilder::new()
        .layer(DeadlineLayer::new().timeout(Duration::from_secs(2)))
        .layer_fn(TwoAttempts)
        .service(svc);
    client.oneshot(Request::new(String::new())).await.unwrap();
    let seen = seen.lock().unwrap();
    let timeouts: Vec<_> = seen
        .iter()
        .map(|s| header(&s.0, "x-request-timeout").unwrap())
        .collect();
    assert_eq!(timeouts, ["2.000", "2.000"]);
}

#[tokio::test(start_paused = true)]
async fn per_attempt_layer_alone_uses_the_ambient_context() {
    let (seen, svc) = recorder(Duration::ZERO);
    let ctx = CallContext::new()
        .with_timeout(Duration::from_millis(750))
        .with_priority(Priority::Low);
    ctx.scope(
        PropagateDeadlineLayer::new()
            .layer(svc)
            .oneshot(Request::new(String::new())),
    )
    .await
    .unwrap();
    let h = &seen.lock().unwrap()[0].0;
    assert_eq!(header(h, "x-request-timeout").as_deref(), Some("0.750"));
    assert_eq!(header(h, "x-request-priority").as_deref(), Some("low"));
    assert!(h.get("grpc-timeout").is_none());
}

#[tokio::test(start_paused = true)]
async fn write_headers_off_leaves_headers_to_the_per_attempt_layer() {
    let (seen, svc) = recorder(Duration::ZERO);
    DeadlineLayer::new()
        .timeout(Duration::from_secs(1))
        .write_headers(false)
        .layer(svc)
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    let (h, deadline, _) = &seen.lock().unwrap()[0];
    assert!(h.get("x-request-timeout").is_none() && h.get("x-request-priority").is_none());
    assert!(deadline.is_some());
}

#[tokio::test(start_paused = true)]
async fn works_with_the_sinew_client_body() {
    use sinew_core::Body;
    let svc = service_fn(|req: Request<Body>| async move {
        assert_eq!(req.body().bytes().map(|b| &b[..]), Some(&b"payload"[..]));
        Ok::<_, Infallible>(Response::new(
            header(req.headers(), "x-request-timeout").unwrap(),
        ))
    });
    let client = ServiceBuilder::new()
        .layer(DeadlineLayer::new().timeout(Duration::from_millis(1200)))
        .layer(PropagateDeadlineLayer::new())
        .service(svc);
    let res = client
        .oneshot(Request::new(Body::full("payload")))
        .await
        .unwrap();
    assert_eq!(res.into_body(), "1.200");
}

#[tokio::test(start_paused = true)]
async fn an_inherited_priority_is_settled_as_an_extension_and_normal_is_not() {
    for (ambient, expected) in [
        (Priority::Low, Some(Priority::Low)),
        (Priority::High, Some(Priority::High)),
        (Priority::Normal, None),
    ] {
        let (seen, svc) = recorder(Duration::ZERO);
        let ctx = CallContext::new().with_priority(ambient);
        ctx.scope(
            DeadlineLayer::new()
                .timeout(Duration::from_secs(1))
                .layer(svc)
                .oneshot(Request::new(String::new())),
        )
        .await
        .unwrap();
        let seen = seen.lock().unwrap();
        // Layers below that run outside the caller's scope (a spawned
        // worker) still read the inherited priority from the request.
        assert_eq!(seen[0].2, expected, "ambient {ambient}");
        assert_eq!(
            header(&seen[0].0, "x-request-priority").as_deref(),
            Some(ambient.as_str())
        );
    }
}
