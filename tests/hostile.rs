#![allow(clippy::unwrap_used)]
//! Hostile input against the server stack, over raw TCP on 127.0.0.1:
//! malformed, huge, repeated, non-UTF-8 and control-byte values in every
//! header the server layers read get a clear 4xx (a problem+json with a
//! `reason` from our layers, or hyper's own 400/431 for what HTTP/1.1
//! itself forbids), never a 5xx or a dropped connection; and no mutation
//! of a signed request's covered parts is accepted.
//!
//! The stack is the facade's `ServerStack`, outermost first: sinew-metrics
//! `ServerMetricsLayer` → sinew-sign `VerifySignatureLayer` (RFC 9421 and
//! legacy) → sinew-deadline `ServerDeadlineLayer` → `ShedLayer` → an axum
//! `Router`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::Extension;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use proptest::prelude::*;
use sinew::server::ServerStack;
use sinew_core::CallContext;
use sinew_deadline::ShedLayer;
use sinew_metrics::ServerMetricsLayer;
use sinew_sign::{
    parse_components, Accept, SecretKey, SignConfig, Signer, StaticKeyStore, VerifiedCaller,
    Verifier, VerifyConfig, VerifySignatureLayer,
};

const RFC_SECRET: &str = "orders-secret";
const LEGACY_SECRET: &str = "legacy-secret";
/// What the signer covers: the defaults and one header.
const COVERED: &str = "@method @authority @path @query content-digest x-tenant";

async fn context(Extension(caller): Extension<VerifiedCaller>) -> Json<serde_json::Value> {
    let ctx = CallContext::current().expect("inside the deadline layer");
    Json(serde_json::json!({
        "key_id": caller.key_id,
        "priority": ctx.priority().as_str(),
        "remaining_ms": ctx.remaining().map(|d| d.as_millis() as u64),
        "trace_id": ctx.trace().map(|t| t.trace_id_hex()),
    }))
}

async fn echo(body: axum::body::Bytes) -> axum::body::Bytes {
    body
}

/// The stack, served once for the whole file on its own runtime.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let keys = StaticKeyStore::new()
                    .with_key("orders", SecretKey::from_text(RFC_SECRET).unwrap())
                    .with_legacy_key("legacy-svc", SecretKey::from_text(LEGACY_SECRET).unwrap());
                let verifier = Verifier::new(VerifyConfig::default().accept(Accept::Any), keys);
                let app = Router::new()
                    .route("/context", get(context))
                    .route("/echo", post(echo))
                    .layer(
                        ServerStack::new()
                            .metrics(ServerMetricsLayer::new())
                            .verify(VerifySignatureLayer::new(verifier))
                            .shed(ShedLayer::with_limit(64)),
                    );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        rx.recv().unwrap()
    })
}

/// A request as it goes on the wire (the header values are raw bytes, so
/// anything HTTP/1.1 lets through can be sent).
#[derive(Debug, Clone)]
struct Raw {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Raw {
    fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        for (k, v) in &self.headers {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(b"connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    fn with(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self
    }

    fn header(&self, name: &str) -> &[u8] {
        &self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .expect("header present")
            .1
    }

    fn replace(self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.without(name).with(name, value)
    }
}

/// A freshly signed (RFC 9421, new nonce) request.
fn signed(method: &str, path_and_query: &str, body: &[u8]) -> Raw {
    let addr = server();
    let signer = Signer::new(
        SignConfig::rfc9421("orders").components(parse_components(COVERED).unwrap()),
        SecretKey::from_text(RFC_SECRET).unwrap(),
    )
    .unwrap();
    let mut parts = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path_and_query}"))
        .header("x-tenant", "acme")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    signer.sign(&mut parts, body).unwrap();
    let mut headers = vec![("host".to_owned(), addr.to_string().into_bytes())];
    headers.extend(
        parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec())),
    );
    Raw {
        method: method.to_owned(),
        target: path_and_query.to_owned(),
        headers,
        body: body.to_vec(),
    }
}

/// A freshly signed legacy request.
fn legacy() -> Raw {
    let signer = Signer::new(
        SignConfig::legacy("legacy-svc"),
        SecretKey::from_text(LEGACY_SECRET).unwrap(),
    )
    .unwrap();
    let mut parts = http::Request::get("/context")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    signer.sign(&mut parts, b"").unwrap();
    let mut headers = vec![("host".to_owned(), b"inventory.internal".to_vec())];
    headers.extend(
        parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec())),
    );
    Raw {
        method: "GET".into(),
        target: "/context".into(),
        headers,
        body: Vec::new(),
    }
}

/// What came back.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self}"))
    }

    fn reason(&self) -> Option<String> {
        self.json()["reason"].as_str().map(str::to_owned)
    }

    fn is_problem(&self) -> bool {
        self.content_type.as_deref() == Some("application/problem+json")
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} {}",
            self.status,
            self.content_type,
            String::from_utf8_lossy(&self.body[..self.body.len().min(400)])
        )
    }
}

fn send(raw: &Raw) -> Answer {
    send_bytes(&raw.bytes())
}

fn send_bytes(bytes: &[u8]) -> Answer {
    let mut s = TcpStream::connect(server()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may answer and close before reading all of a huge head.
    let _ = s.write_all(bytes);
    let mut buf = Vec::new();
    if let Err(e) = s.read_to_end(&mut buf) {
        // A reset after a complete answer (unread input) is fine.
        assert!(!buf.is_empty(), "no answer: {e}");
    }
    parse_answer(&buf)
}

fn parse_answer(buf: &[u8]) -> Answer {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut content_type = None;
    let mut chunked = false;
    for line in lines {
        let (k, v) = line.split_once(':').unwrap();
        match k.to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(v.trim().to_owned()),
            "transfer-encoding" => chunked = v.trim().eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    let mut body = buf[end + 4..].to_vec();
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..i]).unwrap().trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[i + 2..i + 2 + size]);
            rest = &rest[i + 2 + size + 2..];
        }
        body = out;
    }
    Answer {
        status,
        content_type,
        body,
    }
}

/// A refusal a person and a program can act on: a 4xx problem+json with a
/// title and a `reason` (or, when `protocol` allows it, hyper's own 400 or
/// 431 for bytes HTTP/1.1 forbids or a head over its size limit).
fn assert_clear_refusal(a: &Answer, protocol: bool, what: &str) {
    assert!(
        (400..500).contains(&a.status),
        "{what}: expected a 4xx, got {a}"
    );
    if a.is_problem() {
        let doc = a.json();
        assert!(
            doc["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{what}: no reason in {a}"
        );
        assert!(
            doc["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{what}: {a}"
        );
        assert_eq!(doc["status"], a.status, "{what}");
    } else {
        assert!(
            protocol && matches!(a.status, 400 | 431),
            "{what}: not a problem document: {a}"
        );
    }
}

/// The hostile values tried in every header: malformed, huge, non-UTF-8
/// (obs-text, which HTTP/1.1 lets through), and control bytes (which it
/// does not). `(label, value, hyper may refuse it itself)`.
fn hostile_values() -> Vec<(&'static str, Vec<u8>, bool)> {
    let issue: Vec<String> = (1..=45_000).map(|k| format!("\"{k:x}\"")).collect();
    vec![
        ("empty", b"".to_vec(), false),
        ("blank", b"   ".to_vec(), false),
        ("garbage", b"((=:;,\\\"".to_vec(), false),
        ("negative", b"-1".to_vec(), false),
        ("non-finite", b"NaN".to_vec(), false),
        ("64 KiB", vec![b'a'; 64 * 1024], false),
        (
            "the issue's 311 KB list",
            format!("sig1=({});created=1;keyid=\"orders\"", issue.join(" ")).into_bytes(),
            true,
        ),
        ("non-UTF-8", vec![0xff, 0xfe, 0x80, b'1', 0xc3, 0x28], false),
        ("control byte", b"1\x01".to_vec(), true),
        ("NUL", b"a\x00b".to_vec(), true),
        ("DEL", b"\x7f".to_vec(), true),
    ]
}

/// Every header the server layers read.
const HEADERS: [&str; 12] = [
    "signature-input",
    "signature",
    "content-digest",
    "x-service-id",
    "x-timestamp",
    "x-signature",
    "x-request-timeout",
    "x-request-deadline-at",
    "grpc-timeout",
    "x-request-priority",
    "traceparent",
    "tracestate",
];

/// Whether a bad value of `name` must be refused (the trace headers are
/// ignored when invalid, as W3C Trace Context asks).
fn refused(name: &str) -> bool {
    !matches!(name, "traceparent" | "tracestate")
}

#[test]
fn hostile_values_in_every_header_get_a_clear_4xx() {
    for name in HEADERS {
        for (label, value, protocol) in hostile_values() {
            // On a validly signed request (so the later layers are
            // reached; legacy-signed for the legacy headers, which are read
            // only without an RFC 9421 signature), the header replaced,
            // added once, and repeated.
            let base = || {
                if matches!(name, "x-service-id" | "x-timestamp" | "x-signature") {
                    legacy()
                } else {
                    signed("GET", "/context", b"")
                }
            };
            let mut cases = vec![
                ("replaced", base().replace(name, value.clone())),
                ("added", base().with(name, value.clone())),
            ];
            if value.len() < 1024 {
                let mut r = base();
                for _ in 0..50 {
                    r = r.with(name, value.clone());
                }
                cases.push(("repeated 50 times", r));
            }
            // Unsigned, with only this header.
            cases.push((
                "alone",
                Raw {
                    method: "GET".into(),
                    target: "/context".into(),
                    headers: vec![("host".into(), b"h".to_vec()), (name.into(), value.clone())],
                    body: Vec::new(),
                },
            ));
            for (how, raw) in cases {
                let what = format!("{name} {label} ({how})");
                let a = send(&raw);
                let ignored = !refused(name) && how != "alone";
                if ignored && !protocol {
                    // An invalid trace header is ignored: served.
                    assert_eq!(a.status, 200, "{what}: {a}");
                    continue;
                }
                if a.status == 200 {
                    assert!(ignored, "{what}: accepted: {a}");
                    continue;
                }
                assert_clear_refusal(&a, protocol, &what);
            }
        }
    }
}

#[test]
fn each_header_gets_the_reason_of_its_layer() {
    let cases: Vec<(Raw, u16, &str)> = vec![
        (
            signed("GET", "/context", b"").replace("signature-input", "(("),
            400,
            "malformed",
        ),
        (
            signed("GET", "/context", b"").replace("signature-input", vec![b'a'; 9000]),
            400,
            "limit_exceeded",
        ),
        (
            signed("GET", "/context", b"").replace("signature", "sig1=:AAAA:"),
            401,
            "bad_signature",
        ),
        (
            signed("POST", "/echo", b"{}").replace("content-digest", "sha-256=:AAAA:"),
            401,
            "bad_signature",
        ),
        (
            legacy().replace("x-service-id", "nobody"),
            401,
            "unknown_key",
        ),
        (legacy().replace("x-timestamp", "soon"), 400, "malformed"),
        (legacy().replace("x-signature", "00"), 400, "malformed"),
        (
            legacy().with("x-timestamp", "1"),
            400,
            "malformed", // repeated
        ),
        (
            signed("GET", "/context", b"").with("x-request-timeout", "-1"),
            400,
            "negative",
        ),
        (
            signed("GET", "/context", b"").with("x-request-deadline-at", "2026-13-01T00:00:00"),
            400,
            "out_of_range",
        ),
        (
            signed("GET", "/context", b"").with("grpc-timeout", "1x"),
            400,
            "malformed",
        ),
        (
            signed("GET", "/context", b"").with("x-request-priority", "urgent"),
            400,
            "invalid_priority",
        ),
        (
            signed("GET", "/context", b"")
                .with("x-request-priority", "high")
                .with("x-request-priority", vec![0xff]),
            400,
            "invalid_priority",
        ),
        (
            signed("GET", "/context", b"").with("x-request-timeout", "0"),
            408,
            "deadline_expired",
        ),
    ];
    for (raw, status, reason) in cases {
        let a = send(&raw);
        assert_eq!(a.status, status, "{raw:?}: {a}");
        assert!(a.is_problem(), "{a}");
        assert_eq!(a.reason().as_deref(), Some(reason), "{a}");
    }
    // A valid request passes, with what it asked for.
    let a = send(
        &signed("GET", "/context", b"")
            .with("x-request-priority", "low")
            .with("x-request-timeout", "2.5")
            .with(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
    );
    assert_eq!(a.status, 200, "{a}");
    let doc = a.json();
    assert_eq!(doc["key_id"], "orders");
    assert_eq!(doc["priority"], "low");
    assert!(doc["remaining_ms"].as_u64().unwrap() <= 2500);
    assert_eq!(doc["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let a = send(&legacy());
    assert_eq!(a.status, 200, "{a}");
    assert_eq!(a.json()["key_id"], "legacy-svc");
    // An invalid trace parent is ignored: a fresh trace.
    let a = send(&signed("GET", "/context", b"").with(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    ));
    assert_eq!(a.status, 200, "{a}");
    assert_ne!(a.json()["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

/// One meaningful change to a covered part of a signed request.
#[derive(Debug, Clone)]
enum Mutation {
    Method(usize),
    Authority(u16),
    Path(String),
    Query(String),
    Body(usize, u8),
    BodyAppend(u8),
    BodyCut(usize),
    Tenant(String),
    TenantRemoved,
    TenantRepeated,
    Digest(usize),
    Mac(usize, u8),
    Label,
    Created(i64),
    Expires,
    KeyId(String),
    Nonce(String),
    Alg(String),
    ParamAdded(String),
    ComponentRemoved(usize),
    ComponentSwapped(usize),
    ComponentAdded(String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0usize..4).prop_map(Mutation::Method),
        (1u16..65535).prop_map(Mutation::Authority),
        "[a-z0-9/._~%-]{0,12}".prop_map(Mutation::Path),
        "[a-z0-9=&+%]{1,12}".prop_map(Mutation::Query),
        (0usize..64, 1u8..=255).prop_map(|(i, x)| Mutation::Body(i, x)),
        any::<u8>().prop_map(Mutation::BodyAppend),
        (1usize..64).prop_map(Mutation::BodyCut),
        "[a-z0-9-]{0,8}".prop_map(Mutation::Tenant),
        Just(Mutation::TenantRemoved),
        Just(Mutation::TenantRepeated),
        (0usize..32).prop_map(Mutation::Digest),
        (0usize..32, 1u8..=255).prop_map(|(i, x)| Mutation::Mac(i, x)),
        Just(Mutation::Label),
        (-400i64..400)
            .prop_filter("a change", |d| *d != 0)
            .prop_map(Mutation::Created),
        Just(Mutation::Expires),
        "[a-z]{1,8}".prop_map(Mutation::KeyId),
        "[A-Za-z0-9_-]{1,22}".prop_map(Mutation::Nonce),
        "[a-z0-9-]{1,12}".prop_map(Mutation::Alg),
        "[a-z]{1,6}".prop_map(Mutation::ParamAdded),
        (0usize..6).prop_map(Mutation::ComponentRemoved),
        (0usize..5).prop_map(Mutation::ComponentSwapped),
        prop_oneof![
            Just("\"x-other\"".to_owned()),
            Just("\"@target-uri\"".to_owned()),
            Just("\"@scheme\"".to_owned()),
            Just("\"@request-target\"".to_owned()),
        ]
        .prop_map(Mutation::ComponentAdded),
    ]
}

/// `raw` with `m` applied; `None` when `m` would change nothing.
fn mutate(raw: &Raw, m: &Mutation) -> Option<Raw> {
    let mut r = raw.clone();
    let input = String::from_utf8(r.header("signature-input").to_vec()).unwrap();
    let set_input = |r: Raw, text: String| r.replace("signature-input", text);
    // `sig1=(<components>);<params>`
    let open = input.find('(').unwrap();
    let close = input.find(')').unwrap();
    let components: Vec<&str> = input[open + 1..close].split(' ').collect();
    let params = &input[close + 1..];
    let with_components = |list: &[&str]| format!("sig1=({}){params}", list.join(" "));
    Some(match m {
        Mutation::Method(i) => {
            let other = ["GET", "PUT", "PATCH", "DELETE"][*i];
            r.method = other.to_owned();
            r
        }
        Mutation::Authority(port) => {
            let addr = server();
            if *port == addr.port() {
                return None;
            }
            r.replace("host", format!("127.0.0.1:{port}"))
        }
        Mutation::Path(p) => {
            let (path, query) = r.target.split_once('?').unwrap_or((&r.target, ""));
            let new = format!("/echo{p}");
            if new == path || p.contains("//") {
                return None;
            }
            r.target = if query.is_empty() {
                new
            } else {
                format!("{new}?{query}")
            };
            r
        }
        Mutation::Query(q) => {
            let (path, query) = r.target.split_once('?').unwrap_or((&r.target, ""));
            if q == query {
                return None;
            }
            r.target = format!("{path}?{q}");
            r
        }
        Mutation::Body(i, x) => {
            let i = i % r.body.len();
            r.body[i] ^= x;
            r
        }
        Mutation::BodyAppend(x) => {
            r.body.push(*x);
            r
        }
        Mutation::BodyCut(n) => {
            let keep = r.body.len().saturating_sub(*n);
            r.body.truncate(keep);
            r
        }
        Mutation::Tenant(t) => {
            if t == "acme" {
                return None;
            }
            r.replace("x-tenant", t.clone())
        }
        Mutation::TenantRemoved => r.without("x-tenant"),
        Mutation::TenantRepeated => r.with("x-tenant", "acme"),
        Mutation::Digest(i) => {
            let d = String::from_utf8(r.header("content-digest").to_vec()).unwrap();
            let b64 = d.trim_start_matches("sha-256=:").trim_end_matches(':');
            let mut bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            bytes[*i] ^= 1;
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            r.replace("content-digest", format!("sha-256=:{b64}:"))
        }
        Mutation::Mac(i, x) => {
            let s = String::from_utf8(r.header("signature").to_vec()).unwrap();
            let b64 = s.trim_start_matches("sig1=:").trim_end_matches(':');
            let mut bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            bytes[*i] ^= x;
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            r.replace("signature", format!("sig1=:{b64}:"))
        }
        // The label is not signed (a verifier may relabel); what matters is
        // that the signature checked is the one its input names.
        Mutation::Label => set_input(r, input.replacen("sig1=", "sig2=", 1)),
        Mutation::Created(d) => {
            let created: i64 = param(&input, "created").parse().unwrap();
            let text = input.replacen(
                &format!("created={created}"),
                &format!("created={}", created + d),
                1,
            );
            set_input(r, text)
        }
        Mutation::Expires => {
            let created: i64 = param(&input, "created").parse().unwrap();
            set_input(r, format!("{input};expires={}", created + 60))
        }
        Mutation::KeyId(k) => {
            if k == "orders" {
                return None;
            }
            set_input(
                r,
                input.replacen("keyid=\"orders\"", &format!("keyid=\"{k}\""), 1),
            )
        }
        Mutation::Nonce(n) => {
            let old = param(&input, "nonce");
            if old.trim_matches('"') == n {
                return None;
            }
            set_input(r, input.replacen(&old, &format!("\"{n}\""), 1))
        }
        Mutation::Alg(a) => {
            if a == "hmac-sha256" {
                return None;
            }
            set_input(
                r,
                input.replacen("alg=\"hmac-sha256\"", &format!("alg=\"{a}\""), 1),
            )
        }
        Mutation::ParamAdded(p) => set_input(r, format!("{input};{p}=1")),
        Mutation::ComponentRemoved(i) => {
            let mut list = components.clone();
            list.remove(i % list.len());
            set_input(r, with_components(&list))
        }
        Mutation::ComponentSwapped(i) => {
            let mut list = components.clone();
            let i = i % (list.len() - 1);
            list.swap(i, i + 1);
            set_input(r, with_components(&list))
        }
        Mutation::ComponentAdded(c) => {
            let mut list = components.clone();
            list.push(c);
            set_input(r, with_components(&list))
        }
    })
}

/// The value of the signature parameter `name` as written.
fn param(input: &str, name: &str) -> String {
    let start = input.find(&format!(";{name}=")).unwrap() + name.len() + 2;
    let rest = &input[start..];
    rest[..rest.find(';').unwrap_or(rest.len())].to_owned()
}

/// A signed POST whose covered parts the mutations change.
fn target() -> Raw {
    signed(
        "POST",
        "/echo?sku=42&qty=1",
        b"{\"order\":7,\"lines\":[1,2,3]}",
    )
}

#[test]
fn every_kind_of_mutation_is_refused() {
    let all = [
        Mutation::Method(0),
        Mutation::Method(3),
        Mutation::Authority(1),
        Mutation::Path("%zz".into()),
        Mutation::Path("/".into()),
        Mutation::Query("sku=42".into()),
        Mutation::Query("%".into()),
        Mutation::Body(0, 1),
        Mutation::BodyAppend(b' '),
        Mutation::BodyCut(64),
        Mutation::Tenant(String::new()),
        Mutation::Tenant("acme2".into()),
        Mutation::TenantRemoved,
        Mutation::TenantRepeated,
        Mutation::Digest(31),
        Mutation::Mac(0, 0x80),
        Mutation::Mac(31, 1),
        Mutation::Label,
        Mutation::Created(-1),
        Mutation::Created(1),
        Mutation::Expires,
        Mutation::KeyId("billing".into()),
        Mutation::Nonce("x".into()),
        Mutation::Alg("hmac-sha512".into()),
        Mutation::ParamAdded("tag".into()),
        Mutation::ParamAdded("ext".into()),
        Mutation::ComponentRemoved(0),
        Mutation::ComponentRemoved(5),
        Mutation::ComponentSwapped(0),
        Mutation::ComponentAdded("\"x-other\"".into()),
        Mutation::ComponentAdded("\"@target-uri\"".into()),
    ];
    for m in all {
        let raw = mutate(&target(), &m).expect("a change");
        let a = send(&raw);
        assert!(a.status != 200, "{m:?} accepted: {a}");
        assert_clear_refusal(&a, false, &format!("{m:?}"));
    }
    assert_eq!(send(&target()).status, 200);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// No mutation of a covered part is accepted, and none gets a 5xx.
    #[test]
    fn no_mutation_of_a_signed_request_is_accepted(m in mutation()) {
        // One mutation at a time: two could undo each other.
        let Some(raw) = mutate(&target(), &m) else {
            return Ok(());
        };
        let a = send(&raw);
        prop_assert!(a.status != 200, "{:?} accepted: {}", m, a);
        prop_assert!(a.status < 500, "{:?}: {}", m, a);
        assert_clear_refusal(&a, false, &format!("{m:?}"));
        // The unmutated request (signed afresh) passes: the refusal was
        // the mutation's doing.
        let ok = send(&target());
        prop_assert_eq!(ok.status, 200, "{}", ok);
    }

    /// Arbitrary header values (any bytes HTTP/1.1 carries) and bodies in
    /// the headers the layers read, on a signed request: never a 5xx.
    #[test]
    fn no_input_gets_a_5xx(
        extra in proptest::collection::vec(
            (0usize..HEADERS.len(), proptest::collection::vec(prop_oneof![9u8..=9, 32u8..=126, 128u8..=255], 0..80)),
            0..6,
        ),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        signed_first in any::<bool>(),
    ) {
        let mut raw = if signed_first {
            signed("POST", "/echo", &body)
        } else {
            Raw { method: "POST".into(), target: "/echo".into(), headers: vec![("host".into(), b"h".to_vec())], body: body.clone() }
        };
        for (i, value) in extra {
            raw = raw.with(HEADERS[i], value);
        }
        let a = send(&raw);
        prop_assert!(a.status < 500, "{}", a);
        if a.status != 200 {
            assert_clear_refusal(&a, false, &format!("{raw:?}"));
        }
    }
}
