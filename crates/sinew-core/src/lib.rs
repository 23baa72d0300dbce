//! The shared vocabulary of the sinew layers.
//!
//! Every sinew layer crate depends on this one and on nothing else of ours.
//! It holds what must be decided once for the whole stack:
//!
//! * [`classify`]: what counts as a failure (one classifier shared by retry,
//!   circuit breaker, metrics and the balancer's outlier detection);
//! * [`context`]: the [`CallContext`] (deadline, priority, trace parent) that
//!   server layers parse and client layers propagate;
//! * [`headers`]: the header names sinew reads and writes;
//! * [`body`]: a request body that can be replayed for retries and digests,
//!   and the response body server layers use for their refusals;
//! * [`clock`]: wall-clock time that tests and the CLI can fix;
//! * [`problem`]: RFC 9457 `application/problem+json` refusals;
//! * [`error`]: the error types several layers share.
//!
//! # Example
//!
//! ```
//! use http::{Response, StatusCode};
//! use sinew_core::classify::{Classification, Classifier};
//!
//! let classifier = Classifier::default();
//! let ok = Response::builder().status(StatusCode::OK).body(()).unwrap();
//! let busy = Response::builder().status(StatusCode::SERVICE_UNAVAILABLE).body(()).unwrap();
//! let refused = Response::builder()
//!     .status(StatusCode::SERVICE_UNAVAILABLE)
//!     .header("x-do-not-retry", "1")
//!     .body(())
//!     .unwrap();
//!
//! assert_eq!(classifier.classify_response(&ok), Classification::Success);
//! assert!(classifier.classify_response(&busy).is_failure());
//! // A response marked X-Do-Not-Retry is a success for every layer.
//! assert_eq!(classifier.classify_response(&refused), Classification::Success);
//! ```
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

pub mod body;
pub mod classify;
pub mod clock;
#[cfg(feature = "serde")]
pub mod config;
pub mod context;
pub mod error;
pub mod headers;
#[cfg(feature = "opentelemetry")]
pub mod otel;
pub mod problem;

pub use body::{Body, ResponseBody, TryCloneBody};
pub use classify::{Classification, Classifier, FailureKind};
pub use clock::{Clock, FixedClock, SystemClock};
pub use context::{CallContext, Deadline, Priority, TraceParent};
pub use error::{BoxError, CircuitOpen, DeadlineExceeded, NoEndpoints};
