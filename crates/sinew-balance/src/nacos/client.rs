//! The few calls of Nacos's HTTP open API (v1) that discovery and
//! registration make, over hyper: failover between servers, bounded
//! answers, and the login token (`/nacos/v1/auth/login`), refreshed before
//! it runs out and again when the server refuses it.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio::time::Instant;

use super::config::{Checked, Credentials};
use super::NacosError;

/// The most bytes of an error answer quoted in a message.
const QUOTED: usize = 200;

/// A login token and when to get a new one.
#[derive(Debug)]
struct Token {
    value: String,
    refresh_at: Instant,
}

/// What `/nacos/v1/auth/login` answers.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Login {
    access_token: String,
    /// Seconds.
    #[serde(default)]
    token_ttl: Option<u64>,
}

/// An HTTP client of one Nacos deployment.
pub(crate) struct Client {
    servers: Vec<String>,
    /// The server that answered last; tried first.
    current: usize,
    http: Hyper<HttpConnector, Full<Bytes>>,
    credentials: Option<Credentials>,
    token: Option<Token>,
    timeout: Duration,
    max_body: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.servers)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

/// Why one server did not give a usable answer.
enum Failure {
    /// Connect, send or read failed, or took too long: try another server.
    Transport(String),
    /// The answer is larger than allowed (not read).
    TooLarge(String),
}

impl Client {
    /// A client of the servers of `config`, reading at most `max_body`
    /// bytes of any answer.
    pub(crate) fn new(config: &Checked, max_body: usize) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout));
        connector.set_nodelay(true);
        let http = Hyper::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        Client {
            servers: config.servers.clone(),
            current: 0,
            http,
            credentials: config.credentials.clone(),
            token: None,
            timeout: config.timeout,
            max_body,
        }
    }

    /// The server tried first now (for messages).
    pub(crate) fn server(&self) -> &str {
        self.servers
            .get(self.current)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// One API call: `params` go in the query (GET, DELETE) or as a form
    /// body (POST, PUT). Logs in first when the config has a user; a
    /// refused token is renewed once.
    pub(crate) async fn call(
        &mut self,
        method: Method,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<Bytes, NacosError> {
        let mut renewed = false;
        loop {
            let token = self.token().await?;
            match self.send(&method, path, params, token.as_deref()).await? {
                (status, body) if status.is_success() => return Ok(body),
                (StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED, body)
                    if self.credentials.is_some() && !renewed =>
                {
                    // The token ran out early (a server restart forgets
                    // them): log in again, once.
                    tracing::debug!(answer = %quote(&body), "Nacos refused the token; logging in again");
                    self.token = None;
                    renewed = true;
                }
                (status @ (StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED), body) => {
                    return Err(NacosError::Auth(format!(
                        "{} {path} refused (HTTP {}): {}{}",
                        method,
                        status.as_u16(),
                        quote(&body),
                        if self.credentials.is_none() {
                            " (the server wants a login: set username and password)"
                        } else {
                            ""
                        }
                    )))
                }
                (status, body) => {
                    return Err(NacosError::Server(format!(
                        "{method} {path} at {}: HTTP {}: {}",
                        self.server(),
                        status.as_u16(),
                        quote(&body)
                    )))
                }
            }
        }
    }

    /// The token to send, logging in when there is none or it is due for
    /// renewal; `None` without credentials.
    async fn token(&mut self) -> Result<Option<String>, NacosError> {
        let Some(credentials) = self.credentials.clone() else {
            return Ok(None);
        };
        if let Some(t) = &self.token {
            if Instant::now() < t.refresh_at {
                return Ok(Some(t.value.clone()));
            }
        }
        let params = [
            ("username", credentials.username.as_str()),
            ("password", credentials.password.as_str()),
        ];
        let (status, body) = self
            .send(&Method::POST, "/nacos/v1/auth/login", &params, None)
            .await?;
        if !status.is_success() {
            return Err(NacosError::Auth(format!(
                "login as {:?} refused (HTTP {}): {}",
                credentials.username,
                status.as_u16(),
                quote(&body)
            )));
        }
        let login: Login = serde_json::from_slice(&body).map_err(|e| {
            NacosError::Server(format!(
                "the login answer is not Nacos's ({e}): {}",
                quote(&body)
            ))
        })?;
        if login.access_token.is_empty() {
            return Err(NacosError::Auth(format!(
                "login as {:?} gave no token",
                credentials.username
            )));
        }
        // Renew at 80% of the lifetime (Nacos gives 5 h by default).
        let ttl = Duration::from_secs(login.token_ttl.unwrap_or(18_000).max(1));
        self.token = Some(Token {
            value: login.access_token.clone(),
            refresh_at: Instant::now() + ttl.mul_f64(0.8),
        });
        tracing::debug!(user = %credentials.username, ttl = ?ttl, "logged in to Nacos");
        Ok(Some(login.access_token))
    }

    /// Send to the current server, then to the others in turn while they
    /// cannot be reached.
    async fn send(
        &mut self,
        method: &Method,
        path: &str,
        params: &[(&str, &str)],
        token: Option<&str>,
    ) -> Result<(StatusCode, Bytes), NacosError> {
        let encoded = serde_urlencoded::to_string(params)
            .map_err(|e| NacosError::Config(format!("cannot encode the request: {e}")))?;
        let mut errors = Vec::new();
        for k in 0..self.servers.len() {
            let i = (self.current + k) % self.servers.len();
            let server = &self.servers[i];
            match self.send_to(server, method, path, &encoded, token).await {
                Ok(answer) => {
                    self.current = i;
                    return Ok(answer);
                }
                Err(Failure::TooLarge(e)) => {
                    self.current = i;
                    return Err(NacosError::Server(format!(
                        "{method} {path} at {server}: {e}"
                    )));
                }
                Err(Failure::Transport(e)) => errors.push(format!("{server}: {e}")),
            }
        }
        self.current = (self.current + 1) % self.servers.len().max(1);
        Err(NacosError::Unreachable(errors.join("; ")))
    }

    async fn send_to(
        &self,
        server: &str,
        method: &Method,
        path: &str,
        encoded: &str,
        token: Option<&str>,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let in_query = matches!(*method, Method::GET | Method::DELETE);
        let uri = if in_query && !encoded.is_empty() {
            format!("http://{server}{path}?{encoded}")
        } else {
            format!("http://{server}{path}")
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(header::USER_AGENT, "sinew-balance")
            .header(header::ACCEPT, "application/json");
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = if in_query {
            Full::default()
        } else {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Full::new(Bytes::from(encoded.to_owned()))
        };
        let req = req
            .body(body)
            .map_err(|e| Failure::Transport(format!("cannot build the request: {e}")))?;
        let max = self.max_body;
        let exchange = async {
            let res = self
                .http
                .request(req)
                .await
                .map_err(|e| Failure::Transport(error_chain(&e)))?;
            let status = res.status();
            if let Some(len) = res
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
            {
                if len > max as u64 {
                    return Err(too_large(max));
                }
            }
            let body = Limited::new(res.into_body(), max)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        too_large(max)
                    } else {
                        Failure::Transport(format!("reading the answer: {e}"))
                    }
                })?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Failure::Transport(format!("no answer within {:?}", self.timeout)))?
    }
}

fn too_large(max: usize) -> Failure {
    Failure::TooLarge(format!("the answer is larger than {max} bytes (not read)"))
}

/// An error and its causes, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// At most [`QUOTED`] bytes of an answer, as one printable line.
pub(crate) fn quote(body: &[u8]) -> String {
    let cut = &body[..body.len().min(QUOTED)];
    let mut text: String = String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > QUOTED {
        text.push('…');
    }
    if text.trim().is_empty() {
        "(empty answer)".into()
    } else {
        text.trim().to_owned()
    }
}
