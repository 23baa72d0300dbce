//! Chaos backends for the fault soak, in the backend process.
//!
//! Three backends on 127.0.0.1, driven by a script of phases the parent
//! sends on stdin (`phase <name>` lines):
//!
//! * `flaky` answers 503 to every 10th call;
//! * `reset` closes the connection in the middle of every 10th response;
//! * `slowish` turns slow in the `slow` phase;
//! * in the `kill` phase the `flaky` backend stops listening and drops its
//!   connections; in `restart` it listens again on the same port.
//!
//! Every backend records each arrival against the deadline the client sent
//! (`x-bench-deadline-ms`, wall-clock milliseconds since the epoch, and
//! `x-request-timeout`), so the parent can check that no request was sent
//! after its deadline. `GET /_stats` on the control port returns the counts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Counts kept by every backend.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) requests: AtomicU64,
    pub(crate) late: AtomicU64,
    pub(crate) no_time_left: AtomicU64,
    pub(crate) failed_on_purpose: AtomicU64,
}

/// The stats the parent reads.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct BackendStats {
    pub(crate) name: String,
    pub(crate) requests: u64,
    pub(crate) late: u64,
    pub(crate) no_time_left: u64,
    pub(crate) failed_on_purpose: u64,
}

/// What the chaos process prints when it is ready.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ChaosPorts {
    pub(crate) flaky: SocketAddr,
    pub(crate) reset: SocketAddr,
    pub(crate) slowish: SocketAddr,
    pub(crate) control: SocketAddr,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Record the arrival of a request against its deadline.
fn record(counts: &Counts, headers: &http::HeaderMap) {
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let arrived = now_ms();
    if let Some(deadline) = headers
        .get("x-bench-deadline-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if arrived > deadline {
            counts.late.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(left) = headers
        .get("x-request-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        if left <= 0.0 {
            counts.no_time_left.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A cheap deterministic "random" share: every `n`-th call.
fn every(counter: &AtomicU64, n: u64) -> bool {
    n > 0 && counter.fetch_add(1, Ordering::Relaxed) % n == n - 1
}

#[derive(Clone)]
struct Backend {
    name: &'static str,
    counts: Arc<Counts>,
    tick: Arc<AtomicU64>,
    slow: Arc<AtomicBool>,
}

async fn handle(b: Backend, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    record(&b.counts, req.headers());
    if b.name == "flaky" && every(&b.tick, 10) {
        b.counts.failed_on_purpose.fetch_add(1, Ordering::Relaxed);
        let mut r = Response::new(Full::new(Bytes::from_static(b"busy")));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return Ok(r);
    }
    if b.name == "slowish" && b.slow.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    Ok(Response::new(Full::new(crate::server::item("soak"))))
}

async fn serve_hyper(listener: TcpListener, b: Backend, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let b = b.clone();
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(
                        TokioIo::new(tcp),
                        hyper::service::service_fn(move |req| handle(b.clone(), req)),
                    );
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.changed() => {}
                    }
                });
            }
            _ = stop.changed() => return,
        }
    }
}

/// The `reset` backend speaks HTTP/1.1 by hand so it can cut a response
/// in the middle: every 10th response announces 100 bytes, sends 10, closes.
async fn serve_reset(listener: TcpListener, counts: Arc<Counts>) {
    let tick = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            continue;
        };
        let counts = counts.clone();
        let tick = tick.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            loop {
                // Read one request head (GETs without bodies).
                let head_end = loop {
                    if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break pos + 4;
                    }
                    let mut chunk = [0u8; 2048];
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut req = httparse::Request::new(&mut headers);
                if req.parse(&buf[..head_end]).is_err() {
                    return;
                }
                let mut map = http::HeaderMap::new();
                for h in req.headers.iter() {
                    if let (Ok(n), Ok(v)) = (
                        http::HeaderName::from_bytes(h.name.as_bytes()),
                        http::HeaderValue::from_bytes(h.value),
                    ) {
                        map.append(n, v);
                    }
                }
                buf.drain(..head_end);
                record(&counts, &map);
                let body = crate::server::item("soak");
                if every(&tick, 10) {
                    counts.failed_on_purpose.fetch_add(1, Ordering::Relaxed);
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len() + 100);
                    let _ = tcp.write_all(head.as_bytes()).await;
                    let _ = tcp.write_all(&body[..10]).await;
                    return; // close mid-response
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                if tcp.write_all(head.as_bytes()).await.is_err()
                    || tcp.write_all(&body).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

/// Run the chaos backends until stdin closes; phases come on stdin.
pub(crate) async fn run() -> std::io::Result<()> {
    let flaky_counts = Arc::new(Counts::default());
    let reset_counts = Arc::new(Counts::default());
    let slow_counts = Arc::new(Counts::default());
    let slow = Arc::new(AtomicBool::new(false));

    let flaky_listener = TcpListener::bind("127.0.0.1:0").await?;
    let flaky_addr = flaky_listener.local_addr()?;
    let flaky = Backend {
        name: "flaky",
        counts: flaky_counts.clone(),
        tick: Arc::new(AtomicU64::new(0)),
        slow: slow.clone(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut flaky_task = Some(tokio::spawn(serve_hyper(
        flaky_listener,
        flaky.clone(),
        stop_rx,
    )));
    let mut stop_tx = Some(stop_tx);

    let reset_listener = TcpListener::bind("127.0.0.1:0").await?;
    let reset_addr = reset_listener.local_addr()?;
    tokio::spawn(serve_reset(reset_listener, reset_counts.clone()));

    let slow_listener = TcpListener::bind("127.0.0.1:0").await?;
    let slow_addr = slow_listener.local_addr()?;
    let (_keep, never) = watch::channel(false);
    tokio::spawn(serve_hyper(
        slow_listener,
        Backend {
            name: "slowish",
            counts: slow_counts.clone(),
            tick: Arc::new(AtomicU64::new(0)),
            slow: slow.clone(),
        },
        never,
    ));

    let control = TcpListener::bind("127.0.0.1:0").await?;
    let control_addr = control.local_addr()?;
    let all = vec![
        ("flaky", flaky_counts.clone()),
        ("reset", reset_counts.clone()),
        ("slowish", slow_counts.clone()),
    ];
    let app = axum::Router::new().route(
        "/_stats",
        axum::routing::get(move || {
            let all = all.clone();
            async move {
                let stats: Vec<BackendStats> = all
                    .iter()
                    .map(|(name, c)| BackendStats {
                        name: name.to_string(),
                        requests: c.requests.load(Ordering::Relaxed),
                        late: c.late.load(Ordering::Relaxed),
                        no_time_left: c.no_time_left.load(Ordering::Relaxed),
                        failed_on_purpose: c.failed_on_purpose.load(Ordering::Relaxed),
                    })
                    .collect();
                axum::Json(stats)
            }
        }),
    );
    tokio::spawn(async move { axum::serve(control, app).await });

    let ports = ChaosPorts {
        flaky: flaky_addr,
        reset: reset_addr,
        slowish: slow_addr,
        control: control_addr,
    };
    println!(
        "{}",
        serde_json::to_string(&ports).map_err(std::io::Error::other)?
    );

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match line.trim() {
            "phase slow" => slow.store(true, Ordering::Relaxed),
            "phase fast" => slow.store(false, Ordering::Relaxed),
            "phase kill" => {
                if let Some(tx) = stop_tx.take() {
                    let _ = tx.send(true);
                }
                if let Some(t) = flaky_task.take() {
                    let _ = t.await;
                }
            }
            "phase restart" if flaky_task.is_none() => {
                // The port was ours a moment ago; retry briefly if the
                // kernel still holds it.
                let mut bound = None;
                for _ in 0..50 {
                    match TcpListener::bind(flaky_addr).await {
                        Ok(l) => {
                            bound = Some(l);
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                if let Some(l) = bound {
                    let (tx, rx) = watch::channel(false);
                    stop_tx = Some(tx);
                    flaky_task = Some(tokio::spawn(serve_hyper(l, flaky.clone(), rx)));
                }
            }
            _ => {}
        }
        println!("ok");
    }
    Ok(())
}
