//! The pooled hyper-util client at the bottom of the stack.

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use sinew_core::Body;

/// Connection pool and protocol settings (`[pool]` in the config file).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Give up connecting after this long (default 1 s).
    #[serde(with = "crate::config::duration")]
    pub connect_timeout: Duration,
    /// Close idle pooled connections after this long (default 90 s).
    #[serde(with = "crate::config::duration")]
    pub idle_timeout: Duration,
    /// At most this many idle connections per host (default 32).
    pub max_idle_per_host: usize,
    /// Speak HTTP/2 only: h2 over TLS, or h2c with prior knowledge over
    /// `http://` (default false: HTTP/1.1).
    pub http2: bool,
    /// Set TCP_NODELAY (default true).
    pub nodelay: bool,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(90),
            max_idle_per_host: 32,
            http2: false,
            nodelay: true,
        }
    }
}

/// The hyper-util client sinew sends through.
pub(crate) type Transport = HyperClient<HttpConnector, Body>;

pub(crate) fn build(pool: &PoolConfig) -> Transport {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(pool.connect_timeout));
    connector.set_nodelay(pool.nodelay);
    connector.enforce_http(true);
    let mut builder = HyperClient::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(pool.idle_timeout)
        .pool_max_idle_per_host(pool.max_idle_per_host)
        .http2_only(pool.http2);
    builder.build(connector)
}

/// Send through the transport, boxing its error.
pub(crate) async fn send(
    transport: Transport,
    req: Request<Body>,
) -> Result<Response<Incoming>, sinew_core::BoxError> {
    transport.request(req).await.map_err(Into::into)
}
