//! Signed calls over a real axum server on 127.0.0.1: valid calls pass,
//! each tampered part is refused with the right reason.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Extension;
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sinew_core::{Body, BoxError, FixedClock};
use sinew_sign::{
    parse_components, Accept, HmacSignLayer, SecretKey, SignConfig, SignError, Signer,
    StaticKeyStore, VerifiedCaller, Verifier, VerifyConfig, VerifySignatureLayer,
};
use tower::{Layer, Service, ServiceExt};

const T0: u64 = 1_763_000_000;

async fn handler(
    Extension(caller): Extension<VerifiedCaller>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> String {
    format!(
        "{} {} {} {} {}",
        caller.key_id,
        caller.profile.as_str(),
        method,
        uri.path(),
        body.len()
    )
}

async fn serve(verifier: Verifier) -> SocketAddr {
    let app = Router::new()
        .route("/{*rest}", any(handler))
        .layer(VerifySignatureLayer::new(verifier));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn key(text: &str) -> SecretKey {
    SecretKey::from_text(text).unwrap()
}

fn keys() -> StaticKeyStore {
    StaticKeyStore::new()
        .with_key("orders", key("orders-secret"))
        .with_key("billing", key("billing-secret"))
        .with_legacy_key("orders", key("legacy-secret"))
}

fn verifier(config: VerifyConfig, now: u64) -> Verifier {
    Verifier::new(config, keys()).with_clock(FixedClock::at_unix(now))
}

fn signer(config: SignConfig, secret: &str, now: u64) -> Signer {
    Signer::new(config, key(secret))
        .unwrap()
        .with_clock(FixedClock::at_unix(now))
}

/// What a test sees of a response.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    body: String,
}

impl Answer {
    fn reason(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        v["reason"].as_str().map(str::to_owned)
    }
}

type Sent = Arc<Mutex<Vec<Request<Body>>>>;

/// A signing client whose transport applies `tamper` to the signed request
/// and keeps a copy of what it sent.
fn client(
    signer: Signer,
    tamper: impl Fn(&mut Request<Body>) + Send + Sync + 'static,
) -> (
    impl Service<Request<Body>, Response = http::Response<hyper::body::Incoming>, Error = BoxError>
        + Clone,
    Sent,
) {
    let http = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let sent: Sent = Arc::default();
    let log = sent.clone();
    let tamper = Arc::new(tamper);
    let transport = tower::service_fn(move |mut req: Request<Body>| {
        tamper(&mut req);
        if let Some(copy) = sinew_core::body::try_clone_request(&req) {
            log.lock().unwrap().push(copy);
        }
        let http = http.clone();
        async move { http.request(req).await.map_err(BoxError::from) }
    });
    (HmacSignLayer::new(signer).layer(transport), sent)
}

async fn answer(res: http::Response<hyper::body::Incoming>) -> Answer {
    let status = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn call<S>(svc: &mut S, req: Request<Body>) -> Answer
where
    S: Service<Request<Body>, Response = http::Response<hyper::body::Incoming>, Error = BoxError>,
{
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    answer(res).await
}

/// Send a request exactly as given (no signing).
async fn raw(req: Request<Body>) -> Answer {
    let http = Client::builder(TokioExecutor::new()).build_http::<Body>();
    answer(http.request(req).await.unwrap()).await
}

fn post(addr: SocketAddr, path_and_query: &str, body: &'static str) -> Request<Body> {
    Request::post(format!("http://{addr}{path_and_query}"))
        .header("x-tenant", "acme")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn valid_calls_pass_and_reach_the_handler_with_the_caller() {
    let addr = serve(verifier(VerifyConfig::default(), T0)).await;
    let (mut svc, _) = client(
        signer(SignConfig::rfc9421("orders"), "orders-secret", T0),
        |_| {},
    );
    let a = call(&mut svc, post(addr, "/items/7?expand=1", "{\"qty\":2}")).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.body, "orders rfc9421 POST /items/7 9");
    let get = Request::get(format!("http://{addr}/items"))
        .body(Body::empty())
        .unwrap();
    let a = call(&mut svc, get).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.body, "orders rfc9421 GET /items 0");
}

/// One tampering after signing and the reason the server must give.
async fn refused_with(
    config: SignConfig,
    tamper: impl Fn(&mut Request<Body>) + Send + Sync + 'static,
    expected: &str,
) {
    let addr = serve(verifier(VerifyConfig::default(), T0)).await;
    let (mut svc, _) = client(signer(config, "orders-secret", T0), tamper);
    let a = call(&mut svc, post(addr, "/items/7?expand=1", "{\"qty\":2}")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a:?}");
    assert_eq!(
        a.content_type.as_deref(),
        Some("application/problem+json"),
        "{a:?}"
    );
    assert_eq!(a.reason().as_deref(), Some(expected), "{a:?}");
    // Never the expected values.
    assert!(!a.body.contains("sha-256=:"), "{a:?}");
}

fn with_tenant() -> SignConfig {
    SignConfig::rfc9421("orders").components(
        parse_components("@method @authority @path @query content-digest x-tenant").unwrap(),
    )
}

fn replace_input(req: &mut Request<Body>, from: &str, to: &str) {
    let input = req.headers()["signature-input"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(input.contains(from), "{input}");
    req.headers_mut().insert(
        "signature-input",
        input.replacen(from, to, 1).parse().unwrap(),
    );
}

#[tokio::test]
async fn tampered_method_is_refused() {
    refused_with(
        SignConfig::rfc9421("orders"),
        |r| *r.method_mut() = Method::PUT,
        "bad_signature",
    )
    .await;
}

#[tokio::test]
async fn tampered_authority_is_refused() {
    refused_with(
        SignConfig::rfc9421("orders"),
        |r| {
            r.headers_mut()
                .insert("host", "inventory.internal".parse().unwrap());
        },
        "bad_signature",
    )
    .await;
}

#[tokio::test]
async fn tampered_path_is_refused() {
    refused_with(
        SignConfig::rfc9421("orders"),
        |r| {
            let uri = r.uri().to_string().replace("/items/7", "/items/8");
            *r.uri_mut() = uri.parse().unwrap();
        },
        "bad_signature",
    )
    .await;
}

#[tokio::test]
async fn tampered_query_is_refused() {
    refused_with(
        SignConfig::rfc9421("orders"),
        |r| {
            let uri = r.uri().to_string().replace("expand=1", "expand=2");
            *r.uri_mut() = uri.parse().unwrap();
        },
        "bad_signature",
    )
    .await;
}

#[tokio::test]
async fn tampered_body_is_refused() {
    refused_with(
        SignConfig::rfc9421("orders"),
        |r| *r.body_mut() = Body::from("{\"qty\":200}"),
        "digest_mismatch",
    )
    .await;
}

#[tokio::test]
async fn tampered_digest_header_is_refused() {
    refused_with(
        SignConfig::rfc9421("orders"),
        |r| {
            r.headers_mut().insert(
                "content-digest",
                sinew_sign::content_digest(b"{\"qty\":200}")
                    .parse()
                    .unwrap(),
            );
            *r.body_mut() = Body::from("{\"qty\":200}");
        },
        "bad_signature",
    )
    .await;
}

#[tokio::test]
async fn tampered_covered_header_is_refused() {
    refused_with(
        with_tenant(),
        |r| {
            r.headers_mut()
                .insert("x-tenant", "evil-corp".parse().unwrap());
        },
        "bad_signature",
    )
    .await;
}

#[tokio::test]
async fn removed_covered_header_is_refused() {
    refused_with(
        with_tenant(),
        |r| {
            r.headers_mut().remove("x-tenant");
        },
        "missing_component",
    )
    .await;
}

#[tokio::test]
async fn tampered_created_is_refused() {
    let created = format!("created={T0}");
    let earlier = format!("created={}", T0 - 5);
    refused_with(
        SignConfig::rfc9421("orders"),
        move |r| replace_input(r, &created, &earlier),
        "bad_signature",
    )
    .await;
}

#[tokio::test]
async fn tampered_keyid_is_refused() {
    // Another key the server knows: the MAC does not match.
    refused_with(
        SignConfig::rfc9421("orders"),
        |r| replace_input(r, "keyid=\"orders\"", "keyid=\"billing\""),
        "bad_signature",
    )
    .await;
    // A key it does not know.
    refused_with(
        SignConfig::rfc9421("orders"),
        |r| replace_input(r, "keyid=\"orders\"", "keyid=\"nobody\""),
        "unknown_key",
    )
    .await;
}

#[tokio::test]
async fn other_algorithm_is_refused() {
    refused_with(
        SignConfig::rfc9421("orders"),
        |r| replace_input(r, "alg=\"hmac-sha256\"", "alg=\"rsa-pss-sha512\""),
        "algorithm_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn too_few_components_are_refused() {
    refused_with(
        SignConfig::rfc9421("orders").components(parse_components("@method @path").unwrap()),
        |_| {},
        "missing_required_component",
    )
    .await;
}

#[tokio::test]
async fn unsigned_and_garbled_requests_are_refused() {
    let addr = serve(verifier(VerifyConfig::default(), T0)).await;
    let a = raw(post(addr, "/items", "")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.reason().as_deref(), Some("missing_signature"));
    let mut req = post(addr, "/items", "");
    req.headers_mut()
        .insert("signature-input", "sig1=(\"@method\"".parse().unwrap());
    req.headers_mut()
        .insert("signature", "sig1=:AAAA:".parse().unwrap());
    let a = raw(req).await;
    assert_eq!(a.reason().as_deref(), Some("malformed"), "{a:?}");
}

#[tokio::test]
async fn replays_are_refused_and_retries_are_fresh() {
    let addr = serve(verifier(VerifyConfig::default(), T0)).await;
    let (mut svc, sent) = client(
        signer(SignConfig::rfc9421("orders"), "orders-secret", T0),
        |_| {},
    );
    // Two calls in the same second: fresh nonces, both pass.
    for _ in 0..2 {
        let a = call(&mut svc, post(addr, "/items", "{}")).await;
        assert_eq!(a.status, StatusCode::OK, "{a:?}");
    }
    // Resending a captured request is a replay.
    let captured = sent.lock().unwrap().remove(0);
    let a = raw(captured).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.reason().as_deref(), Some("replayed"));
}

#[tokio::test]
async fn expired_and_stale_signatures_are_refused() {
    // expires = created + 10 s; the server's clock is a minute later.
    let addr = serve(verifier(VerifyConfig::default(), T0 + 60)).await;
    let config = SignConfig::rfc9421("orders").expires_in(Duration::from_secs(10));
    let (mut svc, _) = client(signer(config, "orders-secret", T0), |_| {});
    let a = call(&mut svc, post(addr, "/items", "{}")).await;
    assert_eq!(a.reason().as_deref(), Some("expired"), "{a:?}");

    // Older than the maximum age (300 s).
    let addr = serve(verifier(VerifyConfig::default(), T0 + 301)).await;
    let (mut svc, _) = client(
        signer(SignConfig::rfc9421("orders"), "orders-secret", T0),
        |_| {},
    );
    let a = call(&mut svc, post(addr, "/items", "{}")).await;
    assert_eq!(a.reason().as_deref(), Some("too_old"), "{a:?}");

    // Created further in the future than the skew (30 s).
    let addr = serve(verifier(VerifyConfig::default(), T0 - 31)).await;
    let a = call(&mut svc, post(addr, "/items", "{}")).await;
    assert_eq!(a.reason().as_deref(), Some("created_in_future"), "{a:?}");

    // Within the skew: accepted.
    let addr = serve(verifier(VerifyConfig::default(), T0 - 29)).await;
    let a = call(&mut svc, post(addr, "/items", "{}")).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
}

#[tokio::test]
async fn key_rotation() {
    // During the rotation both keys are valid.
    let both = StaticKeyStore::new()
        .with_key("orders-2026-10", key("old"))
        .with_key("orders-2026-11", key("new"));
    let addr =
        serve(Verifier::new(VerifyConfig::default(), both).with_clock(FixedClock::at_unix(T0)))
            .await;
    for (id, secret) in [("orders-2026-10", "old"), ("orders-2026-11", "new")] {
        let (mut svc, _) = client(signer(SignConfig::rfc9421(id), secret, T0), |_| {});
        let a = call(&mut svc, post(addr, "/items", "{}")).await;
        assert_eq!(a.status, StatusCode::OK, "{id}: {a:?}");
        assert!(a.body.starts_with(id), "{a:?}");
    }
    // After it, the old key id is unknown.
    let new_only = StaticKeyStore::new().with_key("orders-2026-11", key("new"));
    let addr =
        serve(Verifier::new(VerifyConfig::default(), new_only).with_clock(FixedClock::at_unix(T0)))
            .await;
    let (mut old, _) = client(
        signer(SignConfig::rfc9421("orders-2026-10"), "old", T0),
        |_| {},
    );
    let a = call(&mut old, post(addr, "/items", "{}")).await;
    assert_eq!(a.reason().as_deref(), Some("unknown_key"), "{a:?}");
    // A signer holding the wrong secret under the new id.
    let (mut wrong, _) = client(
        signer(SignConfig::rfc9421("orders-2026-11"), "old", T0),
        |_| {},
    );
    let a = call(&mut wrong, post(addr, "/items", "{}")).await;
    assert_eq!(a.reason().as_deref(), Some("bad_signature"), "{a:?}");
}

/// microservice_comms' signature, computed independently of sinew.
fn legacy_signature(secret: &str, method: &str, path: &str, ts: u64) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{method}|{path}|{ts}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn legacy_sinew_client_to_sinew_server_and_resends() {
    let addr = serve(verifier(
        VerifyConfig::default().accept(Accept::Legacy),
        T0 + 2,
    ))
    .await;
    let (mut svc, sent) = client(
        signer(SignConfig::legacy("orders"), "legacy-secret", T0),
        |_| {},
    );
    let a = call(&mut svc, post(addr, "/items/7?expand=1", "{}")).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.body, "orders legacy POST /items/7 2");
    // What sinew sent is exactly what microservice_comms sends.
    let first = sent.lock().unwrap().remove(0);
    assert_eq!(first.headers()["x-service-id"], "orders");
    assert_eq!(first.headers()["x-timestamp"], T0.to_string().as_str());
    assert_eq!(
        first.headers()["x-signature"],
        legacy_signature("legacy-secret", "POST", "/items/7", T0).as_str()
    );
    // Its retries resend the same signature: accepted by default.
    let a = raw(first).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
}

#[tokio::test]
async fn legacy_python_client_to_sinew_server() {
    let addr = serve(verifier(VerifyConfig::default().accept(Accept::Legacy), T0)).await;
    let signed = |method: &str, path: &str, sig_path: &str, ts: u64, secret: &str| {
        Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("X-Service-ID", "orders")
            .header("X-Timestamp", ts.to_string())
            .header(
                "X-Signature",
                legacy_signature(secret, method, sig_path, ts),
            )
            .body(Body::empty())
            .unwrap()
    };
    let a = raw(signed(
        "GET",
        "/items?page=2",
        "/items",
        T0 - 5,
        "legacy-secret",
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.body, "orders legacy GET /items 0");
    let a = raw(signed("GET", "/items", "/other", T0, "legacy-secret")).await;
    assert_eq!(a.reason().as_deref(), Some("bad_signature"));
    let a = raw(signed("GET", "/items", "/items", T0, "wrong")).await;
    assert_eq!(a.reason().as_deref(), Some("bad_signature"));
    let a = raw(signed("GET", "/items", "/items", T0 - 301, "legacy-secret")).await;
    assert_eq!(a.reason().as_deref(), Some("too_old"));
    // An RFC 9421-only server does not take legacy signatures.
    let strict = serve(verifier(VerifyConfig::default(), T0)).await;
    let mut req = signed("GET", "/items", "/items", T0, "legacy-secret");
    *req.uri_mut() = format!("http://{strict}/items").parse().unwrap();
    assert_eq!(
        raw(req).await.reason().as_deref(),
        Some("missing_signature")
    );
}

#[tokio::test]
async fn legacy_replay_protection_is_opt_in() {
    let config = VerifyConfig::default()
        .accept(Accept::Legacy)
        .legacy_replay_protection(true);
    let addr = serve(verifier(config, T0)).await;
    let (mut svc, sent) = client(
        signer(SignConfig::legacy("orders"), "legacy-secret", T0),
        |_| {},
    );
    let a = call(&mut svc, post(addr, "/items", "")).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let again = sent.lock().unwrap().remove(0);
    assert_eq!(raw(again).await.reason().as_deref(), Some("replayed"));
}

#[tokio::test]
async fn both_profiles_during_a_migration() {
    let addr = serve(verifier(VerifyConfig::default().accept(Accept::Any), T0)).await;
    let (mut new, _) = client(
        signer(SignConfig::rfc9421("orders"), "orders-secret", T0),
        |_| {},
    );
    let (mut old, _) = client(
        signer(SignConfig::legacy("orders"), "legacy-secret", T0),
        |_| {},
    );
    assert_eq!(
        call(&mut new, post(addr, "/a", "")).await.body,
        "orders rfc9421 POST /a 0"
    );
    assert_eq!(
        call(&mut old, post(addr, "/a", "")).await.body,
        "orders legacy POST /a 0"
    );
}

#[tokio::test]
async fn full_replay_cache_answers_503() {
    let addr = serve(verifier(VerifyConfig::default().replay_capacity(1), T0)).await;
    let (mut svc, _) = client(
        signer(SignConfig::rfc9421("orders"), "orders-secret", T0),
        |_| {},
    );
    assert_eq!(
        call(&mut svc, post(addr, "/a", "")).await.status,
        StatusCode::OK
    );
    let a = call(&mut svc, post(addr, "/a", "")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{a:?}");
    assert_eq!(a.reason().as_deref(), Some("replay_cache_full"));
}

#[tokio::test]
async fn oversized_bodies() {
    // Server: a signed request over its limit, by Content-Length or
    // streamed without one: 413.
    let config = VerifyConfig::default().body_limit(16);
    let addr = serve(verifier(config, T0)).await;
    let orders = || signer(SignConfig::rfc9421("orders"), "orders-secret", T0);
    let (mut svc, _) = client(orders(), |_| {});
    let a = call(&mut svc, post(addr, "/a", "0123456789abcdefXYZ")).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{a:?}");
    assert_eq!(a.reason().as_deref(), Some("body_too_large"));
    let chunks: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = (0..5)
        .map(|_| Ok(http_body::Frame::data(Bytes::from_static(b"01234567"))))
        .collect();
    let stream = http_body_util::StreamBody::new(futures_util::stream::iter(chunks));
    let (mut parts, ()) = Request::post(format!("http://{addr}/a"))
        .body(())
        .unwrap()
        .into_parts();
    orders().sign(&mut parts, &b"01234567".repeat(5)).unwrap();
    let a = raw(Request::from_parts(parts, Body::stream(stream))).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{a:?}");
    // An unsigned request is refused before its body is read: even one
    // whose body never ends is answered.
    let endless = http_body_util::StreamBody::new(futures_util::stream::pending::<
        Result<http_body::Frame<Bytes>, std::io::Error>,
    >());
    let req = Request::post(format!("http://{addr}/a"))
        .body(Body::stream(endless))
        .unwrap();
    let a = tokio::time::timeout(Duration::from_secs(20), raw(req))
        .await
        .expect("refused without waiting for the body");
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a:?}");
    assert_eq!(a.reason().as_deref(), Some("missing_signature"));

    // Client: over the signing limit with content-digest covered: not sent.
    let addr = serve(verifier(VerifyConfig::default(), T0)).await;
    let (mut svc, sent) = client(
        signer(
            SignConfig::rfc9421("orders").body_limit(8),
            "orders-secret",
            T0,
        ),
        |_| {},
    );
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(post(addr, "/a", "0123456789"))
        .await
        .unwrap_err();
    assert!(matches!(
        err.downcast_ref::<SignError>(),
        Some(SignError::BodyTooLarge { limit: 8 })
    ));
    assert!(sent.lock().unwrap().is_empty());

    // Without content-digest covered it is signed and streamed whole.
    let config = SignConfig::rfc9421("orders")
        .body_limit(8)
        .components(parse_components("@method @authority @path @query").unwrap());
    let addr = serve(verifier(
        VerifyConfig::default()
            .required_components(parse_components("@method @authority @path").unwrap()),
        T0,
    ))
    .await;
    let (mut svc, _) = client(signer(config, "orders-secret", T0), |_| {});
    let a = call(&mut svc, post(addr, "/a", "0123456789")).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.body, "orders rfc9421 POST /a 10");
}
