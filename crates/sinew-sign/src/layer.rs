//! The tower layers.

use tower::Layer;

use crate::service::{HmacSign, VerifySignature};
use crate::signer::Signer;
use crate::verifier::Verifier;

/// Client layer: signs every request that passes through it.
///
/// Put it *inside* retries (the client order of `sinew::stack`), so every attempt gets
/// a fresh `created` and nonce and is not refused as a replay.
///
/// The body is buffered up to the signer's `body_limit` (default 1 MiB) and
/// forwarded as a replayable [`sinew_core::Body`]. A larger body is never
/// truncated: if `content-digest` is covered the request is not sent and the
/// call fails with [`SignError::BodyTooLarge`](crate::SignError::BodyTooLarge)
/// (the digest must be in the headers before the first body byte); otherwise
/// it is signed and streamed through once.
#[derive(Debug, Clone)]
pub struct HmacSignLayer {
    signer: Signer,
}

impl HmacSignLayer {
    /// A layer signing with `signer`.
    pub fn new(signer: Signer) -> Self {
        Self { signer }
    }

    /// The signer.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }
}

impl<S> Layer<S> for HmacSignLayer {
    type Service = HmacSign<S>;
    fn layer(&self, inner: S) -> Self::Service {
        HmacSign::new(inner, self.signer.clone())
    }
}

/// Server layer: verifies the signature of every request before the inner
/// service sees it.
///
/// The signature headers are checked first; only a request whose
/// signature matches has its body read, buffered up to the verifier's
/// `body_limit` (default 1 MiB; a larger one, by `Content-Length` or as
/// read, is answered 413 without being truncated or passed on). A refused
/// request is answered with an `application/problem+json` body whose
/// `reason` names the failed check: 400 (`malformed`, `limit_exceeded`),
/// 401, or 503 (with `Retry-After`) when the replay cache is full of live
/// entries. An accepted request reaches the inner service as
/// `http::Request<sinew_core::Body>` with a
/// [`VerifiedCaller`](crate::VerifiedCaller) in its extensions.
#[derive(Debug, Clone)]
pub struct VerifySignatureLayer {
    verifier: Verifier,
}

impl VerifySignatureLayer {
    /// A layer verifying with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

impl<S> Layer<S> for VerifySignatureLayer {
    type Service = VerifySignature<S>;
    fn layer(&self, inner: S) -> Self::Service {
        VerifySignature::new(inner, self.verifier.clone())
    }
}
