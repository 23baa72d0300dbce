//! The server stack: metrics → signature verification → deadline and
//! priority → priority-aware shedding → your application, as one tower
//! [`Layer`] for `axum::Router::layer` or any `tower::Service`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{routing::get, Router};
//! use sinew::server::{ServerConfig, ServerStack};
//!
//! // From the `[server]` section of the config file (or build it in code).
//! std::env::set_var("ORDERS_KEY", "s3cret");
//! let config: ServerConfig = toml::from_str(r#"
//!     [verify]
//!     accept = "any"                 # RFC 9421 or the legacy X-Service-ID scheme
//!     keys = [{ key_id = "orders", key = { env = "ORDERS_KEY" } }]
//!     [deadline]
//!     default_timeout = "20s"
//!     [shed]
//!     max_concurrency = 256
//! "#)?;
//! let app: Router = Router::new()
//!     .route("/items/{id}", get(|| async { "item" }))
//!     .layer(ServerStack::from_config(&config)?);
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}/items/1", listener.local_addr()?);
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! // Unsigned: refused before the handler.
//! let err = sinew::Client::builder().build()?.get(&url).send().await.unwrap_err();
//! assert_eq!(err.kind(), sinew::ErrorKind::Unauthorized);
//! # Ok(()) }
//! ```
//!
//! # Why this order
//!
//! * **Metrics** outermost: every request is counted, refusals included, by
//!   route template (apply the stack with `Router::layer`, so axum's
//!   `MatchedPath` is known).
//! * **Verification** before anything spends work on the request: an
//!   unsigned or forged request is refused with 401 problem+json.
//! * **Deadline and priority** next: parsed from the caller's headers into
//!   the [`CallContext`](crate::CallContext) the handler (and every sinew
//!   client call it makes) sees.
//! * **Shedding** last, nearest the application: it knows the priority and
//!   the deadline, so it refuses `low` first and never queues a request
//!   past its deadline.
//!
//! The application must accept any request body type (axum's `Router`
//! does): with verification on, it receives the buffered body as a
//! [`sinew::Body`](crate::Body).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use sinew_core::config::{Secret, Toggle};
use sinew_deadline::{
    ServerDeadline, ServerDeadlineConfig, ServerDeadlineLayer, Shed, ShedConfig, ShedLayer,
};
use sinew_metrics::server::ServerMetrics;
use sinew_metrics::{ServerMetricsConfig, ServerMetricsLayer};
use sinew_sign::{
    SecretKey, StaticKeyStore, Verifier, VerifyConfig, VerifySignature, VerifySignatureLayer,
};
use tower::{Layer, Service};

use crate::{Error, ErrorKind};

/// The `[server]` section: each part is the config type of its layer crate.
///
/// ```toml
/// [server.metrics]      # sinew-metrics' ServerMetricsConfig (off when absent)
/// naming = "otel"
/// [server.verify]       # sinew-sign's VerifyConfig plus the keys (off when absent)
/// accept = "rfc9421"    # rfc9421 | legacy | any
/// keys = [{ key_id = "orders", key = { env = "ORDERS_KEY" } }]
/// [server.deadline]     # sinew-deadline's ServerDeadlineConfig (on by default)
/// default_timeout = "20s"
/// [server.shed]         # sinew-deadline's ShedConfig (off when absent)
/// max_concurrency = 128
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Request metrics by route template.
    #[serde(default)]
    pub metrics: Option<ServerMetricsConfig>,
    /// Signature verification.
    #[serde(default)]
    pub verify: Option<VerifySection>,
    /// The caller's deadline and priority (on by default).
    #[serde(default)]
    pub deadline: Toggle<ServerDeadlineConfig>,
    /// Priority-aware shedding.
    #[serde(default)]
    pub shed: Option<ShedConfig>,
    /// This instance, registered in `[registry]` while it runs (see
    /// [`Registration`](crate::registry::Registration)).
    #[cfg(feature = "balance")]
    #[serde(default)]
    pub register: Option<crate::registry::RegisterConfig>,
}

/// `[server.verify]`: sinew-sign's [`VerifyConfig`] and the keys it checks
/// against. Each key serves both profiles: RFC 9421 `keyid` and the legacy
/// `X-Service-ID`.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifySection {
    /// The keys, by key id.
    pub keys: Vec<KeyEntry>,
    /// How to verify.
    pub config: VerifyConfig,
}

/// One verification key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The RFC 9421 `keyid`, and the legacy `X-Service-ID`.
    pub key_id: String,
    /// The shared secret.
    pub key: Secret,
}

impl ServerConfig {
    /// The names of the section's parts, as the schema declares them.
    pub fn section_names() -> &'static [&'static str] {
        crate::config::section_names_of::<ServerConfig>()
    }
}

impl<'de> Deserialize<'de> for VerifySection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VerifySection;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a [server.verify] table")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<VerifySection, A::Error> {
                let mut keys = None;
                let config = sinew_core::config::split_map(map, &["keys"], |_, m| {
                    keys = Some(m.next_value::<Vec<KeyEntry>>()?);
                    Ok(())
                })?;
                let keys = keys.unwrap_or_default();
                if keys.is_empty() {
                    return Err(serde::de::Error::custom(
                        "list the keys to verify with: keys = [{ key_id = \"...\", key = { env = \"VAR\" } }]",
                    ));
                }
                Ok(VerifySection { keys, config })
            }
        }
        d.deserialize_map(V)
    }
}

impl VerifySection {
    /// The verification layer (reads the secrets).
    pub fn layer(&self) -> Result<VerifySignatureLayer, Error> {
        let cfg = |m: String| Error::new(ErrorKind::Config, format!("[server.verify] {m}"));
        let mut store = StaticKeyStore::new();
        for entry in &self.keys {
            let bytes = entry
                .key
                .load()
                .map_err(|e| cfg(format!("key of {:?}: {e}", entry.key_id)))?;
            let key = SecretKey::from_bytes(&bytes)
                .map_err(|e| cfg(format!("key of {:?}: {e}", entry.key_id)))?;
            store = store
                .with_key(entry.key_id.clone(), key.clone())
                .with_legacy_key(entry.key_id.clone(), key);
        }
        Ok(VerifySignatureLayer::new(Verifier::new(
            self.config.clone(),
            store,
        )))
    }
}

/// The server layers in their order; a [`Layer`] for `axum::Router::layer`
/// (apply it there, so metrics see the route template) or any service.
///
/// [`ServerStack::new`] has deadline and priority parsing on and the other
/// layers off; add them with the builder methods or build the whole stack
/// from a [`ServerConfig`].
#[derive(Clone, Debug)]
pub struct ServerStack {
    metrics: Option<ServerMetricsLayer>,
    verify: Option<VerifySignatureLayer>,
    deadline: Option<ServerDeadlineLayer>,
    shed: Option<ShedLayer>,
}

impl Default for ServerStack {
    fn default() -> Self {
        ServerStack::new()
    }
}

impl ServerStack {
    /// Deadline and priority from the caller's headers (with
    /// sinew-deadline's defaults); no metrics, verification or shedding.
    pub fn new() -> Self {
        ServerStack {
            metrics: None,
            verify: None,
            deadline: Some(ServerDeadlineLayer::new()),
            shed: None,
        }
    }

    /// The stack a `[server]` section describes (reads the secrets).
    pub fn from_config(config: &ServerConfig) -> Result<Self, Error> {
        let ServerConfig {
            metrics,
            verify,
            deadline,
            shed,
            // Not a layer: `Registration::register` applies it.
            #[cfg(feature = "balance")]
                register: _,
        } = config;
        Ok(ServerStack {
            metrics: metrics.as_ref().map(ServerMetricsLayer::from_config),
            verify: verify.as_ref().map(VerifySection::layer).transpose()?,
            deadline: deadline
                .get()
                .cloned()
                .map(ServerDeadlineLayer::from_config),
            shed: shed.clone().map(ShedLayer::new),
        })
    }

    /// The stack of a config file's `[server]` section (the default stack
    /// when the file has none).
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        let config = crate::config::ClientConfig::from_file(path)?;
        Self::from_config(&config.server.unwrap_or_default())
    }

    /// Record request metrics.
    pub fn metrics(mut self, layer: ServerMetricsLayer) -> Self {
        self.metrics = Some(layer);
        self
    }

    /// Verify signatures.
    pub fn verify(mut self, layer: VerifySignatureLayer) -> Self {
        self.verify = Some(layer);
        self
    }

    /// Parse deadline and priority with this layer.
    pub fn deadline(mut self, layer: ServerDeadlineLayer) -> Self {
        self.deadline = Some(layer);
        self
    }

    /// Do not parse the caller's deadline and priority.
    pub fn no_deadline(mut self) -> Self {
        self.deadline = None;
        self
    }

    /// Shed by priority.
    pub fn shed(mut self, layer: ShedLayer) -> Self {
        self.shed = Some(layer);
        self
    }

    /// The shedding layer, to read how many requests are in flight.
    pub fn shed_layer(&self) -> Option<&ShedLayer> {
        self.shed.as_ref()
    }
}

type ShedSlot<S> = Maybe<Shed<S>, S>;
type DeadlineSlot<S> = Maybe<ServerDeadline<ShedSlot<S>>, ShedSlot<S>>;
type VerifySlot<S> = Maybe<VerifySignature<DeadlineSlot<S>>, DeadlineSlot<S>>;

/// The service of [`ServerStack`].
pub type ServerStackService<S> = Maybe<ServerMetrics<VerifySlot<S>>, VerifySlot<S>>;

impl<S> Layer<S> for ServerStack {
    type Service = ServerStackService<S>;

    fn layer(&self, app: S) -> Self::Service {
        let s = Maybe::new(self.shed.as_ref(), app);
        let s = Maybe::new(self.deadline.as_ref(), s);
        let s = Maybe::new(self.verify.as_ref(), s);
        Maybe::new(self.metrics.as_ref(), s)
    }
}

/// A layer that may be absent: its service, or the service below as it is.
/// Unlike `tower::util::Either` it keeps the inner error type (axum needs
/// `Infallible`), and the two response bodies become one
/// `http_body_util::Either`.
#[derive(Clone, Debug)]
pub enum Maybe<A, B> {
    /// The layer is there.
    On(A),
    /// It is not.
    Off(B),
}

impl<A, B> Maybe<A, B> {
    fn new<L: Layer<B, Service = A>>(layer: Option<&L>, inner: B) -> Self {
        match layer {
            Some(l) => Maybe::On(l.layer(inner)),
            None => Maybe::Off(inner),
        }
    }
}

impl<A, B, Req, RA, RB> Service<Req> for Maybe<A, B>
where
    A: Service<Req, Response = Response<RA>>,
    B: Service<Req, Response = Response<RB>, Error = A::Error>,
{
    type Response = Response<http_body_util::Either<RA, RB>>;
    type Error = A::Error;
    type Future = MaybeFuture<A::Future, B::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Maybe::On(a) => a.poll_ready(cx),
            Maybe::Off(b) => b.poll_ready(cx),
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self {
            Maybe::On(a) => MaybeFuture::on(a.call(req)),
            Maybe::Off(b) => MaybeFuture::off(b.call(req)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Maybe`].
    pub struct MaybeFuture<FA, FB> {
        #[pin]
        inner: Branch<FA, FB>,
    }
}

pin_project_lite::pin_project! {
    #[project = BranchProj]
    enum Branch<FA, FB> {
        On { #[pin] fut: FA },
        Off { #[pin] fut: FB },
    }
}

impl<FA, FB> MaybeFuture<FA, FB> {
    fn on(fut: FA) -> Self {
        MaybeFuture {
            inner: Branch::On { fut },
        }
    }

    fn off(fut: FB) -> Self {
        MaybeFuture {
            inner: Branch::Off { fut },
        }
    }
}

impl<FA, FB, RA, RB, E> Future for MaybeFuture<FA, FB>
where
    FA: Future<Output = Result<Response<RA>, E>>,
    FB: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<http_body_util::Either<RA, RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.project() {
            BranchProj::On { fut } => fut
                .poll(cx)
                .map(|r| r.map(|res| res.map(http_body_util::Either::Left))),
            BranchProj::Off { fut } => fut
                .poll(cx)
                .map(|r| r.map(|res| res.map(http_body_util::Either::Right))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn config_sections_and_errors() {
        let c: ServerConfig = toml::from_str(
            "[verify]\naccept = \"any\"\nkeys = [{ key_id = \"a\", key = { text = \"k\" } }]\n[shed]\nmax_concurrency = 4\n",
        )
        .unwrap();
        let v = c.verify.as_ref().unwrap();
        assert_eq!(v.config.accept, sinew_sign::Accept::Any);
        assert_eq!(v.keys[0].key_id, "a");
        assert_eq!(c.shed.as_ref().unwrap().max_concurrency, 4);
        assert!(c.deadline.is_on());
        ServerStack::from_config(&c).unwrap();

        let e = toml::from_str::<ServerConfig>("[verify]\naccept = \"any\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("keys = ["), "{e}");
        let e = toml::from_str::<ServerConfig>(
            "[verify]\nkeys = [{ key_id = \"a\", key = { text = \"k\" } }]\nacept = \"any\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 3") && e.contains("acept"), "{e}");
        let unset: ServerConfig = toml::from_str(
            "[verify]\nkeys = [{ key_id = \"a\", key = { env = \"SINEW_SURELY_UNSET_42\" } }]\n",
        )
        .unwrap();
        let e = ServerStack::from_config(&unset).unwrap_err().to_string();
        assert!(e.contains("SINEW_SURELY_UNSET_42"), "{e}");
    }
}
