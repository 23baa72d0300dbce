//! The client side: [`DeadlineLayer`] computes and enforces the call's
//! deadline; [`PropagateDeadlineLayer`] writes it (and the priority) on every
//! attempt.
//!
//! # How the two compose
//!
//! `DeadlineLayer` sits above retry/hedging. It settles the call's deadline
//! once (the earliest of the request's [`Deadline`](sinew_core::Deadline)
//! extension, its own timeout and the ambient [`CallContext`]), stores it in
//! the request as a `Deadline` extension (and the priority as a
//! [`Priority`] extension) for the layers below,
//! enforces it, and by default also writes the headers. Those headers are
//! right for a stack without retries. When attempts happen below it, put
//! [`PropagateDeadlineLayer`] at the per-attempt position (below
//! retry/hedging and the balancer, above signing so a signature may cover
//! the headers): it overwrites `x-request-timeout` (and `grpc-timeout`) with
//! what is left *now*, so a retry sent 300 ms later says 300 ms less.
//!
//! [`CallContext`]: sinew_core::CallContext

mod future;
mod layer;
mod propagate;

pub use future::ResponseFuture;
pub use layer::{DeadlineLayer, DeadlineService};
pub use propagate::{PropagateDeadline, PropagateDeadlineLayer};

use std::time::Duration;

use http::HeaderMap;
use sinew_core::headers::{GRPC_TIMEOUT, X_REQUEST_PRIORITY, X_REQUEST_TIMEOUT};
use sinew_core::Priority;

use crate::parse::{format_grpc_timeout, format_request_timeout};

/// Write the deadline and priority headers (replacing any already there).
pub(crate) fn write_headers(
    headers: &mut HeaderMap,
    remaining: Option<Duration>,
    priority: Priority,
    grpc: bool,
) {
    if let Some(remaining) = remaining {
        headers.insert(X_REQUEST_TIMEOUT, format_request_timeout(remaining));
        if grpc {
            headers.insert(GRPC_TIMEOUT, format_grpc_timeout(remaining));
        }
    }
    headers.insert(
        X_REQUEST_PRIORITY,
        http::HeaderValue::from_static(priority.as_str()),
    );
}
