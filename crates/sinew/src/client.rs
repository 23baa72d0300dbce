//! The client: send calls through the stack, with interceptors.

use std::sync::Arc;

use http::{Method, Request, Uri};
use sinew_core::{Body, BoxError, Classifier};
use tower::{Service, ServiceExt};

use crate::builder::ClientBuilder;
use crate::interceptor::{Interceptor, Interceptors, ResponseInfo};
use crate::request::RequestBuilder;
use crate::stack::Stack;
use crate::{Error, ErrorKind, Response};

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
    /// Whether `base` passed the checks a call's URL must pass (scheme,
    /// host, port), so a call to a path below it need not check them again.
    base_valid: bool,
    stack: Stack,
    /// Copies of `stack` between calls. A call takes one (or clones `stack`
    /// when none is free), makes it ready, calls it and puts it back at once:
    /// the stack's layers are not cloned and dropped on every call, and
    /// their shared counters are not touched by every core on every call.
    /// Kept in shards by thread, so two cores calling at once do not take
    /// turns at one lock.
    spare: [std::sync::Mutex<Vec<Stack>>; SPARE_SHARDS],
    interceptors: Interceptors,
    handles: Handles,
}

/// At most this many copies of the stack wait between calls in each shard
/// (about one per thread calling at the same moment is ever needed).
const MAX_SPARE_STACKS: usize = 8;
/// Shards of spare stacks; a thread uses one.
const SPARE_SHARDS: usize = 8;

/// The spare-stack shard of the current thread (threads are spread over
/// the shards in the order they first call).
fn spare_shard() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SPARE_SHARDS;
    }
    SHARD.with(|s| *s)
}

/// What the client keeps of its layers to observe and control them.
#[derive(Default)]
pub(crate) struct Handles {
    pub(crate) classifier: Classifier,
    #[cfg(feature = "breaker")]
    pub(crate) breaker: Option<sinew_breaker::CircuitBreakerHandle>,
    #[cfg(feature = "balance")]
    pub(crate) balance: Option<sinew_balance::LoadBalanceLayer>,
    #[cfg(feature = "retry")]
    pub(crate) retry: Option<sinew_retry::RetryLayer>,
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
    /// A builder with the defaults: a 30 s deadline per call, deadline
    /// propagation and retries on, every other layer off.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Build the whole stack from a TOML file (see [`crate::config`]).
    pub fn from_config(path: impl AsRef<std::path::Path>) -> Result<Client, Error> {
        let config = crate::config::ClientConfig::from_file(path)?;
        ClientBuilder::from_config(config).build()
    }

    /// A client over a stack you composed yourself (tests, custom stacks).
    pub fn from_stack(base_url: Option<Uri>, stack: Stack) -> Self {
        Client::new(base_url, stack, Handles::default())
    }

    pub(crate) fn new(base: Option<Uri>, stack: Stack, handles: Handles) -> Self {
        Client {
            inner: Arc::new(Inner {
                base_valid: base
                    .as_ref()
                    .is_some_and(|b| crate::request::check_target(b).is_ok()),
                base,
                stack,
                spare: Default::default(),
                interceptors: Interceptors::default(),
                handles,
            }),
        }
    }

    /// The classifier every layer of this client judges outcomes with.
    pub fn classifier(&self) -> &Classifier {
        &self.inner.handles.classifier
    }

    /// The circuit breakers, to observe and control them (when the client
    /// has a breaker).
    #[cfg(feature = "breaker")]
    pub fn breakers(&self) -> Option<&sinew_breaker::CircuitBreakerHandle> {
        self.inner.handles.breaker.as_ref()
    }

    /// The load balancer, to read `picks()` and `endpoints()` (when the
    /// client has one).
    #[cfg(feature = "balance")]
    pub fn balancer(&self) -> Option<&sinew_balance::LoadBalanceLayer> {
        self.inner.handles.balance.as_ref()
    }

    /// The retry budget (when the client retries with one).
    #[cfg(feature = "retry")]
    pub fn retry_budget(&self) -> Option<&sinew_retry::RetryBudget> {
        self.inner.handles.retry.as_ref()?.retry_budget()
    }

    /// The base URL relative paths are joined to.
    pub(crate) fn base(&self) -> Option<&Uri> {
        self.inner.base.as_ref()
    }

    /// Whether the base URL passed the checks of a call's URL.
    pub(crate) fn base_valid(&self) -> bool {
        self.inner.base_valid
    }

    /// `path` (and `query`) joined to the base URL (the proxy's outbound
    /// side resolves request targets this way).
    #[cfg(feature = "proxy")]
    pub(crate) fn resolve(&self, path: &str, query: &str) -> Result<Uri, Error> {
        crate::request::join(self.inner.base.as_ref(), self.inner.base_valid, path, query)
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
        match self.inner.interceptors.snapshot_if_any() {
            None => self.send_mapped(req).await,
            // Boxed: the hooks' state (two copies of the request head) stays
            // out of every call's future.
            Some(interceptors) => Box::pin(self.intercepted(req, interceptors)).await,
        }
    }

    async fn intercepted(
        &self,
        req: Request<Body>,
        interceptors: crate::interceptor::List,
    ) -> Result<Response, Error> {
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

    /// A copy of the stack to call: a spare one, or a fresh clone.
    fn take_stack(&self) -> Stack {
        let spare = match self.inner.spare[spare_shard()].lock() {
            Ok(mut v) => v.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        };
        spare.unwrap_or_else(|| self.inner.stack.clone())
    }

    /// Return a copy of the stack after a call was made on it.
    fn put_back(&self, stack: Stack) {
        let mut v = match self.inner.spare[spare_shard()].lock() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        if v.len() < MAX_SPARE_STACKS {
            v.push(stack);
        }
    }

    async fn send_mapped(&self, req: Request<Body>) -> Result<Response, Error> {
        let mut stack = self.take_stack();
        // A stack that fails to become ready is dropped, not reused.
        stack.ready().await.map_err(Error::from_stack)?;
        let call = stack.call(req);
        self.put_back(stack);
        let resp = call.await.map_err(Error::from_stack)?;
        let status = resp.status();
        let (head, body) = resp.into_parts();
        if status.is_success() || status.is_redirection() {
            return Ok(Response::new(head, body));
        }
        let bytes = crate::response::collect_bytes(body)
            .await
            .unwrap_or_default();
        Err(Error::from_response_parts(
            &head,
            bytes,
            &self.inner.handles.classifier,
        ))
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
