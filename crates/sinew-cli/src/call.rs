//! `sinew call`: send calls through the full stack.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use sinew::{Client, ClientBuilder, Priority};

/// Exit statuses of `sinew call`.
pub(crate) const EXIT_OK: u8 = 0;
pub(crate) const EXIT_STATUS: u8 = 1;
pub(crate) const EXIT_USAGE: u8 = 2;
pub(crate) const EXIT_FAILED: u8 = 3;

#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    /// The client configuration (the TOML of `Client::from_config`). With
    /// a `[registry]` or `[services.NAME]`, a URL whose host is a service
    /// name (`http://inventory/items/1`) calls that service's instances.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The method.
    #[arg(short = 'X', long = "request", default_value = "GET")]
    method: String,
    /// A header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// The request body.
    #[arg(short = 'd', long = "data", conflicts_with = "data_file")]
    data: Option<String>,
    /// Read the request body from a file.
    #[arg(long = "data-file")]
    data_file: Option<PathBuf>,
    /// The call's deadline, like `250ms` or `2s`.
    #[arg(long, value_parser = parse_duration)]
    deadline: Option<Duration>,
    /// The call's priority.
    #[arg(long, value_parser = parse_priority)]
    priority: Option<Priority>,
    /// Send this many calls through one client.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// At most this many calls at once (with --repeat).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Write the client's Prometheus exposition here at exit.
    #[arg(long = "metrics-out")]
    metrics_out: Option<PathBuf>,
    /// Print every attempt (endpoint, status, timing) to stderr.
    #[arg(short, long)]
    verbose: bool,
    /// The URL (absolute, or a path joined to the config's base_url; its
    /// host may be a service name, see --config).
    url: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    sinew::config::duration::parse(s)
}

fn parse_priority(s: &str) -> Result<Priority, String> {
    s.parse::<Priority>().map_err(|e| e.to_string())
}

/// The outcome class of one call, for the summary and the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok,
    Status(u16),
    Failed(&'static str),
}

pub(crate) async fn run(args: CallArgs) -> ExitCode {
    match run_inner(args).await {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("sinew call: {message}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

async fn run_inner(args: CallArgs) -> Result<u8, String> {
    let method = http::Method::from_bytes(args.method.as_bytes())
        .map_err(|_| format!("invalid method {:?}", args.method))?;
    let mut headers = Vec::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("a header is written 'Name: value', got {h:?}"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let body = match (&args.data, &args.data_file) {
        (Some(d), _) => Some(bytes::Bytes::from(d.clone())),
        (None, Some(f)) => Some(bytes::Bytes::from(
            std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?,
        )),
        (None, None) => None,
    };
    if args.repeat == 0 {
        return Err("--repeat must be at least 1".into());
    }
    let metrics = match &args.metrics_out {
        Some(_) => Some(
            sinew_metrics::prometheus::PrometheusBuilder::new()
                .install()
                .map_err(|e| format!("cannot install the metrics recorder: {e}"))?,
        ),
        None => None,
    };
    let verbose = args.verbose;
    let with_metrics = metrics.is_some();
    let customize = move |mut builder: ClientBuilder| {
        if with_metrics {
            builder = builder.metrics(sinew_metrics::MetricsConfig::default());
        }
        if verbose {
            builder = builder.on_attempt(|a| {
                let what = match (&a.status, &a.error) {
                    (Some(s), _) => s.to_string(),
                    (None, Some(e)) => format!("error: {e}"),
                    (None, None) => "?".into(),
                };
                eprintln!(
                    "* {} {} -> {} in {:.1} ms",
                    a.method,
                    a.uri,
                    what,
                    a.elapsed.as_secs_f64() * 1e3
                );
            });
        }
        builder
    };
    let client = match &args.config {
        Some(path) => {
            let services = sinew::Services::from_file(path).map_err(|e| e.to_string())?;
            // http://NAME/...: the service's client, when the config knows
            // NAME (in [services] or through [registry]).
            let host = args
                .url
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| u.host().map(str::to_owned));
            match host.filter(|h| services.knows(h)) {
                Some(name) => services
                    .customize(customize)
                    .client(&name)
                    .map_err(|e| e.to_string())?,
                None => {
                    let config =
                        sinew::config::ClientConfig::from_file(path).map_err(|e| e.to_string())?;
                    customize(ClientBuilder::from_config(config))
                        .build()
                        .map_err(|e| e.to_string())?
                }
            }
        }
        None => customize(Client::builder())
            .build()
            .map_err(|e| e.to_string())?,
    };
    let make = {
        let client = client.clone();
        let url = args.url.clone();
        move || {
            let mut r = client.request(method.clone(), &url);
            for (n, v) in &headers {
                r = r.header(n, v);
            }
            if let Some(b) = &body {
                r = r.body(b.clone());
            }
            if let Some(d) = args.deadline {
                r = r.timeout(d);
            }
            if let Some(p) = args.priority {
                r = r.priority(p);
            }
            r
        }
    };
    let print_body = args.repeat == 1;
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(args.repeat)));
    let calls = (0..args.repeat).map(|_| {
        let req = make();
        let latencies = latencies.clone();
        async move {
            let started = tokio::time::Instant::now();
            let outcome = match req.send().await {
                Ok(resp) => {
                    let body = resp.bytes().await;
                    match body {
                        Ok(b) => {
                            if print_body {
                                use std::io::Write as _;
                                let mut out = std::io::stdout().lock();
                                let _ = out.write_all(&b);
                                let _ = out.flush();
                            }
                            Outcome::Ok
                        }
                        Err(e) => {
                            eprintln!("sinew call: {e}");
                            Outcome::Failed(e.kind().as_str())
                        }
                    }
                }
                Err(e) => match e.status() {
                    Some(s) => {
                        // The status line (and the server's message) on
                        // stderr, the body on stdout as for a success.
                        if print_body {
                            eprintln!("sinew call: {e}");
                        }
                        if print_body {
                            use std::io::Write as _;
                            if let Some(b) = e.body() {
                                let _ = std::io::stdout().lock().write_all(b);
                            }
                        }
                        Outcome::Status(s.as_u16())
                    }
                    None => {
                        eprintln!("sinew call: {e}");
                        Outcome::Failed(e.kind().as_str())
                    }
                },
            };
            if let Ok(mut l) = latencies.lock() {
                l.push(started.elapsed());
            }
            outcome
        }
    });
    use futures_util::stream::{self, StreamExt};
    let outcomes: Vec<Outcome> = stream::iter(calls)
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    if args.repeat > 1 {
        let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
        summary(&outcomes, &mut lat);
    }
    if let (Some(path), Some(handle)) = (&args.metrics_out, &metrics) {
        std::fs::write(path, handle.render())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(exit_code(&outcomes))
}

fn exit_code(outcomes: &[Outcome]) -> u8 {
    if outcomes.iter().any(|o| matches!(o, Outcome::Failed(_))) {
        EXIT_FAILED
    } else if outcomes.iter().any(|o| matches!(o, Outcome::Status(_))) {
        EXIT_STATUS
    } else {
        EXIT_OK
    }
}

fn summary(outcomes: &[Outcome], latencies: &mut [Duration]) {
    let mut counts: std::collections::BTreeMap<Outcome, usize> = Default::default();
    for o in outcomes {
        *counts.entry(*o).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(o, n)| match o {
            Outcome::Ok => format!("ok {n}"),
            Outcome::Status(s) => format!("{s} {n}"),
            Outcome::Failed(k) => format!("{k} {n}"),
        })
        .collect();
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let idx = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[idx.min(latencies.len() - 1)].as_secs_f64() * 1e3
    };
    eprintln!(
        "{} calls: {}; p50 {:.1} ms, p99 {:.1} ms",
        outcomes.len(),
        parts.join(", "),
        pct(0.5),
        pct(0.99)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use sinew::ErrorKind;

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&[Outcome::Ok, Outcome::Ok]), EXIT_OK);
        assert_eq!(exit_code(&[Outcome::Ok, Outcome::Status(404)]), EXIT_STATUS);
        assert_eq!(
            exit_code(&[
                Outcome::Status(500),
                Outcome::Failed(ErrorKind::Timeout.as_str())
            ]),
            EXIT_FAILED
        );
    }
}
