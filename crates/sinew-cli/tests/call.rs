#![allow(clippy::unwrap_used)]
//! `sinew call` with a config file: `[sign]` produces requests an
//! independent RFC 9421 verifier accepts (the Python package
//! `http-message-signatures`, which `scripts/setup.sh` installs), service
//! names resolve through `[registry]`, and failures say what went wrong.

use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::routing::any;
use axum::Router;

fn sinew(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(args)
        .output()
        .unwrap()
}

#[derive(Default, Clone, serde::Serialize)]
struct Seen {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// A backend that records the last request and answers `/status/{code}`
/// with that status.
async fn recording() -> (String, Arc<Mutex<Option<Seen>>>) {
    let seen: Arc<Mutex<Option<Seen>>> = Arc::default();
    let keep = seen.clone();
    let app = Router::new().fallback(any(move |req: Request| {
        let keep = keep.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let host = parts.headers["host"].to_str().unwrap().to_string();
            *keep.lock().unwrap() = Some(Seen {
                method: parts.method.to_string(),
                url: format!("http://{host}{}", parts.uri),
                headers: parts
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
                    .collect(),
                body: String::from_utf8(body.to_vec()).unwrap(),
            });
            let code = parts
                .uri
                .path()
                .strip_prefix("/status/")
                .and_then(|c| c.parse().ok())
                .unwrap_or(200);
            (
                StatusCode::from_u16(code).unwrap(),
                r#"{"message": "as asked"}"#,
            )
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("127.0.0.1:{}", addr.port()), seen)
}

/// Verify a recorded request with the Python `http-message-signatures`
/// package: signature, required components and the body's digest.
fn python_verifies(seen: &Seen, key: &str) -> Result<String, String> {
    const SCRIPT: &str = r#"
import json, sys, requests
from http_message_signatures import HTTPMessageVerifier, MappingKeyResolver, algorithms
seen = json.load(sys.stdin)
key = sys.argv[1].encode()
req = requests.Request(seen["method"], seen["url"], data=seen["body"].encode())
prepared = req.prepare()
prepared.headers.clear()
for name, value in seen["headers"]:
    prepared.headers[name] = value
verifier = HTTPMessageVerifier(
    signature_algorithm=algorithms.HMAC_SHA256,
    key_resolver=MappingKeyResolver(public_keys={"orders": key}, private_keys={}),
)
results = verifier.verify(
    prepared,
    require_components=("@method", "@authority", "@path", "content-digest"),
    body=seen["body"].encode(),
)
print(",".join(str(c) for c in results[0].covered_components))
"#;
    let dir = std::env::temp_dir().join(format!("sinew-call-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("verify.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let input = serde_json::to_vec(seen).unwrap();
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (scripts/setup.sh installs http-message-signatures)");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sinew-call-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_section_signs_and_an_independent_verifier_accepts_it() {
    let (addr, seen) = recording().await;
    let path = config(
        "sign.toml",
        "[sign]\nprofile = \"rfc9421\"\nkey_id = \"orders\"\nkey = { env = \"SINEW_CALL_TEST_KEY\" }\n",
    );
    let url = format!("http://{addr}/status/201?q=1");
    let out = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_sinew"))
                .args([
                    "call",
                    "--config",
                    path.to_str().unwrap(),
                    "-X",
                    "POST",
                    "-d",
                    "{\"a\":1}",
                    &url,
                ])
                .env("SINEW_CALL_TEST_KEY", "s3cret-key")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = seen.lock().unwrap().clone().unwrap();
    let names: Vec<&str> = seen.headers.iter().map(|(n, _)| n.as_str()).collect();
    for h in ["signature-input", "signature", "content-digest"] {
        assert!(names.contains(&h), "{h} in {names:?}");
    }
    let covered = python_verifies(&seen, "s3cret-key").unwrap();
    assert!(
        covered.contains("@query") && covered.contains("content-digest"),
        "{covered}"
    );
    // And the same verifier refuses it with another key.
    assert!(python_verifies(&seen, "not-the-key").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_name_resolves_through_the_registry() {
    let (addr, seen) = recording().await;
    let path = config(
        "services.toml",
        &format!("[registry]\nstatic = {{ inventory = [\"{addr}\"] }}\n"),
    );
    let out = tokio::task::spawn_blocking(move || {
        sinew(&[
            "call",
            "--config",
            path.to_str().unwrap(),
            "http://inventory/items/1",
        ])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = seen.lock().unwrap().clone().unwrap();
    assert_eq!(seen.url, format!("http://{addr}/items/1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_say_what_went_wrong() {
    let (addr, _) = recording().await;
    // A 4xx/5xx: exit 1, the body on stdout, the status line on stderr.
    let url = format!("http://{addr}/status/503");
    let out = tokio::task::spawn_blocking(move || sinew(&["call", &url]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("503 Service Unavailable") && err.contains("as asked"),
        "{err}"
    );

    // A refused connection names the address and the cause.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = closed.local_addr().unwrap();
    drop(closed);
    let url = format!("http://{gone}/x");
    let out = tokio::task::spawn_blocking(move || sinew(&["call", &url]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&gone.to_string()) && err.to_lowercase().contains("refused"),
        "{err}"
    );

    // Bad URLs are usage errors with their own message.
    for (url, want) in [
        ("http://127.0.0.1:99999/x", "port 99999"),
        ("ftp://example.com/x", "ftp:// is not supported"),
    ] {
        let out = sinew(&["call", url]);
        assert_ne!(out.status.code(), Some(0), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{url}: {err}");
    }
}
