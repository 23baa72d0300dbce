//! The client: the whole stack behind one builder.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::BodyExt;
use sinew_core::{Body, BoxError};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

use crate::interceptor::{Interceptor, Interceptors, ResponseInfo};
use crate::request::{join, RequestBuilder};
use crate::transport::{self, PoolConfig, TlsRoots};
use crate::{Error, ErrorKind, Response};

/// Response bodies up to this size are read within the attempt.
pub const DEFAULT_RESPONSE_BUFFER: usize = 16 * 1024 * 1024;

/// The response body type of the stack.
pub type ResBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The composed service stack a client sends through.
pub type Stack = BoxCloneSyncService<Request<Body>, http::Response<ResBody>, BoxError>;

/// A client for one service (or any URL): cheap to clone, share it.
///
/// ```no_run
/// # async fn run() -> Result<(), sinew::Error> {
/// let client = sinew::Client::builder()
///     .base_url("http://127.0.0.1:8080")
///     .build()?;
/// let user: serde_json::Value = client.get("/users/{id}").param("id", 7).send_json().await?;
/// # let _ = user; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    base: Option<Uri>,
    stack: Stack,
    interceptors: Interceptors,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("interceptors", &self.interceptors)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder with every layer off but the defaults of DESIGN.md.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Build the whole stack from a TOML file (see [`crate::config`]).
    pub fn from_config(path: impl AsRef<std::path::Path>) -> Result<Client, Error> {
        let config = crate::config::ClientConfig::from_file(path)?;
        ClientBuilder::from_config(&config)?.build()
    }

    /// A client over a stack you composed yourself (tests, custom stacks).
    pub fn from_stack(base_url: Option<Uri>, stack: Stack) -> Self {
        Client {
            inner: Arc::new(Inner {
                base: base_url,
                stack,
                interceptors: Interceptors::default(),
            }),
        }
    }

    pub(crate) fn resolve(&self, path: &str, query: &str) -> Result<Uri, Error> {
        join(self.inner.base.as_ref(), path, query)
    }

    /// Start a call with any method.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        RequestBuilder::new(self.clone(), method, path)
    }

    /// Start a GET.
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// Start a POST.
    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    /// Start a PUT.
    pub fn put(&self, path: &str) -> RequestBuilder {
        self.request(Method::PUT, path)
    }

    /// Start a PATCH.
    pub fn patch(&self, path: &str) -> RequestBuilder {
        self.request(Method::PATCH, path)
    }

    /// Start a DELETE.
    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// Start a HEAD.
    pub fn head(&self, path: &str) -> RequestBuilder {
        self.request(Method::HEAD, path)
    }

    /// Add an interceptor (replacing one with the same name).
    pub fn add_interceptor(&self, interceptor: impl Interceptor) {
        self.inner.interceptors.add(Arc::new(interceptor));
    }

    /// Remove the interceptor named `name`; whether one was there.
    pub fn remove_interceptor(&self, name: &str) -> bool {
        self.inner.interceptors.remove(name)
    }

    /// Send requests concurrently, at most `concurrency` at once; the results
    /// come back in input order, each its own `Result`, and one failure never
    /// fails the batch.
    pub async fn bulk(
        &self,
        requests: impl IntoIterator<Item = RequestBuilder>,
        concurrency: usize,
    ) -> Vec<Result<Response, Error>> {
        use futures_util::stream::{self, StreamExt};
        stream::iter(requests.into_iter().map(|r| r.send()))
            .buffered(concurrency.max(1))
            .collect()
            .await
    }

    /// The raw stack: send an `http::Request` and get the response as the
    /// layers left it (no status mapping, no interceptors).
    pub fn stack(&self) -> Stack {
        self.inner.stack.clone()
    }

    /// Send a built request through interceptors and the stack. Non-success
    /// statuses become errors.
    pub async fn execute(&self, req: Request<Body>) -> Result<Response, Error> {
        let interceptors = self.inner.interceptors.snapshot();
        if interceptors.is_empty() {
            return self.send_mapped(req).await;
        }
        let (mut parts, body) = req.into_parts();
        for i in interceptors.iter() {
            if let Err(e) = i.before_request(&mut parts).await {
                return Err(Error::with_source(
                    ErrorKind::Interceptor,
                    HookError::new(i.name(), e),
                ));
            }
        }
        let info_parts = clone_parts(&parts);
        let outcome = self.send_mapped(Request::from_parts(parts, body)).await;
        let mut hook_error = None;
        {
            let (head, result) = match &outcome {
                Ok(resp) => {
                    let head = response_head(resp);
                    (Some(head), None)
                }
                Err(e) => (None, Some(e)),
            };
            for i in interceptors.iter().rev() {
                let seen = match (&head, result) {
                    (Some(h), _) => Ok(ResponseInfo { head: h }),
                    (None, Some(e)) => Err(e),
                    (None, None) => continue,
                };
                let r = match &seen {
                    Ok(info) => i.after_response(&info_parts, Ok(info)).await,
                    Err(e) => i.after_response(&info_parts, Err(*e)).await,
                };
                if let Err(e) = r {
                    hook_error.get_or_insert(HookError::new(i.name(), e));
                }
            }
            if let Some(err) = result {
                for i in interceptors.iter().rev() {
                    if let Err(e) = i.on_error(&info_parts, err).await {
                        hook_error.get_or_insert(HookError::new(i.name(), e));
                    }
                }
            }
        }
        match (outcome, hook_error) {
            (Ok(_), Some(h)) => Err(Error::with_source(ErrorKind::Interceptor, h)),
            (Err(e), Some(h)) => {
                tracing::warn!(interceptor = %h.name, error = %h.source, "interceptor hook failed after a failed call");
                Err(e)
            }
            (outcome, None) => outcome,
        }
    }

    async fn send_mapped(&self, req: Request<Body>) -> Result<Response, Error> {
        let resp = self
            .inner
            .stack
            .clone()
            .oneshot(req)
            .await
            .map_err(Error::from_stack)?;
        let status = resp.status();
        let (head, body) = resp.into_parts();
        if status.is_success() || status.is_redirection() {
            return Ok(Response::new(head, body));
        }
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Err(Error::from_response(status, bytes))
    }
}

fn response_head(resp: &Response) -> http::response::Parts {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = resp.status();
    parts.version = resp.version();
    parts.headers = resp.headers().clone();
    parts
}

fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let (mut out, ()) = Request::new(()).into_parts();
    out.method = parts.method.clone();
    out.uri = parts.uri.clone();
    out.version = parts.version;
    out.headers = parts.headers.clone();
    out
}

/// The DER bytes of each `CERTIFICATE` block of a PEM document.
#[cfg(feature = "tls")]
fn pem_blocks(pem: &[u8]) -> Vec<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect()
}

#[cfg(not(feature = "tls"))]
fn pem_blocks(_pem: &[u8]) -> Vec<Vec<u8>> {
    Vec::new()
}

/// An interceptor's own error, named.
#[derive(Debug)]
pub struct HookError {
    name: String,
    source: BoxError,
}

impl HookError {
    fn new(name: &str, source: BoxError) -> Self {
        HookError {
            name: name.to_string(),
            source,
        }
    }

    /// The interceptor's name.
    pub fn interceptor(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for HookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interceptor {} failed: {}", self.name, self.source)
    }
}

impl std::error::Error for HookError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Builds a [`Client`].
#[must_use]
pub struct ClientBuilder {
    base: Option<String>,
    pool: PoolConfig,
    roots: Option<TlsRoots>,
    timeout: Option<Duration>,
    response_buffer: Option<usize>,
    #[cfg(feature = "deadline")]
    deadline: Option<sinew_deadline::DeadlineConfig>,
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
    auth: Option<crate::auth::TokenAuthConfig>,
    #[cfg(feature = "metrics")]
    metrics: Option<(
        sinew_metrics::MetricsLayer,
        Option<sinew_metrics::MetricsLayer>,
    )>,
    on_attempt: Option<crate::observe::AttemptHook>,
    error: Option<Error>,
}

impl Default for ClientBuilder {
    /// The defaults of DESIGN.md: deadline propagation and retries on,
    /// every other layer off.
    fn default() -> Self {
        ClientBuilder {
            base: None,
            pool: PoolConfig::default(),
            roots: None,
            timeout: None,
            response_buffer: Some(DEFAULT_RESPONSE_BUFFER),
            #[cfg(feature = "deadline")]
            deadline: Some(sinew_deadline::DeadlineConfig::default()),
            #[cfg(feature = "retry")]
            retry: Some(sinew_retry::RetryLayer::new()),
            #[cfg(feature = "retry")]
            hedge: None,
            #[cfg(feature = "breaker")]
            breaker: None,
            #[cfg(feature = "balance")]
            balance: None,
            #[cfg(feature = "sign")]
            sign: None,
            auth: None,
            #[cfg(feature = "metrics")]
            metrics: None,
            on_attempt: None,
            error: None,
        }
    }
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base", &self.base)
            .field("pool", &self.pool)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// A builder set up from a parsed configuration.
    pub fn from_config(config: &crate::config::ClientConfig) -> Result<ClientBuilder, Error> {
        let mut b = ClientBuilder::default().pool(config.pool.clone());
        if let Some(url) = &config.base_url {
            b = b.base_url(url);
        }
        b = b.apply_deadline(config)?;
        b = b.apply_retry(config)?;
        b = b.apply_breaker(config)?;
        b = b.apply_balance(config)?;
        Ok(b)
    }

    #[cfg(feature = "deadline")]
    fn apply_deadline(mut self, config: &crate::config::ClientConfig) -> Result<Self, Error> {
        let d = &config.deadline;
        self.deadline = d.enabled.then_some(sinew_deadline::DeadlineConfig {
            timeout: d.timeout,
            min_remaining: d.min_remaining,
            grpc_timeout: d.grpc_timeout,
        });
        Ok(self)
    }

    #[cfg(not(feature = "deadline"))]
    fn apply_deadline(mut self, config: &crate::config::ClientConfig) -> Result<Self, Error> {
        if config.deadline.enabled {
            self.timeout = config.deadline.timeout;
        }
        Ok(self)
    }

    #[cfg(feature = "retry")]
    fn apply_retry(mut self, config: &crate::config::ClientConfig) -> Result<Self, Error> {
        use crate::config::{BackoffKind as B, RetryMethods as M};
        let cfg_err = |section: &str, e: &dyn std::fmt::Display| {
            Error::new(ErrorKind::Config, format!("[{section}]: {e}"))
        };
        let r = &config.retry;
        self.retry = if r.enabled {
            let c = sinew_retry::RetryConfig {
                max_attempts: r.max_attempts,
                backoff: match r.backoff {
                    B::Decorrelated => sinew_retry::BackoffKind::Decorrelated,
                    B::Exponential => sinew_retry::BackoffKind::Exponential,
                    B::Linear => sinew_retry::BackoffKind::Linear,
                    B::Constant => sinew_retry::BackoffKind::Constant,
                },
                base_delay: r.base_delay,
                max_delay: r.max_delay,
                methods: match r.methods {
                    M::Idempotent => sinew_retry::RetryMethods::Idempotent,
                    M::All => sinew_retry::RetryMethods::All,
                    M::AioRequest => sinew_retry::RetryMethods::AioRequest,
                },
                budget_ratio: r.budget_ratio,
                budget_min_per_sec: r.budget_min_per_sec,
                max_retry_after: r.max_retry_after,
                retry_circuit_open: config.balance.is_some(),
                ..Default::default()
            };
            Some(sinew_retry::RetryLayer::from_config(&c).map_err(|e| cfg_err("retry", &e))?)
        } else {
            None
        };
        if let Some(h) = &config.hedge {
            let c = sinew_retry::HedgeConfig {
                delays: h.delays.clone(),
                ..Default::default()
            };
            self.hedge =
                Some(sinew_retry::HedgeLayer::from_config(&c).map_err(|e| cfg_err("hedge", &e))?);
        }
        Ok(self)
    }

    #[cfg(not(feature = "retry"))]
    fn apply_retry(self, config: &crate::config::ClientConfig) -> Result<Self, Error> {
        if config.retry.enabled && config.retry.max_attempts > 1 || config.hedge.is_some() {
            return Err(Error::new(
                ErrorKind::Config,
                "[retry]/[hedge] need the `retry` feature of sinew",
            ));
        }
        Ok(self)
    }

    #[cfg(feature = "balance")]
    fn apply_balance(mut self, config: &crate::config::ClientConfig) -> Result<Self, Error> {
        let Some(b) = &config.balance else {
            return Ok(self);
        };
        let cfg = |m: String| Error::new(ErrorKind::Config, format!("[balance] {m}"));
        let strategy = sinew_balance::Strategy::parse(&b.strategy)
            .ok_or_else(|| cfg(format!("strategy: unknown strategy {:?}", b.strategy)))?;
        match (&b.dns, &b.etcd) {
            (Some(_), Some(_)) => return Err(cfg("dns, etcd: choose one discovery source".into())),
            (None, None) if b.endpoints.is_empty() => {
                return Err(cfg(
                    "list `endpoints` or name a `dns` or `etcd` source".into()
                ))
            }
            _ => {}
        }
        let endpoints = b
            .endpoints
            .iter()
            .map(|e| sinew_balance::Endpoint::new(e.address()).weight(e.weight()))
            .collect();
        let mut layer = sinew_balance::LoadBalanceLayer::new(
            sinew_balance::BalanceConfig {
                strategy,
                wait_for_endpoints: b.wait_for_endpoints.unwrap_or_default(),
                ..Default::default()
            },
            endpoints,
        )
        .map_err(|e| cfg(format!("endpoints: {e}")))?;
        if let Some(name) = &b.dns {
            layer = dns_source(layer, name).map_err(|e| cfg(format!("dns: {e}")))?;
        }
        if let Some(etcd) = &b.etcd {
            layer = etcd_source(layer, etcd).map_err(|e| cfg(format!("etcd: {e}")))?;
        }
        self.balance = Some(layer);
        Ok(self)
    }

    #[cfg(not(feature = "balance"))]
    fn apply_balance(self, config: &crate::config::ClientConfig) -> Result<Self, Error> {
        if config.balance.is_some() {
            return Err(Error::new(
                ErrorKind::Config,
                "[balance] needs the `balance` feature of sinew",
            ));
        }
        Ok(self)
    }

    #[cfg(feature = "breaker")]
    fn apply_breaker(mut self, config: &crate::config::ClientConfig) -> Result<Self, Error> {
        use crate::config::BreakerPolicy as P;
        use sinew_breaker::{BreakerConfig, TripPolicy, Window};
        let Some(b) = &config.breaker else {
            return Ok(self);
        };
        let window = Window::Time {
            length: b.window,
            buckets: 10,
        };
        let policy = match b.policy {
            P::Consecutive => {
                if b.failure_threshold < 1.0 || b.failure_threshold.fract() != 0.0 {
                    return Err(Error::new(
                        ErrorKind::Config,
                        "[breaker] failure_threshold: a count of at least 1 for policy = \"consecutive\"",
                    ));
                }
                TripPolicy::ConsecutiveFailures(b.failure_threshold as u32)
            }
            P::FailureRate => TripPolicy::FailureRate {
                ratio: b.failure_threshold,
                minimum_calls: b.minimum_calls,
                window,
            },
            P::SlowCall => TripPolicy::SlowCallRate {
                ratio: b.failure_threshold,
                slower_than: b.slow_call,
                minimum_calls: b.minimum_calls,
                window,
            },
        };
        let layer = sinew_breaker::CircuitBreakerLayer::from_config(BreakerConfig {
            policies: vec![policy],
            open_duration: b.open_duration,
            half_open_probes: b.half_open_probes,
            ..BreakerConfig::default()
        })
        .map_err(|e| Error::new(ErrorKind::Config, format!("[breaker]: {e}")))?;
        self.breaker = Some(layer);
        Ok(self)
    }

    #[cfg(not(feature = "breaker"))]
    fn apply_breaker(self, config: &crate::config::ClientConfig) -> Result<Self, Error> {
        if config.breaker.is_some() {
            return Err(Error::new(
                ErrorKind::Config,
                "[breaker] needs the `breaker` feature of sinew",
            ));
        }
        Ok(self)
    }

    /// Relative paths are joined to this URL.
    pub fn base_url(mut self, url: &str) -> Self {
        self.base = Some(url.to_string());
        self
    }

    /// Connection pool and protocol settings.
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }

    /// Give up connecting after this long.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.pool.connect_timeout = timeout;
        self
    }

    /// Close idle pooled connections after this long.
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool.idle_timeout = timeout;
        self
    }

    /// At most this many idle connections per host.
    pub fn pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.pool.max_idle_per_host = n;
        self
    }

    /// HTTP/2 only (h2c prior knowledge over `http://`).
    pub fn http2_only(mut self, yes: bool) -> Self {
        self.pool.http2 = yes;
        self
    }

    /// Trust these extra root certificates for HTTPS (PEM, one or more),
    /// besides the system's roots.
    pub fn add_root_certificate_pem(mut self, pem: &[u8]) -> Self {
        let roots = self.roots.get_or_insert_with(TlsRoots::system);
        let mut found = 0;
        for block in pem_blocks(pem) {
            roots.extra.push(block);
            found += 1;
        }
        if found == 0 && self.error.is_none() {
            self.error = Some(Error::new(
                ErrorKind::Config,
                "no PEM certificate found in the given root certificate",
            ));
        }
        self
    }

    /// Whether to trust the operating system's root certificates (default
    /// true).
    pub fn tls_system_roots(mut self, yes: bool) -> Self {
        self.roots.get_or_insert_with(TlsRoots::system).system = yes;
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

    /// Every call must finish within this long (the earliest of this, the
    /// request's own deadline and an inherited one wins).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Deadline propagation settings (on by default; see `sinew-deadline`).
    /// The builder's [`timeout`](Self::timeout) overrides `config.timeout`.
    #[cfg(feature = "deadline")]
    pub fn deadline(mut self, config: sinew_deadline::DeadlineConfig) -> Self {
        self.deadline = Some(config);
        self
    }

    /// No deadline layer: no local deadline enforcement and no
    /// `X-Request-Timeout` / `X-Request-Priority` headers.
    #[cfg(feature = "deadline")]
    pub fn no_deadline(mut self) -> Self {
        self.deadline = None;
        self
    }

    /// Retry failed calls with this layer (on by default with
    /// `RetryLayer::new()`: 3 attempts, decorrelated jitter, 20 % budget).
    #[cfg(feature = "retry")]
    pub fn retry(mut self, layer: sinew_retry::RetryLayer) -> Self {
        self.retry = Some(layer);
        self
    }

    /// Never retry.
    #[cfg(feature = "retry")]
    pub fn no_retry(mut self) -> Self {
        self.retry = None;
        self
    }

    /// Hedge slow idempotent calls (below retries).
    #[cfg(feature = "retry")]
    pub fn hedge(mut self, layer: sinew_retry::HedgeLayer) -> Self {
        self.hedge = Some(layer);
        self
    }

    /// Spread attempts over endpoints (each attempt picks one and its URI's
    /// authority is rewritten to it). Keep a clone of the layer to read
    /// `picks()` and `endpoints()`. Give the retry layer
    /// `retry_circuit_open(true)` so a refusal by one endpoint's breaker is
    /// retried on another.
    #[cfg(feature = "balance")]
    pub fn balance(mut self, layer: sinew_balance::LoadBalanceLayer) -> Self {
        self.balance = Some(layer);
        self
    }

    /// A circuit breaker per endpoint (below retries: a refused attempt is
    /// not retried against the same endpoint). Keep `layer.handle()` to
    /// observe or control it.
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

    /// Call `hook` after every attempt (after retries and balancing chose
    /// it), e.g. to print what happened.
    pub fn on_attempt(
        mut self,
        hook: impl Fn(&crate::observe::AttemptInfo) + Send + Sync + 'static,
    ) -> Self {
        self.on_attempt = Some(std::sync::Arc::new(hook));
        self
    }

    /// Record `http_client_request_duration_seconds` per call and, when
    /// `config.per_attempt`, per attempt (see `sinew-metrics`).
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, config: sinew_metrics::MetricsConfig) -> Self {
        self.metrics = Some(sinew_metrics::MetricsLayer::from_config(&config));
        self
    }

    /// Log in for a bearer token and send it with every call.
    pub fn token_auth(mut self, config: crate::auth::TokenAuthConfig) -> Self {
        self.auth = Some(config);
        self
    }

    /// Build the client.
    pub fn build(self) -> Result<Client, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let base = match &self.base {
            Some(b) => Some(b.parse::<Uri>().map_err(|e| {
                Error::new(ErrorKind::Config, format!("invalid base_url {b:?}: {e}"))
            })?),
            None => None,
        };
        let roots = self.roots.clone().unwrap_or_else(TlsRoots::system);
        // Shared behind one `Arc`: the stack is cloned per call, and a
        // hyper client clone touches several reference counts.
        let transport = std::sync::Arc::new(transport::build(&self.pool, &roots)?);
        let buffer = self.response_buffer;
        let attempt = tower::service_fn(move |req: Request<Body>| {
            let sent = transport::send(&transport, req);
            async move {
                let resp = sent.await?;
                let (parts, body) = resp.into_parts();
                let body: ResBody = match buffer {
                    // Read the body within the attempt, so a connection that
                    // breaks mid-body fails the attempt (and may be retried)
                    // instead of the caller's read. Bodies over the cap stream
                    // on: nothing is truncated.
                    Some(limit) => Body::buffer(body, limit).await?.boxed_unsync(),
                    None => body.map_err(BoxError::from).boxed_unsync(),
                };
                Ok::<_, BoxError>(http::Response::from_parts(parts, body))
            }
        });
        let stack = finish(attempt, &self)?;
        Ok(Client::from_stack(base, stack))
    }
}

/// Compose the layers over the per-attempt service, in DESIGN.md's order
/// (outermost first): metrics per call -> deadline -> retry/hedge -> load
/// balance -> per-endpoint breaker -> signing -> per-attempt metrics ->
/// hyper. Absent layers cost nothing: each is an `Either` branch, and the
/// whole stack is boxed once.
fn finish<S>(attempt: S, builder: &ClientBuilder) -> Result<Stack, Error>
where
    S: Service<Request<Body>, Response = http::Response<ResBody>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    use tower::util::option_layer;

    // Per attempt, nearest the wire.
    let s = option_layer(
        builder
            .on_attempt
            .clone()
            .map(crate::observe::ObserveLayer::new),
    )
    .layer(attempt);
    #[cfg(feature = "metrics")]
    let s = option_layer(builder.metrics.as_ref().and_then(|m| m.1.clone())).layer(s);
    // Signing sits below the deadline headers, so a signature may cover them.
    #[cfg(feature = "sign")]
    let s = option_layer(builder.sign.clone()).layer(s);
    #[cfg(feature = "deadline")]
    let s = option_layer(
        builder
            .deadline
            .as_ref()
            .map(|d| sinew_deadline::PropagateDeadlineLayer::new().grpc_timeout(d.grpc_timeout)),
    )
    .layer(s);
    // Per endpoint.
    #[cfg(feature = "breaker")]
    let s = option_layer(builder.breaker.clone()).layer(s);
    // Picks the endpoint of each attempt.
    #[cfg(feature = "balance")]
    let s = option_layer(balance_layer(builder)).layer(s);
    // Per logical call.
    #[cfg(feature = "retry")]
    let s = option_layer(builder.hedge.clone()).layer(s);
    #[cfg(feature = "retry")]
    let s = option_layer(builder.retry.clone()).layer(s);
    #[cfg(feature = "deadline")]
    let s = {
        let layer = builder.deadline.clone().map(|mut config| {
            if builder.timeout.is_some() {
                config.timeout = builder.timeout;
            }
            // The per-attempt layer writes the headers, fresh for each attempt.
            sinew_deadline::DeadlineLayer::from_config(config).write_headers(false)
        });
        let plain_timeout = match layer {
            Some(_) => None,
            None => builder.timeout.map(tower::timeout::TimeoutLayer::new),
        };
        option_layer(plain_timeout).layer(option_layer(layer).layer(s))
    };
    #[cfg(not(feature = "deadline"))]
    let s = option_layer(builder.timeout.map(tower::timeout::TimeoutLayer::new)).layer(s);
    #[cfg(feature = "metrics")]
    let s = option_layer(builder.metrics.as_ref().map(|m| m.0.clone())).layer(s);
    let s = option_layer(builder.auth.clone().map(crate::auth::TokenAuthLayer::new)).layer(s);
    Ok(BoxCloneSyncService::new(s))
}

use tower::Layer as _;

/// The balancer, told to skip endpoints whose breaker is open (it would
/// refuse the attempt anyway).
#[cfg(feature = "balance")]
fn balance_layer(builder: &ClientBuilder) -> Option<sinew_balance::LoadBalanceLayer> {
    let layer = builder.balance.clone()?;
    #[cfg(feature = "breaker")]
    if let Some(breaker) = &builder.breaker {
        let handle = breaker.handle();
        return Some(layer.available_if(move |endpoint| !handle.refuses(endpoint)));
    }
    Some(layer)
}

#[cfg(feature = "dns")]
fn dns_source(
    layer: sinew_balance::LoadBalanceLayer,
    name: &str,
) -> Result<sinew_balance::LoadBalanceLayer, String> {
    let source = sinew_balance::DnsDiscovery::parse(name).map_err(|e| e.to_string())?;
    Ok(layer.discover(source.into_stream()))
}

#[cfg(all(feature = "balance", not(feature = "dns")))]
fn dns_source(
    _: sinew_balance::LoadBalanceLayer,
    _: &str,
) -> Result<sinew_balance::LoadBalanceLayer, String> {
    Err("needs the `dns` feature of sinew".into())
}

#[cfg(feature = "etcd")]
fn etcd_source(
    layer: sinew_balance::LoadBalanceLayer,
    etcd: &crate::config::EtcdSource,
) -> Result<sinew_balance::LoadBalanceLayer, String> {
    if etcd.endpoints.is_empty() {
        return Err("endpoints: list at least one etcd URL".into());
    }
    for url in &etcd.endpoints {
        let full = if url.contains("://") {
            url.clone()
        } else {
            format!("http://{url}")
        };
        let ok = full
            .parse::<http::Uri>()
            .is_ok_and(|u| u.authority().is_some() && u.scheme().is_some());
        if !ok {
            return Err(format!(
                "endpoints: {url:?} is not an etcd URL (write http://host:port or host:port)"
            ));
        }
    }
    if !sinew_balance::etcd::is_key_segment(&etcd.service) {
        return Err(format!(
            "service: {:?} is not a service name (non-empty, no '/')",
            etcd.service
        ));
    }
    let source =
        sinew_balance::etcd::EtcdDiscovery::new(etcd.endpoints.clone(), etcd.service.clone());
    Ok(layer.discover(source.into_stream()))
}

#[cfg(all(feature = "balance", not(feature = "etcd")))]
fn etcd_source(
    _: sinew_balance::LoadBalanceLayer,
    _: &crate::config::EtcdSource,
) -> Result<sinew_balance::LoadBalanceLayer, String> {
    Err("needs the `etcd` feature of sinew (it builds etcd-client, which needs `protoc`)".into())
}
