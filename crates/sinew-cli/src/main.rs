//! The `sinew` command.
//!
//! ```text
//! sinew sign   …   sign a raw HTTP request read on stdin, print it signed
//! sinew verify …   verify a raw HTTP request read on stdin
//! sinew call   …   send calls through the full client stack
//! sinew relay  …   publish outbox rows to RabbitMQ (sinew-events)
//! sinew consume …  print a queue's messages as JSON lines
//! sinew completions bash|zsh|fish   the shell completion script
//! sinew proxy  …   the whole stack as a sidecar (inbound, outbound, admin)
//! ```
//!
//! Every subcommand logs through one `tracing` subscriber on stderr, so the
//! libraries' warnings reach the operator: the level comes from `RUST_LOG`
//! (tracing-subscriber's `EnvFilter` syntax, e.g. `info` or
//! `sinew_balance=debug,warn`; `warn` when unset), the format from the
//! global `--log-format text|json` (json: one object a line). What a
//! subcommand prints as its result (a body, a signed request, `valid: ...`,
//! a failed call's status line, the `--repeat` summary) stays plain text on
//! stdout/stderr as before.
//!
//! `sinew sign` and `sinew verify` read the key from `--key-file PATH` or
//! `--key-env VAR` (`--key-text` / `--key-b64` put it on the command line,
//! where `ps` shows it to every user: for quick tries only).
//!
//! `sinew call` exits 0 when every call succeeded, 1 when a response had a
//! failing status, 2 on a usage error and 3 when a call failed without a
//! response; `-i` prints the response's status line and headers before its
//! body, `--repeat N` shows a progress bar on a terminal once the run lasts
//! a second, and `--json` prints the summary (outcomes, latency
//! percentiles, requests per second) as one JSON object on stdout.
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

mod call;
mod completions;
mod events;
mod log;
mod progress;
mod proxy;
mod raw;
mod sign;

#[derive(Debug, Parser)]
#[command(
    name = "sinew",
    version,
    about = "Service-to-service HTTP: sign, verify, call",
    after_help = "Logs go to stderr; RUST_LOG sets the level (tracing-subscriber's \
                  EnvFilter syntax, e.g. RUST_LOG=info or RUST_LOG=sinew_balance=debug; \
                  default warn)."
)]
struct Cli {
    /// How log lines on stderr are written: text, or json (one object a
    /// line). RUST_LOG sets the level (default warn).
    #[arg(
        long = "log-format",
        global = true,
        value_enum,
        default_value_t = log::LogFormat::Text,
        display_order = 900
    )]
    log_format: log::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign a raw HTTP request read on stdin; print it with the signature headers.
    Sign(sign::SignArgs),
    /// Verify a raw HTTP request read on stdin: exit 0 when valid, 1 when not.
    Verify(sign::VerifyArgs),
    /// Send calls through the full client stack.
    Call(call::CallArgs),
    /// Publish outbox rows to RabbitMQ until interrupted (sinew-events).
    Relay(events::RelayArgs),
    /// Print the messages of a queue as JSON lines until interrupted.
    Consume(events::ConsumeArgs),
    /// Print the shell completion script for bash, zsh or fish.
    Completions(completions::CompletionsArgs),
    /// Run the sidecar: inbound through the server stack to the local
    /// application, outbound to services by name, until SIGTERM.
    Proxy(proxy::ProxyArgs),
}

fn run(fut: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("sinew: cannot start the runtime: {e}");
            ExitCode::from(call::EXIT_USAGE)
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    log::init(cli.log_format);
    match cli.command {
        Command::Sign(args) => sign::sign(args),
        Command::Verify(args) => sign::verify(args),
        Command::Call(args) => run(call::run(args)),
        Command::Relay(args) => run(events::relay(args)),
        Command::Consume(args) => run(events::consume(args)),
        Command::Completions(args) => completions::run(args, Cli::command()),
        Command::Proxy(args) => run(proxy::run(args)),
    }
}
