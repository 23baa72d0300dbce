//! Retries and hedging for tower HTTP clients: [`RetryLayer`],
//! [`HedgeLayer`], [backoff] curves and a Finagle-style [`RetryBudget`].
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use http::{Request, Response, StatusCode};
//! use sinew_core::Body;
//! use sinew_retry::RetryLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // A backend that is unavailable once, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let seen = calls.clone();
//! let backend = service_fn(move |_req: Request<Body>| {
//!     let n = seen.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         let status = if n == 0 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!         Ok::<_, std::convert::Infallible>(Response::builder().status(status).body(()).unwrap())
//!     }
//! });
//! let client = ServiceBuilder::new().layer(RetryLayer::new()).service(backend);
//!
//! let put = Request::put("http://inventory/items/7").body(Body::from("{}")).unwrap();
//! let response = client.clone().oneshot(put).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//!
//! // A POST is not idempotent: sent once, its 503 returned as it is…
//! let post = Request::post("http://inventory/orders").body(Body::from("{}")).unwrap();
//! calls.store(0, Ordering::SeqCst);
//! assert_eq!(client.clone().oneshot(post).await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
//! // …unless it carries an Idempotency-Key (or the `Retryable` extension).
//! let keyed = Request::post("http://inventory/orders")
//!     .header("idempotency-key", "order-31059")
//!     .body(Body::from("{}"))
//!     .unwrap();
//! calls.store(0, Ordering::SeqCst);
//! assert_eq!(client.oneshot(keyed).await.unwrap().status(), StatusCode::OK);
//! # }
//! ```
//!
//! # What is retried
//!
//! An attempt has failed when the shared [`Classifier`](sinew_core::Classifier)
//! says so: transport errors, timeouts, 5xx, 408, 429. A response carrying
//! `X-Do-Not-Retry` is a success and is never retried. A failure is retried
//! only when all of these hold, checked in this order:
//!
//! 1. the request may be sent again: its method is eligible
//!    ([`RetryMethods`]: by default RFC 9110's idempotent methods, and
//!    POST/PATCH only with an `Idempotency-Key` header or the [`Retryable`]
//!    extension), it does not carry [`NoRetry`], and its body can be
//!    replayed (a `sinew_core::Body` buffered within its cap; a one-shot
//!    stream over the cap is sent once and never retried);
//! 2. attempts are left (`max_attempts` counts the first);
//! 3. it is not a [`CircuitOpen`](sinew_core::CircuitOpen) rejection from
//!    below, unless the layer was told it sits above a balancer
//!    ([`RetryLayer::retry_circuit_open`]);
//! 4. the wait — the response's `Retry-After` (delta-seconds or HTTP-date)
//!    when it has one, else the backoff curve — is at most
//!    `max_retry_after`;
//! 5. the wait plus `min_attempt_time` fits before the call's deadline
//!    ([`effective_deadline`](sinew_core::context::effective_deadline): the
//!    request's `Deadline` extension or the ambient call context);
//! 6. the [`RetryBudget`] grants a token.
//!
//! When retries stop, the caller gets the last response as it came (marked
//! with [`RetryBudgetExhausted`] in its extensions when the budget stopped
//! it), or the last error ([`RetryBudgetExhaustedError`] wrapping it when the
//! budget stopped it; [`DeadlineExceeded`](sinew_core::DeadlineExceeded) when
//! the deadline did). A call whose deadline has already passed is not sent
//! at all. The retry layer does not time attempts out: that is the deadline
//! layer's job, above it.
//!
//! Each retried request is a fresh copy of the original (headers,
//! extensions, body), so layers below sign it anew; it carries an
//! [`Attempt`] extension with its number.
//!
//! # Hedging
//!
//! [`HedgeLayer`] sends a second (third, …) copy of a slow idempotent request
//! at fixed offsets or at a latency percentile of the route, bounded by its
//! own budget; the first acceptable response wins and the other attempts are
//! dropped (cancelling them: hyper closes their connections).
//!
//! With HTTP/1 a cancelled attempt's connection is closed (the server sees
//! it go away); with HTTP/2 its stream is reset and the connection stays.
//!
//! # Where the layers sit
//!
//! In sinew's client stack (outermost first): metrics per call → deadline →
//! **retry / hedge** → load balance → per-endpoint circuit breaker → signing
//! → per-attempt metrics → the hyper client. Retry sits under the deadline
//! layer so it knows the time left, and above the balancer so each attempt
//! may go to another endpoint and is signed afresh. The two layers can be
//! stacked: `RetryLayer` above `HedgeLayer` retries a call whose hedged
//! attempts all failed; each has its own budget.
//!
//! Both layers need `B: TryCloneBody` (the client path's
//! `sinew_core::Body`, `http_body_util::Full`, `Empty`, `String`).
//!
//! # Observability
//!
//! `tracing` events at every decision (`retry scheduled`, `not retried` with
//! the reason, hedges started and won) and the counters listed in
//! [`metrics`].
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

pub mod backoff;
pub mod budget;
pub mod config;
pub mod error;
mod future;
pub mod hedge;
mod layer;
pub mod metrics;
pub mod policy;
mod service;

pub use backoff::{Backoff, BackoffKind, Jitter};
pub use budget::RetryBudget;
pub use config::{HedgeConfig, HedgeDelays, RetryConfig};
pub use error::{ConfigError, RetryBudgetExhausted, RetryBudgetExhaustedError};
pub use future::ResponseFuture;
pub use hedge::{Hedge, HedgeLayer, RouteKey};
pub use layer::RetryLayer;
pub use policy::{Attempt, NoRetry, RetryMethods, Retryable};
pub use service::Retry;
