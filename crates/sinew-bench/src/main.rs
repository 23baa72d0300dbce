//! The sinew load harness and fault soak.
//!
//! ```text
//! cargo run --release -p sinew-bench -- load [--requests N] [--concurrency 1,64] [--rounds R] [--quick] [--json]
//! cargo run --release -p sinew-bench -- soak [--seconds S] [--quick]
//! cargo run --release -p sinew-bench -- proxy [--requests N] [--rounds R] [--quick]
//! ```
//!
//! The backends run in a child process (this binary with `serve`), so the
//! clients' CPU time is measured alone. Clients run in alternation (A B A B …)
//! for several rounds, and every ratio compares a client with the bare hyper
//! client of the same round.
// `unsafe` is denied, not forbidden: the counting allocator (`alloc_count`)
// and the CPU clock (`stats::cpu_time`, one libc call) allow it.
#![deny(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::io::AsyncBufReadExt;

mod alloc_count;
mod chaos;
mod clients;
mod proxy;
mod server;
mod server_stack;
mod sinew_stack;
mod soak;
mod stats;

use clients::Driver;
use server::Ports;

/// Every allocation of the harness (and of the backend child) goes through
/// the counting allocator; it counts only during the allocation pass.
#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;

#[derive(Debug, Parser)]
#[command(name = "sinew-bench", about = "sinew load harness and fault soak")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the load comparison (the default).
    Load(LoadArgs),
    /// Run the fault soak: chaos backends, one killed and restarted.
    Soak(soak::SoakArgs),
    /// Measure one proxy hop: direct, a bare hyper proxy, sinew's inbound
    /// and outbound sides (CPU of the proxy process, p50/p99).
    Proxy(proxy::ProxyArgs),
    /// (internal) Run the backend servers until stdin closes.
    #[command(hide = true)]
    Serve,
    /// (internal) Run the chaos backends of the soak until stdin closes.
    #[command(hide = true, name = "serve-chaos")]
    ServeChaos,
}

#[derive(Debug, Clone, clap::Args)]
struct LoadArgs {
    /// Requests per client per round.
    #[arg(long, default_value_t = 50_000)]
    requests: u64,
    /// Concurrency levels, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 64])]
    concurrency: Vec<usize>,
    /// Rounds of alternation.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// A short run for CI (under 60 s).
    #[arg(long)]
    quick: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also run the sinew client with one layer at a time.
    #[arg(long)]
    breakdown: bool,
    /// Run only the client of this name (for profiling, e.g. under perf);
    /// `axum` or `sinew-server` runs one side of the server pair.
    #[arg(long)]
    only: Option<String>,
    /// Requests of the untimed pass that counts allocations per request
    /// (per client and concurrency; 0 skips it).
    #[arg(long, default_value_t = 5_000)]
    alloc_requests: u64,
}

impl Default for LoadArgs {
    fn default() -> Self {
        LoadArgs {
            requests: 50_000,
            concurrency: vec![1, 64],
            rounds: 3,
            quick: false,
            json: false,
            breakdown: false,
            only: None,
            alloc_requests: 5_000,
        }
    }
}

/// One client's figures at one concurrency, medians over the rounds.
#[derive(Debug, Clone, serde::Serialize)]
struct Scenario {
    client: String,
    concurrency: usize,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_req: f64,
    /// Median of the per-round ratios to the group's first client.
    ratio_rps: f64,
    /// First and third quartiles of those ratios.
    ratio_rps_iqr: (f64, f64),
    ratio_cpu: f64,
    ratio_cpu_iqr: (f64, f64),
    /// Each round's requests/s and CPU per request, in round order (the
    /// rounds of every client of a group alternate, so round i of one
    /// client pairs with round i of another).
    rps_rounds: Vec<f64>,
    cpu_us_rounds: Vec<f64>,
    /// Allocator calls (alloc + realloc) and bytes per request, from an
    /// untimed pass with the counting allocator on (0 when skipped).
    allocs_per_req: f64,
    alloc_bytes_per_req: f64,
    /// Whose CPU and allocations: the client process, or the server's.
    measured: &'static str,
    errors: u64,
}

struct RunResult {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_req: f64,
    errors: u64,
}

/// CPU time and allocation counts of one process at one moment.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
struct Stat {
    cpu_ns: u64,
    allocs: u64,
    bytes: u64,
}

impl Stat {
    fn local() -> Stat {
        let (allocs, bytes) = alloc_count::snapshot();
        Stat {
            cpu_ns: u64::try_from(stats::cpu_time().as_nanos()).unwrap_or(u64::MAX),
            allocs,
            bytes,
        }
    }
}

/// The backend child process, which answers `stat`, `count on` and
/// `count off` on its stdin with a [`Stat`] line.
struct Backend {
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Backend {
    async fn ask(&mut self, command: &str) -> Result<Stat, BoxError> {
        use tokio::io::AsyncWriteExt;
        self.stdin.write_all(command.as_bytes()).await?;
        self.stdin.write_all(b"\n").await?;
        self.stdin.flush().await?;
        let line = self
            .lines
            .next_line()
            .await?
            .ok_or("the backend process closed its stdout")?;
        Ok(serde_json::from_str(&line)?)
    }
}

/// Whose CPU time and allocations a run measures.
enum Meter<'a> {
    /// This process (the clients).
    Local,
    /// The backend process (the server pair).
    Child(&'a mut Backend),
}

impl Meter<'_> {
    async fn read(&mut self) -> Stat {
        match self {
            Meter::Local => Stat::local(),
            Meter::Child(b) => b.ask("stat").await.unwrap_or_default(),
        }
    }

    async fn count(&mut self, on: bool) {
        match self {
            Meter::Local => alloc_count::set_counting(on),
            Meter::Child(b) => {
                let _ = b.ask(if on { "count on" } else { "count off" }).await;
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Meter::Local => "client",
            Meter::Child(_) => "server",
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn drive(
    driver: &Driver,
    requests: u64,
    concurrency: usize,
    meter: &mut Meter<'_>,
) -> RunResult {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let before = meter.read().await;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let driver = driver.clone();
        let next = next.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity((requests as usize / concurrency.max(1)) + 1);
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id >= requests {
                    break;
                }
                let t = Instant::now();
                if driver.call(id).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(requests as usize);
    for t in tasks {
        if let Ok(l) = t.await {
            all.extend(l);
        }
    }
    let elapsed = started.elapsed();
    let after = meter.read().await;
    let cpu = Duration::from_nanos(after.cpu_ns.saturating_sub(before.cpu_ns));
    all.sort();
    RunResult {
        rps: requests as f64 / elapsed.as_secs_f64(),
        p50_us: stats::percentile_us(&all, 0.5),
        p99_us: stats::percentile_us(&all, 0.99),
        cpu_us_per_req: cpu.as_secs_f64() * 1e6 / requests as f64,
        errors: errors.load(Ordering::Relaxed),
    }
}

/// Allocations per request: an untimed run with the counting allocator on.
async fn count_allocs(
    driver: &Driver,
    requests: u64,
    concurrency: usize,
    meter: &mut Meter<'_>,
) -> (f64, f64) {
    if requests == 0 {
        return (0.0, 0.0);
    }
    meter.count(true).await;
    let before = meter.read().await;
    drive(driver, requests, concurrency, meter).await;
    let after = meter.read().await;
    meter.count(false).await;
    let n = requests as f64;
    (
        after.allocs.saturating_sub(before.allocs) as f64 / n,
        after.bytes.saturating_sub(before.bytes) as f64 / n,
    )
}

/// Run `drivers` in alternation; the first is the baseline.
async fn compare(
    drivers: &[Driver],
    args: &LoadArgs,
    meter: &mut Meter<'_>,
    out: &mut Vec<Scenario>,
) {
    for &c in &args.concurrency {
        let mut per: Vec<Vec<RunResult>> = drivers.iter().map(|_| Vec::new()).collect();
        for round in 0..args.rounds {
            for (i, d) in drivers.iter().enumerate() {
                // Warm the pool before the first measured round.
                if round == 0 {
                    drive(d, (args.requests / 20).max(200), c, meter).await;
                }
                per[i].push(drive(d, args.requests, c, meter).await);
            }
        }
        let mut allocs = Vec::with_capacity(drivers.len());
        for d in drivers {
            allocs.push(count_allocs(d, args.alloc_requests, c, meter).await);
        }
        for (i, d) in drivers.iter().enumerate() {
            let ratios_rps: Vec<f64> = (0..args.rounds)
                .map(|r| per[i][r].rps / per[0][r].rps.max(1e-9))
                .collect();
            let ratios_cpu: Vec<f64> = (0..args.rounds)
                .map(|r| per[i][r].cpu_us_per_req / per[0][r].cpu_us_per_req.max(1e-9))
                .collect();
            let pick = |f: &dyn Fn(&RunResult) -> f64| {
                let mut v: Vec<f64> = per[i].iter().map(f).collect();
                stats::median(&mut v)
            };
            out.push(Scenario {
                client: d.name.to_string(),
                concurrency: c,
                rps: pick(&|r| r.rps),
                p50_us: pick(&|r| r.p50_us),
                p99_us: pick(&|r| r.p99_us),
                cpu_us_per_req: pick(&|r| r.cpu_us_per_req),
                ratio_rps: stats::median(&mut ratios_rps.clone()),
                ratio_rps_iqr: stats::quartiles(&ratios_rps),
                ratio_cpu: stats::median(&mut ratios_cpu.clone()),
                ratio_cpu_iqr: stats::quartiles(&ratios_cpu),
                rps_rounds: per[i].iter().map(|r| r.rps).collect(),
                cpu_us_rounds: per[i].iter().map(|r| r.cpu_us_per_req).collect(),
                allocs_per_req: allocs[i].0,
                alloc_bytes_per_req: allocs[i].1,
                measured: meter.name(),
                errors: per[i].iter().map(|r| r.errors).sum(),
            });
        }
    }
}

async fn load(mut args: LoadArgs) -> Result<(), BoxError> {
    if args.quick {
        args.requests = args.requests.min(3_000);
        args.rounds = args.rounds.min(2);
        args.alloc_requests = args.alloc_requests.min(1_000);
    }
    let exe = std::env::current_exe()?;
    // SINEW_BENCH_SERVER_WRAP="valgrind --tool=callgrind" runs the backend
    // process under that command (to profile the server stack).
    let wrap = std::env::var("SINEW_BENCH_SERVER_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    let mut command = match words.next() {
        Some(program) => {
            let mut c = tokio::process::Command::new(program);
            c.args(words).arg(&exe);
            c
        }
        None => tokio::process::Command::new(&exe),
    };
    let mut child = command
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or("no stdout from the backend process")?;
    let stdin = child
        .stdin
        .take()
        .ok_or("no stdin to the backend process")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = lines
        .next_line()
        .await?
        .ok_or("the backend process exited before listening")?;
    let ports: Ports = serde_json::from_str(&line)?;
    let mut backend = Backend { stdin, lines };

    // Metrics land in a real recorder, as in a service.
    let _metrics = sinew_metrics::prometheus::PrometheusBuilder::new().install()?;
    let mut scenarios = Vec::new();
    let drivers = vec![
        clients::hyper(ports.backends[0]),
        clients::hyper_round_robin(&ports.backends),
        clients::tower(&ports.backends),
        clients::reqwest_middleware(ports.backends[0]),
        clients::sinew(&ports.backends)?,
    ];
    if let Some(only) = &args.only {
        let mut picked: Vec<Driver> = drivers.into_iter().filter(|d| d.name == only).collect();
        if let Some(name) = sinew_stack::VARIANTS.iter().find(|v| **v == only) {
            picked.push(clients::sinew_variant(name, &ports.backends)?);
        }
        if picked.is_empty() && (only == "axum" || only == "sinew-server") {
            let target = if only == "axum" {
                ports.axum
            } else {
                ports.sinew_server
            };
            let pair = [clients::server_pair(
                if only == "axum" {
                    "axum"
                } else {
                    "sinew-server"
                },
                target,
            )?];
            compare(
                &pair,
                &args,
                &mut Meter::Child(&mut backend),
                &mut scenarios,
            )
            .await;
            stop_backend(child, backend).await;
            print_scenarios(&scenarios, args.json);
            return Ok(());
        }
        if picked.is_empty() {
            return Err(format!("no client named {only}").into());
        }
        compare(&picked, &args, &mut Meter::Local, &mut scenarios).await;
        print_scenarios(&scenarios, args.json);
        return Ok(());
    }
    compare(&drivers, &args, &mut Meter::Local, &mut scenarios).await;
    if args.breakdown {
        let mut parts = vec![clients::hyper(ports.backends[0])];
        for name in sinew_stack::VARIANTS {
            parts.push(clients::sinew_variant(name, &ports.backends)?);
        }
        compare(&parts, &args, &mut Meter::Local, &mut scenarios).await;
    }
    let pair = vec![
        clients::server_pair("axum", ports.axum)?,
        clients::server_pair("sinew-server", ports.sinew_server)?,
    ];
    compare(
        &pair,
        &args,
        &mut Meter::Child(&mut backend),
        &mut scenarios,
    )
    .await;
    stop_backend(child, backend).await;
    print_scenarios(&scenarios, args.json);
    Ok(())
}

/// Close the backend's stdin and let it exit by itself (a profiler wrapping
/// it writes its report then); kill it if it has not after 60 s.
async fn stop_backend(mut child: tokio::process::Child, backend: Backend) {
    drop(backend);
    let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
}

fn print_scenarios(scenarios: &[Scenario], json: bool) {
    if json {
        println!("{}", serde_json::json!({ "scenarios": scenarios }));
        return;
    }
    println!(
        "{:<20} {:>4} {:>8} {:>7} {:>7} {:>8} {:>19} {:>19} {:>9} {:>6}",
        "client",
        "C",
        "req/s",
        "p50 µs",
        "p99 µs",
        "cpu µs",
        "×rps (IQR)",
        "×cpu (IQR)",
        "allocs",
        "errors"
    );
    for s in scenarios {
        println!(
            "{:<20} {:>4} {:>8.0} {:>7.0} {:>7.0} {:>8.2} {:>19} {:>19} {:>9.1} {:>6}",
            s.client,
            s.concurrency,
            s.rps,
            s.p50_us,
            s.p99_us,
            s.cpu_us_per_req,
            format!(
                "{:.3} ({:.3}–{:.3})",
                s.ratio_rps, s.ratio_rps_iqr.0, s.ratio_rps_iqr.1
            ),
            format!(
                "{:.3} ({:.3}–{:.3})",
                s.ratio_cpu, s.ratio_cpu_iqr.0, s.ratio_cpu_iqr.1
            ),
            s.allocs_per_req,
            s.errors
        );
    }
    println!(
        "(×rps, ×cpu: median [first–third quartile] of the per-round ratios to the first client of each \
         group; cpu µs: CPU per request, clock_gettime(CLOCK_PROCESS_CPUTIME_ID); allocs: allocator \
         calls per request in an untimed pass; the server pair's cpu and allocs are the server process's)"
    );
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sinew-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async {
        match cli.command.unwrap_or(Command::Load(LoadArgs::default())) {
            Command::Load(args) => load(args).await,
            Command::Soak(args) => {
                let _metrics = sinew_metrics::prometheus::PrometheusBuilder::new().install()?;
                match soak::run(args).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err("the soak failed a check".into()),
                    Err(e) => Err(e),
                }
            }
            Command::Serve => {
                let _metrics = sinew_metrics::prometheus::PrometheusBuilder::new().install()?;
                server::run().await.map_err(Into::into)
            }
            Command::ServeChaos => chaos::run().await.map_err(Into::into),
            Command::Proxy(args) => proxy::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sinew-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
