//! Token auth: log in once, cache the token, refresh it before it expires
//! and once on a 401, single-flight under concurrency.
//!
//! The login is a `POST` of the credentials as JSON to a login URL; the
//! answer's `access_token` (or `accessToken`) is sent as
//! `Authorization: Bearer …` and its `expires_in` (seconds) is honoured.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use sinew_core::body::try_clone_request;
use sinew_core::{Body, BoxError};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

/// How to log in.
#[derive(Clone)]
pub struct TokenAuthConfig {
    login_url: Uri,
    credentials: serde_json::Value,
    refresh_before: Duration,
    default_ttl: Option<Duration>,
}

impl std::fmt::Debug for TokenAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credentials.
        f.debug_struct("TokenAuthConfig")
            .field("login_url", &self.login_url)
            .field("refresh_before", &self.refresh_before)
            .field("default_ttl", &self.default_ttl)
            .finish_non_exhaustive()
    }
}

impl TokenAuthConfig {
    /// Log in by POSTing `credentials` as JSON to `login_url`.
    pub fn new(login_url: Uri, credentials: serde_json::Value) -> Self {
        TokenAuthConfig {
            login_url,
            credentials,
            refresh_before: Duration::from_secs(30),
            default_ttl: None,
        }
    }

    /// Refresh this long before the token expires (default 30 s).
    pub fn refresh_before(mut self, d: Duration) -> Self {
        self.refresh_before = d;
        self
    }

    /// How long a token without `expires_in` lives (default: until a 401).
    pub fn default_ttl(mut self, d: Duration) -> Self {
        self.default_ttl = Some(d);
        self
    }
}

/// The layer.
#[derive(Clone)]
pub struct TokenAuthLayer {
    config: Arc<TokenAuthConfig>,
    login: Option<crate::Stack>,
}

impl std::fmt::Debug for TokenAuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthLayer")
            .field("config", &self.config)
            .field("own_login_service", &self.login.is_some())
            .finish()
    }
}

impl TokenAuthLayer {
    /// A layer with its own token cache; logins go through the service it
    /// wraps.
    pub fn new(config: TokenAuthConfig) -> Self {
        TokenAuthLayer {
            config: Arc::new(config),
            login: None,
        }
    }

    /// Send logins through `service` instead of the service this layer
    /// wraps (the sinew client sends them straight to the transport, so a
    /// balancer below never rewrites the login URL).
    pub fn login_via(mut self, service: crate::Stack) -> Self {
        self.login = Some(service);
        self
    }
}

impl<S> Layer<S> for TokenAuthLayer {
    type Service = TokenAuth<S>;
    fn layer(&self, inner: S) -> TokenAuth<S> {
        TokenAuth {
            inner,
            config: self.config.clone(),
            login: self.login.clone(),
            token: Arc::new(Mutex::new(None)),
        }
    }
}

#[derive(Clone)]
struct Token {
    value: HeaderValue,
    refresh_at: Option<Instant>,
}

/// The service: adds `Authorization: Bearer …` to every request.
#[derive(Clone)]
pub struct TokenAuth<S> {
    inner: S,
    config: Arc<TokenAuthConfig>,
    login: Option<crate::Stack>,
    token: Arc<Mutex<Option<Token>>>,
}

impl<S> std::fmt::Debug for TokenAuth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuth")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Logging in failed.
#[derive(Debug)]
pub struct LoginFailed(String);

impl std::fmt::Display for LoginFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "login failed: {}", self.0)
    }
}

impl std::error::Error for LoginFailed {}

impl<S, B> TokenAuth<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// The current token, logging in when there is none, it is due for a
    /// refresh, or it equals `stale` (the one a 401 refused). Concurrent
    /// callers share one login.
    async fn token(&self, stale: Option<&HeaderValue>) -> Result<HeaderValue, BoxError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            let due = t.refresh_at.is_some_and(|at| Instant::now() >= at);
            let refused = stale.is_some_and(|s| *s == t.value);
            if !due && !refused {
                return Ok(t.value.clone());
            }
        }
        let token = self.login().await?;
        let value = token.value.clone();
        *guard = Some(token);
        Ok(value)
    }

    async fn login(&self) -> Result<Token, BoxError> {
        let body = serde_json::to_vec(&self.config.credentials)?;
        let mut req = Request::new(Body::full(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.config.login_url.clone();
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let (status, bytes) = match &self.login {
            Some(login) => {
                let resp = login.clone().oneshot(req).await?;
                let status = resp.status();
                (status, resp.into_body().collect().await?.to_bytes())
            }
            None => {
                let resp = self.inner.clone().oneshot(req).await?;
                let status = resp.status();
                let body = resp.into_body().collect().await.map_err(Into::into)?;
                (status, body.to_bytes())
            }
        };
        if !status.is_success() {
            return Err(Box::new(LoginFailed(format!(
                "the login URL answered {status}"
            ))));
        }
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| LoginFailed("the login answer is not JSON".into()))?;
        let token = json
            .get("access_token")
            .or_else(|| json.get("accessToken"))
            .and_then(|v| v.as_str())
            .ok_or_else(|| LoginFailed("no access_token in the login answer".into()))?;
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| LoginFailed("the token is not a valid header value".into()))?;
        let expires_in = json
            .get("expires_in")
            .or_else(|| json.get("expiresIn"))
            .and_then(|v| {
                v.as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(1e9)))
            .or(self.config.default_ttl);
        let refresh_at = expires_in.map(|ttl| {
            Instant::now() + ttl.saturating_sub(self.config.refresh_before.min(ttl / 2))
        });
        tracing::debug!(expires_in = ?expires_in, "logged in for a token");
        Ok(Token { value, refresh_at })
    }
}

impl<S, B> Service<Request<Body>> for TokenAuth<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let this = self.clone();
        let inner = std::mem::replace(&mut self.inner, this.inner.clone());
        Box::pin(async move {
            let token = this.token(None).await?;
            req.headers_mut().insert(AUTHORIZATION, token.clone());
            let again = try_clone_request(&req);
            let resp = inner.oneshot(req).await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let Some(mut again) = again else {
                return Ok(resp);
            };
            // Refresh once (unless someone already did) and try once more.
            let fresh = this.token(Some(&token)).await?;
            again.headers_mut().insert(AUTHORIZATION, fresh);
            this.inner.clone().oneshot(again).await
        })
    }
}
