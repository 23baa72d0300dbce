#![allow(clippy::unwrap_used)]
//! What an operator relies on (issue 19 part 4): logs through a tracing
//! subscriber on stderr (RUST_LOG, --log-format json), keys from a file or
//! the environment, `sinew call -i`, the `--json` summary, the progress bar
//! only on a terminal, shell completions. Every test runs the real binary
//! against servers on 127.0.0.1.

use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::any;
use axum::Router;
use tokio::io::AsyncWriteExt as _;

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

/// Run `sinew args` with `env` set, RUST_LOG unset unless `env` sets it,
/// and `stdin` written to it.
async fn sinew(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut cmd = tokio::process::Command::new(SINEW);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Err(e) = input.write_all(stdin).await {
        // A child that exits before reading (a usage error) closes the pipe.
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    drop(input);
    child.wait_with_output().await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A backend: `/flaky` answers 503 on its first request and 200 after,
/// `/every-third-404` answers 404 to requests 0, 3, 6, ..., `/slow`
/// answers after 60 ms; every answer carries `x-test: yes` and
/// `x-attempt: N` (N counts the requests to that backend).
async fn backend() -> String {
    let count = Arc::new(AtomicUsize::new(0));
    let app = Router::new().fallback(any(move |req: Request| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        async move {
            let status = match req.uri().path() {
                "/flaky" if n == 0 => StatusCode::SERVICE_UNAVAILABLE,
                "/every-third-404" if n.is_multiple_of(3) => StatusCode::NOT_FOUND,
                "/missing" => StatusCode::NOT_FOUND,
                "/slow" => {
                    tokio::time::sleep(Duration::from_millis(60)).await;
                    StatusCode::OK
                }
                _ => StatusCode::OK,
            };
            (
                status,
                [("x-test", "yes".to_string()), ("x-attempt", n.to_string())],
                format!("{{\"message\": \"answer {n}\"}}"),
            )
                .into_response()
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("127.0.0.1:{}", addr.port())
}

/// A loopback port nothing listens on (bound, then closed).
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn temp_file(name: &str, contents: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sinew-cli-operator-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// A config balancing over a dead endpoint and a live one, ejecting an
/// endpoint at its first failure: calling through it makes sinew-balance
/// log its `endpoint ejected` warning.
fn ejecting_config(name: &str, live: &str, dead: u16) -> std::path::PathBuf {
    temp_file(
        name,
        format!(
            "[balance]\nstrategy = \"round-robin\"\nendpoints = [\"127.0.0.1:{dead}\", \"{live}\"]\n\
             [balance.ejection]\nconsecutive_failures = 1\n"
        )
        .as_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_warnings_reach_stderr_as_json_lines_and_rust_log_filters_them() {
    let live = backend().await;
    let dead = dead_port();
    let config = ejecting_config("eject.toml", &live, dead);
    let config = config.to_str().unwrap();
    let args = [
        "--log-format",
        "json",
        "call",
        "--config",
        config,
        "--repeat",
        "4",
        "--json",
        "http://backend/x",
    ];

    // Default level (warn): the balancer's warning, as one JSON object a
    // line on stderr; stdout holds only the summary.
    let out = sinew(&args, &[], b"").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{stderr}"))
        })
        .collect();
    let ejected = events
        .iter()
        .find(|e| e["message"] == "endpoint ejected")
        .unwrap_or_else(|| panic!("no ejection warning in {stderr}"));
    assert_eq!(ejected["level"], "WARN");
    assert_eq!(ejected["target"], "sinew_balance::layer");
    assert_eq!(ejected["endpoint"], format!("127.0.0.1:{dead}"));
    assert!(ejected["timestamp"].is_string(), "{ejected}");
    assert!(
        events.iter().all(|e| e["level"] != "DEBUG"),
        "debug events at the default level: {stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["outcomes"]["ok"], 4, "{summary}");

    // RUST_LOG=error hides the warning.
    let out = sinew(&args, &[("RUST_LOG", "error")], b"").await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !text(&out.stderr).contains("endpoint ejected"),
        "{}",
        text(&out.stderr)
    );

    // RUST_LOG=debug adds the libraries' debug events (hyper-util's
    // connection log among them).
    let out = sinew(&args, &[("RUST_LOG", "debug")], b"").await;
    let stderr = text(&out.stderr);
    let debug: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &serde_json::Value| e["level"] == "DEBUG")
        .collect();
    assert!(
        debug.iter().any(|e| e["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("hyper_util"))),
        "{stderr}"
    );

    // Text, the default format: the same warning as a plain line, no colour
    // when stderr is not a terminal.
    let out = sinew(&args[2..], &[], b"").await;
    let stderr = text(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("endpoint ejected"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("WARN") && line.contains(&format!("endpoint=127.0.0.1:{dead}")));
    assert!(
        !stderr.contains('\x1b'),
        "escape codes on a pipe: {stderr:?}"
    );

    // A RUST_LOG that does not parse is said once and the default used.
    let out = sinew(&args, &[("RUST_LOG", "sinew=loud")], b"").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("sinew: RUST_LOG: ") && l.contains("(warn)")),
        "{stderr}"
    );
    assert!(stderr.contains("\"endpoint ejected\""), "{stderr}");

    // An unknown format is a usage error.
    let out = sinew(&["--log-format", "xml", "completions", "bash"], &[], b"").await;
    assert_eq!(out.status.code(), Some(2));
}

const REQUEST: &[u8] =
    b"POST /orders HTTP/1.1\nHost: orders.internal\nContent-Type: application/json\n\n{\"id\": 1}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_a_file_or_the_environment_and_errors_never_show_them() {
    let secret = "file-and-env-s3cret";
    let key_file = temp_file("key", format!("{secret}\n").as_bytes());
    let key_file = key_file.to_str().unwrap();

    // Signed with the key from a file, verified with it from a variable.
    let signed = sinew(
        &["sign", "--key-id", "orders", "--key-file", key_file],
        &[],
        REQUEST,
    )
    .await;
    assert_eq!(signed.status.code(), Some(0), "{}", text(&signed.stderr));
    assert!(text(&signed.stdout).contains("keyid=\"orders\""));
    let verify = |env: &'static str, value: &'static str, signed: Vec<u8>| async move {
        sinew(
            &["verify", "--key-id", "orders", "--key-env", "ORDERS_KEY"],
            &[(env, value)],
            &signed,
        )
        .await
    };
    let ok = verify("ORDERS_KEY", "file-and-env-s3cret", signed.stdout.clone()).await;
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(text(&ok.stderr).contains("valid: key id orders"));
    // Another key in the variable: refused (the key read is the one used).
    let bad = verify("ORDERS_KEY", "another-key", signed.stdout.clone()).await;
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad.stderr));

    // The variable unset (the secret sits in another one): exit 2, a
    // message naming the variable, and the secret nowhere.
    let unset = verify("SOME_OTHER_VARIABLE", secret, signed.stdout.clone()).await;
    assert_eq!(unset.status.code(), Some(2));
    let said = text(&unset.stderr);
    assert!(
        said.contains("--key-env") && said.contains("ORDERS_KEY is not set"),
        "{said}"
    );
    assert!(!said.contains(secret) && !text(&unset.stdout).contains(secret));

    // An empty variable is refused too.
    let empty = verify("ORDERS_KEY", "", signed.stdout.clone()).await;
    assert_eq!(empty.status.code(), Some(2));
    assert!(text(&empty.stderr).contains("ORDERS_KEY is empty"));

    // A missing file: exit 2 naming the file; nothing signed.
    let missing = format!("{key_file}.missing");
    let out = sinew(
        &["sign", "--key-id", "orders", "--key-file", &missing],
        &[("ORDERS_KEY", secret)],
        REQUEST,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(
        said.starts_with("sinew sign: --key-file: cannot read ") && said.contains(&missing),
        "{said}"
    );
    assert!(out.stdout.is_empty() && !said.contains(secret));

    // A file that is no key (too large) is refused without echoing it.
    let big = temp_file("big", &vec![b'k'; 64 * 1024 + 1]);
    let out = sinew(
        &[
            "verify",
            "--key-id",
            "orders",
            "--key-file",
            big.to_str().unwrap(),
        ],
        &[],
        &signed.stdout,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("larger than 65536 bytes"));
    assert!(!text(&out.stderr).contains("kkkk"));

    // Two sources at once, or none: usage errors.
    let out = sinew(
        &[
            "sign",
            "--key-id",
            "orders",
            "--key-file",
            key_file,
            "--key-env",
            "ORDERS_KEY",
        ],
        &[],
        REQUEST,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let out = sinew(&["sign", "--key-id", "orders"], &[], REQUEST).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--key-file"));

    // --help says why argv is the wrong place.
    let help = sinew(&["sign", "--help"], &[], b"").await;
    assert!(text(&help.stdout).contains("Other users see it in `ps`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_prints_the_final_response_head_before_the_body() {
    let addr = backend().await;

    // /flaky: 503, retried, then 200: the head shown is the final one.
    let out = sinew(&["call", "-i", &format!("http://{addr}/flaky")], &[], b"").await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.starts_with("HTTP/1.1 200 OK\r\n"), "{shown}");
    let (head, body) = shown.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\nx-test: yes"), "{head}");
    assert!(head.contains("\r\nx-attempt: 1"), "{head}");
    assert!(
        head.contains(&format!("\r\ncontent-length: {}", body.len())),
        "{head}"
    );
    assert_eq!(body, "{\"message\": \"answer 1\"}");

    // A failing status: head and body on stdout, the status line on
    // stderr as without -i, exit 1.
    let out = sinew(
        &["call", "--include", &format!("http://{addr}/missing")],
        &[],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(shown.starts_with("HTTP/1.1 404 Not Found\r\n"), "{shown}");
    assert!(shown.contains("\r\nx-test: yes\r\n"), "{shown}");
    assert!(
        shown.ends_with("\r\n\r\n{\"message\": \"answer 2\"}"),
        "{shown}"
    );
    let said = text(&out.stderr);
    assert!(said.contains("404") && said.contains("answer 2"), "{said}");

    // Without -i: the body alone.
    let out = sinew(&["call", &format!("http://{addr}/x")], &[], b"").await;
    assert_eq!(text(&out.stdout), "{\"message\": \"answer 3\"}");

    // -i prints one response: not with --repeat, nor with --json.
    let url = format!("http://{addr}/x");
    for args in [
        ["call", "-i", "--repeat", "2", &url],
        ["call", "-i", "--json", "-v", &url],
    ] {
        let out = sinew(&args, &[], b"").await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_summary_counts_every_outcome() {
    let addr = backend().await;
    let out = sinew(
        &[
            "call",
            "--repeat",
            "10",
            "--json",
            &format!("http://{addr}/every-third-404"),
        ],
        &[],
        b"",
    )
    .await;
    // Requests 0, 3, 6 and 9 got 404 (not retried): exit 1, as without --json.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let s: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(s["calls"], 10);
    assert_eq!(
        s["outcomes"],
        serde_json::json!({"ok": 6, "404": 4}),
        "{stdout}"
    );
    let lat = |k: &str| s["latency_ms"][k].as_f64().unwrap();
    assert!(lat("p50") > 0.0);
    assert!(lat("p50") <= lat("p90") && lat("p90") <= lat("p99") && lat("p99") <= lat("max"));
    let duration = s["duration_s"].as_f64().unwrap();
    assert!(duration > 0.0 && duration >= lat("max") / 1e3, "{stdout}");
    let rate = s["requests_per_second"].as_f64().unwrap();
    assert!((rate - 10.0 / duration).abs() < 1e-6 * rate, "{stdout}");
    // No text summary and no progress on stderr.
    assert!(
        !text(&out.stderr).contains("calls:"),
        "{}",
        text(&out.stderr)
    );

    // A failed call counts by its kind, and exits 3.
    let out = sinew(
        &[
            "call",
            "--repeat",
            "2",
            "--json",
            "--deadline",
            "2s",
            &format!("http://127.0.0.1:{}/", dead_port()),
        ],
        &[],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["outcomes"], serde_json::json!({"transport": 2}), "{s}");

    // Without --json the summary is a line on stderr, stdout stays empty.
    let out = sinew(
        &["call", "--repeat", "3", &format!("http://{addr}/x")],
        &[],
        b"",
    )
    .await;
    assert!(out.stdout.is_empty());
    let said = text(&out.stderr);
    assert!(
        said.starts_with("3 calls: ok 3; p50 ") && said.contains("p90") && said.contains("/s"),
        "{said}"
    );
}

/// 20 calls of 60 ms one at a time: a run of more than a second.
fn long_run(addr: &str) -> Vec<String> {
    ["call", "--repeat", "20", "--concurrency", "1"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("http://{addr}/slow")])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_shows_on_a_terminal_only() {
    let addr = backend().await;
    let args = long_run(&addr);

    // stderr a pipe: the summary line and nothing else.
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let piped = sinew(&argv, &[], b"");
    // stderr a terminal: `script` runs it on a pseudo-terminal (util-linux,
    // in every Debian). The bar appears after a second and is cleared
    // before the summary.
    let command = std::iter::once(SINEW.to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let tty = tokio::process::Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env_remove("RUST_LOG")
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output();
    let (piped, tty) = tokio::join!(piped, tty);

    assert_eq!(piped.status.code(), Some(0), "{}", text(&piped.stderr));
    let said = text(&piped.stderr);
    assert!(said.starts_with("20 calls: ok 20; "), "{said}");
    assert_eq!(said.lines().count(), 1, "{said:?}");
    assert!(!said.contains('\r') && !said.contains('\x1b'), "{said:?}");

    let tty = tty.unwrap();
    assert_eq!(tty.status.code(), Some(0), "{}", text(&tty.stderr));
    let screen = text(&tty.stdout);
    assert!(screen.contains("/20 calls ["), "{screen:?}");
    assert!(
        screen.contains("\x1b[2K"),
        "the bar is redrawn in place: {screen:?}"
    );
    let last = screen.rsplit("\x1b[2K").next().unwrap();
    assert!(last.starts_with("20 calls: ok 20; "), "{screen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = sinew(&["completions", shell], &[], b"").await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.len() > 500, "{shell}: {script}");
        for word in ["sinew", "call", "verify", "key-file", "log-format"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
    // bash's parses.
    let bash = sinew(&["completions", "bash"], &[], b"").await;
    let path = temp_file("sinew.bash", &bash.stdout);
    let check = tokio::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(check.status.success(), "{}", text(&check.stderr));
    // ... and defines the completion function it registers.
    let check = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p sinew",
            path.to_str().unwrap()
        ))
        .output()
        .await
        .unwrap();
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(text(&check.stdout).contains("sinew"));

    let out = sinew(&["completions", "tcsh"], &[], b"").await;
    assert_eq!(out.status.code(), Some(2));
}
