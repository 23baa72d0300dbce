//! The sinew load harness and fault soak.
//!
//! ```text
//! cargo run --release -p sinew-bench -- load [--requests N] [--concurrency 1,64] [--rounds R] [--quick] [--json]
//! cargo run --release -p sinew-bench -- soak [--seconds S] [--quick]
//! ```
//!
//! The backends run in a child process (this binary with `serve`), so the
//! clients' CPU time is measured alone. Clients run in alternation (A B A B …)
//! for several rounds, and every ratio compares a client with the bare hyper
//! client of the same round.
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::io::AsyncBufReadExt;

mod chaos;
mod clients;
mod server;
mod server_stack;
mod sinew_stack;
mod soak;
mod stats;

use clients::Driver;
use server::Ports;

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
    /// Run only the client of this name (for profiling, e.g. under perf).
    #[arg(long)]
    only: Option<String>,
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
    ratio_rps: f64,
    ratio_cpu: f64,
    errors: u64,
}

struct RunResult {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_req: f64,
    errors: u64,
}

async fn drive(
    driver: &Driver,
    requests: u64,
    concurrency: usize,
    cpu_pid: Option<u32>,
) -> RunResult {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let cpu_before = stats::cpu_time(cpu_pid);
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
    let cpu = match (cpu_before, stats::cpu_time(cpu_pid)) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };
    all.sort();
    RunResult {
        rps: requests as f64 / elapsed.as_secs_f64(),
        p50_us: stats::percentile_us(&all, 0.5),
        p99_us: stats::percentile_us(&all, 0.99),
        cpu_us_per_req: cpu.as_secs_f64() * 1e6 / requests as f64,
        errors: errors.load(Ordering::Relaxed),
    }
}

/// Run `drivers` in alternation; the first is the baseline.
async fn compare(
    drivers: &[Driver],
    args: &LoadArgs,
    cpu_pid: Option<u32>,
    out: &mut Vec<Scenario>,
) {
    for &c in &args.concurrency {
        let mut per: Vec<Vec<RunResult>> = drivers.iter().map(|_| Vec::new()).collect();
        for round in 0..args.rounds {
            for (i, d) in drivers.iter().enumerate() {
                // Warm the pool before the first measured round.
                if round == 0 {
                    drive(d, (args.requests / 20).max(200), c, cpu_pid).await;
                }
                per[i].push(drive(d, args.requests, c, cpu_pid).await);
            }
        }
        for (i, d) in drivers.iter().enumerate() {
            let mut ratios_rps: Vec<f64> = (0..args.rounds)
                .map(|r| per[i][r].rps / per[0][r].rps.max(1e-9))
                .collect();
            let mut ratios_cpu: Vec<f64> = (0..args.rounds)
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
                ratio_rps: stats::median(&mut ratios_rps),
                ratio_cpu: stats::median(&mut ratios_cpu),
                errors: per[i].iter().map(|r| r.errors).sum(),
            });
        }
    }
}

async fn load(mut args: LoadArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if args.quick {
        args.requests = args.requests.min(3_000);
        args.rounds = args.rounds.min(2);
    }
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or("no stdout from the backend process")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = lines
        .next_line()
        .await?
        .ok_or("the backend process exited before listening")?;
    let ports: Ports = serde_json::from_str(&line)?;
    let server_pid = child.id();

    // Metrics land in a real recorder, as in a service.
    let _metrics = sinew_metrics::prometheus::PrometheusBuilder::new().install()?;
    let mut scenarios = Vec::new();
    let drivers = vec![
        clients::hyper(ports.backends[0]),
        clients::tower(&ports.backends),
        clients::reqwest_middleware(ports.backends[0]),
        clients::sinew(&ports.backends)?,
    ];
    if let Some(only) = &args.only {
        let mut picked: Vec<Driver> = drivers.into_iter().filter(|d| d.name == only).collect();
        if picked.is_empty() && only.starts_with("sinew") {
            picked.push(clients::sinew_variant(
                match only.as_str() {
                    "sinew-bare" => "sinew-bare",
                    "sinew+deadline" => "sinew+deadline",
                    "sinew+retry" => "sinew+retry",
                    "sinew+sign" => "sinew+sign",
                    "sinew+metrics" => "sinew+metrics",
                    "sinew+balance" => "sinew+balance",
                    "sinew+breaker" => "sinew+breaker",
                    _ => "unknown",
                },
                &ports.backends,
            )?);
        }
        if picked.is_empty() {
            return Err(format!("no client named {only}").into());
        }
        compare(&picked, &args, None, &mut scenarios).await;
        print_scenarios(&scenarios, args.json);
        return Ok(());
    }
    compare(&drivers, &args, None, &mut scenarios).await;
    if args.breakdown {
        let mut parts = vec![clients::hyper(ports.backends[0])];
        for name in [
            "sinew-bare",
            "sinew+deadline",
            "sinew+retry",
            "sinew+sign",
            "sinew+metrics",
            "sinew+balance",
            "sinew+breaker",
        ] {
            parts.push(clients::sinew_variant(name, &ports.backends)?);
        }
        compare(&parts, &args, None, &mut scenarios).await;
    }
    let pair = vec![
        clients::server_pair("axum", ports.axum)?,
        clients::server_pair("sinew-server", ports.sinew_server)?,
    ];
    compare(&pair, &args, server_pid, &mut scenarios).await;
    drop(child);
    print_scenarios(&scenarios, args.json);
    Ok(())
}

fn print_scenarios(scenarios: &[Scenario], json: bool) {
    if json {
        println!("{}", serde_json::json!({ "scenarios": scenarios }));
    } else {
        println!(
            "{:<20} {:>4} {:>10} {:>9} {:>9} {:>12} {:>9} {:>9} {:>6}",
            "client", "C", "req/s", "p50 µs", "p99 µs", "cpu µs/req", "×rps", "×cpu", "errors"
        );
        for s in scenarios {
            println!(
                "{:<20} {:>4} {:>10.0} {:>9.0} {:>9.0} {:>12.1} {:>9.3} {:>9.3} {:>6}",
                s.client,
                s.concurrency,
                s.rps,
                s.p50_us,
                s.p99_us,
                s.cpu_us_per_req,
                s.ratio_rps,
                s.ratio_cpu,
                s.errors
            );
        }
        println!("(×rps, ×cpu: median ratio to the first client of each group in the same round; the server pair's cpu is the server process's)");
    }
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
