//! The `sinew` command.
//!
//! ```text
//! sinew sign   …   sign a raw HTTP request read on stdin, print it signed
//! sinew verify …   verify a raw HTTP request read on stdin
//! sinew call   …   send calls through the full client stack
//! ```
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod call;
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
        Command::Call(args) => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("sinew: cannot start the runtime: {e}");
                    return ExitCode::from(call::EXIT_USAGE);
                }
            };
            rt.block_on(call::run(args))
        }
    }
}
