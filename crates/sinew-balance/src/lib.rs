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
//!   its calls in flight finish (they hold it). The discovery task ends
//!   when the last clone of the balancer is dropped.
//! * Discovery sources, each a `Change` stream:
//!   - [`DnsDiscovery`] (feature `dns`, default): A/AAAA (`host:port`) or
//!     SRV (`srv:_svc._tcp.name`; lowest priority, weights kept) through
//!     hickory-resolver, looked up again when the shortest record TTL runs
//!     out (clamped to `min_refresh..=max_refresh`); a failed or empty
//!     lookup keeps the last good set and retries with backoff.
//!   - [`EtcdDiscovery`] (feature `etcd`, default; building etcd-client
//!     needs `protoc`): the prefix `/sinew/services/<service>/`, each key an
//!     instance holding `{"address": "host:port", "weight": 1.0,
//!     "metadata": {}}`; read, then watched from the next revision; after a
//!     lost connection or a compacted revision it reads again and sends the
//!     difference. Records that do not parse are skipped and reported.
//!   - [`NacosDiscovery`] (feature `nacos`, default; see [`nacos`]): the
//!     healthy, enabled instances of a Nacos service (namespace, group,
//!     optional cluster) with their weights and metadata, polled every
//!     500 ms over Nacos's HTTP open API (instances that Nacos 2.x clients
//!     register over gRPC included); the last good set stays while the
//!     server cannot be reached; username/password login with the token
//!     renewed. Configured by a [`NacosConfig`] (serde).
//! * Registration ([`Registration`], feature `etcd`): puts this instance
//!   under `/sinew/services/<service>/<instance-id>` with a lease kept
//!   alive in the background (re-registered if the lease is lost); the key
//!   is revoked on [`Registration::deregister`] or drop, and if the process
//!   dies the lease runs out and the instance disappears.
//!   [`NacosRegistration`] (feature `nacos`) does the same in Nacos: an
//!   ephemeral instance kept alive by heartbeats, removed by
//!   [`NacosRegistration::deregister`] (call it on SIGTERM) or drop, and
//!   dropped by the server after its heartbeat timeout if the process dies.
//! * Outlier ejection ([`Ejection`]): after N consecutive failures (the
//!   shared classifier) an endpoint is ejected for `base × k` (k-th
//!   ejection, capped); at most `max_ejected` of the endpoints at once; it
//!   returns by itself when its time is up.
//! * No endpoint available: [`NoEndpoints`](sinew_core::NoEndpoints) at
//!   once, or after waiting up to [`BalanceConfig::wait_for_endpoints`]
//!   (never past the call's deadline) for one to be discovered or to come
//!   back from ejection.
//! * Availability: [`BalanceConfig::available`] /
//!   [`LoadBalanceLayer::available_if`] say whether an endpoint may be
//!   picked now; the `sinew` client skips endpoints whose breaker is open.
//!   A waiting call looks again every 50 ms, so an endpoint that becomes
//!   available is used without new traffic (tower#824).
//! * Readiness: the per-endpoint stack below is one service keyed by
//!   authority (breaker, signing, client), polled for readiness as a whole.
//!
//! ```no_run
//! # #[cfg(all(feature = "dns", feature = "etcd"))]
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use sinew_balance::{BalanceConfig, DnsDiscovery, EtcdDiscovery, Endpoint, LoadBalanceLayer, Registration};
//!
//! // This instance, visible to every watcher of "orders" while it lives.
//! let me = Endpoint::new("10.0.0.7:8080").meta("zone", "a");
//! let registration = Registration::register(["http://127.0.0.1:2379"], "orders", "orders-7",
//!                                           &me, Duration::from_secs(10)).await?;
//!
//! // A balancer over the instances of "inventory" in etcd, waiting up to
//! // 250 ms for one when none is there...
//! let config = BalanceConfig { wait_for_endpoints: Duration::from_millis(250), ..Default::default() };
//! let by_etcd = LoadBalanceLayer::new(config.clone(), vec![])?
//!     .discover(EtcdDiscovery::new(["http://127.0.0.1:2379"], "inventory").into_stream());
//! // ...or over what DNS says.
//! let by_dns = LoadBalanceLayer::new(config, vec![])?
//!     .discover(DnsDiscovery::parse("srv:_http._tcp.inventory.internal")?.into_stream());
//! # drop((by_etcd, by_dns));
//! registration.deregister().await;
//! # Ok(()) }
//! ```
//!
//! Metrics: `sinew_balance_endpoints` (gauge), `sinew_balance_ejections_total`.
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

#[cfg(feature = "serde")]
pub mod config;
#[cfg(feature = "dns")]
pub mod dns;
mod endpoints;
#[cfg(feature = "etcd")]
pub mod etcd;
mod layer;
#[cfg(feature = "nacos")]
pub mod nacos;
pub mod source;

#[cfg(feature = "serde")]
pub use config::{BalanceConfigError, BalanceSection, EndpointSpec, EtcdSource};
#[cfg(feature = "dns")]
pub use dns::DnsDiscovery;
pub use endpoints::{Availability, Endpoint, Strategy};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdDiscovery, Registration};
pub use layer::{
    BalanceConfig, Ejection, InvalidEndpoint, LoadBalance, LoadBalanceLayer, ResponseFuture,
};
#[cfg(feature = "nacos")]
pub use nacos::{NacosConfig, NacosDiscovery, NacosError, NacosRegistration};
pub use source::SourceError;
