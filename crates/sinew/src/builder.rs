//! [`ClientBuilder`]: a client from code, from a config file, or both.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use sinew_core::{Body, BoxError, Classifier};
use tower::Service;

use crate::client::{Client, Handles};
use crate::config::{CallTimeout, ClientConfig};
use crate::stack::{self, Layers, Stack, UserLayer};
use crate::transport::{PoolConfig, TlsConfig};
use crate::{Error, ErrorKind};

/// A transport given to the builder, wrapped once the body policy is known.
type CustomTransport = Box<dyn FnOnce(Option<usize>) -> Stack + Send>;

/// Response bodies up to this size are read within the attempt.
pub const DEFAULT_RESPONSE_BUFFER: usize = 16 * 1024 * 1024;

/// Builds a [`Client`]. Every setting is a section of
/// [`ClientConfig`]; the builder's methods set the same sections, and a few
/// things only code can give (a layer object, a transport, your own
/// layers, a hook).
///
/// Defaults: a 30 s deadline per call, deadline propagation and retries on,
/// every other layer off, one default [`Classifier`] for every layer.
#[must_use]
pub struct ClientBuilder {
    config: ClientConfig,
    classifier: Classifier,
    extra_roots: Vec<Vec<u8>>,
    response_buffer: Option<usize>,
    transport: Option<CustomTransport>,
    per_call: Vec<UserLayer>,
    per_attempt: Vec<UserLayer>,
    on_attempt: Option<crate::observe::AttemptHook>,
    auth: Option<crate::auth::TokenAuthConfig>,
    #[cfg(feature = "retry")]
    retry: Option<sinew_retry::RetryLayer>,
    #[cfg(feature = "retry")]
    hedge: Option<sinew_retry::HedgeLayer>,
    #[cfg(feature = "breaker")]
    breaker: Option<sinew_breaker::CircuitBreakerLayer>,
    #[cfg(feature = "balance")]
    balance: Option<sinew_balance::LoadBalanceLayer>,
    #[cfg(feature = "sign")]
    sign: Option<sinew_sign::HmacSignLayer>,
    error: Option<Error>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder::from_config(ClientConfig::default())
    }
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// A builder with the settings of a parsed config file (see
    /// [`crate::config`]); builder methods called after override them.
    pub fn from_config(config: ClientConfig) -> ClientBuilder {
        ClientBuilder {
            config,
            classifier: Classifier::default(),
            extra_roots: Vec::new(),
            response_buffer: Some(DEFAULT_RESPONSE_BUFFER),
            transport: None,
            per_call: Vec::new(),
            per_attempt: Vec::new(),
            on_attempt: None,
            auth: None,
            #[cfg(feature = "retry")]
            retry: None,
            #[cfg(feature = "retry")]
            hedge: None,
            #[cfg(feature = "breaker")]
            breaker: None,
            #[cfg(feature = "balance")]
            balance: None,
            #[cfg(feature = "sign")]
            sign: None,
            error: None,
        }
    }

    /// The settings so far.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Relative paths are joined to this URL.
    pub fn base_url(mut self, url: &str) -> Self {
        self.config.base_url = Some(url.to_string());
        self
    }

    /// Every call must finish within this long (default 30 s; the earliest
    /// of this, the request's own deadline and an inherited one wins).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(CallTimeout::After(timeout));
        self
    }

    /// No deadline of the client's own: only per-request and inherited
    /// deadlines bound a call. A call to a server that never answers then
    /// waits forever; prefer a long [`timeout`](Self::timeout).
    pub fn no_timeout(mut self) -> Self {
        self.config.timeout = Some(CallTimeout::Off);
        self
    }

    /// Connection pool and protocol settings.
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.config.pool = pool;
        self
    }

    /// HTTPS settings (roots, client certificate, server name).
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.config.tls = tls;
        self
    }

    /// Give up connecting after this long (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.pool.connect_timeout = timeout;
        self
    }

    /// Close idle pooled connections after this long.
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.pool.idle_timeout = timeout;
        self
    }

    /// At most this many idle connections per host.
    pub fn pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.config.pool.max_idle_per_host = n;
        self
    }

    /// HTTP/2 only (h2c prior knowledge over `http://`).
    pub fn http2_only(mut self, yes: bool) -> Self {
        self.config.pool.http2 = yes;
        self
    }

    /// Trust these extra root certificates for HTTPS (PEM, one or more),
    /// besides the system's roots.
    pub fn add_root_certificate_pem(mut self, pem: &[u8]) -> Self {
        let found = crate::transport::pem_certificates(pem);
        if found.is_empty() && self.error.is_none() {
            self.error = Some(Error::new(
                ErrorKind::Config,
                "no PEM certificate found in the given root certificate",
            ));
        }
        self.extra_roots.extend(found);
        self
    }

    /// Whether to trust the operating system's root certificates (default
    /// true).
    pub fn tls_system_roots(mut self, yes: bool) -> Self {
        self.config.tls.system_roots = yes;
        self
    }

    /// Read response bodies of up to `limit` bytes within the attempt (the
    /// default, 16 MiB): a body cut off mid-way fails the attempt, which the
    /// retry layer may then retry. `None` streams bodies to the caller as
    /// they come (for large downloads); a body over the limit streams too.
    pub fn response_buffer(mut self, limit: Option<usize>) -> Self {
        self.response_buffer = limit;
        self
    }

    /// What counts as a failure, for every layer at once: retry, hedge,
    /// breaker, the balancer's outlier ejection and both metrics layers get
    /// this one value (it replaces a classifier a layer given to the
    /// builder was built with), and [`Error::is_retryable`] agrees with it.
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// Deadline propagation settings (on by default; see `sinew-deadline`).
    #[cfg(feature = "deadline")]
    pub fn deadline(mut self, config: sinew_deadline::DeadlineConfig) -> Self {
        self.config.deadline = sinew_core::config::Toggle::On(config);
        self
    }

    /// No deadline layer: no `X-Request-Timeout` / `X-Request-Priority`
    /// headers and no inherited deadlines (the client's own `timeout` still
    /// applies, as a plain timeout).
    #[cfg(feature = "deadline")]
    pub fn no_deadline(mut self) -> Self {
        self.config.deadline = sinew_core::config::Toggle::Off;
        self
    }

    /// Retry failed calls with this layer (on by default with `[retry]`'s
    /// defaults: 3 attempts, decorrelated jitter, 20 % budget).
    #[cfg(feature = "retry")]
    pub fn retry(mut self, layer: sinew_retry::RetryLayer) -> Self {
        self.retry = Some(layer);
        self
    }

    /// Never retry.
    #[cfg(feature = "retry")]
    pub fn no_retry(mut self) -> Self {
        self.retry = None;
        self.config.retry = sinew_core::config::Toggle::Off;
        self
    }

    /// Hedge slow idempotent calls (below retries).
    #[cfg(feature = "retry")]
    pub fn hedge(mut self, layer: sinew_retry::HedgeLayer) -> Self {
        self.hedge = Some(layer);
        self
    }

    /// Spread attempts over endpoints (each attempt picks one and its URI's
    /// authority is rewritten to it). [`Client::balancer`] gives it back to
    /// read `picks()` and `endpoints()`.
    #[cfg(feature = "balance")]
    pub fn balance(mut self, layer: sinew_balance::LoadBalanceLayer) -> Self {
        self.balance = Some(layer);
        self
    }

    /// A circuit breaker per endpoint (below retries, so a refused attempt
    /// is retried on another endpoint when there is a balancer).
    /// [`Client::breakers`] observes and controls it.
    #[cfg(feature = "breaker")]
    pub fn breaker(mut self, layer: sinew_breaker::CircuitBreakerLayer) -> Self {
        self.breaker = Some(layer);
        self
    }

    /// Sign every attempt.
    #[cfg(feature = "sign")]
    pub fn sign(mut self, layer: sinew_sign::HmacSignLayer) -> Self {
        self.sign = Some(layer);
        self
    }

    /// Record `http_client_request_duration_seconds` per call and, when
    /// `config.per_attempt`, per attempt (see `sinew-metrics`).
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, config: sinew_metrics::MetricsConfig) -> Self {
        self.config.metrics = Some(config);
        self
    }

    /// Log in for a bearer token and send it with every call.
    pub fn token_auth(mut self, config: crate::auth::TokenAuthConfig) -> Self {
        self.auth = Some(config);
        self
    }

    /// Call `hook` after every attempt (after retries and balancing chose
    /// it), e.g. to print what happened.
    pub fn on_attempt(
        mut self,
        hook: impl Fn(&crate::observe::AttemptInfo) + Send + Sync + 'static,
    ) -> Self {
        self.on_attempt = Some(std::sync::Arc::new(hook));
        self
    }

    /// Send through `transport` instead of the hyper-util client: any
    /// `tower::Service` of `http::Request<sinew::Body>` (a mock in tests, a
    /// client of your own). The whole stack stays on top of it.
    pub fn transport<S, B>(mut self, transport: S) -> Self
    where
        S: Service<Request<Body>, Response = http::Response<B>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.transport = Some(Box::new(move |buffer| {
            stack::custom_attempt(transport, buffer)
        }));
        self
    }

    /// Add your own layer around each call, inside the call's deadline and
    /// outside retries (see [`crate::stack`] for the order). Layers added
    /// first are outermost.
    pub fn layer_per_call(mut self, layer: impl stack::StackLayer) -> Self {
        self.per_call.push(layer.into_user_layer());
        self
    }

    /// Add your own layer around each attempt, below the breaker (the
    /// endpoint is chosen) and above the deadline headers, signing and the
    /// transport (see [`crate::stack`]). Layers added first are outermost.
    pub fn layer_per_attempt(mut self, layer: impl stack::StackLayer) -> Self {
        self.per_attempt.push(layer.into_user_layer());
        self
    }

    /// Build the client.
    pub fn build(self) -> Result<Client, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        #[cfg_attr(
            not(any(feature = "retry", feature = "breaker")),
            allow(unused_variables)
        )]
        let cfg_err = |section: &str, e: &dyn std::fmt::Display| {
            Error::new(ErrorKind::Config, format!("[{section}] {e}"))
        };
        // Every section of the file is used here (or, `server`, by the
        // server stack): a section added to `ClientConfig` fails to compile
        // until it is applied.
        let ClientConfig {
            base_url,
            timeout,
            pool,
            tls,
            #[cfg(feature = "deadline")]
            deadline,
            #[cfg(feature = "retry")]
            retry,
            #[cfg(feature = "retry")]
            hedge,
            #[cfg(feature = "breaker")]
            breaker,
            #[cfg(feature = "balance")]
            balance,
            #[cfg(feature = "sign")]
            sign,
            #[cfg(feature = "metrics")]
            metrics,
            auth,
            // Applied by the server stack and by `Services`.
            #[cfg(feature = "server")]
                server: _,
            #[cfg(feature = "balance")]
                registry: _,
            #[cfg(feature = "balance")]
                services: _,
            // Applied by `sinew::proxy`.
            #[cfg(feature = "proxy")]
                proxy: _,
        } = &self.config;

        let base = match base_url {
            Some(b) => Some(parse_base_url(b)?),
            None => None,
        };

        let mut layers = Layers::default();
        // The call's deadline: one `timeout`, from the top of the file or
        // from [deadline], never both.
        #[cfg(feature = "deadline")]
        let layer_timeout = deadline.get().and_then(|d| d.timeout);
        #[cfg(not(feature = "deadline"))]
        let layer_timeout: Option<Duration> = None;
        layers.timeout = match (timeout, layer_timeout) {
            (Some(_), Some(_)) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "the call timeout is set twice: use the top-level `timeout` or [deadline] timeout, not both",
                ))
            }
            (Some(t), None) => t.duration(),
            (None, Some(t)) => Some(t),
            (None, None) => CallTimeout::default().duration(),
        };
        #[cfg(feature = "deadline")]
        {
            layers.deadline = deadline.get().cloned();
        }

        #[cfg(feature = "retry")]
        {
            #[cfg(feature = "balance")]
            let balanced = balance.is_some() || self.balance.is_some();
            #[cfg(not(feature = "balance"))]
            let balanced = false;
            layers.retry = match (self.retry, retry.get()) {
                (Some(layer), _) => Some(layer),
                (None, Some(c)) => {
                    let mut c = c.clone();
                    // A refusal by one endpoint's breaker is retried on
                    // another when a balancer sits below.
                    c.retry_circuit_open = Some(c.retry_circuit_open.unwrap_or(balanced));
                    Some(
                        sinew_retry::RetryLayer::from_config(&c)
                            .map_err(|e| cfg_err("retry", &e))?,
                    )
                }
                (None, None) => None,
            };
            layers.hedge = match (self.hedge, hedge) {
                (Some(layer), _) => Some(layer),
                (None, Some(c)) => Some(
                    sinew_retry::HedgeLayer::from_config(c).map_err(|e| cfg_err("hedge", &e))?,
                ),
                (None, None) => None,
            };
        }
        #[cfg(feature = "breaker")]
        {
            layers.breaker = match (self.breaker, breaker) {
                (Some(layer), _) => Some(layer),
                (None, Some(c)) => Some(
                    sinew_breaker::CircuitBreakerLayer::from_config(c.clone())
                        .map_err(|e| cfg_err("breaker", &e))?,
                ),
                (None, None) => None,
            };
        }
        #[cfg(feature = "balance")]
        {
            layers.balance = match (self.balance, balance) {
                (Some(layer), _) => Some(layer),
                (None, Some(section)) => Some(balance_layer(section)?),
                (None, None) => None,
            };
        }
        #[cfg(feature = "sign")]
        {
            layers.sign = match (self.sign, sign) {
                (Some(layer), _) => Some(layer),
                (None, Some(section)) => Some(section.layer()?),
                (None, None) => None,
            };
        }
        #[cfg(feature = "metrics")]
        {
            layers.metrics = metrics
                .as_ref()
                .map(sinew_metrics::MetricsLayer::from_config);
        }
        layers.auth = match (self.auth, auth) {
            (Some(a), _) => Some(crate::auth::TokenAuthLayer::new(a)),
            (None, Some(section)) => Some(crate::auth::TokenAuthLayer::new(section.token_auth()?)),
            (None, None) => None,
        };
        layers.per_call = self.per_call;
        layers.per_attempt = self.per_attempt;
        layers.on_attempt = self.on_attempt;
        layers.classify_with(&self.classifier);

        let stack = match self.transport {
            Some(custom) => layers.compose(custom(self.response_buffer)),
            None => {
                let transport = crate::transport::build(pool, tls, &self.extra_roots)?;
                layers.compose(stack::hyper_attempt(transport, self.response_buffer))
            }
        };
        let handles = Handles {
            classifier: self.classifier,
            #[cfg(feature = "breaker")]
            breaker: layers.breaker.as_ref().map(|b| b.handle()),
            #[cfg(feature = "balance")]
            balance: layers.balance.clone(),
            #[cfg(feature = "retry")]
            retry: layers.retry.clone(),
        };
        Ok(Client::new(base, stack, handles))
    }
}

/// The balancer of a `[balance]` section. A discovery source needs the
/// facade's own feature (`dns`, `etcd`, `nacos`), whatever features
/// sinew-balance happens to be built with.
#[cfg(feature = "balance")]
fn balance_layer(
    section: &sinew_balance::BalanceSection,
) -> Result<sinew_balance::LoadBalanceLayer, Error> {
    let sources = [
        ("dns", section.dns.is_some(), cfg!(feature = "dns")),
        ("etcd", section.etcd.is_some(), cfg!(feature = "etcd")),
        ("nacos", section.nacos.is_some(), cfg!(feature = "nacos")),
    ];
    let used = sources.iter().filter(|(_, used, _)| *used).count();
    // Several sources: `build` says to choose one.
    if let Some((name, _, _)) = sources
        .iter()
        .find(|(_, used, on)| *used && !*on)
        .filter(|_| used == 1)
    {
        return Err(Error::new(
            ErrorKind::Config,
            format!("[balance] {name}: needs the `{name}` feature of sinew"),
        ));
    }
    section
        .build()
        .map_err(|e| Error::new(ErrorKind::Config, e.to_string()))
}

fn parse_base_url(b: &str) -> Result<Uri, Error> {
    let uri = b
        .parse::<Uri>()
        .map_err(|e| Error::new(ErrorKind::Config, format!("invalid base_url {b:?}: {e}")))?;
    crate::request::check_target(&uri)
        .map_err(|m| Error::new(ErrorKind::Config, format!("invalid base_url {b:?}: {m}")))?;
    Ok(uri)
}
