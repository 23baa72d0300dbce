//! The Nacos registry (aio-service-caller's and Spring Cloud Alibaba's):
//! [`NacosDiscovery`] follows the healthy instances of a service,
//! [`NacosRegistration`] keeps this instance there as an ephemeral
//! instance. Both are configured by one [`NacosConfig`].
//!
//! They speak Nacos's HTTP open API (v1) over the hyper client, which
//! Nacos 1.x, 2.x and compatible servers (such as `rnacos`) serve:
//!
//! | what | request |
//! |---|---|
//! | log in | `POST /nacos/v1/auth/login` (`username`, `password`) → `accessToken`, `tokenTtl` |
//! | list | `GET /nacos/v1/ns/instance/list?serviceName&groupName&namespaceId&clusters&healthyOnly=true` |
//! | register | `POST /nacos/v1/ns/instance` (`ephemeral=true`, `weight`, `metadata` as JSON, ...) |
//! | heartbeat | `PUT /nacos/v1/ns/instance/beat` (`beat` as JSON) |
//! | deregister | `DELETE /nacos/v1/ns/instance` |
//!
//! Instances that Nacos 2.x clients register over gRPC (nacos-sdk-python,
//! as aio-service-caller uses, or the Java client) are listed by the same
//! call, so a sinew service sees them, and they see it.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use sinew_balance::{BalanceConfig, Endpoint, LoadBalanceLayer, NacosConfig, NacosDiscovery,
//!                     NacosRegistration, Strategy};
//! use sinew_core::config::Secret;
//!
//! let mut config = NacosConfig::new("127.0.0.1:8848", "inventory");
//! config.namespace = "dev".into();
//! config.username = Some("nacos".into());
//! config.password = Some(Secret::Env("NACOS_PASSWORD".into()));
//!
//! // Calls to "inventory" spread over its healthy instances.
//! let balance = LoadBalanceLayer::new(
//!     BalanceConfig { strategy: Strategy::WeightedRoundRobin, ..Default::default() },
//!     vec![],
//! )?
//! .discover(NacosDiscovery::new(&config)?.into_stream());
//!
//! // This instance, as "orders" in the same namespace.
//! let me = NacosConfig { service: "orders".into(), ..config };
//! let registration = NacosRegistration::register(&me, &Endpoint::new("10.0.0.7:8080")).await?;
//! # drop(balance);
//! registration.deregister().await;
//! # Ok(()) }
//! ```
//!
//! Why HTTP and not the `nacos-sdk` crate: that client runs its tasks on a
//! runtime of its own (not the caller's, so they outlive the balancer and
//! ignore tokio's paused clock), loads a `.env` file from the working
//! directory and lets `NACOS_CLIENT_*` environment variables override what
//! the config says, and writes a naming cache under the home directory.

mod client;
mod config;
mod discovery;
mod registration;

pub use config::{NacosConfig, DEFAULT_CLUSTER, DEFAULT_GROUP, DEFAULT_PORT};
pub use discovery::{NacosDiscovery, DEFAULT_MAX_INSTANCES, DEFAULT_MAX_RESPONSE};
pub use registration::{NacosRegistration, DEFAULT_HEARTBEAT};

/// What went wrong talking to Nacos.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NacosError {
    /// The config or the instance is not usable (found before any
    /// traffic); names the key.
    Config(String),
    /// No server could be reached within the timeout (each server's
    /// failure listed).
    Unreachable(String),
    /// The login was refused (wrong user or password), or the server wants
    /// one and none is configured.
    Auth(String),
    /// A server answered with an error, or with something that is not what
    /// Nacos sends.
    Server(String),
}

impl std::fmt::Display for NacosError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NacosError::Config(m) => write!(f, "Nacos config: {m}"),
            NacosError::Unreachable(m) => write!(f, "Nacos unreachable: {m}"),
            NacosError::Auth(m) => write!(f, "Nacos authentication failed: {m}"),
            NacosError::Server(m) => write!(f, "Nacos: {m}"),
        }
    }
}

impl std::error::Error for NacosError {}

impl NacosError {
    /// As a discovery stream reports it.
    pub(crate) fn into_source_error(self) -> crate::SourceError {
        let reason = match self {
            NacosError::Config(m) => format!("config: {m}"),
            NacosError::Unreachable(m) => format!("unreachable: {m}"),
            NacosError::Auth(m) => format!("authentication failed: {m}"),
            NacosError::Server(m) => m,
        };
        crate::SourceError::Unreachable {
            source_name: "Nacos".into(),
            reason,
        }
    }
}
