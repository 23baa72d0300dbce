//! Load balancing for sinew: [`LoadBalanceLayer`] picks an endpoint for
//! every request (every attempt, below retries) and rewrites its URI to it.
//!
//! ```
//! use http::{Request, Response};
//! use sinew_balance::{BalanceConfig, Endpoint, LoadBalanceLayer, Strategy};
//! use sinew_core::Body;
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let layer = LoadBalanceLayer::new(
//!     BalanceConfig { strategy: Strategy::WeightedRoundRobin, ..BalanceConfig::default() },
//!     vec![
//!         Endpoint::new("10.0.0.1:8080").weight(5.0),
//!         Endpoint::new("10.0.0.2:8080"),
//!         Endpoint::new("10.0.0.3:8080"),
//!     ],
//! )
//! .unwrap();
//! // Stands in for the per-endpoint stack and the HTTP client.
//! let client = layer.layer(service_fn(|req: Request<Body>| async move {
//!     Ok::<_, std::convert::Infallible>(Response::new(req.uri().authority().unwrap().to_string()))
//! }));
//! let mut seen = Vec::new();
//! for _ in 0..7 {
//!     let req = Request::get("http://inventory/items").body(Body::empty()).unwrap();
//!     seen.push(client.clone().oneshot(req).await.unwrap().into_body());
//! }
//! // nginx's smooth weighted round robin: 5,1,1 → a a b a c a a.
//! assert_eq!(seen, ["10.0.0.1:8080", "10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.1:8080",
//!                   "10.0.0.3:8080", "10.0.0.1:8080", "10.0.0.1:8080"]);
//! # }
//! ```
//!
//! # What it does
//!
//! * Strategies ([`Strategy`]): round robin, random, weighted random, smooth
//!   weighted round robin (weight 0 never picked), least outstanding, and
//!   power of two choices over peak-EWMA latency × calls in flight (the
//!   default).
//! * Endpoints: a static list, and any stream of `tower::discover::Change`
//!   ([`LoadBalanceLayer::discover`]). A removed endpoint gets no new calls;
//!   its calls in flight finish (they hold it).
//! * Outlier ejection ([`Ejection`]): after N consecutive failures (the
//!   shared classifier) an endpoint is ejected for `base × k` (k-th
//!   ejection, capped); at most `max_ejected` of the endpoints at once; it
//!   returns by itself when its time is up.
//! * No endpoint available: [`NoEndpoints`](sinew_core::NoEndpoints) at once.
//! * Readiness: the per-endpoint stack below is one service keyed by
//!   authority (breaker, signing, client), polled for readiness as a whole;
//!   a refusing endpoint is refused in `call` (an open breaker), never by
//!   readiness, so readiness never has to be rechecked per endpoint.
//!
//! Metrics: `sinew_balance_endpoints` (gauge), `sinew_balance_ejections_total`.
//!
//! Not yet here (issue 7 stays open): DNS and etcd discovery sources and
//! registration, and a bounded wait for endpoints when none is available.
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

#[cfg(feature = "dns")]
pub mod dns;
mod endpoints;
#[cfg(feature = "etcd")]
pub mod etcd;
mod layer;
pub mod source;

#[cfg(feature = "dns")]
pub use dns::DnsDiscovery;
pub use endpoints::{Availability, Endpoint, Strategy};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdDiscovery, Registration};
pub use layer::{
    BalanceConfig, Ejection, InvalidEndpoint, LoadBalance, LoadBalanceLayer, ResponseFuture,
};
pub use source::SourceError;
