//! The `sinew` command.
//!
//! ```text
//! sinew sign   …   sign a raw HTTP request read on stdin, print it signed
//! sinew verify …   verify a raw HTTP request read on stdin
//! sinew call   …   send calls through the full client stack
//! sinew relay  …   publish outbox rows to RabbitMQ (sinew-events)
//! sinew consume …  print a queue's messages as JSON lines
//! sinew proxy  …   the whole stack as a sidecar (inbound, outbound, admin)
//! ```
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod call;
mod events;
mod proxy;
mod raw;
mod sign;

#[derive(Debug, Parser)]
#[command(
    name = "sinew",
    version,
    about = "Service-to-service HTTP: sign, verify, call"
)]
struct Cli {
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
    match cli.command {
        Command::Sign(args) => sign::sign(args),
        Command::Verify(args) => sign::verify(args),
        Command::Call(args) => run(call::run(args)),
        Command::Relay(args) => run(events::relay(args)),
        Command::Consume(args) => run(events::consume(args)),
        Command::Proxy(args) => run(proxy::run(args)),
    }
}
