//! HTTP message signing for sinew: a client layer that signs and a server
//! layer that verifies, with two profiles.
//!
//! * **`rfc9421`** (default): [RFC 9421] HTTP Message Signatures with
//!   `hmac-sha256`. Covers `@method @authority @path @query content-digest`
//!   by default (any header, `@query-param;name=…`, `@target-uri`,
//!   `@request-target`, `@scheme` on request); adds `Content-Digest:
//!   sha-256=:…:` ([RFC 9530]) whenever `content-digest` is covered, also for
//!   empty bodies; parameters `created`, optional `expires`, a fresh random
//!   `nonce`, `keyid`, `alg="hmac-sha256"`, optional `tag`; label `sig1`.
//!   Structured fields are parsed and written by the `sfv` crate (RFC 8941
//!   rules); verification walks `Signature-Input` and `Signature` with its
//!   borrowing visitor parser and keeps only the member it checks.
//! * **`legacy`**: microservice_comms' scheme: `X-Service-ID`,
//!   `X-Timestamp` (Unix seconds), `X-Signature` = lower-case hex
//!   HMAC-SHA256 of `METHOD|PATH|TIMESTAMP` under the secret's UTF-8 bytes.
//!   It has no nonce, so replay protection is opt-in for it
//!   ([`VerifyConfig::legacy_replay_protection`]): its clients resend the same
//!   signature on retries.
//!
//! The layers are thin wrappers around a synchronous core that the `sinew`
//! CLI uses too: [`Signer::sign`] and [`Verifier::verify`] on
//! `http::request::Parts` and the body bytes, and [`signature_base`].
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use sinew_core::Body;
//! use sinew_sign::*;
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sinew_core::BoxError> {
//! let key = SecretKey::from_base64("c2hhcmVkIHNlY3JldCBvZiBvcmRlcnMgYW5kIGludmVudG9yeQ==")?;
//!
//! // Server: verify, then hand the caller to the application.
//! let keys = StaticKeyStore::new().with_key("orders", key.clone());
//! let app = service_fn(|req: Request<Body>| async move {
//!     let caller = req.extensions().get::<VerifiedCaller>().expect("verified");
//!     Ok::<_, std::convert::Infallible>(Response::new(format!("hello {}", caller.key_id)))
//! });
//! let server = VerifySignatureLayer::new(Verifier::new(VerifyConfig::default(), keys)).layer(app);
//!
//! // Client: sign every request (here sent straight to the server).
//! let signer = Signer::new(SignConfig::rfc9421("orders"), key)?;
//! let client = HmacSignLayer::new(signer).layer(server.clone());
//!
//! let req = Request::post("http://inventory.internal/reserve?sku=42").body(Body::from("{\"qty\":1}"))?;
//! let res = client.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! // An unsigned request is refused with a problem document naming the check.
//! let res = server.clone().oneshot(Request::get("http://inventory.internal/").body(Body::empty())?).await?;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//! # Ok(()) }
//! ```
//!
//! # Verification
//!
//! [`Verifier`] checks, each with its own [`Rejection::reason`]:
//! `malformed` and `limit_exceeded` (400: the signature headers cannot be
//! read, or exceed a configured limit); `missing_signature`, `unknown_key`,
//! `algorithm_not_allowed`, `missing_required_component`,
//! `created_in_future` (beyond the skew, default 30 s), `expired`,
//! `too_old` (max age, default 300 s), `missing_component`,
//! `bad_signature` (constant time), `digest_mismatch` (against the body
//! actually received), `replayed` (401); and `replay_cache_full` (503) and
//! `body_too_large` (413, default limit 1 MiB).
//! Keys come from a [`KeyStore`] ([`StaticKeyStore`] built in; several key
//! ids at once for rotation). Secrets never appear in `Debug`, logs or
//! errors, and rejections never show expected values.
//!
//! What a peer sends is bounded before it is parsed (field sizes, then
//! signatures, components and parameters counted as they are parsed, then
//! how much of the request the components read; see [`VerifyConfig`]), the
//! key id and times are checked before the components are interpreted, and
//! the layer reads the body only for a request whose signature matched, so
//! an unsigned or forged request costs a small multiple of a valid one.
//!
//! Each outcome is counted in `sinew_signature_verifications_total{result}`
//! (`ok` or the reason) and logged with `tracing`.
//!
//! # Where the signer goes
//!
//! Inside retries: every attempt is signed afresh (new `created` and nonce),
//! so a retried request is not refused as a replay.
//!
//! [RFC 9421]: https://www.rfc-editor.org/rfc/rfc9421
//! [RFC 9530]: https://www.rfc-editor.org/rfc/rfc9530
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

mod base;
mod component;
mod config;
mod digest;
mod error;
mod future;
mod key;
mod layer;
mod received;
mod replay;
mod service;
mod signer;
mod unique;
mod verifier;

pub use base::{signature_base, BaseError, MessageRef, ParamsError, SignatureParams};
pub use component::{parse_components, Component, ComponentError};
pub use config::{Accept, Profile, SignConfig, VerifyConfig};
pub use digest::content_digest;
pub use error::{Rejection, RejectionKind, SignError};
pub use future::{SignFuture, VerifyFuture};
pub use key::{KeyError, KeyStore, SecretKey, StaticKeyStore};
pub use layer::{HmacSignLayer, VerifySignatureLayer};
pub use service::{HmacSign, VerifySignature};
pub use signer::{Signer, ALG_HMAC_SHA256};
pub use verifier::{Covered, VerifiedCaller, Verifier};

/// RFC 9421 is defined over RFC 8941 structured fields: dates and display
/// strings (RFC 9651) are not accepted in its fields nor in fields covered
/// with `;sf`/`;key`.
pub(crate) const SF_VERSION: sfv::Version = sfv::Version::Rfc8941;
