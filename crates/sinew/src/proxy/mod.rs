//! The whole stack as a sidecar (`sinew proxy --config proxy.toml`), so a
//! service in any language gets signing, deadlines, retries with budgets,
//! breakers and balancing without a change to its code.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{routing::get, Router};
//!
//! // The application behind the proxy: it sees who called and the time left.
//! let app = Router::new().route("/who", get(|h: axum::http::HeaderMap| async move {
//!     format!("{} {}", h["x-sinew-caller"].to_str().unwrap(), h.contains_key("x-request-timeout"))
//! }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let app_addr = listener.local_addr()?;
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! std::env::set_var("ORDERS_KEY", "s3cret");
//! let proxy = sinew::proxy::Proxy::from_toml(&format!(r#"
//!     [sign]                          # outbound calls are signed ...
//!     key_id = "orders"
//!     key = {{ env = "ORDERS_KEY" }}
//!     [server.verify]                 # ... and inbound ones verified
//!     keys = [{{ key_id = "orders", key = {{ env = "ORDERS_KEY" }} }}]
//!     [proxy.inbound]
//!     listen = "127.0.0.1:0"
//!     upstream = "{app_addr}"
//!     [proxy.outbound]
//!     listen = "127.0.0.1:0"
//!     [registry]                      # where service names resolve
//!     static = {{ orders = ["127.0.0.1:1"] }}
//! "#), "proxy.toml")?;
//! let running = proxy.bind().await?;
//! let inbound = running.inbound_addr().unwrap();
//!
//! // An unsigned request is refused at the inbound side ...
//! let plain = sinew::Client::builder().no_retry().build()?;
//! let err = plain.get(&format!("http://{inbound}/who")).send().await.unwrap_err();
//! assert_eq!(err.kind(), sinew::ErrorKind::Unauthorized);
//!
//! // ... a signed one reaches the application, which learns the caller.
//! let signed = sinew::ClientBuilder::from_config(sinew::config::ClientConfig::from_toml(r#"
//!     [sign]
//!     key_id = "orders"
//!     key = { env = "ORDERS_KEY" }
//! "#, "client.toml")?).build()?;
//! let text = signed.get(&format!("http://{inbound}/who")).send().await?.text().await?;
//! assert_eq!(text, "orders true");
//!
//! running.draining().drain();
//! running.wait().await;
//! # Ok(()) }
//! ```
//!
//! # Inbound: callers → the application
//!
//! `[proxy.inbound]` listens for callers and applies the server stack of
//! `[server]` ([`ServerStack`]): metrics (route templates from
//! `[proxy.inbound] routes`), signature verification (`accept = rfc9421 |
//! legacy | any`), the caller's deadline and priority, shedding by
//! priority. Refusals are problem+json as the layers write them. The
//! request then goes to the application (`upstream`) with:
//!
//! * `X-Sinew-Caller: <key id>` of the verified signature (any
//!   `X-Sinew-Caller` the caller sent is removed: the application can trust
//!   it);
//! * `X-Request-Timeout`: the seconds left of the caller's deadline (as the
//!   deadline layer settled it: capped, or the default), and
//!   `X-Request-Priority`;
//! * `Forwarded`, `X-Forwarded-For` and `Via` with this hop appended.
//!
//! # Outbound: the application → other services
//!
//! `[proxy.outbound]` listens on a loopback port for the application's
//! calls. The service is named by `Host` (`curl -H 'Host: inventory'
//! http://127.0.0.1:4140/items/1`) or by an absolute-form target, as an
//! HTTP proxy (`HTTP_PROXY=http://127.0.0.1:4140`, then
//! `http://inventory/items/1`). Each service has its client from
//! [`Services`]: its instances from `[registry]` (static, DNS, etcd,
//! Nacos), the client sections of the file (signing, deadline, retry with
//! its budget, hedge, a breaker per endpoint, balancing, metrics) with
//! `[services.NAME]` overrides.
//!
//! The application keeps its deadline and priority across the hop by
//! forwarding the `X-Request-Timeout` and `X-Request-Priority` it received
//! on its outbound calls (aio-request does this by itself): they become
//! the call's deadline and priority, so retries stop in time and each
//! attempt says how long is left. Without them, the client's `timeout`
//! (30 s by default) bounds the call.
//!
//! # Bodies
//!
//! Bodies stream both ways; memory stays bounded whatever their size.
//! Bodies are read into memory only where a check needs all of them:
//!
//! * outbound, a request body declared (by `Content-Length`) at most
//!   `buffer_request_body` (64 KiB) long is read first, so a failed
//!   attempt can be retried; a longer one streams once and is not retried;
//! * outbound, when `[sign]` covers `content-digest` (the default), the
//!   body up to `[sign] body_limit` (1 MiB) is read to compute the digest;
//!   a longer one is refused with 413 (`reason: body_too_large`), never
//!   sent unsigned. To send larger bodies, sign without `content-digest`
//!   (`components = ["@method", "@authority", "@path", "@query"]`) or
//!   raise the limit;
//! * inbound, `[server.verify]` reads a signed body up to its `body_limit`
//!   (1 MiB) to check the digest, and answers 413 beyond;
//! * response bodies always stream (the clients here are built with
//!   [`ClientBuilder::response_buffer(None)`](crate::ClientBuilder::response_buffer)):
//!   a failed status is still retried, but a body cut mid-way reaches the
//!   application cut.
//!
//! # Connections
//!
//! Both sides speak HTTP/1.1 and HTTP/2 (h2c, prior knowledge) to clients;
//! to the application `upstream_http2` picks h2c, and to other services
//! `[pool] http2`. Each listener has a header-read timeout, an idle
//! timeout and a connection limit. Hop-by-hop fields (RFC 9110 §7.6.1:
//! `Connection` and the fields it names, `Keep-Alive`, `Proxy-Connection`,
//! `TE` but `te: trailers`, `Transfer-Encoding`, `Upgrade`) are removed
//! both ways. Upgrades (WebSocket) and `CONNECT` are not supported.
//!
//! # Draining
//!
//! On [`Draining::drain`] (the CLI: SIGTERM or SIGINT) the proxy
//! deregisters this instance (when `[server.register]` registered it),
//! answers `/healthz` with 503, stops accepting (new connections are
//! refused), lets requests in flight finish, and after `drain_timeout`
//! closes what is left.

mod admin;
pub mod config;
mod headers;
mod inbound;
mod outbound;
mod problem;
mod routes;
mod serve;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use sinew_metrics::prometheus::MetricsHandle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{AdminConfig, InboundConfig, OutboundConfig, ProxyConfig};
pub use headers::{ClientAddr, X_FORWARDED_FOR, X_SINEW_CALLER};
pub use routes::MAX_ROUTES;

use crate::config::ClientConfig;
use crate::registry::Registration;
use crate::server::ServerStack;
use crate::{ClientBuilder, Error, ErrorKind, Services};

/// The body of every response the proxy sends.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, sinew_core::BoxError>;

fn cfg(m: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, m)
}

/// A proxy built from a config file, checked and ready to
/// [`bind`](Proxy::bind).
pub struct Proxy {
    config: ProxyConfig,
    client: ClientConfig,
    stack: Option<ServerStack>,
    services: Option<Services>,
    metrics: Option<MetricsHandle>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("config", &self.config)
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Read a config file (at most
    /// [`MAX_CONFIG_FILE`](crate::config::MAX_CONFIG_FILE) bytes) with a
    /// `[proxy]` section.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Proxy, Error> {
        let path = path.as_ref();
        let text = crate::config::read_bounded(path, crate::config::MAX_CONFIG_FILE)
            .map_err(|e| cfg(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parse TOML with a `[proxy]` section; `origin` (a file name) prefixes
    /// error messages. Everything is checked now (unknown keys, secrets,
    /// every `[services.NAME]`), so a bad file fails at start-up.
    pub fn from_toml(text: &str, origin: &str) -> Result<Proxy, Error> {
        let client = ClientConfig::from_toml(text, origin)?;
        let config = client.proxy.clone().ok_or_else(|| {
            cfg(format!(
                "{origin}: no [proxy] section: add [proxy.inbound] and/or [proxy.outbound]"
            ))
        })?;
        config::check(&config).map_err(|e| cfg(format!("{origin}: {e}")))?;
        let stack = match &config.inbound {
            Some(_) => {
                let server = client.server.clone().unwrap_or_default();
                if server.verify.is_none() {
                    tracing::warn!("{origin}: [proxy.inbound] without [server.verify]: callers are not authenticated");
                }
                Some(ServerStack::from_config(&server).map_err(|e| cfg(format!("{origin}: {e}")))?)
            }
            None => None,
        };
        let services = match &config.outbound {
            Some(_) => Some(
                Services::from_toml(text, origin)?
                    // Responses stream to the application as they come.
                    .customize(|b: ClientBuilder| b.response_buffer(None)),
            ),
            None => None,
        };
        if client.server.as_ref().is_some_and(|s| s.register.is_some()) {
            if config.inbound.is_none() {
                return Err(cfg(format!("{origin}: [server.register] needs [proxy.inbound]: the instance registered is the inbound side")));
            }
            if client.registry.is_none() {
                return Err(cfg(format!(
                    "{origin}: [server.register] needs a [registry] (nacos or etcd) to register in"
                )));
            }
        }
        Ok(Proxy {
            config,
            client,
            stack,
            services,
            metrics: None,
        })
    }

    /// Serve this recorder's exposition on the admin side's `/metrics`
    /// (install it as the global recorder first, so the layers record
    /// into it).
    pub fn metrics(mut self, handle: MetricsHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// The `[proxy]` section.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// The outbound side's clients by service name.
    pub fn services(&self) -> Option<&Services> {
        self.services.as_ref()
    }

    /// Bind every listener (an address in use is an error naming it),
    /// register this instance when `[server.register]` says so, and start
    /// serving.
    pub async fn bind(self) -> Result<Running, Error> {
        // `requested`: drain() was called (health turns 503); `stop`: the
        // listeners stop, once this instance is deregistered.
        let (drain_tx, drain_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let grace = self.config.drain_timeout;
        let mut tasks = Vec::new();
        let mut addrs = Addrs::default();
        let mut pending = Vec::new();
        if let (Some(c), Some(stack)) = (&self.config.inbound, &self.stack) {
            let l = serve::bind(c.listen, "inbound").await?;
            addrs.inbound = Some(local(&l, "inbound")?);
            let limits = serve::Limits {
                side: "inbound",
                max_connections: c.max_connections,
                header_read_timeout: c.header_read_timeout.duration(),
                idle_timeout: c.idle_timeout.duration(),
            };
            pending.push((l, limits, inbound::service(c, stack)?));
        }
        if let (Some(c), Some(services)) = (&self.config.outbound, &self.services) {
            let l = serve::bind(c.listen, "outbound").await?;
            addrs.outbound = Some(local(&l, "outbound")?);
            let limits = serve::Limits {
                side: "outbound",
                max_connections: c.max_connections,
                header_read_timeout: c.header_read_timeout.duration(),
                idle_timeout: c.idle_timeout.duration(),
            };
            pending.push((
                l,
                limits,
                outbound::service(services.clone(), c.buffer_request_body),
            ));
        }
        if let Some(c) = &self.config.admin {
            let l = serve::bind(c.listen, "admin").await?;
            addrs.admin = Some(local(&l, "admin")?);
            let limits = serve::Limits {
                side: "admin",
                max_connections: 64,
                header_read_timeout: Some(std::time::Duration::from_secs(10)),
                idle_timeout: Some(std::time::Duration::from_secs(60)),
            };
            pending.push((
                l,
                limits,
                admin::service(self.metrics.clone(), drain_rx.clone()),
            ));
        }
        let registration = match (
            self.client.registry.as_ref(),
            self.client
                .server
                .as_ref()
                .and_then(|s| s.register.as_ref()),
        ) {
            (Some(registry), Some(register)) => {
                Some(Registration::register(registry, register).await?)
            }
            _ => None,
        };
        for (l, limits, svc) in pending {
            tasks.push(tokio::spawn(serve::serve(
                l,
                limits,
                svc,
                stop_rx.clone(),
                grace,
            )));
        }
        for (side, addr) in [
            ("inbound", addrs.inbound),
            ("outbound", addrs.outbound),
            ("admin", addrs.admin),
        ] {
            if let Some(a) = addr {
                tracing::info!(side, %a, "proxy listening");
            }
        }
        Ok(Running {
            addrs,
            draining: Draining {
                tx: Arc::new(drain_tx),
            },
            stop: stop_tx,
            tasks,
            registration,
        })
    }
}

fn local(l: &tokio::net::TcpListener, what: &str) -> Result<SocketAddr, Error> {
    l.local_addr()
        .map_err(|e| cfg(format!("[proxy.{what}] no local address: {e}")))
}

#[derive(Debug, Default, Clone, Copy)]
struct Addrs {
    inbound: Option<SocketAddr>,
    outbound: Option<SocketAddr>,
    admin: Option<SocketAddr>,
}

/// Starts the drain of a running proxy; cheap to clone.
#[derive(Debug, Clone)]
pub struct Draining {
    tx: Arc<watch::Sender<bool>>,
}

impl Draining {
    /// Start the drain: `/healthz` answers 503 at once; [`Running::wait`]
    /// (or [`Running::run_until`]) then deregisters, stops accepting, and
    /// lets requests in flight finish (within `drain_timeout`).
    pub fn drain(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the drain has started.
    pub fn is_draining(&self) -> bool {
        *self.tx.borrow()
    }
}

/// A proxy serving its listeners.
#[derive(Debug)]
pub struct Running {
    addrs: Addrs,
    draining: Draining,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    registration: Option<Registration>,
}

impl Running {
    /// Where the inbound side listens.
    pub fn inbound_addr(&self) -> Option<SocketAddr> {
        self.addrs.inbound
    }

    /// Where the outbound side listens.
    pub fn outbound_addr(&self) -> Option<SocketAddr> {
        self.addrs.outbound
    }

    /// Where the admin side listens.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.addrs.admin
    }

    /// A handle that starts the drain.
    pub fn draining(&self) -> Draining {
        self.draining.clone()
    }

    /// Serve until `signal` completes, then drain; returns once drained.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        let mut rx = self.draining.tx.subscribe();
        tokio::select! {
            _ = signal => self.draining.drain(),
            _ = rx.wait_for(|d| *d) => {}
        }
        self.wait().await;
    }

    /// Serve until a [`Draining`] handle starts the drain, then drain:
    /// deregister this instance, stop accepting, and wait for the requests
    /// in flight (at most `drain_timeout`). Dropping a `Running` without
    /// waiting drains it in the background.
    pub async fn wait(mut self) {
        let mut rx = self.draining.tx.subscribe();
        let _ = rx.wait_for(|d| *d).await;
        if let Some(r) = self.registration.take() {
            r.deregister().await;
        }
        self.stop.send_replace(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}
