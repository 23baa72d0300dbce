#![allow(clippy::unwrap_used)]
//! `sinew::proxy` against real servers on free loopback ports: the inbound
//! side verifies and tells the application who called and how long is
//! left; the outbound side calls services by name through the client
//! stack; bodies stream; hop-by-hop fields go; timeouts, the connection
//! limit and the drain do what the config says.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use sinew::config::ClientConfig;
use sinew::proxy::{Proxy, Running};
use sinew::server::ServerStack;
use sinew::{CallContext, ClientBuilder, Priority};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "s3cret-proxy-key";

fn set_key() {
    std::env::set_var("SINEW_PROXY_TEST_KEY", KEY);
}

#[derive(Default)]
struct Hits {
    by_path: Mutex<HashMap<String, usize>>,
}

impl Hits {
    fn hit(&self, path: &str) -> usize {
        let mut m = self.by_path.lock().unwrap();
        let n = m.entry(path.to_string()).or_default();
        *n += 1;
        *n
    }
    fn get(&self, path: &str) -> usize {
        self.by_path.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// What a request looked like when it reached the application.
async fn echo(State(hits): State<Arc<Hits>>, req: Request) -> Json<Value> {
    let (parts, body) = req.into_parts();
    hits.hit(parts.uri.path());
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let values: Vec<&str> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .collect();
        headers.insert(name.as_str().to_string(), json!(values.join(" | ")));
    }
    let caller = parts
        .extensions
        .get::<sinew::sign::VerifiedCaller>()
        .map(|c| c.key_id.clone());
    let ctx = CallContext::current();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    Json(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "caller": caller,
        "remaining_ms": ctx.and_then(|c| c.remaining()).map(|d| d.as_millis() as u64),
        "priority": ctx.map(|c| c.priority().as_str()),
        "body_len": body.len(),
    }))
}

/// FNV-1a over a stream, and its length: checks a large body arrived whole
/// without holding it.
#[derive(Default)]
struct Fnv {
    hash: u64,
    len: u64,
}

impl Fnv {
    fn new() -> Self {
        Fnv {
            hash: 0xcbf29ce484222325,
            len: 0,
        }
    }
    fn update(&mut self, data: &[u8]) {
        for b in data {
            self.hash ^= u64::from(*b);
            self.hash = self.hash.wrapping_mul(0x100000001b3);
        }
        self.len += data.len() as u64;
    }
}

/// The byte at `i` of the test pattern.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 7)) as u8
}

fn pattern_chunk(start: u64, len: usize) -> Bytes {
    (0..len as u64)
        .map(|i| pattern(start + i))
        .collect::<Vec<u8>>()
        .into()
}

fn pattern_fnv(total: u64) -> Fnv {
    let mut f = Fnv::new();
    let mut at = 0;
    while at < total {
        let n = (total - at).min(64 * 1024);
        f.update(&pattern_chunk(at, n as usize));
        at += n;
    }
    f
}

/// A streamed body of the test pattern, `total` bytes, no length given.
fn pattern_stream(
    total: u64,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, std::convert::Infallible>>> {
    let chunk = 64 * 1024u64;
    let chunks = total.div_ceil(chunk);
    StreamBody::new(futures_util::stream::iter(0..chunks).map(move |c| {
        let start = c * chunk;
        let n = (total - start).min(chunk) as usize;
        Ok(Frame::data(pattern_chunk(start, n)))
    }))
}

async fn upload(body: axum::body::Body) -> Json<Value> {
    let mut f = Fnv::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => f.update(&c),
            Err(_) => return Json(json!({ "error": "body cut" })),
        }
    }
    Json(json!({ "len": f.len, "hash": format!("{:016x}", f.hash) }))
}

async fn download(Path(n): Path<u64>) -> impl IntoResponse {
    let body = axum::body::Body::from_stream(pattern_stream(n).into_data_stream());
    ([("content-type", "application/octet-stream")], body)
}

async fn slow(Path(ms): Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "slow"
}

/// 503 on the first call of each path, then the echo.
async fn flaky(State(hits): State<Arc<Hits>>, req: Request) -> axum::response::Response {
    let path = req.uri().path().to_string();
    if hits.get(&path) == 0 {
        hits.hit(&path);
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    echo(State(hits), req).await.into_response()
}

fn app(hits: Arc<Hits>) -> Router {
    Router::new()
        .route("/echo/{*rest}", any(echo))
        .route("/flaky/{what}", get(flaky))
        .route("/upload", post(upload))
        .route("/download/{n}", get(download))
        .route("/slow/{ms}", get(slow))
        .with_state(hits)
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A backend that verifies signatures with the test key (the far service).
async fn verifying_backend(hits: Arc<Hits>) -> SocketAddr {
    let server: sinew::config::ServerConfig = toml::from_str(
        "[verify]\nkeys = [{ key_id = \"orders\", key = { env = \"SINEW_PROXY_TEST_KEY\" } }]\n",
    )
    .unwrap();
    serve(app(hits).layer(ServerStack::from_config(&server).unwrap())).await
}

async fn start(text: &str) -> Running {
    Proxy::from_toml(text, "proxy.toml")
        .unwrap()
        .bind()
        .await
        .unwrap()
}

fn signing_client() -> sinew::Client {
    let config = ClientConfig::from_toml(
        "[sign]\nkey_id = \"orders\"\nkey = { env = \"SINEW_PROXY_TEST_KEY\" }\n",
        "client.toml",
    )
    .unwrap();
    ClientBuilder::from_config(config)
        .no_retry()
        .build()
        .unwrap()
}

type Plain = HyperClient<hyper_util::client::legacy::connect::HttpConnector, sinew::Body>;

fn plain_client(h2: bool) -> Plain {
    HyperClient::builder(TokioExecutor::new())
        .http2_only(h2)
        .build_http()
}

async fn send(
    client: &Plain,
    req: http::Request<sinew::Body>,
) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let res = client.request(req).await.unwrap();
    let (parts, body) = res.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn json_of(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

/// Send raw bytes, read until the peer closes (or `limit` passes).
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn header<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v["headers"][name].as_str()
}

#[tokio::test]
async fn inbound_verifies_and_tells_the_application_who_called() {
    set_key();
    let hits = Arc::new(Hits::default());
    let upstream = serve(app(hits.clone())).await;
    let proxy = start(&format!(
        r#"
[server.verify]
accept = "any"
keys = [{{ key_id = "orders", key = {{ env = "SINEW_PROXY_TEST_KEY" }} }}]
[server.deadline]
max_timeout = "10s"
[proxy.inbound]
listen = "127.0.0.1:0"
upstream = "{upstream}"
"#
    ))
    .await;
    let inbound = proxy.inbound_addr().unwrap();
    let base = format!("http://{inbound}");

    // Signed, with a forged caller header, a deadline, a priority, a
    // hop-by-hop field and a forwarding chain: the application sees the
    // verified caller, the time left, the priority, this hop appended.
    let res = signing_client()
        .get(&format!("{base}/echo/a"))
        .query_param("q", "1")
        .header("x-sinew-caller", "admin")
        .header("connection", "x-hop")
        .header("x-hop", "dropped")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-end", "kept")
        .timeout(Duration::from_secs(5))
        .priority(Priority::High)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["via"], "1.1 sinew");
    let seen: Value = res.json().await.unwrap();
    assert_eq!(header(&seen, "x-sinew-caller"), Some("orders"), "{seen}");
    let left: f64 = header(&seen, "x-request-timeout").unwrap().parse().unwrap();
    assert!(left > 4.0 && left <= 5.0, "{left}");
    assert_eq!(header(&seen, "x-request-priority"), Some("high"));
    assert_eq!(header(&seen, "x-hop"), None);
    assert_eq!(header(&seen, "connection"), None);
    assert_eq!(header(&seen, "x-end"), Some("kept"));
    assert_eq!(
        header(&seen, "x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(
        header(&seen, "forwarded"),
        Some(format!("for=127.0.0.1;host=\"{inbound}\";proto=http").as_str())
    );
    assert_eq!(header(&seen, "via"), Some("1.1 sinew"));
    assert_eq!(header(&seen, "host"), Some(inbound.to_string().as_str()));
    assert_eq!(seen["query"], "q=1");

    // The caller's deadline is capped by [server.deadline] max_timeout.
    let seen: Value = signing_client()
        .get(&format!("{base}/echo/capped"))
        .timeout(Duration::from_secs(60))
        .send_json()
        .await
        .unwrap();
    let left: f64 = header(&seen, "x-request-timeout").unwrap().parse().unwrap();
    assert!(left <= 10.0 && left > 9.0, "{left}");

    // A signed POST: the body (within the verifier's limit) reaches the
    // application after its digest was checked.
    let seen: Value = signing_client()
        .post(&format!("{base}/echo/post"))
        .body(vec![7u8; 5000])
        .send_json()
        .await
        .unwrap();
    assert_eq!(seen["body_len"], 5000);
    assert!(header(&seen, "content-digest").is_some());

    // Unsigned: refused before the application.
    let client = plain_client(false);
    let (status, headers, body) = send(
        &client,
        http::Request::get(format!("{base}/echo/unsigned"))
            .header("x-sinew-caller", "orders")
            .body(sinew::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(json_of(&body)["reason"], "missing_signature");
    assert_eq!(hits.get("/echo/unsigned"), 0);

    // Tampered: signed for one path, sent to another; and a body changed
    // after signing. Both refused, neither reaches the application.
    let signer = sinew::sign::Signer::new(
        sinew::sign::SignConfig::rfc9421("orders"),
        sinew::sign::SecretKey::from_text(KEY).unwrap(),
    )
    .unwrap();
    let (mut parts, ()) = http::Request::get(format!("{base}/echo/signed"))
        .body(())
        .unwrap()
        .into_parts();
    signer.sign(&mut parts, b"").unwrap();
    parts.uri = format!("{base}/echo/tampered").parse().unwrap();
    let (status, _, body) = send(
        &client,
        http::Request::from_parts(parts, sinew::Body::empty()),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        json_of(&body)["reason"],
        "bad_signature",
        "{}",
        json_of(&body)
    );
    assert_eq!(hits.get("/echo/tampered"), 0);

    let (mut parts, ()) = http::Request::post(format!("{base}/echo/body"))
        .body(())
        .unwrap()
        .into_parts();
    signer.sign(&mut parts, b"amount=10").unwrap();
    let (status, _, body) = send(
        &client,
        http::Request::from_parts(parts, sinew::Body::full("amount=99")),
    )
    .await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    assert_eq!(hits.get("/echo/body"), 0);

    // The legacy profile (accept = "any"): the caller is its X-Service-ID.
    let legacy = ClientBuilder::from_config(
        ClientConfig::from_toml(
            "[sign]\nprofile = \"legacy\"\nkey_id = \"orders\"\nkey = { env = \"SINEW_PROXY_TEST_KEY\" }\n",
            "legacy.toml",
        )
        .unwrap(),
    )
    .build()
    .unwrap();
    let seen: Value = legacy
        .get(&format!("{base}/echo/legacy"))
        .send_json()
        .await
        .unwrap();
    assert_eq!(header(&seen, "x-sinew-caller"), Some("orders"));

    // The application down: 502 problem+json, no address leaked.
    let gone = start(
        r#"
[proxy.inbound]
listen = "127.0.0.1:0"
upstream = "127.0.0.1:9"
"#,
    )
    .await;
    let (status, _, body) = send(
        &client,
        http::Request::get(format!("http://{}/x", gone.inbound_addr().unwrap()))
            .body(sinew::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 502);
    let p = json_of(&body);
    assert_eq!(p["reason"], "upstream_unreachable");
    assert!(!p.to_string().contains("127.0.0.1:9"), "{p}");
}

const OUTBOUND_SIGNING: &str = r#"
[sign]
key_id = "orders"
key = { env = "SINEW_PROXY_TEST_KEY" }
[retry]
max_attempts = 2
base_delay = "1ms"
[proxy.outbound]
listen = "127.0.0.1:0"
"#;

#[tokio::test]
async fn outbound_calls_a_service_by_name_through_the_client_stack() {
    set_key();
    let hits = Arc::new(Hits::default());
    let a = verifying_backend(hits.clone()).await;
    let b = verifying_backend(hits.clone()).await;
    let proxy = start(&format!(
        "{OUTBOUND_SIGNING}\n[registry]\nstatic = {{ inventory = [\"{a}\", \"{b}\"] }}\n"
    ))
    .await;
    let outbound = proxy.outbound_addr().unwrap();
    let client = plain_client(false);

    // Host names the service; the call is signed (the backend verified it),
    // the application's deadline and priority become the call's.
    let (status, headers, body) = send(
        &client,
        http::Request::get(format!("http://{outbound}/echo/by-host?x=1"))
            .header("host", "inventory")
            .header("x-request-timeout", "3")
            .header("x-request-priority", "low")
            .header("x-sinew-caller", "forged")
            .header("proxy-authorization", "Basic Zm9vOmJhcg==")
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .body(sinew::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(headers["via"].to_str().unwrap().ends_with("1.1 sinew"));
    let seen = json_of(&body);
    assert_eq!(seen["caller"], "orders", "{seen}");
    assert_eq!(seen["query"], "x=1");
    let left = seen["remaining_ms"].as_u64().unwrap();
    assert!(left > 2000 && left <= 3000, "{left}");
    assert_eq!(seen["priority"], "low");
    assert_eq!(header(&seen, "x-sinew-caller"), None);
    assert_eq!(header(&seen, "proxy-authorization"), None);
    assert_eq!(header(&seen, "x-hop"), None);
    let host = header(&seen, "host").unwrap();
    assert!(host == a.to_string() || host == b.to_string(), "{host}");
    assert!(header(&seen, "signature-input")
        .unwrap()
        .contains("keyid=\"orders\""));

    // As an HTTP proxy: the absolute-form target names the service.
    let text = raw(
        outbound,
        b"GET http://inventory/echo/absolute HTTP/1.1\r\nHost: inventory\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"caller\":\"orders\""), "{text}");

    // A failed attempt (503) is retried on the other instance.
    let (status, _, body) = send(
        &client,
        http::Request::get(format!("http://{outbound}/flaky/once"))
            .header("host", "inventory")
            .body(sinew::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(hits.get("/flaky/once"), 2);

    // What the proxy refuses, as problem+json.
    for (req, status, reason) in [
        (
            http::Request::get(format!("http://{outbound}/x")).header("host", "nowhere"),
            502,
            "unknown_service",
        ),
        (
            http::Request::get(format!("http://{outbound}/x")).header("host", "in$valid"),
            400,
            "bad_service_name",
        ),
        (
            http::Request::get(format!("http://{outbound}/x"))
                .header("host", "inventory")
                .header("x-request-timeout", "soon"),
            400,
            "invalid_header",
        ),
        (
            http::Request::get(format!("http://{outbound}/echo/late"))
                .header("host", "inventory")
                .header("x-request-timeout", "0.001"),
            504,
            "deadline_exceeded",
        ),
    ] {
        let (got, headers, body) = send(&client, req.body(sinew::Body::empty()).unwrap()).await;
        assert_eq!(got, status, "{}", String::from_utf8_lossy(&body));
        assert_eq!(headers["content-type"], "application/problem+json");
        assert_eq!(json_of(&body)["reason"], reason);
    }
    assert_eq!(hits.get("/echo/late"), 0);
    let text = raw(outbound, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert!(
        text.starts_with("HTTP/1.0 400") && text.contains("no_service"),
        "{text}"
    );
    let text = raw(
        outbound,
        b"CONNECT inventory:443 HTTP/1.1\r\nHost: inventory:443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 405") && text.contains("connect_unsupported"),
        "{text}"
    );

    // A body over [sign] body_limit with content-digest covered: 413, not
    // sent unsigned.
    let small = start(&format!(
        "[sign]\nkey_id = \"orders\"\nkey = {{ env = \"SINEW_PROXY_TEST_KEY\" }}\nbody_limit = 1024\n[proxy.outbound]\nlisten = \"127.0.0.1:0\"\n[registry]\nstatic = {{ inventory = [\"{a}\"] }}\n"
    ))
    .await;
    let (status, _, body) = send(
        &client,
        http::Request::post(format!(
            "http://{}/echo/big",
            small.outbound_addr().unwrap()
        ))
        .header("host", "inventory")
        .body(sinew::Body::full(vec![1u8; 4096]))
        .unwrap(),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(json_of(&body)["reason"], "body_too_large");
    assert_eq!(hits.get("/echo/big"), 0);
}

/// Two sidecars, HTTP/2 (h2c) on every hop: the calling application to its
/// outbound side, outbound to the far inbound side, inbound to the far
/// application. Bodies of 8 MiB stream both ways, one of unknown length.
#[tokio::test]
async fn two_sidecars_over_h2c_stream_bodies_both_ways() {
    set_key();
    let hits = Arc::new(Hits::default());
    let far_app = serve(app(hits.clone())).await;
    let far = start(&format!(
        r#"
[server.verify]
keys = [{{ key_id = "orders", key = {{ env = "SINEW_PROXY_TEST_KEY" }} }}]
[proxy.inbound]
listen = "127.0.0.1:0"
upstream = "{far_app}"
upstream_http2 = true
"#
    ))
    .await;
    let far_in = far.inbound_addr().unwrap();
    let near = start(&format!(
        r#"
[sign]
key_id = "orders"
key = {{ env = "SINEW_PROXY_TEST_KEY" }}
[pool]
http2 = true
[proxy.outbound]
listen = "127.0.0.1:0"
[registry]
static = {{ inventory = ["{far_in}"] }}
"#
    ))
    .await;
    let out = near.outbound_addr().unwrap();

    let res = h2_send(
        out,
        http::Request::get("http://inventory/echo/h2")
            .header("x-request-timeout", "7.5")
            .header("x-request-priority", "high")
            .body(sinew::Body::empty())
            .unwrap(),
    )
    .await;
    let (status, body) = (
        res.status(),
        res.into_body().collect().await.unwrap().to_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let seen = json_of(&body);
    assert_eq!(seen["version"], "HTTP/2.0");
    assert_eq!(header(&seen, "x-sinew-caller"), Some("orders"));
    assert_eq!(header(&seen, "x-request-priority"), Some("high"));
    let left: f64 = header(&seen, "x-request-timeout").unwrap().parse().unwrap();
    assert!(left > 6.5 && left <= 7.5, "{left}");
    // Two hops appended (the near outbound side, the far inbound side).
    assert_eq!(header(&seen, "via"), Some("2 sinew, 2 sinew"));

    // Without [server.verify]'s digest check the body need not be read
    // whole: a far side that does not verify.
    let open_far = start(&format!(
        "[proxy.inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"{far_app}\"\nupstream_http2 = true\n"
    ))
    .await;
    let open_in = open_far.inbound_addr().unwrap();
    let near2 = start(&format!(
        "[pool]\nhttp2 = true\n[proxy.outbound]\nlisten = \"127.0.0.1:0\"\n[registry]\nstatic = {{ inventory = [\"{open_in}\"] }}\n"
    ))
    .await;
    let out2 = near2.outbound_addr().unwrap();
    let total: u64 = 8 * 1024 * 1024;
    let want = pattern_fnv(total);
    for h2_client in [false, true] {
        let (target, host) = if h2_client {
            // HTTP/2 names the service in :authority.
            ("http://inventory".to_string(), None)
        } else {
            (format!("http://{out2}"), Some("inventory"))
        };
        let request = |method: http::Method, path: &str, body: sinew::Body| {
            let mut b = http::Request::builder()
                .method(method)
                .uri(format!("{target}{path}"));
            if let Some(h) = host {
                b = b.header("host", h);
            }
            b.body(body).unwrap()
        };
        let go = |req: http::Request<sinew::Body>| async move {
            if h2_client {
                h2_send(out2, req).await
            } else {
                plain_client(false).request(req).await.unwrap()
            }
        };
        let res = go(request(
            http::Method::POST,
            "/upload",
            sinew::Body::stream(pattern_stream(total)),
        ))
        .await;
        assert_eq!(res.status(), 200);
        let got = json_of(&res.into_body().collect().await.unwrap().to_bytes());
        assert_eq!(got["len"], total);
        assert_eq!(got["hash"], format!("{:016x}", want.hash));

        let res = go(request(
            http::Method::GET,
            &format!("/download/{total}"),
            sinew::Body::empty(),
        ))
        .await;
        assert_eq!(res.status(), 200);
        let mut f = Fnv::new();
        let mut body = res.into_body();
        while let Some(frame) = body.frame().await {
            if let Ok(d) = frame.unwrap().into_data() {
                f.update(&d);
            }
        }
        assert_eq!((f.len, f.hash), (want.len, want.hash));
    }
}

/// One HTTP/2 (h2c) request on a fresh connection to `addr`, whatever the
/// URI's authority says (it becomes :authority).
async fn h2_send(
    addr: SocketAddr,
    req: http::Request<sinew::Body>,
) -> http::Response<hyper::body::Incoming> {
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    sender.send_request(req).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_application_must_answer_within_request_timeout() {
    let hits = Arc::new(Hits::default());
    let upstream = serve(app(hits)).await;
    let proxy = start(&format!(
        "[proxy.inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\nrequest_timeout = \"2s\"\n"
    ))
    .await;
    let base = format!("http://{}", proxy.inbound_addr().unwrap());
    let client = plain_client(false);
    let started = tokio::time::Instant::now();
    let (status, _, body) = send(
        &client,
        http::Request::get(format!("{base}/slow/5000"))
            .body(sinew::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 504);
    assert_eq!(json_of(&body)["reason"], "upstream_timeout");
    assert_eq!(started.elapsed().as_secs(), 2);
    let (status, _, _) = send(
        &client,
        http::Request::get(format!("{base}/slow/1500"))
            .body(sinew::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(start_paused = true)]
async fn slow_and_idle_connections_are_closed() {
    let hits = Arc::new(Hits::default());
    let upstream = serve(app(hits)).await;
    let proxy = start(&format!(
        "[proxy.inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\nheader_read_timeout = \"10s\"\nidle_timeout = \"60s\"\nrequest_timeout = \"off\"\n"
    ))
    .await;
    let addr = proxy.inbound_addr().unwrap();

    // A client that never finishes its request head is cut at 10 s.
    let started = tokio::time::Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /slow/1 HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "{waited:?}"
    );

    // A keep-alive connection: kept while a request runs past the idle
    // timeout (a 100 s answer), closed 60 s after its last response.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /slow/100000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let answered = tokio::time::Instant::now();
    assert!(
        answered - started >= Duration::from_secs(110),
        "{:?}",
        answered - started
    );
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest).await;
    let idle = answered.elapsed();
    assert!(
        idle >= Duration::from_secs(60) && idle < Duration::from_secs(61),
        "{idle:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn connections_over_the_limit_wait_to_be_accepted() {
    let hits = Arc::new(Hits::default());
    let upstream = serve(app(hits)).await;
    let proxy = start(&format!(
        "[proxy.inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\nmax_connections = 1\nidle_timeout = \"off\"\n"
    ))
    .await;
    let addr = proxy.inbound_addr().unwrap();
    let ask = b"GET /echo/limit HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(ask).await.unwrap();
    let mut head = [0u8; 12];
    first.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // The second connection is made (the kernel's backlog) but not served
    // while the first stays open ...
    let mut second = TcpStream::connect(addr).await.unwrap();
    second.write_all(ask).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(30), second.read_exact(&mut head)).await;
    assert!(waited.is_err(), "served over the limit");
    // ... and is once the first closes.
    drop(first);
    tokio::time::timeout(Duration::from_secs(5), second.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
}

#[tokio::test(start_paused = true)]
async fn drain_finishes_requests_in_flight_and_refuses_new_connections() {
    let hits = Arc::new(Hits::default());
    let upstream = serve(app(hits)).await;
    let proxy = start(&format!(
        "[proxy]\ndrain_timeout = \"30s\"\n[proxy.inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\nrequest_timeout = \"off\"\n[proxy.admin]\nlisten = \"127.0.0.1:0\"\n"
    ))
    .await;
    let addr = proxy.inbound_addr().unwrap();
    let admin = proxy.admin_addr().unwrap();
    let client = plain_client(false);
    let (status, _, body) = send(
        &client,
        http::Request::get(format!("http://{admin}/healthz"))
            .body(sinew::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"ok\n"[..]));

    // Requests in flight: one answered in 10 s, one in 100 s (past the
    // drain timeout).
    let short = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .request(
                    http::Request::get(format!("http://{addr}/slow/10000"))
                        .body(sinew::Body::empty())
                        .unwrap(),
                )
                .await
                .map(|r| r.status())
        }
    });
    let long = tokio::spawn({
        let client = plain_client(false);
        async move {
            client
                .request(
                    http::Request::get(format!("http://{addr}/slow/100000"))
                        .body(sinew::Body::empty())
                        .unwrap(),
                )
                .await
                .map(|r| r.status())
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = tokio::time::Instant::now();
    let draining = proxy.draining();
    draining.drain();
    let (status, _, _) = send(
        &plain_client(false),
        http::Request::get(format!("http://{admin}/healthz"))
            .body(sinew::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503);
    let waited = tokio::spawn(proxy.wait());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "a new connection was accepted while draining"
    );
    assert_eq!(short.await.unwrap().unwrap(), 200);
    assert!(
        long.await.unwrap().is_err(),
        "the request past the drain timeout was cut"
    );
    waited.await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(30) && took < Duration::from_secs(31),
        "{took:?}"
    );
}

fn recorder() -> &'static sinew::metrics::prometheus::MetricsHandle {
    static HANDLE: OnceLock<sinew::metrics::prometheus::MetricsHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        sinew::metrics::prometheus::PrometheusBuilder::new()
            .install()
            .unwrap()
    })
}

#[tokio::test]
async fn admin_serves_metrics_by_route_template() {
    let handle = recorder().clone();
    let hits = Arc::new(Hits::default());
    let upstream = serve(app(hits)).await;
    let proxy = Proxy::from_toml(
        &format!(
            r#"
[server.metrics]
[proxy.inbound]
listen = "127.0.0.1:0"
upstream = "{upstream}"
routes = ["/echo/{{*rest}}", "/slow/{{ms}}"]
[proxy.admin]
listen = "127.0.0.1:0"
"#
        ),
        "proxy.toml",
    )
    .unwrap()
    .metrics(handle)
    .bind()
    .await
    .unwrap();
    let client = plain_client(false);
    let base = format!("http://{}", proxy.inbound_addr().unwrap());
    for path in ["/echo/a", "/echo/b/c", "/slow/1", "/nothing/here"] {
        send(
            &client,
            http::Request::get(format!("{base}{path}"))
                .body(sinew::Body::empty())
                .unwrap(),
        )
        .await;
    }
    let admin = proxy.admin_addr().unwrap();
    let (status, headers, body) = send(
        &client,
        http::Request::get(format!("http://{admin}/metrics"))
            .body(sinew::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8_lossy(&body);
    for want in [
        r#"http_route="/echo/{*rest}""#,
        r#"http_route="/slow/{ms}""#,
        r#"http_route="unmatched""#,
        r#"sinew_proxy_connections_total{side="inbound"}"#,
    ] {
        assert!(text.contains(want), "{want} not in:\n{text}");
    }
    assert!(
        !text.contains("/echo/a\""),
        "a raw path became a label:\n{text}"
    );
    let (status, _, _) = send(
        &client,
        http::Request::get(format!("http://{admin}/nope"))
            .body(sinew::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
}

#[test]
fn bad_config_is_a_clear_start_up_error() {
    set_key();
    let err = |text: &str| {
        Proxy::from_toml(text, "proxy.toml")
            .unwrap_err()
            .to_string()
    };
    let e = err("[proxy.inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:1\"\nidle_timeot = \"5s\"\n");
    assert!(
        e.contains("proxy.toml") && e.contains("line 4") && e.contains("idle_timeot"),
        "{e}"
    );
    let e =
        err("[proxy.outbound]\nlisten = \"127.0.0.1:0\"\n[services.inventory]\ntimeout = \"2s\"\n");
    assert!(e.contains("no endpoints for service \"inventory\""), "{e}");
    let e = err("timeout = \"1s\"\n");
    assert!(e.contains("no [proxy] section"), "{e}");
    let e = err("[proxy]\ndrain_timeout = \"5s\"\n");
    assert!(e.contains("nothing to serve"), "{e}");
    let e = err("[server.verify]\nkeys = [{ key_id = \"a\", key = { env = \"SINEW_SURELY_UNSET_7\" } }]\n[proxy.inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:1\"\n");
    assert!(e.contains("SINEW_SURELY_UNSET_7"), "{e}");
    let e = err("[server.register]\nservice = \"a\"\naddress = \"127.0.0.1:1\"\n[proxy.inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:1\"\n");
    assert!(e.contains("[registry]"), "{e}");
    let e = err("[proxy.outbound]\nlisten = \"0.0.0.0:4140\"\n");
    assert!(e.contains("allow_remote"), "{e}");
}

#[tokio::test]
async fn an_address_in_use_is_named() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let e = Proxy::from_toml(
        &format!("[proxy.inbound]\nlisten = \"{addr}\"\nupstream = \"127.0.0.1:1\"\n"),
        "proxy.toml",
    )
    .unwrap()
    .bind()
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&addr.to_string()) && e.contains("[proxy.inbound]"),
        "{e}"
    );
}

#[test]
fn the_example_config_parses() {
    std::env::set_var("ORDERS_SIGNING_KEY", "example-key");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/proxy.toml");
    let proxy = Proxy::from_file(&path).unwrap();
    let c = proxy.config();
    assert!(c.inbound.is_some() && c.outbound.is_some() && c.admin.is_some());
    assert!(proxy.services().unwrap().knows("inventory"));
}

/// Keeps the Fnv helpers honest.
#[test]
fn the_pattern_hash_sees_every_byte() {
    let a = pattern_fnv(100_000);
    let mut b = Fnv::new();
    let mut chunk = pattern_chunk(0, 100_000).to_vec();
    b.update(&chunk);
    assert_eq!((a.len, a.hash), (b.len, b.hash));
    chunk[99_999] ^= 1;
    let mut c = Fnv::new();
    c.update(&chunk);
    assert_ne!(a.hash, c.hash);
}
