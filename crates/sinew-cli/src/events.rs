//! `sinew relay` and `sinew consume`: sinew-events from the command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use sinew_events::{Consumer, ConsumerConfig, PrintHandler, Relay, RelayConfig, Router};

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;

#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// The relay configuration (TOML: database_url, database_tls, amqp_url,
    /// amqp_tls, exchanges, table, app_id, batch_size, …), instead of the
    /// flags below.
    #[arg(long, conflicts_with_all = [
        "database_url", "amqp_url", "app_id", "table", "batch_size", "poll_interval", "no_listen",
    ])]
    config: Option<PathBuf>,
    /// The outbox database: `postgres://…` or `sqlite:…`.
    #[arg(long = "database-url", required_unless_present = "config")]
    database_url: Option<String>,
    /// The broker.
    #[arg(
        long = "amqp-url",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    /// The `app_id` property of what is published (the service's name).
    #[arg(long = "app-id", default_value = "sinew")]
    app_id: String,
    /// The outbox table.
    #[arg(long, default_value = sinew_events::DEFAULT_TABLE)]
    table: String,
    /// Rows per batch.
    #[arg(long = "batch-size", default_value_t = 500)]
    batch_size: usize,
    /// Poll this often when no NOTIFY arrives, like `1s`.
    #[arg(long = "poll-interval", value_parser = parse_duration, default_value = "1s")]
    poll_interval: Duration,
    /// Do not LISTEN for NOTIFY (PostgreSQL): poll only.
    #[arg(long = "no-listen")]
    no_listen: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// The consumer configuration (TOML: amqp_url, queue, bindings, …).
    #[arg(long)]
    config: PathBuf,
}

/// The most bytes read from a config file.
const MAX_CONFIG: u64 = 1024 * 1024;

/// A config file's text (at most [`MAX_CONFIG`] bytes); the error names
/// the file.
fn read_config(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut text = String::new();
    file.take(MAX_CONFIG + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if text.len() as u64 > MAX_CONFIG {
        return Err(format!("{shown} is larger than {MAX_CONFIG} bytes"));
    }
    Ok(text)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    sinew::config::duration::parse(s)
}

/// Completes on SIGTERM (how containers are stopped) or SIGINT (Ctrl-C).
/// The handlers are installed here, before anything runs, so a signal that
/// comes during the first batch is caught too (and not the default action,
/// which would kill the process mid-batch).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    eprintln!("sinew: {name}: finishing what is in flight, then stopping");
                }
                (term, int) => {
                    if let Some(e) = term.err().or(int.err()) {
                        eprintln!("sinew: cannot watch for SIGTERM ({e}); stopping on Ctrl-C only");
                    }
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `sinew relay`: move outbox rows to the broker until SIGTERM or SIGINT;
/// the batch in flight is published, confirmed and committed first.
pub(crate) async fn relay(args: RelayArgs) -> ExitCode {
    let config = match (&args.config, args.database_url) {
        (Some(path), _) => match read_config(path).and_then(|text| {
            toml::from_str::<RelayConfig>(&text).map_err(|e| format!("{}: {e}", path.display()))
        }) {
            Ok(c) => RelayConfig {
                batch_size: c.batch_size.max(1),
                ..c
            },
            Err(e) => {
                eprintln!("sinew relay: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        (None, Some(database_url)) => RelayConfig {
            database_url,
            amqp_url: args.amqp_url,
            app_id: args.app_id,
            table: args.table,
            batch_size: args.batch_size.max(1),
            poll_interval: args.poll_interval,
            listen: !args.no_listen,
            ..RelayConfig::default()
        },
        (None, None) => {
            eprintln!("sinew relay: --database-url or --config is required");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match Relay::new(config).run(shutdown_signal()).await {
        Ok(stats) => {
            eprintln!(
                "sinew relay: published {} in {} batches ({} errors recovered)",
                stats.published, stats.batches, stats.errors
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sinew relay: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// `sinew consume`: print every message of the configured queue as a JSON
/// line until SIGTERM or SIGINT; the messages being handled are finished
/// and acked, those received but not started are given back (nack, requeue).
pub(crate) async fn consume(args: ConsumeArgs) -> ExitCode {
    let path = &args.config;
    let parsed = read_config(path).and_then(|text| {
        toml::from_str::<ConsumerConfig>(&text).map_err(|e| format!("{}: {e}", path.display()))
    });
    let config = match parsed {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sinew consume: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let router = Router::new().default_handler(PrintHandler);
    let shutdown = shutdown_signal();
    match Consumer::new(config, router).run(shutdown).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sinew consume: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
