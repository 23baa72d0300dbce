//! Circuit breaking for sinew: [`CircuitBreakerLayer`], one breaker per key
//! (by default per endpoint: the request's authority).
//!
//! It offers the behaviours of the breakers sinew replaces, correctly:
//! pybreaker's and PyFly's consecutive failures, aio-request's failure rate
//! over a rolling time window (and resilience4j's count window), and a
//! slow-call rate; a half-open state that lets exactly N probes through at
//! once; a wait that doubles (with jitter, capped) each time a probe fails.
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response, StatusCode};
//! use sinew_breaker::{BreakerConfig, CircuitBreakerLayer, State, TripPolicy};
//! use sinew_core::{Body, CircuitOpen};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let layer = CircuitBreakerLayer::from_config(BreakerConfig {
//!     policies: vec![TripPolicy::ConsecutiveFailures(2)],
//!     open_duration: Duration::from_secs(10),
//!     open_jitter: 0.0,
//!     ..BreakerConfig::default()
//! })
//! .unwrap();
//! let breakers = layer.handle();
//! let down = service_fn(|_req: Request<Body>| async {
//!     Ok::<_, std::convert::Infallible>(
//!         Response::builder().status(StatusCode::SERVICE_UNAVAILABLE).body(()).unwrap(),
//!     )
//! });
//! let client = layer.layer(down);
//! let call = || Request::get("http://inventory:8080/items").body(Body::empty()).unwrap();
//!
//! for _ in 0..2 {
//!     let res = client.clone().oneshot(call()).await.unwrap();
//!     assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! }
//! assert_eq!(breakers.state("inventory:8080"), Some(State::Open));
//!
//! // Open: refused at once, with the time until the next probe.
//! let err = client.clone().oneshot(call()).await.unwrap_err();
//! let open = err.downcast_ref::<CircuitOpen>().unwrap();
//! assert_eq!(open.retry_after(), Some(Duration::from_secs(10)));
//! # }
//! ```
//!
//! # Behaviour
//!
//! * Failures come from the shared [`Classifier`](sinew_core::Classifier):
//!   errors, 5xx, 408, 429; a response with `X-Do-Not-Retry` is a success;
//!   other 4xx are successes.
//! * Policies ([`TripPolicy`]): consecutive failures; a failure rate over a
//!   count or time [`Window`] once `minimum_calls` were seen; a slow-call
//!   rate (a call is slow when its response head took longer than the
//!   threshold). Several policies: any of them trips it.
//! * Open: calls fail fast in `call` with
//!   [`CircuitOpen`] carrying the time until the
//!   next probe; readiness is never withheld, so one open key never blocks
//!   another. The wait is `open_duration · 2^k` for the k-th open in a row,
//!   capped at `max_open_duration`, ± `open_jitter`; it resets on closing.
//! * Half-open: at most `half_open_probes` calls at once; `success_threshold`
//!   successes close it, one failure re-opens it. A probe whose future is
//!   dropped (cancelled) gives its slot back.
//! * Calls admitted before the breaker opened that end later change nothing.
//! * Keys: at most `max_keys`; when a shard is full the least recently used
//!   closed key is dropped (an open one only when all are open).
//! * [`FallbackLayer`] turns refusals into aio-request's `502` with
//!   `X-Circuit-Breaker: 1` and `X-Do-Not-Retry: 1`.
//! * Manual control and observation: [`CircuitBreakerHandle`].
//!
//! # Observability
//!
//! Every transition: a `tracing` event, `sinew_circuit_breaker_transitions_total{from,to}`,
//! and the gauge `sinew_circuit_breaker_state{key}` (0 closed, 1 half-open,
//! 2 open). Refusals: `sinew_circuit_breaker_rejections_total`.
//!
//! # Locking
//!
//! Breakers live in a 16-way sharded map (a read lock held for one lookup;
//! the write lock only to add or evict a key); each breaker's state has its
//! own small lock, held for a few instructions and never across an
//! `.await`, and a closed breaker admits calls and records quiet successes
//! without taking it. No global lock is on the hot path.
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

mod config;
#[cfg(feature = "serde")]
mod config_file;
mod fallback;
mod future;
mod layer;
mod service;
mod state;

pub use config::{BreakerConfig, ConfigError, TripPolicy, Window};
pub use fallback::{Fallback, FallbackFuture, FallbackLayer};
pub use future::ResponseFuture;
pub use layer::{CircuitBreakerHandle, CircuitBreakerLayer, KeyFn};
pub use service::CircuitBreaker;
pub use sinew_core::CircuitOpen;
pub use state::State;
