#![allow(clippy::unwrap_used)]
//! The `sinew` binary end to end: sign, verify, call.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const B25_KEY: &str =
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";

const B2_REQUEST: &str = "POST /foo?param=Value&Pet=dog HTTP/1.1\r\nHost: example.com\r\nDate: Tue, 20 Apr 2021 02:07:55 GMT\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n{\"hello\": \"world\"}";

fn sinew(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin) {
        // A child that exits before reading (a usage error) closes the pipe.
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

#[test]
fn sign_prints_the_rfc_9421_b25_signature() {
    let out = sinew(
        &[
            "sign",
            "--components",
            "date @authority content-type",
            "--created",
            "1618884473",
            "--label",
            "sig-b25",
            "--no-nonce",
            "--no-alg",
            "--key-id",
            "test-shared-secret",
            "--key-b64",
            B25_KEY,
        ],
        B2_REQUEST.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\r\nsignature-input: sig-b25=(\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\"\r\n"), "{text}");
    assert!(
        text.contains("\r\nsignature: sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:\r\n"),
        "{text}"
    );
    assert!(text.starts_with("POST /foo?param=Value&Pet=dog HTTP/1.1\r\nHost: example.com\r\n"));
    assert!(text.ends_with("\r\n\r\n{\"hello\": \"world\"}"));
}

fn signed_default(created: &str) -> Vec<u8> {
    let out = sinew(
        &[
            "sign",
            "--key-id",
            "orders",
            "--key-text",
            "s3cret",
            "--created",
            created,
        ],
        B2_REQUEST.replace("\r\n", "\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn sign_then_verify_round_trip_with_content_digest() {
    let signed = signed_default("1700000000");
    let text = String::from_utf8(signed.clone()).unwrap();
    assert!(
        text.contains("\ncontent-digest: sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:\n"),
        "{text}"
    );
    let ok = sinew(
        &[
            "verify",
            "--key-id",
            "orders",
            "--key-text",
            "s3cret",
            "--now",
            "1700000010",
        ],
        &signed,
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn verify_refuses_with_exit_1_and_a_reason() {
    let signed = signed_default("1700000000");
    // Wrong key.
    let out = sinew(
        &[
            "verify",
            "--key-id",
            "orders",
            "--key-text",
            "other",
            "--now",
            "1700000010",
        ],
        &signed,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad_signature"), "{err}");
    assert!(!err.contains("s3cret") && !err.contains("other"), "{err}");
    // Too old.
    let out = sinew(
        &[
            "verify",
            "--key-id",
            "orders",
            "--key-text",
            "s3cret",
            "--now",
            "1700001000",
        ],
        &signed,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("too_old"));
    // Tampered body.
    let tampered = String::from_utf8(signed.clone())
        .unwrap()
        .replace("\"world\"", "\"World\"");
    let out = sinew(
        &[
            "verify",
            "--key-id",
            "orders",
            "--key-text",
            "s3cret",
            "--now",
            "1700000010",
        ],
        tampered.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("digest_mismatch"));
    // A required component not covered.
    let out = sinew(
        &[
            "verify",
            "--key-id",
            "orders",
            "--key-text",
            "s3cret",
            "--now",
            "1700000010",
            "--require",
            "@method date",
        ],
        &signed,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing_required_component"));
}

#[test]
fn verify_caps_stdin_and_refuses_hostile_headers() {
    let args = [
        "verify",
        "--key-id",
        "orders",
        "--key-text",
        "s3cret",
        "--now",
        "1700000010",
    ];
    // More than a head and a 1 MiB body: refused without reading it all.
    let mut huge = b"POST /x HTTP/1.1\nHost: a\n\n".to_vec();
    huge.resize(3 * 1024 * 1024, b'x');
    let out = sinew(&args, &huge);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exceeds 1114112 bytes"), "{err}");
    // The quadratic header: refused at once by the field limit.
    let list: Vec<String> = (1..=45_000).map(|k| format!("\"{k:x}\"")).collect();
    let req = format!(
        "GET /x HTTP/1.1\nHost: a\nSignature-Input: sig1=({});created=1700000000;keyid=\"orders\"\nSignature: sig1=:AAAA:\n\n",
        list.join(" ")
    );
    let out = sinew(&args, req.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("limit_exceeded") && err.contains("max_header_bytes"),
        "{err}"
    );
}

#[test]
fn legacy_profile_both_ways() {
    let req = "GET /users/7?x=1 HTTP/1.1\nHost: users.internal\n\n";
    let out = sinew(
        &[
            "sign",
            "--profile",
            "legacy",
            "--service-id",
            "orders",
            "--key-text",
            "s3cret",
            "--created",
            "1700000000",
        ],
        req.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\nx-service-id: orders\n"), "{text}");
    assert!(text.contains("\nx-timestamp: 1700000000\n"), "{text}");
    // hex(HMAC-SHA256("s3cret", "GET|/users/7|1700000000"))
    let expected = {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(b"GET|/users/7|1700000000");
        hex::encode(mac.finalize().into_bytes())
    };
    assert!(
        text.contains(&format!("\nx-signature: {expected}\n")),
        "{text}"
    );
    let ok = sinew(
        &[
            "verify",
            "--service-id",
            "orders",
            "--key-text",
            "s3cret",
            "--now",
            "1700000005",
        ],
        text.as_bytes(),
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // The same signature again is accepted: microservice_comms resends it.
    let again = sinew(
        &[
            "verify",
            "--service-id",
            "orders",
            "--key-text",
            "s3cret",
            "--now",
            "1700000006",
        ],
        text.as_bytes(),
    );
    assert_eq!(again.status.code(), Some(0));
}

#[test]
fn usage_and_parse_errors_exit_2() {
    let out = sinew(&["sign", "--key-id", "a"], b"GET / HTTP/1.1\n\n");
    assert_eq!(out.status.code(), Some(2));
    let out = sinew(
        &["sign", "--key-id", "a", "--key-text", "k"],
        b"this is not http",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the request"));
    let out = sinew(
        &["verify", "--key-id", "a", "--key-b64", "***"],
        b"GET / HTTP/1.1\n\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let out = sinew(&["frobnicate"], b"");
    assert_eq!(out.status.code(), Some(2));
}

async fn serve() -> std::net::SocketAddr {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route(
            "/status/{code}",
            get(
                |axum::extract::Path(code): axum::extract::Path<u16>| async move {
                    (axum::http::StatusCode::from_u16(code).unwrap(), "as asked")
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn call_prints_the_body_and_maps_exit_codes() {
    let addr = serve().await;
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            sinew(&args, b"")
        })
    };
    let out = run(vec!["call".into(), format!("http://{addr}/ok")])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, b"fine");
    let out = run(vec!["call".into(), format!("http://{addr}/status/404")])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = run(vec![
        "call".into(),
        "--repeat".into(),
        "20".into(),
        "--concurrency".into(),
        "4".into(),
        "-v".into(),
        format!("http://{addr}/ok"),
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("20 calls: ok 20"), "{err}");
    assert_eq!(err.matches("-> 200 OK").count(), 20, "{err}");
    // --metrics-out writes the Prometheus exposition of the calls.
    let metrics_file =
        std::env::temp_dir().join(format!("sinew-cli-metrics-{}.prom", std::process::id()));
    let out = run(vec![
        "call".into(),
        "--repeat".into(),
        "3".into(),
        "--metrics-out".into(),
        metrics_file.display().to_string(),
        format!("http://{addr}/ok"),
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = std::fs::read_to_string(&metrics_file).unwrap();
    assert!(
        text.contains(&format!(
            "http_client_request_duration_seconds_count{{http_request_method=\"GET\",server_address=\"127.0.0.1\",server_port=\"{}\",http_response_status_code=\"200\"}} 3",
            addr.port()
        )),
        "{text}"
    );
    let _ = std::fs::remove_file(&metrics_file);
    // Nobody listens here: a transport error, exit 3.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = run(vec!["call".into(), format!("http://{closed}/")])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    // A bad config: exit 2.
    let dir = std::env::temp_dir().join(format!("sinew-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("client.toml");
    std::fs::write(&cfg, "[retry]\nmax_atempts = 3\n").unwrap();
    let out = run(vec![
        "call".into(),
        "--config".into(),
        cfg.display().to_string(),
        format!("http://{addr}/ok"),
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_atempts"));
}
