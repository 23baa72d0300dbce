//! The fault soak: a sinew client against three chaos backends, with one
//! killed and restarted mid-run, asserting what docs/architecture.md promises.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::chaos::{BackendStats, ChaosPorts};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SoakArgs {
    /// How long to send for, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// A 10-second run for CI.
    #[arg(long)]
    quick: bool,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Each call's deadline, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    deadline_ms: u64,
}

/// What the soak measured.
#[derive(Debug, serde::Serialize)]
struct Report {
    seconds: f64,
    calls: u64,
    ok: u64,
    failed: u64,
    success_rate: f64,
    server_requests: u64,
    late_requests: u64,
    retries: u64,
    retry_allowance: f64,
    rss_after_warmup_kib: u64,
    rss_at_end_kib: u64,
    breaker_opened: bool,
    breaker_closed_again: bool,
    failures_by_kind: std::collections::BTreeMap<String, u64>,
    backends: Vec<BackendStats>,
}

/// Failed calls by error kind.
#[derive(Clone, Default)]
struct Kinds(Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>);

impl Kinds {
    fn record(&self, kind: &str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(kind.to_string()).or_default() += 1;
        }
    }

    fn snapshot(&self) -> std::collections::BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn stats(control: std::net::SocketAddr) -> Result<Vec<BackendStats>, BoxError> {
    let client = sinew::Client::builder().build()?;
    Ok(client
        .get(&format!("http://{control}/_stats"))
        .send_json()
        .await?)
}

pub(crate) async fn run(mut args: SoakArgs) -> Result<bool, BoxError> {
    if args.quick {
        args.seconds = args.seconds.min(10);
    }
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .arg("serve-chaos")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin to the chaos process")?;
    let stdout = child
        .stdout
        .take()
        .ok_or("no stdout from the chaos process")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = lines
        .next_line()
        .await?
        .ok_or("the chaos process exited before listening")?;
    let ports: ChaosPorts = serde_json::from_str(&line)?;

    let soak = crate::sinew_stack::soak_client(&ports)?;
    let client = soak.client.clone();
    // Watch the breaker of the backend that will be killed.
    let opened = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let closed_after = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        let breakers = soak.breakers.clone();
        let key = ports.flaky.to_string();
        let (opened, closed_after) = (opened.clone(), closed_after.clone());
        tokio::spawn(async move {
            loop {
                match breakers.state(&key) {
                    Some(sinew::breaker::State::Open) => opened.store(true, Ordering::Relaxed),
                    Some(sinew::breaker::State::Closed) if opened.load(Ordering::Relaxed) => {
                        closed_after.store(true, Ordering::Relaxed)
                    }
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let total = Duration::from_secs(args.seconds);
    let started = Instant::now();
    let calls = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let deadline = Duration::from_millis(args.deadline_ms);
    let kinds = Kinds::default();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let kinds = kinds.clone();
        let client = client.clone();
        let calls = calls.clone();
        let ok = ok.clone();
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while started.elapsed() < total {
                n += 1;
                calls.fetch_add(1, Ordering::Relaxed);
                let r = client
                    .get("/item/{id}")
                    .param("id", n)
                    .timeout(deadline)
                    .header(
                        "x-bench-deadline-ms",
                        &(now_ms() + deadline.as_millis() as u64).to_string(),
                    )
                    .send()
                    .await;
                match r {
                    Ok(resp) => match resp.bytes().await {
                        Ok(_) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => kinds.record(e.kind().as_str()),
                    },
                    Err(e) => kinds.record(e.kind().as_str()),
                }
            }
        }));
    }

    // The script: warm up, slow one backend, kill one, bring it back.
    let phase = |at: f64| started + total.mul_f64(at);
    let mut rss_after_warmup = 0;
    let script: [(f64, &str); 4] = [
        (0.15, "phase slow"),
        (0.35, "phase kill"),
        (0.60, "phase restart"),
        (0.75, "phase fast"),
    ];
    for (at, cmd) in script {
        tokio::time::sleep_until(phase(at).into()).await;
        if rss_after_warmup == 0 {
            rss_after_warmup = rss_kib();
        }
        stdin.write_all(format!("{cmd}\n").as_bytes()).await?;
        stdin.flush().await?;
        let _ = lines.next_line().await?;
    }
    for w in workers {
        let _ = w.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss_at_end = rss_kib();
    let backends = stats(ports.control).await?;
    drop(stdin);
    drop(child);

    let calls = calls.load(Ordering::Relaxed);
    let ok = ok.load(Ordering::Relaxed);
    let server_requests: u64 = backends.iter().map(|b| b.requests).sum();
    let late: u64 = backends.iter().map(|b| b.late + b.no_time_left).sum();
    let retries = server_requests.saturating_sub(calls);
    let (ratio, floor) = soak.budget;
    // The budget's window (10 s) lets the floor be spent once per window
    // plus what is still in it at the start.
    let allowance = calls as f64 * ratio + floor * (elapsed + 10.0);
    watch.abort();
    let (opened, closed) = (
        opened.load(Ordering::Relaxed),
        closed_after.load(Ordering::Relaxed),
    );
    let report = Report {
        seconds: elapsed,
        calls,
        ok,
        failed: calls - ok,
        success_rate: ok as f64 / calls.max(1) as f64,
        server_requests,
        late_requests: late,
        retries,
        retry_allowance: allowance,
        rss_after_warmup_kib: rss_after_warmup,
        rss_at_end_kib: rss_at_end,
        breaker_opened: opened,
        breaker_closed_again: closed,
        failures_by_kind: kinds.snapshot(),
        backends,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    let mut pass = true;
    let mut check = |ok: bool, what: &str| {
        println!("{} {what}", if ok { "PASS" } else { "FAIL" });
        pass &= ok;
    };
    check(report.success_rate >= 0.999, "success rate >= 99.9 %");
    check(
        report.late_requests == 0,
        "no request sent after its deadline",
    );
    check(
        (report.retries as f64) <= report.retry_allowance,
        "retries within the budget",
    );
    check(
        report.breaker_opened && report.breaker_closed_again,
        "the dead backend's breaker opened and closed again",
    );
    check(
        report.rss_at_end_kib as f64 <= report.rss_after_warmup_kib as f64 * 1.10,
        "RSS at the end within 10 % of after warm-up",
    );
    Ok(pass)
}
