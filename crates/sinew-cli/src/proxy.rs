//! `sinew proxy`: the whole stack as a sidecar (see `sinew::proxy`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::call::{EXIT_FAILED, EXIT_USAGE};

#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// The config file: `[proxy]` (inbound, outbound, admin listeners),
    /// `[server]` for the inbound stack, the client sections, `[registry]`
    /// and `[services.NAME]` for outbound calls.
    #[arg(long)]
    config: PathBuf,
    /// Check the file (keys, secrets, services) and exit.
    #[arg(long)]
    check: bool,
}

pub(crate) async fn run(args: ProxyArgs) -> ExitCode {
    let proxy = match sinew::proxy::Proxy::from_file(&args.config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sinew proxy: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if args.check {
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    let proxy = if proxy.config().admin.is_some() {
        match sinew_metrics::prometheus::PrometheusBuilder::new().install() {
            Ok(handle) => proxy.metrics(handle),
            Err(e) => {
                eprintln!("sinew proxy: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
    } else {
        proxy
    };
    let running = match proxy.bind().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sinew proxy: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    // One line per side, for people and for scripts waiting for the ports.
    for (side, addr) in [
        ("inbound", running.inbound_addr()),
        ("outbound", running.outbound_addr()),
        ("admin", running.admin_addr()),
    ] {
        if let Some(a) = addr {
            println!("{side} listening on {a}");
        }
    }
    let signal = match shutdown_signal() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sinew proxy: cannot watch for SIGTERM: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    running.run_until(signal).await;
    eprintln!("sinew proxy: drained");
    ExitCode::SUCCESS
}

/// SIGTERM or SIGINT (Ctrl-C).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("sinew proxy: draining");
    })
}
