//! Deadline and priority propagation across hops, and priority-aware load
//! shedding, as tower layers.
//!
//! A call chain A → B → C stops working the moment A's caller stops
//! waiting, and under overload the important calls get through first:
//!
//! * client: [`DeadlineLayer`] settles the call's deadline (the earliest of
//!   the request's, its own timeout and the inherited one), enforces it
//!   (typed [`DeadlineExceeded`]) and sends `x-request-timeout` /
//!   `x-request-priority` (and optionally `grpc-timeout`);
//!   [`PropagateDeadlineLayer`] rewrites them on every attempt below retries;
//! * server: [`ServerDeadlineLayer`] reads those headers (and
//!   `x-request-deadline-at`, `grpc-timeout`, trusted Envoy's), refuses bad
//!   (`400`) and expired (`408`, `X-Do-Not-Retry: 1`) requests, and runs the
//!   handler inside the [`CallContext`] so calls made by the handler inherit
//!   it; [`context::spawn`] carries it into spawned tasks;
//! * server: [`ShedLayer`] limits concurrency with headroom reserved for
//!   higher priorities (`503` + `Retry-After` for the shed).
//!
//! Server stack order: metrics → signature verification →
//! `ServerDeadlineLayer` → `ShedLayer` → the application. Client stack order:
//! metrics → `DeadlineLayer` → retry/hedge → balance → breaker →
//! `PropagateDeadlineLayer` → signing → HTTP client.
//!
//! # Example
//!
//! A handler behind the server layer calls another service through the
//! client layer; the callee sees the caller's deadline (minus the time
//! spent) and priority.
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use http::{Request, Response};
//! use sinew_core::{CallContext, Priority};
//! use sinew_deadline::{DeadlineLayer, ServerDeadlineLayer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // The downstream service: echoes the headers it received.
//! let downstream = service_fn(|req: Request<String>| async move {
//!     let timeout = req.headers()["x-request-timeout"].to_str().unwrap().to_owned();
//!     let priority = req.headers()["x-request-priority"].to_str().unwrap().to_owned();
//!     Ok::<_, Infallible>(Response::new(format!("{timeout} {priority}")))
//! });
//! let client = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new().timeout(Duration::from_secs(30)))
//!     .service(downstream);
//!
//! // Our server: its handler calls downstream with the client.
//! let server = ServiceBuilder::new()
//!     .layer(ServerDeadlineLayer::new())
//!     .service(service_fn(move |_req: Request<String>| {
//!         let client = client.clone();
//!         async move {
//!             assert_eq!(CallContext::current().unwrap().priority(), Priority::High);
//!             let res = client.oneshot(Request::new(String::new())).await.unwrap();
//!             Ok::<_, Infallible>(res)
//!         }
//!     }));
//!
//! let req = Request::builder()
//!     .header("x-request-timeout", "2.5")
//!     .header("x-request-priority", "high")
//!     .body(String::new())
//!     .unwrap();
//! let res = server.oneshot(req).await.unwrap();
//! let body = match res.into_body() {
//!     sinew_core::ResponseBody::Inner { body } => body,
//!     other => panic!("refused: {other:?}"),
//! };
//! // The inherited 2.5 s beat the client's own 30 s.
//! let (timeout, priority) = body.split_once(' ').unwrap();
//! let timeout: f64 = timeout.parse().unwrap();
//! assert!(timeout <= 2.5 && timeout > 2.4);
//! assert_eq!(priority, "high");
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod error;
pub mod parse;
pub mod server;
pub mod shed;

pub use client::{DeadlineLayer, DeadlineService, PropagateDeadline, PropagateDeadlineLayer};
pub use config::{DeadlineConfig, ServerDeadlineConfig, ShedConfig};
pub use error::InvalidHeader;
pub use server::{ServerDeadline, ServerDeadlineLayer};
pub use shed::{Shed, ShedLayer};
pub use sinew_core::context;
pub use sinew_core::{CallContext, Deadline, DeadlineExceeded, Priority};
