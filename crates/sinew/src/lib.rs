//! One client for service-to-service HTTP: the whole sinew stack behind one
//! builder, typed errors, bulk calls, interceptors and config files.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{routing::get, Router};
//!
//! // A service to call, on a free port of 127.0.0.1.
//! let app = Router::new().route("/users/{id}", get(|axum::extract::Path(id): axum::extract::Path<String>| async move {
//!     axum::Json(serde_json::json!({ "id": id }))
//! }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! let client = sinew::Client::builder().base_url(&format!("http://{addr}")).build()?;
//! let user: serde_json::Value = client.get("/users/{id}").param("id", "a b").send_json().await?;
//! assert_eq!(user["id"], "a b");
//!
//! let err = client.get("/nowhere").send().await.unwrap_err();
//! assert_eq!(err.kind(), sinew::ErrorKind::NotFound);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

pub mod auth;
mod builder;
mod client;
pub mod config;
mod error;
pub mod interceptor;
pub mod observe;
#[cfg(feature = "proxy")]
pub mod proxy;
#[cfg(feature = "balance")]
pub mod registry;
mod request;
mod response;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "balance")]
mod services;
pub mod stack;
mod transport;

pub use async_trait::async_trait;
pub use builder::{ClientBuilder, DEFAULT_RESPONSE_BUFFER};
pub use client::{Client, HookError};
pub use error::{Error, ErrorKind};
pub use interceptor::Interceptor;
pub use request::{encode_path_param, RequestBuilder};
pub use response::Response;
#[cfg(feature = "balance")]
pub use services::{is_service_name, Services, MAX_SERVICES};
pub use sinew_core::{Body, CallContext, Classifier, Priority};
pub use stack::{ResBody, Stack};
pub use transport::{PoolConfig, TlsConfig, TransportError};

#[cfg(feature = "balance")]
pub use sinew_balance as balance;
#[cfg(feature = "breaker")]
pub use sinew_breaker as breaker;
#[cfg(feature = "deadline")]
pub use sinew_deadline as deadline;
#[cfg(feature = "metrics")]
pub use sinew_metrics as metrics;
#[cfg(feature = "retry")]
pub use sinew_retry as retry;
#[cfg(feature = "sign")]
pub use sinew_sign as sign;

/// Turn a trait of HTTP methods into a client struct over a [`Client`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{extract::{Path, Query}, routing::get, Json, Router};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize, PartialEq)]
/// struct User { id: String, tenant: String, verbose: bool }
///
/// #[sinew::client]
/// trait Users {
///     #[get("/users/{id}")]
///     async fn get_user(
///         &self,
///         id: &str,
///         #[header("X-Tenant")] tenant: &str,
///         #[query] verbose: bool,
///     ) -> Result<User, sinew::Error>;
///
///     #[post("/users")]
///     async fn create(&self, #[body] user: &User) -> Result<User, sinew::Error>;
///
///     #[delete("/users/{id}")]
///     async fn delete(&self, id: &str) -> Result<(), sinew::Error>;
/// }
///
/// let app = Router::new()
///     .route("/users/{id}", get(|Path(id): Path<String>, h: axum::http::HeaderMap,
///             Query(q): Query<std::collections::HashMap<String, String>>| async move {
///         Json(User {
///             id,
///             tenant: h["x-tenant"].to_str().unwrap().to_string(),
///             verbose: q["verbose"] == "true",
///         })
///     }).delete(|| async { "" }))
///     .route("/users", axum::routing::post(|Json(u): Json<User>| async move { Json(u) }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// tokio::spawn(async move { axum::serve(listener, app).await });
///
/// let users = UsersClient::new(sinew::Client::builder().base_url(&format!("http://{addr}")).build()?);
/// let u = users.get_user("a/b", "acme", true).await?;
/// assert_eq!(u, User { id: "a/b".into(), tenant: "acme".into(), verbose: true });
/// assert_eq!(users.create(&u).await?, u);
/// users.delete("a/b").await?;
/// # Ok(()) }
/// ```
#[cfg(feature = "macros")]
pub use sinew_macros::client;
