//! `echo`: a fixture server for users and tests, behind the sinew server
//! stack (deadline + priority always; optional priority-aware shedding).
//!
//! ```text
//! cargo run --example echo -- --listen 127.0.0.1:8080
//! ```
//!
//! With `--key-id ID` and a secret (`--key-env VAR` or `--key-file PATH`;
//! `--key-text SECRET` for quick tries, as argv is visible to every user of
//! the machine), every request must be signed (RFC 9421 with `keyid="ID"`,
//! or the legacy profile with `X-Service-ID: ID`) by that shared secret;
//! unsigned or badly signed requests are refused with 401 problem+json
//! before the handler.
//!
//! The server stack is sinew's `ServerStack`: metrics → verification →
//! deadline/priority → shedding.
//!
//! With `--register nacos://HOST:PORT --service NAME` (or
//! `etcd://HOST:PORT`), it registers itself as an instance of NAME at its
//! listening address while it runs, and deregisters before it exits, so
//! discovery can be tried from outside:
//!
//! ```text
//! cargo run --example echo -- --register nacos://127.0.0.1:8848 --service inventory
//! ```
//!
//! Prints one line `listening on ADDR` when ready, shuts down cleanly on
//! SIGINT/SIGTERM. Routes:
//!
//! * `GET /context` → `{"deadline_remaining_ms": <integer or null>, "priority": "high|normal|low"}`
//!   as seen by the handler;
//! * `POST /echo` → the request body back;
//! * `GET /status/{code}` → that status;
//! * `GET /delay/{ms}` → waits, then 200;
//! * `GET /call?url=URL` → calls URL with a sinew client from inside the
//!   handler (the caller's deadline and priority propagate) and returns that
//!   response's status and body; `504` when the deadline passed first, `502`
//!   when the call failed;
//! * `GET /metrics` → the Prometheus exposition of this process.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use sinew::server::ServerStack;
use sinew_core::config::Secret;
use sinew_core::problem::Problem;
use sinew_core::{BoxError, CallContext};
use sinew_deadline::{ServerDeadlineLayer, ShedLayer};
use sinew_sign::{Accept, SecretKey, StaticKeyStore, Verifier, VerifyConfig, VerifySignatureLayer};

/// A fixture HTTP server behind the sinew server layers.
#[derive(Debug, Parser)]
#[command(name = "echo")]
struct Args {
    /// Register in this registry while running: `nacos://HOST:PORT` or
    /// `etcd://HOST:PORT` (with --service).
    #[arg(long, requires = "service")]
    register: Option<String>,
    /// The service name to register as (with --register).
    #[arg(long, requires = "register")]
    service: Option<String>,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Key id for signature verification (with --key-env, --key-file or
    /// --key-text).
    #[arg(long)]
    key_id: Option<String>,
    /// The shared secret is in this environment variable.
    #[arg(long, requires = "key_id", conflicts_with_all = ["key_file", "key_text"])]
    key_env: Option<String>,
    /// The shared secret is in this file (one final newline ignored).
    #[arg(long, requires = "key_id", conflicts_with = "key_text")]
    key_file: Option<std::path::PathBuf>,
    /// The shared secret itself (visible in `ps`; prefer --key-env).
    #[arg(long, requires = "key_id")]
    key_text: Option<String>,
    /// Shed by priority above this many concurrent requests.
    #[arg(long)]
    max_concurrency: Option<usize>,
    /// Cancel handlers at the caller's deadline (answer 504).
    #[arg(long)]
    cancel_at_deadline: bool,
    /// Trust x-envoy-expected-rq-timeout-ms.
    #[arg(long)]
    trust_envoy: bool,
}

#[derive(Clone)]
struct AppState {
    client: sinew::Client,
}

#[derive(serde::Serialize)]
struct ContextView {
    deadline_remaining_ms: Option<u64>,
    priority: &'static str,
}

async fn context() -> Json<ContextView> {
    let ctx = CallContext::current().unwrap_or_default();
    Json(ContextView {
        deadline_remaining_ms: ctx
            .remaining()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        priority: ctx.priority().as_str(),
    })
}

async fn echo(headers: HeaderMap, body: Bytes) -> Response {
    let mut res = body.into_response();
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        res.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
    }
    res
}

async fn status(Path(code): Path<u16>) -> Response {
    match StatusCode::from_u16(code) {
        Ok(s) => s.into_response(),
        Err(_) => problem(
            Problem::new(StatusCode::BAD_REQUEST, "invalid status code")
                .detail("the status must be a number from 100 to 999"),
        ),
    }
}

async fn delay(Path(ms): Path<u64>) -> StatusCode {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    StatusCode::OK
}

#[derive(serde::Deserialize)]
struct CallParams {
    url: String,
}

async fn call(State(state): State<AppState>, Query(q): Query<CallParams>) -> Response {
    // The sinew client inherits this request's deadline and priority from
    // the ambient call context the server layer set up.
    match state.client.get(&q.url).send().await {
        Ok(res) => {
            let status = res.status();
            let content_type = res.headers().get(header::CONTENT_TYPE).cloned();
            match res.bytes().await {
                Ok(body) => {
                    let mut out = (status, body).into_response();
                    if let Some(ct) = content_type {
                        out.headers_mut().insert(header::CONTENT_TYPE, ct);
                    }
                    out
                }
                Err(e) => problem(
                    Problem::new(StatusCode::BAD_GATEWAY, "call failed")
                        .detail(format!("reading the answer of {} failed: {e}", q.url)),
                ),
            }
        }
        Err(e) => match (e.status(), e.kind()) {
            (Some(status), _) => {
                let body = e.body().cloned().unwrap_or_default();
                (status, body).into_response()
            }
            (None, sinew::ErrorKind::Timeout) => problem(
                Problem::new(StatusCode::GATEWAY_TIMEOUT, "deadline exceeded").detail(format!(
                    "calling {} did not finish before the deadline",
                    q.url
                )),
            ),
            (None, sinew::ErrorKind::InvalidRequest) => {
                problem(Problem::new(StatusCode::BAD_REQUEST, "invalid url").detail(e.to_string()))
            }
            (None, _) => problem(
                Problem::new(StatusCode::BAD_GATEWAY, "call failed")
                    .detail(format!("calling {} failed: {e}", q.url)),
            ),
        },
    }
}

fn problem(p: Problem) -> Response {
    p.into_response::<axum::body::Body>()
}

/// Register `addr` as an instance of `service` in the registry `url`.
async fn register(
    url: &str,
    service: &str,
    addr: SocketAddr,
) -> Result<sinew::registry::Registration, BoxError> {
    use sinew::registry::{RegisterConfig, Registration, RegistryConfig};
    let registry: RegistryConfig = match url.split_once("://") {
        Some(("nacos", server)) => {
            toml::from_str(&format!("nacos = {{ server_addr = {server:?} }}"))?
        }
        Some(("etcd", server)) => {
            toml::from_str(&format!("etcd = {{ endpoints = [\"http://{server}\"] }}"))?
        }
        _ => {
            return Err(
                format!("--register {url:?}: write nacos://HOST:PORT or etcd://HOST:PORT").into(),
            )
        }
    };
    let register = RegisterConfig {
        service: service.to_string(),
        address: addr.to_string(),
        weight: 1.0,
        metadata: Default::default(),
        instance_id: None,
        ttl: None,
    };
    Ok(Registration::register(&registry, &register).await?)
}

/// Completes on SIGTERM or Ctrl-C. The handlers are installed when this is
/// called, not when the future is first polled: the caller calls it before
/// it announces its address, so a SIGTERM sent right after that line stops
/// it gracefully instead of killing it (the signal's default action).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match term {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    // Verification: RFC 9421 signatures with keyid ID, and legacy
    // X-Service-ID: ID signatures (`Accept::Any`), both with the secret.
    let secret = match (&args.key_env, &args.key_file, &args.key_text) {
        (Some(var), _, _) => Some(Secret::Env(var.clone())),
        (None, Some(path), _) => Some(Secret::File(path.clone())),
        (None, None, Some(text)) => Some(Secret::Text(text.clone())),
        (None, None, None) => None,
    };
    let verify = match (&args.key_id, secret) {
        (Some(id), Some(secret)) => {
            let key = SecretKey::from_bytes(secret.load()?)?;
            let keys = StaticKeyStore::new()
                .with_key(id.clone(), key.clone())
                .with_legacy_key(id.clone(), key);
            Some(VerifySignatureLayer::new(Verifier::new(
                VerifyConfig::default().accept(Accept::Any),
                keys,
            )))
        }
        (Some(_), None) => return Err("--key-id needs --key-env, --key-file or --key-text".into()),
        _ => None,
    };

    // The Prometheus recorder of this process, served at /metrics.
    let metrics = sinew_metrics::prometheus::PrometheusBuilder::new().install()?;
    // The client of /call: the sinew stack (deadline propagation, retries,
    // per-call and per-attempt metrics).
    let client = sinew::Client::builder()
        .metrics(sinew_metrics::MetricsConfig::default())
        .build()?;

    let app = Router::new()
        .route("/context", get(context))
        .route("/echo", post(echo))
        .route("/status/{code}", get(status))
        .route("/delay/{ms}", get(delay))
        .route("/call", get(call))
        .with_state(AppState { client });
    // The server stack (metrics → verification → deadline/priority →
    // shedding → app), on every route (so metrics see the route template);
    // /metrics itself is merged outside it.
    let mut stack = ServerStack::new()
        .metrics(sinew_metrics::ServerMetricsLayer::new())
        .deadline(
            ServerDeadlineLayer::new()
                .cancel_at_deadline(args.cancel_at_deadline)
                .trust_envoy(args.trust_envoy),
        );
    if let Some(layer) = verify {
        stack = stack.verify(layer);
    }
    if let Some(n) = args.max_concurrency {
        stack = stack.shed(ShedLayer::with_limit(n));
    }
    let app = app.layer(stack).merge(metrics.router());

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    // Registered before it says it listens, so whoever waits for that line
    // finds it in the registry too.
    let registration = match (&args.register, &args.service) {
        (Some(url), Some(service)) => Some(register(url, service, addr).await?),
        _ => None,
    };
    let shutdown = shutdown_signal();
    println!("listening on {addr}");
    {
        use std::io::Write;
        std::io::stdout().flush()?;
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    if let Some(r) = registration {
        r.deregister().await;
    }
    Ok(())
}
