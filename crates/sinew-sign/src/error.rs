//! Errors of the signer and rejections of the verifier.

use std::borrow::Cow;
use std::fmt;

use http::StatusCode;
use sinew_core::problem::Problem;
use sinew_core::BoxError;

use crate::base::BaseError;

/// A request could not be signed (it is then not sent).
#[derive(Debug)]
#[non_exhaustive]
pub enum SignError {
    /// The signer's configuration is unusable.
    Config(String),
    /// A covered component could not be read from the request.
    Component(BaseError),
    /// `content-digest` is covered and the body is larger than the signer's
    /// `body_limit`: the digest would need the whole body before the
    /// headers are sent. The request is not sent (never truncated).
    BodyTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// Reading the request body failed.
    Body(BoxError),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::Config(m) => write!(f, "invalid signing configuration: {m}"),
            SignError::Component(e) => write!(f, "cannot sign the request: {e}"),
            SignError::BodyTooLarge { limit } => write!(
                f,
                "cannot sign the request: content-digest is covered and the body exceeds {limit} bytes"
            ),
            SignError::Body(e) => write!(f, "cannot sign the request: reading the body failed: {e}"),
        }
    }
}

impl std::error::Error for SignError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SignError::Component(e) => Some(e),
            SignError::Body(e) => Some(&**e),
            _ => None,
        }
    }
}

impl From<BaseError> for SignError {
    fn from(e: BaseError) -> Self {
        SignError::Component(e)
    }
}

/// Which verification check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No signature of an accepted profile.
    MissingSignature,
    /// Signature headers or parameters that cannot be parsed or lack a
    /// required parameter (`keyid`, `created`) (400).
    Malformed,
    /// The signature headers exceed a configured limit: their size, the
    /// signatures, components or parameters they hold, or how much of the
    /// request the covered components read (400). Checked before the
    /// work the limit bounds.
    LimitExceeded,
    /// The key id (or legacy service id) is not in the key store.
    UnknownKey,
    /// `alg` names an algorithm other than `hmac-sha256`.
    AlgorithmNotAllowed,
    /// The signature does not cover a component the verifier requires.
    MissingRequiredComponent,
    /// A covered component is absent from the request.
    MissingComponent,
    /// `created` lies further in the future than the allowed skew.
    CreatedInFuture,
    /// `expires` has passed.
    Expired,
    /// `created` is older than the maximum age.
    TooOld,
    /// `Content-Digest` does not match the body received.
    DigestMismatch,
    /// The signature value does not match.
    BadSignature,
    /// This signature was already seen within its window.
    Replayed,
    /// The replay cache is full of live entries (503).
    ReplayCacheFull,
    /// The body is larger than the verifier's limit (413).
    BodyTooLarge,
}

impl RejectionKind {
    /// The stable, machine-readable reason (also the metric label).
    pub fn reason(self) -> &'static str {
        match self {
            RejectionKind::MissingSignature => "missing_signature",
            RejectionKind::Malformed => "malformed",
            RejectionKind::LimitExceeded => "limit_exceeded",
            RejectionKind::UnknownKey => "unknown_key",
            RejectionKind::AlgorithmNotAllowed => "algorithm_not_allowed",
            RejectionKind::MissingRequiredComponent => "missing_required_component",
            RejectionKind::MissingComponent => "missing_component",
            RejectionKind::CreatedInFuture => "created_in_future",
            RejectionKind::Expired => "expired",
            RejectionKind::TooOld => "too_old",
            RejectionKind::DigestMismatch => "digest_mismatch",
            RejectionKind::BadSignature => "bad_signature",
            RejectionKind::Replayed => "replayed",
            RejectionKind::ReplayCacheFull => "replay_cache_full",
            RejectionKind::BodyTooLarge => "body_too_large",
        }
    }

    fn title(self) -> &'static str {
        match self {
            RejectionKind::MissingSignature => "request is not signed",
            RejectionKind::Malformed => "malformed signature",
            RejectionKind::LimitExceeded => "signature headers over a limit",
            RejectionKind::UnknownKey => "unknown signing key",
            RejectionKind::AlgorithmNotAllowed => "signature algorithm not allowed",
            RejectionKind::MissingRequiredComponent => {
                "signature does not cover a required component"
            }
            RejectionKind::MissingComponent => "a covered component is missing",
            RejectionKind::CreatedInFuture => "signature created in the future",
            RejectionKind::Expired => "signature expired",
            RejectionKind::TooOld => "signature too old",
            RejectionKind::DigestMismatch => "content digest does not match the body",
            RejectionKind::BadSignature => "signature does not match",
            RejectionKind::Replayed => "signature replayed",
            RejectionKind::ReplayCacheFull => "replay cache full",
            RejectionKind::BodyTooLarge => "request body too large",
        }
    }

    /// The status a server answers with: 400 for a request that cannot be
    /// read as a signed request (`malformed`, `limit_exceeded`), 503 when
    /// the replay cache is full, 413 for a body too large, else 401.
    pub fn status(self) -> StatusCode {
        match self {
            RejectionKind::Malformed | RejectionKind::LimitExceeded => StatusCode::BAD_REQUEST,
            RejectionKind::ReplayCacheFull => StatusCode::SERVICE_UNAVAILABLE,
            RejectionKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// Why a request was refused. `Display` is for humans and names the
/// failed check and the component or parameter concerned, never an
/// expected value or a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    kind: RejectionKind,
    detail: Cow<'static, str>,
}

impl Rejection {
    pub(crate) fn new(kind: RejectionKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// Which check failed.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The stable, machine-readable reason, e.g. `"bad_signature"`.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// The human-readable detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The status a server answers with.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The RFC 9457 problem document for this rejection; its `reason`
    /// member carries [`Rejection::reason`].
    pub fn to_problem(&self) -> Problem {
        Problem::new(self.status(), self.kind.title())
            .detail(self.detail.to_string())
            .with("reason", self.reason())
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.kind.title(),
            self.reason(),
            self.detail
        )
    }
}

impl std::error::Error for Rejection {}
