#![allow(clippy::unwrap_used)]
//! `sinew proxy` as a process, with Python peers: an aiohttp application
//! (with aio-request's middleware) behind the inbound side, an aio-request
//! client calling through the outbound side, a 100 MiB body through both
//! sides in bounded memory, an instance killed mid-run with no failed call,
//! and the drain on SIGTERM. `scripts/setup.sh` installs aiohttp and
//! aio-request.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use sha2::{Digest, Sha256};

const KEY: &str = "s3cret-sidecar-key";

/// The application: aiohttp with aio-request's middleware (so its own
/// calls inherit the caller's deadline), printing `listening on PORT`.
const APP: &str = r#"
import asyncio, hashlib, json, os, sys
import aiohttp, aiohttp.web as web
import aio_request

name = sys.argv[1]
outbound = os.environ.get("OUTBOUND")
hits = 0
BLOCK = bytes(range(256)) * 256

def seen(request):
    ctx = aio_request.get_context()
    return {
        "app": name,
        "caller": request.headers.get("X-Sinew-Caller"),
        "timeout": request.headers.get("X-Request-Timeout"),
        "priority": request.headers.get("X-Request-Priority"),
        "context_timeout": ctx.deadline.timeout if ctx.deadline else None,
        "context_priority": str(ctx.priority) if ctx.priority else None,
        "forwarded": request.headers.get("Forwarded"),
        "via": request.headers.get("Via"),
    }

async def whoami(request):
    global hits
    hits += 1
    return web.json_response(seen(request))

async def count(request):
    return web.json_response({"hits": hits})

async def slow(request):
    await asyncio.sleep(int(request.query.get("ms", "1000")) / 1000)
    return web.json_response({"app": name})

async def upload(request):
    h = hashlib.sha256()
    n = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        h.update(chunk)
        n += len(chunk)
    return web.json_response({"len": n, "sha256": h.hexdigest()})

async def download(request):
    total = int(request.match_info["n"])
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await resp.prepare(request)
    sent = 0
    while sent < total:
        chunk = BLOCK[: min(len(BLOCK), total - sent)]
        await resp.write(chunk)
        sent += len(chunk)
    await resp.write_eof()
    return resp

async def call(request):
    # Through the outbound side, as an HTTP proxy; aio-request sends the
    # deadline it holds (the caller's, from the middleware).
    async with aiohttp.ClientSession(proxy=outbound) as session:
        client = aio_request.setup(
            transport=aio_request.AioHttpTransport(session),
            endpoint="http://" + request.query["service"] + "/",
        )
        async with client.request(aio_request.get(request.query["path"].lstrip("/"))) as response:
            body = await response.json()
            return web.json_response({"status": response.status, "far": body, "here": seen(request)})

async def main():
    app = web.Application(middlewares=[aio_request.aiohttp_middleware_factory()], client_max_size=1 << 30)
    app.add_routes([
        web.get("/whoami", whoami), web.post("/whoami", whoami),
        web.get("/hits", count), web.get("/slow", slow),
        web.post("/upload", upload), web.get("/download/{n}", download),
        web.get("/call", call),
    ])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"listening on {port}", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"#;

/// An aio-request client calling `http://SERVICE/PATH` through the
/// outbound side as an HTTP proxy (`HTTP_PROXY`), with a deadline and a
/// priority; prints the status and the body.
const CLIENT: &str = r#"
import asyncio, json, sys
import aiohttp
import aio_request

service, path, timeout, priority = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]

async def main():
    async with aiohttp.ClientSession(trust_env=True) as session:
        client = aio_request.setup(
            transport=aio_request.AioHttpTransport(session),
            endpoint="http://" + service + "/",
        )
        async with client.request(
            aio_request.get(path),
            deadline=aio_request.Deadline.from_timeout(timeout),
            priority=aio_request.Priority(priority),
        ) as response:
            print(json.dumps({"status": response.status, "body": await response.json()}))

asyncio.run(main())
"#;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sinew-proxy-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child process, killed when dropped.
struct Proc {
    child: Child,
    what: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory (VmHWM), KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM for {}", self.what))
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.pid());
    }
}

/// Read the child's stdout lines until one starts with each of `wants`;
/// the rest of each line.
fn read_lines(child: &mut Child, wants: &[&str], what: &str) -> Vec<String> {
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let mut found = Vec::new();
    for want in wants {
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{what} exited before printing {want:?}"))
                .unwrap();
            if let Some(rest) = line.strip_prefix(want) {
                found.push(rest.trim().to_string());
                break;
            }
        }
    }
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    found
}

fn python_app(name: &str, outbound: Option<SocketAddr>) -> (Proc, SocketAddr) {
    let dir = scratch("py");
    let script = dir.join("app.py");
    std::fs::write(&script, APP).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(name)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(o) = outbound {
        cmd.env("OUTBOUND", format!("http://{o}"));
    }
    let mut child = cmd
        .spawn()
        .expect("python3 with aiohttp and aio-request (scripts/setup.sh installs them)");
    let port = read_lines(&mut child, &["listening on "], "the Python application");
    let addr: SocketAddr = format!("127.0.0.1:{}", port[0]).parse().unwrap();
    (
        Proc {
            child,
            what: format!("app {name}"),
        },
        addr,
    )
}

/// `sinew proxy --config FILE`, once it printed its listening lines.
struct Sidecar {
    proc: Proc,
    inbound: Option<SocketAddr>,
    outbound: Option<SocketAddr>,
    admin: Option<SocketAddr>,
}

fn sidecar(name: &str, config: &str) -> Sidecar {
    let dir = scratch(name);
    let path = dir.join("proxy.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(["proxy", "--config"])
        .arg(&path)
        .env("SIDECAR_KEY", KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sides: Vec<&str> = ["inbound", "outbound", "admin"]
        .into_iter()
        .filter(|s| config.contains(&format!("[proxy.{s}]")))
        .collect();
    let wants: Vec<String> = sides.iter().map(|s| format!("{s} listening on ")).collect();
    let want_refs: Vec<&str> = wants.iter().map(String::as_str).collect();
    let found = read_lines(&mut child, &want_refs, name);
    let addr = |side: &str| {
        sides
            .iter()
            .position(|s| *s == side)
            .map(|i| found[i].parse::<SocketAddr>().unwrap())
    };
    let stderr = child.stderr.take().unwrap();
    let label = name.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[{label}] {line}");
        }
    });
    Sidecar {
        inbound: addr("inbound"),
        outbound: addr("outbound"),
        admin: addr("admin"),
        proc: Proc {
            child,
            what: format!("sidecar {name}"),
        },
    }
}

fn verify_section() -> &'static str {
    "[server.verify]\naccept = \"any\"\nkeys = [{ key_id = \"orders\", key = { env = \"SIDECAR_KEY\" } }]\n"
}

fn sign_section() -> &'static str {
    "[sign]\nkey_id = \"orders\"\nkey = { env = \"SIDECAR_KEY\" }\n"
}

type Plain = HyperClient<hyper_util::client::legacy::connect::HttpConnector, sinew::Body>;

fn plain() -> Plain {
    HyperClient::builder(TokioExecutor::new()).build_http()
}

async fn get_json(client: &Plain, req: http::Request<sinew::Body>) -> (u16, Value) {
    let res = client.request(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, v)
}

fn signing_client() -> sinew::Client {
    std::env::set_var("SIDECAR_KEY", KEY);
    let config = sinew::config::ClientConfig::from_toml(sign_section(), "client.toml").unwrap();
    sinew::ClientBuilder::from_config(config)
        .no_retry()
        .build()
        .unwrap()
}

fn seconds(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.as_f64().unwrap(),
        other => panic!("not seconds: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_application_behind_the_inbound_side() {
    let (_app, app) = python_app("orders", None);
    let car = sidecar(
        "inbound",
        &format!(
            "{}[proxy.inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"{app}\"\n",
            verify_section()
        ),
    );
    let base = format!("http://{}", car.inbound.unwrap());
    let client = plain();
    let hits = || async {
        let (_, v) = get_json(
            &plain(),
            http::Request::get(format!("http://{app}/hits"))
                .body(sinew::Body::empty())
                .unwrap(),
        )
        .await;
        v["hits"].as_u64().unwrap()
    };

    // Signed by a sinew client: the application (and aio-request's
    // middleware) sees the caller, the deadline left and the priority.
    let seen: Value = signing_client()
        .get(&format!("{base}/whoami"))
        .header("x-sinew-caller", "admin")
        .timeout(Duration::from_secs(4))
        .priority(sinew::Priority::Low)
        .send_json()
        .await
        .unwrap();
    assert_eq!(seen["caller"], "orders", "{seen}");
    let t = seconds(&seen["timeout"]);
    assert!(t > 3.0 && t <= 4.0, "{seen}");
    let ct = seconds(&seen["context_timeout"]);
    assert!(ct > 3.0 && ct <= 4.0, "{seen}");
    assert_eq!(seen["priority"], "low");
    assert_eq!(seen["context_priority"], "low");
    assert_eq!(seen["via"], "1.1 sinew");
    assert!(seen["forwarded"]
        .as_str()
        .unwrap()
        .starts_with("for=127.0.0.1"));
    let before = hits().await;
    assert_eq!(before, 1);

    // Tampered after signing (another path): refused, never reaches it.
    let signer = sinew::sign::Signer::new(
        sinew::sign::SignConfig::rfc9421("orders"),
        sinew::sign::SecretKey::from_text(KEY).unwrap(),
    )
    .unwrap();
    let (mut parts, ()) = http::Request::post(format!("{base}/hits"))
        .body(())
        .unwrap()
        .into_parts();
    signer.sign(&mut parts, b"").unwrap();
    parts.uri = format!("{base}/whoami").parse().unwrap();
    let (status, problem) = get_json(
        &client,
        http::Request::from_parts(parts, sinew::Body::empty()),
    )
    .await;
    assert_eq!(status, 401, "{problem}");
    assert_eq!(problem["reason"], "bad_signature");
    // Signed with another key, and unsigned: refused too.
    let other = sinew::sign::Signer::new(
        sinew::sign::SignConfig::rfc9421("orders"),
        sinew::sign::SecretKey::from_text("not-the-key").unwrap(),
    )
    .unwrap();
    let (mut parts, ()) = http::Request::get(format!("{base}/whoami"))
        .body(())
        .unwrap()
        .into_parts();
    other.sign(&mut parts, b"").unwrap();
    let (status, _) = get_json(
        &client,
        http::Request::from_parts(parts, sinew::Body::empty()),
    )
    .await;
    assert_eq!(status, 401);
    let (status, problem) = get_json(
        &client,
        http::Request::get(format!("{base}/whoami"))
            .header("x-sinew-caller", "orders")
            .body(sinew::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(problem["reason"], "missing_signature");
    assert_eq!(
        hits().await,
        before,
        "a refused call reached the application"
    );
}

/// Two services, each a Python application with a sidecar: an aio-request
/// client calls `inventory` through the orders sidecar's outbound side (as
/// an HTTP proxy); the far application sees the caller, the deadline and
/// the priority. Then the orders application itself calls inventory from
/// inside a request (aio-request forwards the deadline it was given).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aio_request_through_both_sidecars() {
    let (_inv_app, inv_app) = python_app("inventory", None);
    let inv = sidecar(
        "inventory",
        &format!(
            "{}[proxy.inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"{inv_app}\"\n",
            verify_section()
        ),
    );
    let inv_in = inv.inbound.unwrap();
    // The orders application needs its sidecar's outbound address before
    // it starts: bind the sidecar first, on a fixed free port.
    let out_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_orders_app, orders_app) = python_app("orders", Some(out_port));
    let orders = sidecar(
        "orders",
        &format!(
            "{}{}[registry]\nstatic = {{ inventory = [\"{inv_in}\"] }}\n[proxy.inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"{orders_app}\"\n[proxy.outbound]\nlisten = \"{out_port}\"\n",
            sign_section(),
            verify_section()
        ),
    );
    let out = orders.outbound.unwrap();
    assert_eq!(out, out_port);

    // aio-request's own client, HTTP_PROXY pointing at the outbound side.
    let dir = scratch("client");
    let script = dir.join("client.py");
    std::fs::write(&script, CLIENT).unwrap();
    let ran = Command::new("python3")
        .arg(&script)
        .args(["inventory", "whoami", "3", "high"])
        .env("HTTP_PROXY", format!("http://{out}"))
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let got: Value = serde_json::from_slice(&ran.stdout).unwrap();
    assert_eq!(got["status"], 200, "{got}");
    let far = &got["body"];
    assert_eq!(far["app"], "inventory");
    assert_eq!(far["caller"], "orders", "{far}");
    let t = seconds(&far["timeout"]);
    assert!(t > 2.0 && t < 3.0, "{far}");
    assert_eq!(far["priority"], "high");
    assert_eq!(far["context_priority"], "high");
    // The outbound hop and the far inbound hop.
    assert_eq!(far["via"], "1.1 sinew, 1.1 sinew");

    // A signed call into orders, whose handler calls inventory: the
    // deadline the orders application received is the one its call carries
    // (aio-request keeps its own priority rules: a client default of
    // normal under a low caller stays normal).
    let seen: Value = signing_client()
        .get(&format!(
            "http://{}/call?service=inventory&path=/whoami",
            orders.inbound.unwrap()
        ))
        .timeout(Duration::from_secs(5))
        .priority(sinew::Priority::Low)
        .send_json()
        .await
        .unwrap();
    assert_eq!(seen["status"], 200, "{seen}");
    let here = seconds(&seen["here"]["timeout"]);
    let there = seconds(&seen["far"]["timeout"]);
    assert!(here <= 5.0 && there < here && there > here - 1.0, "{seen}");
    assert_eq!(seen["far"]["caller"], "orders");
    assert_eq!(seen["here"]["priority"], "low");
    assert_eq!(seen["far"]["priority"], "normal");
}

/// A streamed body of the repeating 64 KiB block the application serves.
fn block() -> Bytes {
    (0..=255u8)
        .cycle()
        .take(64 * 1024)
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_body_streams_through_both_sides_in_bounded_memory() {
    const TOTAL: u64 = 100 * 1024 * 1024;
    let (_app, app) = python_app("store", None);
    let far = sidecar(
        "store",
        &format!("[proxy.inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"{app}\"\n"),
    );
    let far_in = far.inbound.unwrap();
    let near = sidecar(
        "near",
        &format!("[registry]\nstatic = {{ store = [\"{far_in}\"] }}\n[proxy.outbound]\nlisten = \"127.0.0.1:0\"\n"),
    );
    let out = near.outbound.unwrap();
    let client = plain();
    let baseline = (near.proc.peak_rss_kib(), far.proc.peak_rss_kib());

    // Up: 100 MiB of unknown length (chunked), hashed by the application.
    let chunk = block();
    let n = TOTAL / chunk.len() as u64;
    let mut want = Sha256::new();
    for _ in 0..n {
        want.update(&chunk);
    }
    let want = hex::encode(want.finalize());
    let up = chunk.clone();
    let stream = futures_util::stream::iter(0..n)
        .map(move |_| Ok::<_, std::convert::Infallible>(Frame::data(up.clone())));
    let started = Instant::now();
    let (status, got) = get_json(
        &client,
        http::Request::post(format!("http://{out}/upload"))
            .header("host", "store")
            .body(sinew::Body::stream(StreamBody::new(stream)))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["len"], TOTAL);
    assert_eq!(got["sha256"], want);
    let up_time = started.elapsed();

    // Down: 100 MiB streamed back, hashed here.
    let started = Instant::now();
    let res = client
        .request(
            http::Request::get(format!("http://{out}/download/{TOTAL}"))
                .header("host", "store")
                .body(sinew::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let mut h = Sha256::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.unwrap().into_data() {
            len += d.len() as u64;
            h.update(&d);
        }
    }
    assert_eq!(len, TOTAL);
    assert_eq!(hex::encode(h.finalize()), want);
    let down_time = started.elapsed();

    let near_kib = near.proc.peak_rss_kib();
    let far_kib = far.proc.peak_rss_kib();
    eprintln!(
        "100 MiB up in {up_time:?}, down in {down_time:?}; peak RSS (before -> after): outbound sidecar {} -> {} KiB, inbound sidecar {} -> {} KiB",
        baseline.0, near_kib, baseline.1, far_kib
    );
    // A buffered 100 MiB would add at least 100 MiB; streaming adds a few
    // flow-control windows of data.
    for (what, before, after) in [
        ("outbound", baseline.0, near_kib),
        ("inbound", baseline.1, far_kib),
    ] {
        assert!(
            after - before < 24 * 1024,
            "{what} sidecar grew from {before} to {after} KiB"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_mid_run_fails_no_call() {
    let (a_proc, a) = python_app("a", None);
    let (_b_proc, b) = python_app("b", None);
    let near = sidecar(
        "balance",
        &format!(
            r#"
[retry]
max_attempts = 3
base_delay = "5ms"
[breaker]
policies = [{{ failure_rate = 0.5, minimum_calls = 3, window = "10s" }}]
open_duration = "30s"
[registry]
static = {{ inventory = ["{a}", "{b}"] }}
[proxy.outbound]
listen = "127.0.0.1:0"
"#
        ),
    );
    let out = near.outbound.unwrap();
    let client = plain();
    const CALLS: usize = 600;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let killer = {
        let done = done.clone();
        let mut a_proc = Some(a_proc);
        tokio::spawn(async move {
            while done.load(std::sync::atomic::Ordering::Relaxed) < CALLS / 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let p = a_proc.take().unwrap();
            p.signal("-KILL");
            drop(p);
        })
    };
    let results: Vec<(u16, String)> = futures_util::stream::iter(0..CALLS)
        .map(|_| {
            let client = client.clone();
            let done = done.clone();
            async move {
                let res = client
                    .request(
                        http::Request::get(format!("http://{out}/whoami"))
                            .header("host", "inventory")
                            .body(sinew::Body::empty())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                (status, v["app"].as_str().unwrap_or("?").to_string())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    killer.await.unwrap();
    let failed: Vec<_> = results.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {CALLS} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let by_a = results.iter().filter(|(_, app)| app == "a").count();
    let by_b = results.iter().filter(|(_, app)| app == "b").count();
    assert_eq!(by_a + by_b, CALLS);
    assert!(by_a > 0 && by_b > CALLS / 2, "a {by_a}, b {by_b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_in_flight() {
    let (_app, app) = python_app("slow", None);
    let mut car = sidecar(
        "drain",
        &format!(
            "[proxy.inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"{app}\"\n[proxy.admin]\nlisten = \"127.0.0.1:0\"\n"
        ),
    );
    let inbound = car.inbound.unwrap();
    let admin = car.admin.unwrap();
    let (status, text) = get_json(
        &plain(),
        http::Request::get(format!("http://{admin}/metrics"))
            .body(sinew::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(text.as_str().unwrap().contains("sinew_proxy"), "{text}");
    let in_flight = tokio::spawn(async move {
        get_json(
            &plain(),
            http::Request::get(format!("http://{inbound}/slow?ms=1500"))
                .body(sinew::Body::empty())
                .unwrap(),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    car.proc.signal("-TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(inbound).await.is_err(),
        "accepted a connection while draining"
    );
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["app"], "slow");
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(s) = car.proc.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the sidecar did not exit after draining"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "{code:?}");
}

#[test]
fn a_bad_config_key_fails_at_start_up() {
    let dir = scratch("bad");
    let path = dir.join("proxy.toml");
    std::fs::write(
        &path,
        "[proxy.inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:8000\"\nrequest_timout = \"2s\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(["proxy", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 4") && err.contains("request_timout"),
        "{err}"
    );

    std::fs::write(&path, "[proxy.outbound]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(["proxy", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/proxy.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(["proxy", "--check", "--config"])
        .arg(&example)
        .env("ORDERS_SIGNING_KEY", "k")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
