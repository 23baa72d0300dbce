//! Logs: one `tracing` subscriber for every subcommand, writing to stderr,
//! so the warnings of the sinew libraries (an endpoint ejected, discovery
//! failing, a replay cache full, ...) reach whoever runs the command.
//!
//! The level comes from `RUST_LOG` in tracing-subscriber's `EnvFilter`
//! syntax (`info`, `sinew_balance=debug,warn`, ...); without it, [`DEFAULT`]
//! (`warn`): the CLI's stdout and stderr are its interface, and a call that
//! goes well logs nothing. The format is `--log-format text` (the default,
//! coloured only on a terminal without `NO_COLOR`) or `json`, one object a
//! line with the event's fields at the top level.

use std::io::{IsTerminal as _, Write};

use clap::ValueEnum;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The level when `RUST_LOG` is unset or empty.
pub(crate) const DEFAULT: LevelFilter = LevelFilter::WARN;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// One human-readable line an event.
    #[default]
    Text,
    /// One JSON object a line: timestamp, level, target, message and the
    /// event's fields.
    Json,
}

/// Install the subscriber. An invalid `RUST_LOG` is reported on stderr and
/// the default level used: a logging typo does not stop a relay.
pub(crate) fn init(format: LogFormat) {
    let filter = match EnvFilter::builder()
        .with_default_directive(DEFAULT.into())
        .parse(std::env::var("RUST_LOG").unwrap_or_default())
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("sinew: RUST_LOG: {e}; logging at the default level ({DEFAULT})");
            EnvFilter::default().add_directive(DEFAULT.into())
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr);
    // try_init: a subscriber set already (none is, today) is kept.
    let _ = match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).try_init()
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// stderr, with a progress bar (if one is drawn) cleared while a line is
/// written.
struct Stderr;

/// One event's bytes go out in one `write_all` (the formatter buffers the
/// line), so each line is written whole while the bar is hidden.
struct StderrLine;

impl Write for StderrLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::progress::suspend(|| std::io::stderr().lock().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        crate::progress::suspend(|| std::io::stderr().lock().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = StderrLine;

    fn make_writer(&'a self) -> StderrLine {
        StderrLine
    }
}
