#![allow(clippy::unwrap_used)]
//! Every section of the config file has an effect: one file sets them all,
//! a client and two server stacks are built from it, and each section's
//! effect is observed on the wire or in the metrics recorder. A second test
//! fails when the schema gains a section this test does not observe.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use sinew::config::{ClientConfig, ServerConfig};
use sinew::server::ServerStack;
use sinew::{CallContext, ClientBuilder, ErrorKind};
use sinew_metrics::prometheus::PrometheusBuilder;
use support::Pki;

/// The top-level keys and sections of the client file this test observes.
const CLIENT_SECTIONS: &[&str] = &[
    "base_url", "timeout", "pool", "tls", "deadline", "retry", "hedge", "breaker", "balance",
    "sign", "metrics", "auth", "server",
];
/// The parts of `[server]` this test observes.
const SERVER_SECTIONS: &[&str] = &["metrics", "verify", "deadline", "shed"];
/// Sections observed by another test, against a registry server.
const OBSERVED_ELSEWHERE: &[(&str, &str)] = &[
    (
        "registry",
        "tests/services.rs: services_by_name_through_nacos",
    ),
    (
        "services",
        "tests/services.rs: services_by_name_through_nacos",
    ),
    (
        "server.register",
        "tests/services.rs: services_by_name_through_nacos",
    ),
    ("proxy", "tests/proxy.rs: every test"),
];

#[test]
fn every_section_of_the_schema_is_observed_by_the_scenario() {
    let sorted = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let elsewhere = |prefix: &str| {
        OBSERVED_ELSEWHERE
            .iter()
            .filter_map(|(s, _)| s.strip_prefix(prefix))
            .filter(|s| !s.contains('.'))
            .map(String::from)
            .collect::<BTreeSet<_>>()
    };
    let client: BTreeSet<String> = sorted(CLIENT_SECTIONS)
        .union(&elsewhere(""))
        .cloned()
        .collect();
    assert_eq!(
        sorted(ClientConfig::section_names()),
        client,
        "a section was added to the client file: apply it and observe its effect in `every_section_has_an_effect`"
    );
    let server: BTreeSet<String> = sorted(SERVER_SECTIONS)
        .union(&elsewhere("server."))
        .cloned()
        .collect();
    assert_eq!(
        sorted(ServerConfig::section_names()),
        server,
        "a part was added to [server]: apply it and observe its effect in `every_section_has_an_effect`"
    );
}

#[derive(Default)]
struct Seen {
    /// Requests by path.
    hits: HashMap<String, usize>,
    /// Requests by server ("a" / "b").
    by_server: HashMap<&'static str, usize>,
    /// Client ports, one per connection.
    peers: BTreeSet<SocketAddr>,
    /// The last request's headers.
    headers: Option<HeaderMap>,
    /// The protocol of the last request.
    version: Option<String>,
    logins: Vec<serde_json::Value>,
}

type Shared = Arc<Mutex<Seen>>;

fn backend(name: &'static str, seen: Shared, server: &ServerConfig) -> Router {
    let record = move |seen: &Shared,
                       path: String,
                       peer: SocketAddr,
                       headers: HeaderMap,
                       version: String| {
        let mut s = seen.lock().unwrap();
        let n = {
            let n = s.hits.entry(path).or_default();
            *n += 1;
            *n
        };
        *s.by_server.entry(name).or_default() += 1;
        s.peers.insert(peer);
        s.headers = Some(headers);
        s.version = Some(version);
        n
    };
    let handler = move |State(seen): State<Shared>,
                        ConnectInfo(peer): ConnectInfo<SocketAddr>,
                        Path(what): Path<String>,
                        req: axum::extract::Request| async move {
        let version = format!("{:?}", req.version());
        let headers = req.headers().clone();
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer tok-1") {
            return (StatusCode::UNAUTHORIZED, "no token".to_string());
        }
        let n = record(&seen, what.clone(), peer, headers, version);
        match what.as_str() {
            // Fails the first two times.
            "flaky" if n <= 2 => (StatusCode::SERVICE_UNAVAILABLE, "later".into()),
            // The first attempt hangs; a hedge answers.
            "hedged" if n == 1 => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                (StatusCode::OK, "slow".into())
            }
            "slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                (StatusCode::OK, "slow".into())
            }
            "hold" => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                (StatusCode::OK, "held".into())
            }
            "down" => (StatusCode::SERVICE_UNAVAILABLE, "down".into()),
            "context" => {
                let left = CallContext::current()
                    .and_then(|c| c.remaining())
                    .map(|d| d.as_millis().to_string())
                    .unwrap_or_default();
                (StatusCode::OK, left)
            }
            _ => (StatusCode::OK, name.to_string()),
        }
    };
    Router::new()
        .route("/{what}", get(handler).post(handler))
        .with_state(seen)
        .layer(ServerStack::from_config(server).unwrap())
}

#[tokio::test(flavor = "current_thread")]
async fn every_section_has_an_effect() {
    let (recorder, metrics) = PrometheusBuilder::new().build();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut observed = BTreeSet::new();
    let pki = Pki::new("sections");
    let seen = Shared::default();

    // The login service (plain HTTP).
    let login_seen = seen.clone();
    let login = support::serve(Router::new().route(
        "/token",
        post(move |Json(body): Json<serde_json::Value>| {
            let seen = login_seen.clone();
            async move {
                seen.lock().unwrap().logins.push(body);
                Json(serde_json::json!({ "access_token": "tok-1", "expires_in": 3600 }))
            }
        }),
    ))
    .await;

    std::env::set_var("SECTIONS_SIGNING_KEY", "s3cret-key");
    std::env::set_var("SECTIONS_PASSWORD", "pa55");
    // Placeholders for the two backends' addresses, filled in below (the
    // servers are built from the file's [server] section first).
    let file = |a: &str, b: &str| {
        format!(
            r#"
base_url = "https://inventory"
timeout = "1s"

[pool]
max_idle_per_host = 0

[tls]
ca_file = {ca:?}
system_roots = false
client_cert = {cert:?}
client_key = {{ file = {key:?} }}
server_name = "sinew.test"
http2_only = true

[deadline]
grpc_timeout = true

[retry]
max_attempts = 3
backoff = "constant"
base_delay = "1ms"

[hedge]
delays = ["100ms"]

[breaker]
policies = [{{ consecutive_failures = 2 }}]
open_duration = "1m"

[balance]
strategy = "round-robin"
endpoints = ["{a}", "{b}"]
https = true
ejection = false

[sign]
key_id = "orders"
key = {{ env = "SECTIONS_SIGNING_KEY" }}

[metrics]
naming = "aio-request"

[auth]
login_url = "{login}/token"
username = "orders"
password = {{ env = "SECTIONS_PASSWORD" }}

[server.metrics]
naming = "aio-request"

[server.verify]
keys = [{{ key_id = "orders", key = {{ env = "SECTIONS_SIGNING_KEY" }} }}]

[server.deadline]
max_timeout = "500ms"

[server.shed]
max_concurrency = 2
high_reserve = 0
normal_reserve = 0
"#,
            ca = pki.ca_file,
            cert = pki.client_cert,
            key = pki.client_key,
        )
    };
    let server = ClientConfig::from_toml(&file("127.0.0.1:1", "127.0.0.1:2"), "sections.toml")
        .unwrap()
        .server
        .unwrap();
    let both = &[b"h2".as_slice(), b"http/1.1".as_slice()];
    let a = pki
        .serve_tls(backend("a", seen.clone(), &server), true, both)
        .await;
    let b = pki
        .serve_tls(backend("b", seen.clone(), &server), true, both)
        .await;
    let (a, b) = (
        a.trim_start_matches("https://").to_string(),
        b.trim_start_matches("https://").to_string(),
    );
    let config = ClientConfig::from_toml(&file(&a, &b), "sections.toml").unwrap();
    let client = ClientBuilder::from_config(config.clone()).build().unwrap();

    // [balance] round robin over both servers; [base_url] relative paths;
    // [tls] mutual TLS with the private CA and a server name override
    // (the servers require a client certificate, and are addressed by IP);
    // http2_only: HTTP/2; [auth] the token from the login service.
    for _ in 0..4 {
        let res = client.get("/plain").send().await.unwrap();
        assert!(matches!(res.text().await.unwrap().as_str(), "a" | "b"));
    }
    {
        let s = seen.lock().unwrap();
        assert_eq!((s.by_server["a"], s.by_server["b"]), (2, 2));
        assert_eq!(s.version.as_deref(), Some("HTTP/2.0"));
        assert_eq!(s.logins.len(), 1);
        assert_eq!(
            s.logins[0],
            serde_json::json!({ "username": "orders", "password": "pa55" })
        );
        // [pool] max_idle_per_host = 0: no connection is reused.
        assert_eq!(s.peers.len(), 4);
        // [deadline] grpc_timeout: both deadline headers; [sign] RFC 9421
        // signature headers (and [server.verify] accepted them).
        let h = s.headers.as_ref().unwrap();
        assert!(h.contains_key("x-request-timeout") && h.contains_key("grpc-timeout"));
        assert!(h.contains_key("signature-input") && h.contains_key("signature"));
        assert!(h["signature-input"]
            .to_str()
            .unwrap()
            .contains("keyid=\"orders\""));
    }
    observed.extend([
        "balance", "base_url", "tls", "auth", "pool", "deadline", "sign",
    ]);

    // [server.verify]: an unsigned request (same TLS, same token) is refused.
    let unsigned = ClientBuilder::from_config(ClientConfig {
        sign: None,
        ..config.clone()
    })
    .no_retry()
    .build()
    .unwrap();
    let err = unsigned.get("/plain").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    observed.insert("server.verify");

    // [server.deadline] max_timeout caps the 1 s the client sends.
    let left: u64 = client
        .get("/context")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(left <= 500, "{left}");
    observed.insert("server.deadline");

    // [retry]: two 503s, then success on the third attempt.
    client.get("/flaky").send().await.unwrap();
    assert_eq!(seen.lock().unwrap().hits["flaky"], 3);
    observed.insert("retry");

    // [hedge]: the first attempt hangs, the hedge 100 ms later answers.
    let started = std::time::Instant::now();
    client.get("/hedged").send().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(seen.lock().unwrap().hits["hedged"], 2);
    observed.insert("hedge");

    // [timeout]: 1 s for the whole call.
    let started = std::time::Instant::now();
    let err = client.get("/slow").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    observed.insert("timeout");

    // [server.shed]: two at once per server; six concurrent calls (three
    // per server) without retries: at least one refused as overloaded.
    let no_retry = ClientBuilder::from_config(config.clone())
        .no_retry()
        .build()
        .unwrap();
    let calls = (0..6).map(|_| no_retry.get("/hold").send());
    let results = futures_util::future::join_all(calls).await;
    let shed = results
        .iter()
        .filter(|r| {
            matches!(r, Err(e) if e.status() == Some(StatusCode::SERVICE_UNAVAILABLE)
            && e.body().is_some_and(|b| String::from_utf8_lossy(b).contains("overloaded")))
        })
        .count();
    assert!(shed >= 1, "{results:?}");
    observed.insert("server.shed");

    // [metrics] and [server.metrics]: aio-request's names.
    let text = metrics.render();
    for name in [
        "aio_request_latency",
        "aio_request_transport_latency",
        "aio_request_server_latency",
    ] {
        assert!(text.contains(name), "{name} in\n{text}");
    }
    observed.extend(["metrics", "server.metrics"]);

    // [breaker] last (it leaves the endpoints open): two failures open an
    // endpoint's breaker, then the call fails fast.
    let _ = client.get("/down").send().await;
    let _ = client.get("/down").send().await;
    let breakers = client.breakers().unwrap();
    assert!(
        [&a, &b]
            .iter()
            .any(|e| breakers.state(e) == Some(sinew::breaker::State::Open)),
        "{:?} {:?}",
        breakers.state(&a),
        breakers.state(&b)
    );
    observed.insert("breaker");

    // The [server] section itself: every part above came from it.
    observed.insert("server");
    let want: BTreeSet<String> = CLIENT_SECTIONS
        .iter()
        .map(|s| s.to_string())
        .chain(SERVER_SECTIONS.iter().map(|s| format!("server.{s}")))
        .collect();
    let got: BTreeSet<String> = observed.into_iter().map(String::from).collect();
    assert_eq!(got, want);
}

#[test]
fn the_reference_in_docs_config_md_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + text[start..].find("```").unwrap();
    let config = ClientConfig::from_toml(&text[start..end], "docs/config.md").unwrap();
    assert!(config.server.is_some() && config.balance.is_some() && config.auth.is_some());
}
