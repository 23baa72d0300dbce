//! `sinew call`: send calls through the full stack.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use sinew::{Client, ClientBuilder, Priority};

use crate::progress::{self, Progress};

/// `eprintln!` that clears the progress bar (if one is drawn) first.
macro_rules! say {
    ($($t:tt)*) => {
        progress::suspend(|| eprintln!($($t)*))
    };
}

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
    /// Send this many calls through one client; a summary (outcomes,
    /// latency percentiles, requests per second) follows on stderr, and a
    /// run longer than a second shows a progress bar when stderr is a
    /// terminal.
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
    /// Print the response's status line and headers before its body (like
    /// curl -i), for a failing status too. One call only (no --repeat).
    #[arg(short = 'i', long = "include", conflicts_with = "json")]
    include: bool,
    /// Print the summary as one JSON object on stdout instead of the bodies:
    /// `calls`, `outcomes` (count by "ok", status code or error kind),
    /// `latency_ms` (p50, p90, p99, max), `duration_s`,
    /// `requests_per_second`.
    #[arg(long)]
    json: bool,
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
    if args.include && args.repeat > 1 {
        return Err("--include prints one response: it does not go with --repeat".into());
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
    // With -i, the head of the final response (after retries), also for a
    // failing status, whose error keeps only the status and body.
    let head: HeadSlot = Arc::default();
    let capture = args.include.then(|| head.clone());
    let customize = move |mut builder: ClientBuilder| {
        if with_metrics {
            builder = builder.metrics(sinew_metrics::MetricsConfig::default());
        }
        if let Some(slot) = &capture {
            builder = builder.layer_per_call(capture_head(slot.clone()));
        }
        if verbose {
            builder = builder.on_attempt(|a| {
                let what = match (&a.status, &a.error) {
                    (Some(s), _) => s.to_string(),
                    (None, Some(e)) => format!("error: {e}"),
                    (None, None) => "?".into(),
                };
                say!(
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
    let print_body = args.repeat == 1 && !args.json;
    let include = args.include;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(args.repeat)));
    let bar = (args.repeat > 1).then(|| Progress::start(args.repeat as u64));
    let progress = bar.as_ref();
    let head = &head;
    let calls = (0..args.repeat).map(|_| {
        let req = make();
        let latencies = latencies.clone();
        async move {
            let started = tokio::time::Instant::now();
            let outcome = match req.send().await {
                Ok(resp) => {
                    let shown = Head {
                        version: resp.version(),
                        status: resp.status(),
                        headers: resp.headers().clone(),
                    };
                    match resp.bytes().await {
                        Ok(b) => {
                            if print_body {
                                let mut out = std::io::stdout().lock();
                                if include {
                                    let _ = out.write_all(&shown.render());
                                }
                                let _ = out.write_all(&b);
                                let _ = out.flush();
                            }
                            Outcome::Ok
                        }
                        Err(e) => {
                            say!("sinew call: {e}");
                            Outcome::Failed(e.kind().as_str())
                        }
                    }
                }
                Err(e) => match e.status() {
                    Some(s) => {
                        // The status line (and the server's message) on
                        // stderr, the body on stdout as for a success.
                        if print_body {
                            say!("sinew call: {e}");
                            let mut out = std::io::stdout().lock();
                            if include {
                                if let Some(h) = head.lock().ok().and_then(|mut h| h.take()) {
                                    let _ = out.write_all(&h.render());
                                }
                            }
                            if let Some(b) = e.body() {
                                let _ = out.write_all(b);
                            }
                            let _ = out.flush();
                        }
                        Outcome::Status(s.as_u16())
                    }
                    None => {
                        say!("sinew call: {e}");
                        Outcome::Failed(e.kind().as_str())
                    }
                },
            };
            if let Ok(mut l) = latencies.lock() {
                l.push(started.elapsed());
            }
            if let Some(p) = progress {
                p.inc();
            }
            outcome
        }
    });
    use futures_util::stream::{self, StreamExt};
    let began = tokio::time::Instant::now();
    let outcomes: Vec<Outcome> = stream::iter(calls)
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let took = began.elapsed();
    if let Some(bar) = bar {
        bar.finish();
    }
    let latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    let summary = Summary::new(&outcomes, latencies, took);
    if args.json {
        let mut out = std::io::stdout().lock();
        let line = format!("{}\n", summary.json());
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write the summary: {e}"))?;
    } else if args.repeat > 1 {
        eprintln!("{}", summary.text());
    }
    if let (Some(path), Some(handle)) = (&args.metrics_out, &metrics) {
        std::fs::write(path, handle.render())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(exit_code(&outcomes))
}

/// A response head, as `-i` prints it.
struct Head {
    version: http::Version,
    status: http::StatusCode,
    headers: http::HeaderMap,
}

/// Where the per-call layer leaves the last response head it saw.
type HeadSlot = Arc<Mutex<Option<Head>>>;

impl Head {
    /// The status line and header lines as on the wire (CRLF line ends,
    /// like curl -i), ending with the blank line.
    fn render(&self) -> Vec<u8> {
        let version = match self.version {
            http::Version::HTTP_09 => "HTTP/0.9",
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_3 => "HTTP/3",
            _ => "HTTP/1.1",
        };
        let mut out = format!("{version} {}", self.status.as_u16()).into_bytes();
        if let Some(reason) = self.status.canonical_reason() {
            out.push(b' ');
            out.extend_from_slice(reason.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// A per-call layer (outside retries: it sees the final response) that
/// copies each response's head into `slot`.
fn capture_head(slot: HeadSlot) -> impl sinew::stack::StackLayer {
    tower::util::MapResponseLayer::new(move |resp: http::Response<sinew::ResBody>| {
        if let Ok(mut s) = slot.lock() {
            *s = Some(Head {
                version: resp.version(),
                status: resp.status(),
                headers: resp.headers().clone(),
            });
        }
        resp
    })
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

/// What a run of calls came to.
struct Summary {
    calls: usize,
    outcomes: BTreeMap<Outcome, usize>,
    /// Sorted.
    latencies: Vec<Duration>,
    took: Duration,
}

impl Summary {
    fn new(outcomes: &[Outcome], mut latencies: Vec<Duration>, took: Duration) -> Summary {
        let mut counts = BTreeMap::new();
        for o in outcomes {
            *counts.entry(*o).or_default() += 1;
        }
        latencies.sort_unstable();
        Summary {
            calls: outcomes.len(),
            outcomes: counts,
            latencies,
            took,
        }
    }

    /// The nearest-rank percentile `p` (0..=1) of the latencies.
    fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = (p * n as f64).ceil() as usize;
        self.latencies[rank.clamp(1, n) - 1]
    }

    fn per_second(&self) -> f64 {
        let secs = self.took.as_secs_f64();
        if secs > 0.0 {
            self.calls as f64 / secs
        } else {
            0.0
        }
    }

    fn label(o: &Outcome) -> String {
        match o {
            Outcome::Ok => "ok".into(),
            Outcome::Status(s) => s.to_string(),
            Outcome::Failed(k) => (*k).to_string(),
        }
    }

    /// One line for stderr.
    fn text(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let parts: Vec<String> = self
            .outcomes
            .iter()
            .map(|(o, n)| format!("{} {n}", Summary::label(o)))
            .collect();
        format!(
            "{} calls: {}; p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {:.2} s, {:.1}/s",
            self.calls,
            parts.join(", "),
            ms(self.percentile(0.5)),
            ms(self.percentile(0.9)),
            ms(self.percentile(0.99)),
            ms(self.latencies.last().copied().unwrap_or_default()),
            self.took.as_secs_f64(),
            self.per_second(),
        )
    }

    /// One JSON object.
    fn json(&self) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let outcomes: serde_json::Map<String, serde_json::Value> = self
            .outcomes
            .iter()
            .map(|(o, n)| (Summary::label(o), (*n).into()))
            .collect();
        serde_json::json!({
            "calls": self.calls,
            "outcomes": outcomes,
            "latency_ms": {
                "p50": ms(self.percentile(0.5)),
                "p90": ms(self.percentile(0.9)),
                "p99": ms(self.percentile(0.99)),
                "max": ms(self.latencies.last().copied().unwrap_or_default()),
            },
            "duration_s": self.took.as_secs_f64(),
            "requests_per_second": self.per_second(),
        })
    }
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

    #[test]
    fn summary_percentiles_are_nearest_rank() {
        let ms = Duration::from_millis;
        // 1..=100 ms, given out of order.
        let lat: Vec<Duration> = (1..=100).rev().map(ms).collect();
        let outcomes = vec![Outcome::Ok; 100];
        let s = Summary::new(&outcomes, lat, Duration::from_secs(2));
        assert_eq!(s.percentile(0.5), ms(50));
        assert_eq!(s.percentile(0.9), ms(90));
        assert_eq!(s.percentile(0.99), ms(99));
        assert_eq!(s.percentile(1.0), ms(100));
        let j = s.json();
        assert_eq!(j["latency_ms"]["max"], 100.0);
        assert_eq!(j["requests_per_second"], 50.0);
        assert_eq!(j["outcomes"]["ok"], 100);
        // One call: every percentile is it.
        let s = Summary::new(&[Outcome::Status(503)], vec![ms(7)], ms(7));
        assert_eq!(s.percentile(0.5), ms(7));
        assert_eq!(s.percentile(0.99), ms(7));
        assert_eq!(s.json()["outcomes"]["503"], 1);
        // None recorded: zeros, no panic.
        let s = Summary::new(&[], Vec::new(), Duration::ZERO);
        assert_eq!(s.percentile(0.9), Duration::ZERO);
        assert_eq!(s.per_second(), 0.0);
    }
}
