//! The progress bar of a long `sinew call --repeat`, and keeping other
//! stderr output (logs, per-call errors) from tearing through it.
//!
//! The bar exists only while stderr is a terminal (with a `TERM` other
//! than `dumb`), and shows itself only once the run has lasted
//! [`SHOW_AFTER`]: a short run prints nothing more than its summary, and a
//! redirected stderr never gets escape codes.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a run goes before its bar appears.
pub(crate) const SHOW_AFTER: Duration = Duration::from_secs(1);

/// The bar being drawn, if any: what [`suspend`] hides while other output
/// is written.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Run `write` with the active bar (if any) cleared from the terminal, and
/// redraw the bar afterwards; without a bar, just run it. Every write to
/// stderr while a bar may be shown goes through here (the log writer too).
pub(crate) fn suspend<R>(write: impl FnOnce() -> R) -> R {
    // Clone the handle out so the lock is not held while writing.
    let bar = ACTIVE.lock().ok().and_then(|a| a.clone());
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// The progress of `total` calls: drawn on stderr from [`SHOW_AFTER`] on,
/// when stderr is a terminal; otherwise a counter that draws nothing.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    shower: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Start counting `total` calls. Must be called inside a tokio runtime.
    pub(crate) fn start(total: u64) -> Progress {
        // As indicatif itself: a dumb terminal (or none named) cannot
        // redraw a line in place.
        let redraws = std::env::var("TERM").is_ok_and(|t| !t.is_empty() && t != "dumb");
        if !std::io::stderr().is_terminal() || !redraws {
            return Progress {
                bar: None,
                shower: None,
            };
        }
        let style = ProgressStyle::with_template(
            "{spinner} {pos}/{len} calls [{bar:30}] {rate} {elapsed_precise} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1}/s", state.per_sec());
            },
        )
        .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
            .with_style(style);
        let shown = bar.clone();
        let shower = tokio::spawn(async move {
            tokio::time::sleep(SHOW_AFTER).await;
            if let Ok(mut active) = ACTIVE.lock() {
                shown.set_draw_target(ProgressDrawTarget::stderr());
                shown.enable_steady_tick(Duration::from_millis(200));
                *active = Some(shown);
            }
        });
        Progress {
            bar: Some(bar),
            shower: Some(shower),
        }
    }

    /// One call done.
    pub(crate) fn inc(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// Remove the bar from the terminal (before the summary is printed).
    pub(crate) fn finish(mut self) {
        self.clear();
    }

    fn clear(&mut self) {
        if let Some(shower) = self.shower.take() {
            shower.abort();
        }
        if let Ok(mut active) = ACTIVE.lock() {
            *active = None;
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}
