//! `sinew-bench proxy`: what one proxy hop costs.
//!
//! ```text
//! cargo run --release -p sinew-bench -- proxy [--requests N] [--rounds R] [--concurrency 1,64] [--quick] [--json]
//! ```
//!
//! Three processes: the backends (`serve`, as for `load`), the proxies
//! (this subcommand with `--serve`), and the client (this process). The
//! proxy process runs, on separate ports:
//!
//! * `bare-hyper`: a plain hyper reverse proxy with no layers (hyper-util's
//!   auto server, hop-by-hop fields removed, a pooled legacy client);
//! * `sinew-inbound`: `sinew::proxy`'s inbound side with every server layer
//!   (metrics by route template, RFC 9421 verification with the replay
//!   cache, deadline and priority, shedding) in front of one backend;
//! * `sinew-outbound`: its outbound side with every client layer (deadline,
//!   retry with its budget, P2C balancing over the three backends, a
//!   breaker per endpoint, RFC 9421 signing, metrics per call and per
//!   attempt), the service named by `Host`.
//!
//! and `direct` calls a backend with no hop. The client sends `GET
//! /item/{id}` (a ~100-byte JSON answer) with a pooled hyper client; for the
//! inbound side it signs each request (client-side work, not counted).
//! The scenarios alternate round by round; CPU per request is the proxy
//! process's own (`clock_gettime(CLOCK_PROCESS_CPUTIME_ID)` there, read
//! before and after each run), latency is what the client sees.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::stats;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const KEY: &str = "bench-proxy-signing-key";

/// Arguments of `sinew-bench proxy`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ProxyArgs {
    /// Requests per scenario per round.
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Concurrency levels, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 64])]
    concurrency: Vec<usize>,
    /// Rounds of alternation.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// A short run (under a minute).
    #[arg(long)]
    quick: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Run only these scenarios (and `bare-hyper`, the baseline), e.g. to
    /// profile one: `--only sinew-inbound`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// (internal) Run the proxies in front of these backends until stdin
    /// closes.
    #[arg(long, hide = true, value_delimiter = ',')]
    serve: Option<Vec<SocketAddr>>,
}

/// Where the proxy process listens.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ProxyPorts {
    bare: SocketAddr,
    inbound: SocketAddr,
    outbound: SocketAddr,
}

/// The CPU time of the proxy process, in nanoseconds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Cpu {
    ns: u64,
}

/// One scenario at one concurrency, medians over the rounds.
#[derive(Debug, serde::Serialize)]
struct Row {
    scenario: &'static str,
    concurrency: usize,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    /// The proxy process's CPU per request (0 for `direct`).
    proxy_cpu_us_per_req: f64,
    /// Median of the per-round ratios to `bare-hyper`'s proxy CPU.
    cpu_vs_bare: f64,
    cpu_vs_bare_iqr: (f64, f64),
    cpu_us_rounds: Vec<f64>,
    errors: u64,
}

pub(crate) async fn run(mut args: ProxyArgs) -> Result<(), BoxError> {
    if let Some(backends) = args.serve.take() {
        return serve(backends).await;
    }
    if args.quick {
        args.requests = args.requests.min(3_000);
        args.rounds = args.rounds.min(2);
    }
    let exe = std::env::current_exe()?;
    // Held until the end: the backend exits when its stdin closes.
    let (_backend, backend_line, _backend_io) = spawn(&exe, &["serve"]).await?;
    let ports: crate::server::Ports = serde_json::from_str(&backend_line)?;
    let list: Vec<String> = ports.backends.iter().map(|a| a.to_string()).collect();
    let (_proxy, proxy_line, mut proxy_io) =
        spawn(&exe, &["proxy", "--serve", &list.join(",")]).await?;
    let proxies: ProxyPorts = serde_json::from_str(&proxy_line)?;

    let client = client();
    let signer = sinew::sign::Signer::new(
        sinew::sign::SignConfig::rfc9421("bench"),
        sinew::sign::SecretKey::from_text(KEY)?,
    )?;
    let target = |addr: SocketAddr, host: Option<&'static str>, sign: bool| Target {
        addr,
        host,
        signer: sign.then(|| signer.clone()),
    };
    let scenarios: Vec<(&'static str, Target)> = vec![
        ("direct", target(ports.backends[0], None, false)),
        ("bare-hyper", target(proxies.bare, None, false)),
        ("sinew-inbound", target(proxies.inbound, None, true)),
        (
            "sinew-outbound",
            target(proxies.outbound, Some("inventory"), false),
        ),
    ];
    let scenarios: Vec<(&'static str, Target)> = scenarios
        .into_iter()
        .filter(|(name, _)| {
            args.only.is_empty() || *name == "bare-hyper" || args.only.iter().any(|o| o == name)
        })
        .collect();
    let bare = scenarios
        .iter()
        .position(|(name, _)| *name == "bare-hyper")
        .ok_or("no bare-hyper scenario")?;
    let mut rows = Vec::new();
    for &c in &args.concurrency {
        let mut runs: Vec<Vec<Run>> = scenarios.iter().map(|_| Vec::new()).collect();
        for round in 0..args.rounds {
            for (i, (_, t)) in scenarios.iter().enumerate() {
                if round == 0 {
                    drive(&client, t, (args.requests / 10).max(200), c, &mut proxy_io).await?;
                }
                runs[i].push(drive(&client, t, args.requests, c, &mut proxy_io).await?);
            }
        }
        for (i, (name, _)) in scenarios.iter().enumerate() {
            let ratios: Vec<f64> = (0..args.rounds)
                .map(|r| runs[i][r].cpu_us / runs[bare][r].cpu_us.max(1e-9))
                .collect();
            let med = |f: &dyn Fn(&Run) -> f64| {
                let mut v: Vec<f64> = runs[i].iter().map(f).collect();
                stats::median(&mut v)
            };
            let direct = *name == "direct";
            rows.push(Row {
                scenario: name,
                concurrency: c,
                rps: med(&|r| r.rps),
                p50_us: med(&|r| r.p50_us),
                p99_us: med(&|r| r.p99_us),
                proxy_cpu_us_per_req: if direct { 0.0 } else { med(&|r| r.cpu_us) },
                cpu_vs_bare: if direct {
                    0.0
                } else {
                    stats::median(&mut ratios.clone())
                },
                cpu_vs_bare_iqr: if direct {
                    (0.0, 0.0)
                } else {
                    quartiles(&ratios)
                },
                cpu_us_rounds: runs[i].iter().map(|r| r.cpu_us).collect(),
                errors: runs[i].iter().map(|r| r.errors).sum(),
            });
        }
    }
    if args.json {
        println!("{}", serde_json::json!({ "proxy": rows }));
    } else {
        println!(
            "{:<15} {:>4} {:>8} {:>7} {:>7} {:>13} {:>20} {:>6}",
            "scenario",
            "C",
            "req/s",
            "p50 µs",
            "p99 µs",
            "proxy cpu µs",
            "×cpu vs bare (IQR)",
            "errors"
        );
        for r in &rows {
            let ratio = if r.scenario == "direct" {
                "—".to_string()
            } else {
                format!(
                    "{:.2} ({:.2}–{:.2})",
                    r.cpu_vs_bare, r.cpu_vs_bare_iqr.0, r.cpu_vs_bare_iqr.1
                )
            };
            let cpu = if r.scenario == "direct" {
                "—".to_string()
            } else {
                format!("{:.1}", r.proxy_cpu_us_per_req)
            };
            println!(
                "{:<15} {:>4} {:>8.0} {:>7.0} {:>7.0} {:>13} {:>20} {:>6}",
                r.scenario, r.concurrency, r.rps, r.p50_us, r.p99_us, cpu, ratio, r.errors
            );
        }
    }
    Ok(())
}

fn quartiles(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        if s.is_empty() {
            return 0.0;
        }
        let pos = (s.len() - 1) as f64 * p;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(s.len() - 1);
        s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
    };
    (q(0.25), q(0.75))
}

/// A child process of this binary: its first stdout line, and a pipe to
/// ask it for its CPU time.
struct ChildIo {
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl ChildIo {
    async fn cpu_ns(&mut self) -> Result<u64, BoxError> {
        self.stdin.write_all(b"stat\n").await?;
        self.stdin.flush().await?;
        let line = self
            .lines
            .next_line()
            .await?
            .ok_or("the proxy process closed its stdout")?;
        Ok(serde_json::from_str::<Cpu>(&line)?.ns)
    }
}

async fn spawn(
    exe: &std::path::Path,
    args: &[&str],
) -> Result<(tokio::process::Child, String, ChildIo), BoxError> {
    let mut child = tokio::process::Command::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout from a child")?;
    let stdin = child.stdin.take().ok_or("no stdin to a child")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = lines
        .next_line()
        .await?
        .ok_or("a child process exited before listening")?;
    Ok((child, first, ChildIo { stdin, lines }))
}

type Client = HyperClient<HttpConnector, Empty<Bytes>>;

fn client() -> Client {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    HyperClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(http)
}

#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    host: Option<&'static str>,
    signer: Option<sinew::sign::Signer>,
}

async fn call(client: &Client, t: &Target, id: u64) -> Result<(), BoxError> {
    let uri: Uri = format!("http://{}/item/{id}", t.addr).parse()?;
    let mut req = Request::get(uri).body(Empty::<Bytes>::new())?;
    if let Some(h) = t.host {
        req.headers_mut().insert(http::header::HOST, h.parse()?);
    }
    if let Some(signer) = &t.signer {
        let (mut parts, body) = req.into_parts();
        signer.sign(&mut parts, b"")?;
        req = Request::from_parts(parts, body);
    }
    let res = client.request(req).await?;
    if !res.status().is_success() {
        return Err(format!("status {}", res.status()).into());
    }
    res.into_body().collect().await?;
    Ok(())
}

struct Run {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us: f64,
    errors: u64,
}

async fn drive(
    client: &Client,
    t: &Target,
    requests: u64,
    concurrency: usize,
    proxy: &mut ChildIo,
) -> Result<Run, BoxError> {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let cpu_before = proxy.cpu_ns().await?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let (client, t, next, errors) = (client.clone(), t.clone(), next.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(requests as usize / concurrency.max(1) + 1);
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id >= requests {
                    break;
                }
                let at = Instant::now();
                if let Err(e) = call(&client, &t, id).await {
                    if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("sinew-bench proxy: {} failed: {e}", t.addr);
                    }
                }
                lat.push(at.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(requests as usize);
    for task in tasks {
        all.extend(task.await?);
    }
    let elapsed = started.elapsed();
    let cpu = proxy.cpu_ns().await?.saturating_sub(cpu_before);
    all.sort();
    Ok(Run {
        rps: requests as f64 / elapsed.as_secs_f64(),
        p50_us: stats::percentile_us(&all, 0.5),
        p99_us: stats::percentile_us(&all, 0.99),
        cpu_us: cpu as f64 / 1e3 / requests as f64,
        errors: errors.load(Ordering::Relaxed),
    })
}

/// The proxy process: the bare hop and both sinew sides, until stdin
/// closes.
async fn serve(backends: Vec<SocketAddr>) -> Result<(), BoxError> {
    let _metrics = sinew::metrics::prometheus::PrometheusBuilder::new().install()?;
    let first = *backends.first().ok_or("no backend")?;
    let bare = TcpListener::bind("127.0.0.1:0").await?;
    let bare_addr = bare.local_addr()?;
    tokio::spawn(bare_proxy(bare, first));

    let list = backends
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        r#"
[sign]
key_id = "bench"
key = {{ text = "{KEY}" }}
[breaker]
policies = [{{ failure_rate = 0.5, minimum_calls = 20, window = "10s" }}]
[balance]
strategy = "p2c-ewma"
[metrics]
per_attempt = true
[registry]
static = {{ inventory = [{list}] }}

[server.metrics]
[server.verify]
keys = [{{ key_id = "bench", key = {{ text = "{KEY}" }} }}]
[server.shed]
max_concurrency = 1024

[proxy.inbound]
listen = "127.0.0.1:0"
upstream = "{first}"
routes = ["/item/{{id}}"]
max_connections = 4096
[proxy.outbound]
listen = "127.0.0.1:0"
max_connections = 4096
"#
    );
    let running = sinew::proxy::Proxy::from_toml(&config, "bench-proxy.toml")?
        .bind()
        .await?;
    let ports = ProxyPorts {
        bare: bare_addr,
        inbound: running.inbound_addr().ok_or("no inbound side")?,
        outbound: running.outbound_addr().ok_or("no outbound side")?,
    };
    println!("{}", serde_json::to_string(&ports)?);
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = lines.next_line().await {
        let ns = u64::try_from(stats::cpu_time().as_nanos()).unwrap_or(u64::MAX);
        println!("{}", serde_json::to_string(&Cpu { ns })?);
    }
    Ok(())
}

type BareClient = HyperClient<HttpConnector, Incoming>;

/// A reverse proxy with no layers: the target rewritten, hop-by-hop fields
/// removed both ways, bodies streamed.
async fn bare_proxy(listener: TcpListener, upstream: SocketAddr) {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client: BareClient = HyperClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(http);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let client = client.clone();
                async move { Ok::<_, std::convert::Infallible>(forward(&client, upstream, req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn forward(
    client: &BareClient,
    upstream: SocketAddr,
    req: Request<Incoming>,
) -> Response<http_body_util::combinators::UnsyncBoxBody<Bytes, hyper::Error>> {
    let (mut parts, body) = req.into_parts();
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = match format!("http://{upstream}{pq}").parse() {
        Ok(u) => u,
        Err(_) => return status(400),
    };
    parts.version = http::Version::HTTP_11;
    strip(&mut parts.headers);
    match client.request(Request::from_parts(parts, body)).await {
        Ok(res) => {
            let (mut head, body) = res.into_parts();
            strip(&mut head.headers);
            Response::from_parts(head, body.boxed_unsync())
        }
        Err(_) => status(502),
    }
}

fn strip(h: &mut http::HeaderMap) {
    use http::header::{CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};
    let named: Vec<http::HeaderName> = h
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| http::HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [CONNECTION, TE, TRANSFER_ENCODING, UPGRADE] {
        h.remove(n);
    }
    h.remove("keep-alive");
    h.remove("proxy-connection");
}

fn status(code: u16) -> Response<http_body_util::combinators::UnsyncBoxBody<Bytes, hyper::Error>> {
    let mut r = Response::new(
        http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_GATEWAY);
    r
}
