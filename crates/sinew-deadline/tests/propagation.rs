#![allow(clippy::unwrap_used)]
//! Propagation through three real servers on 127.0.0.1: A → B → C.
//!
//! Each server runs the server layer and a handler that calls the next hop
//! with a hyper client wrapped in `DeadlineLayer` + `PropagateDeadlineLayer`.
//! Real sockets, so real (short) time.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use sinew_core::{BoxError, CallContext, DeadlineExceeded};
use sinew_deadline::{DeadlineLayer, PropagateDeadlineLayer, ServerDeadlineLayer};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

type Http = Client<HttpConnector, Empty<Bytes>>;

#[derive(Clone)]
struct Hop {
    http: Http,
    /// Told when a `/hang` handler starts and when it is dropped.
    events: mpsc::UnboundedSender<&'static str>,
}

async fn context() -> String {
    let ctx = CallContext::current().unwrap();
    format!(
        "{} {}",
        ctx.remaining().map_or(-1, |d| d.as_millis() as i64),
        ctx.priority()
    )
}

struct Dropped(mpsc::UnboundedSender<&'static str>);
impl Drop for Dropped {
    fn drop(&mut self) {
        let _ = self.0.send("dropped");
    }
}

async fn hang(State(hop): State<Hop>) -> &'static str {
    let _ = hop.events.send("started");
    let _guard = Dropped(hop.events.clone());
    std::future::pending::<()>().await;
    "never"
}

#[derive(serde::Deserialize)]
struct CallParams {
    url: String,
}

async fn call(State(hop): State<Hop>, Query(q): Query<CallParams>) -> (StatusCode, String) {
    let mut client = ServiceBuilder::new()
        .layer(DeadlineLayer::new().timeout(Duration::from_secs(30)))
        .layer(PropagateDeadlineLayer::new())
        .service(hop.http.clone());
    let req = Request::get(q.url.as_str()).body(Empty::new()).unwrap();
    let result: Result<_, BoxError> = async {
        let res = client.ready().await?.call(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
    .await;
    match result {
        Ok(r) => r,
        Err(e) if e.is::<DeadlineExceeded>() => (StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

async fn server() -> (String, mpsc::UnboundedReceiver<&'static str>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let hop = Hop {
        http: Client::builder(TokioExecutor::new()).build_http(),
        events: tx,
    };
    let app = Router::new()
        .route("/context", get(context))
        .route("/call", get(call))
        .route("/hang", get(hang))
        .with_state(hop)
        .layer(ServerDeadlineLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), rx)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn get_with(url: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let res = http.request(b.body(Empty::new()).unwrap()).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn c_sees_a_callers_deadline_minus_time_spent_and_its_priority() {
    let (a, _) = server().await;
    let (b, _) = server().await;
    let (c, _) = server().await;
    let b_url = format!("{b}/call?url={}", encode(&format!("{c}/context")));
    let a_url = format!("{a}/call?url={}", encode(&b_url));

    let start = Instant::now();
    let (status, body) = get_with(
        &a_url,
        &[("x-request-timeout", "2.5"), ("x-request-priority", "high")],
    )
    .await;
    let spent = start.elapsed();
    assert_eq!(status, StatusCode::OK, "{body}");
    let (remaining, priority) = body.split_once(' ').unwrap();
    let remaining: u64 = remaining.parse().unwrap();
    assert_eq!(priority, "high");
    // C saw A's 2.5 s minus the time spent on the way (never more), not
    // the 30 s of the clients' own timeouts nor the 20 s server default.
    // Each of the three hops rounds down to whole milliseconds.
    assert!(remaining <= 2500, "{remaining}");
    assert!(
        remaining as u128 + 3 >= 2500 - spent.as_millis(),
        "{remaining} after {spent:?}"
    );

    // Without a deadline from the caller, A's 20 s default is what C inherits.
    let (_, body) = get_with(&a_url, &[("x-request-priority", "low")]).await;
    let (remaining, priority) = body.split_once(' ').unwrap();
    let remaining: u64 = remaining.parse().unwrap();
    assert!((19_000..=20_000).contains(&remaining), "{remaining}");
    assert_eq!(priority, "low");
}

async fn next(rx: &mut mpsc::UnboundedReceiver<&'static str>) -> &'static str {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn when_as_deadline_passes_bs_call_to_c_is_cancelled() {
    let (a, _) = server().await;
    let (b, _) = server().await;
    let (c, mut c_events) = server().await;
    let b_url = format!("{b}/call?url={}", encode(&format!("{c}/hang")));
    let a_url = format!("{a}/call?url={}", encode(&b_url));

    let start = Instant::now();
    let caller =
        tokio::spawn(async move { get_with(&a_url, &[("x-request-timeout", "0.4")]).await });
    assert_eq!(next(&mut c_events).await, "started");
    // C does not cancel by itself (cancel_at_deadline is off): the handler
    // is dropped because B's call to it was cancelled and the connection
    // closed, at A's deadline.
    assert_eq!(next(&mut c_events).await, "dropped");
    let at = start.elapsed();
    assert!(
        at >= Duration::from_millis(380) && at < Duration::from_secs(2),
        "{at:?}"
    );
    let (status, body) = caller.await.unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
}
