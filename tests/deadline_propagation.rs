#![allow(clippy::unwrap_used)]
//! Deadline and priority propagation across three real processes: the
//! `echo` example run three times (A → B → C) on 127.0.0.1.
//!
//! `cargo test` builds the examples first; to run only this file, build the
//! example before (`cargo build --example echo`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

struct Echo {
    child: Child,
    url: String,
}

impl Echo {
    fn start() -> Echo {
        Echo::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Echo {
        Echo::start_env(extra, ("ECHO_UNUSED", ""))
    }

    fn start_env(extra: &[&str], env: (&str, &str)) -> Echo {
        // target/<profile>/deps/<this test> → target/<profile>/examples/echo
        let exe = std::env::current_exe().unwrap();
        let bin: PathBuf = exe
            .parent()
            .and_then(|deps| deps.parent())
            .unwrap()
            .join("examples")
            .join(format!("echo{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --example echo` (plain `cargo test` builds it)",
            bin.display()
        );
        let mut child = Command::new(&bin)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env(env.0, env.1)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Echo {
            child,
            url: format!("http://{addr}"),
        }
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "echo did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut b = http::Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let res = client.request(b.body(Empty::new()).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_b_c_processes_propagate_deadline_and_priority_and_stop_cleanly() {
    let (a, b, c) = (Echo::start(), Echo::start(), Echo::start());
    let chain = |tail: &str| {
        let b_url = format!("{}/call?url={}", b.url, encode(&format!("{}{tail}", c.url)));
        format!("{}/call?url={}", a.url, encode(&b_url))
    };

    // C sees A's deadline minus the time spent, and A's priority.
    let start = Instant::now();
    let (status, body) = get(
        &chain("/context"),
        &[("x-request-timeout", "2.5"), ("x-request-priority", "high")],
    )
    .await;
    let spent = start.elapsed().as_millis() as u64;
    assert_eq!(status, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["priority"], "high");
    let remaining = seen["deadline_remaining_ms"].as_u64().unwrap();
    // Each of the three hops rounds down to whole milliseconds.
    assert!(
        remaining <= 2500 && remaining + 3 >= 2500 - spent,
        "{remaining} after {spent} ms"
    );

    // A low-priority call without a deadline: C inherits A's 20 s default.
    let (_, body) = get(&chain("/context"), &[("x-request-priority", "low")]).await;
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["priority"], "low");
    let remaining = seen["deadline_remaining_ms"].as_u64().unwrap();
    assert!((19_000..=20_000).contains(&remaining), "{remaining}");

    // When A's deadline passes, the chain is cut: C would take 5 s, A
    // answers 504 at its 0.4 s deadline.
    let start = Instant::now();
    let (status, body) = get(&chain("/delay/5000"), &[("x-request-timeout", "0.4")]).await;
    let took = start.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_secs(2),
        "{took:?}"
    );

    // An expired deadline is refused at A with 408 and X-Do-Not-Retry.
    let (status, _) = get(&chain("/context"), &[("x-request-timeout", "0.004")]).await;
    assert_eq!(status, 408);

    for echo in [a, b, c] {
        assert!(echo.terminate().success());
    }
}

#[tokio::test]
async fn echo_verifies_signatures_when_given_a_key() {
    use sinew_sign::{HmacSignLayer, SecretKey, SignConfig, Signer};
    use tower::{Layer, ServiceExt};

    let echo = Echo::start_with(&["--key-id", "orders", "--key-text", "orders-secret"]);
    let url = format!("{}/context", echo.url);
    let (status, body) = get(&url, &[("x-request-timeout", "2")]).await;
    assert_eq!(status, 401, "{body}");

    let signer = Signer::new(
        SignConfig::rfc9421("orders"),
        SecretKey::from_text("orders-secret").unwrap(),
    )
    .unwrap();
    let http = Client::builder(TokioExecutor::new()).build_http::<sinew_core::Body>();
    let client = HmacSignLayer::new(signer).layer(http);
    let req = http::Request::get(&url)
        .header("x-request-timeout", "2")
        .header("x-request-priority", "low")
        .body(sinew_core::Body::empty())
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["priority"], "low");
    assert!(seen["deadline_remaining_ms"].as_u64().unwrap() <= 2000);

    // The legacy profile (microservice_comms' X-Service-ID / X-Timestamp /
    // X-Signature) is accepted too, as the example's docs say.
    let legacy = Signer::new(
        SignConfig::legacy("orders"),
        SecretKey::from_text("orders-secret").unwrap(),
    )
    .unwrap();
    let http = Client::builder(TokioExecutor::new()).build_http::<sinew_core::Body>();
    let client = HmacSignLayer::new(legacy).layer(http);
    let req = http::Request::get(&url)
        .body(sinew_core::Body::empty())
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    // ...but not with another secret.
    let wrong = Signer::new(
        SignConfig::legacy("orders"),
        SecretKey::from_text("not-the-secret").unwrap(),
    )
    .unwrap();
    let client = HmacSignLayer::new(wrong)
        .layer(Client::builder(TokioExecutor::new()).build_http::<sinew_core::Body>());
    let req = http::Request::get(&url)
        .body(sinew_core::Body::empty())
        .unwrap();
    assert_eq!(client.oneshot(req).await.unwrap().status(), 401);
    assert!(echo.terminate().success());
}

#[tokio::test]
async fn echo_reads_its_key_from_the_environment() {
    let echo = Echo::start_env(
        &["--key-id", "orders", "--key-env", "ECHO_TEST_KEY"],
        ("ECHO_TEST_KEY", "env-secret"),
    );
    let url = format!("{}/context", echo.url);
    use sinew_sign::{HmacSignLayer, SecretKey, SignConfig, Signer};
    use tower::{Layer, ServiceExt};
    let signer = Signer::new(
        SignConfig::rfc9421("orders"),
        SecretKey::from_text("env-secret").unwrap(),
    )
    .unwrap();
    let client = HmacSignLayer::new(signer)
        .layer(Client::builder(TokioExecutor::new()).build_http::<sinew_core::Body>());
    let req = http::Request::get(&url)
        .body(sinew_core::Body::empty())
        .unwrap();
    assert_eq!(client.oneshot(req).await.unwrap().status(), 200);
    assert!(echo.terminate().success());
}

#[tokio::test]
async fn echo_serves_prometheus_metrics_by_route() {
    let echo = Echo::start();
    for id in ["a", "b", "c"] {
        let (status, _) = get(&format!("{}/status/20{}", echo.url, id.len()), &[]).await;
        assert_eq!(status, 201);
    }
    let (status, _) = get(
        &format!(
            "{}/call?url={}",
            echo.url,
            encode(&format!("{}/context", echo.url))
        ),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, text) = get(&format!("{}/metrics", echo.url), &[]).await;
    assert_eq!(status, 200);
    // One series for the route template, however many raw paths hit it.
    assert!(
        text.contains(r#"http_server_request_duration_seconds_count{http_request_method="GET",url_scheme="http",http_route="/status/{code}",http_response_status_code="201"} 3"#),
        "{text}"
    );
    // The /call handler's client recorded its call.
    assert!(
        text.contains("http_client_request_duration_seconds_count{"),
        "{text}"
    );
    assert!(echo.terminate().success());
}

#[path = "../crates/sinew-balance/tests/support/nacos.rs"]
mod nacos;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_registers_in_nacos_while_it_runs() {
    let registry = nacos::Nacos::start().await;
    let echo = Echo::start_with(&[
        "--register",
        &format!("nacos://{}", registry.addr()),
        "--service",
        "echo-test",
    ]);
    let port = echo.url.rsplit(':').next().unwrap().to_string();
    let listed = registry
        .list_raw("serviceName=echo-test&healthyOnly=true")
        .await;
    let hosts = listed["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "{listed}");
    assert_eq!(hosts[0]["port"].to_string(), port);
    // SIGTERM: it deregisters before it exits.
    assert!(echo.terminate().success());
    let listed = registry
        .list_raw("serviceName=echo-test&healthyOnly=true")
        .await;
    assert_eq!(
        listed["hosts"].as_array().map_or(0, Vec::len),
        0,
        "{listed}"
    );
}
