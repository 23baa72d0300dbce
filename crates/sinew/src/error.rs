//! One error type for every outcome of a call.

use std::fmt;

use http::StatusCode;
use sinew_core::classify::{failure_kind_of, FailureKind};
use sinew_core::{BoxError, Classifier};

/// What went wrong, for callers to match on.
///
/// The status kinds follow the mappings of the libraries sinew replaces
/// (docs/compatibility.md): microservice_comms' `BadRequest`/`NotFound`/`ServiceError`
/// and PyFly's validation/authentication/not-found/conflict/unprocessable/
/// rate-limited/unavailable/client-error classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 400.
    BadRequest,
    /// 401.
    Unauthorized,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// 409.
    Conflict,
    /// 422.
    Unprocessable,
    /// 429 (retryable).
    RateLimited,
    /// Any other 4xx.
    ClientError,
    /// Any 5xx (retryable), as PyFly maps them.
    Unavailable,
    /// A status the call did not expect (1xx, or a 3xx that was not followed).
    UnexpectedStatus,
    /// The call's deadline (or a timeout) passed, or the server answered
    /// 408 Request Timeout (retryable).
    Timeout,
    /// A circuit breaker refused the call without sending it.
    CircuitOpen,
    /// No endpoint was available.
    NoEndpoints,
    /// The connection failed or broke (connect, reset, protocol error).
    Transport,
    /// The request could not be signed, or the peer refused its signature.
    Signature,
    /// The request could not be built (bad URL, header, path parameter).
    InvalidRequest,
    /// The response body could not be read or decoded.
    Decode,
    /// An interceptor's hook failed.
    Interceptor,
    /// Logging in for a token failed.
    Auth,
    /// The client configuration is invalid.
    Config,
}

impl ErrorKind {
    /// The kind for an HTTP status that is not a success.
    pub fn from_status(status: StatusCode) -> ErrorKind {
        match status.as_u16() {
            400 => ErrorKind::BadRequest,
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            408 => ErrorKind::Timeout,
            409 => ErrorKind::Conflict,
            422 => ErrorKind::Unprocessable,
            429 => ErrorKind::RateLimited,
            402 | 405..=407 | 410..=421 | 423..=428 | 430..=499 => ErrorKind::ClientError,
            500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::UnexpectedStatus,
        }
    }

    /// Whether a call failing this way is worth trying again later: the
    /// kinds of the failures the default [`Classifier`] counts (5xx, 408,
    /// 429, transport errors, timeouts), plus a refusal by a breaker or for
    /// lack of endpoints. For one error, [`Error::is_retryable`] is exact:
    /// it asks the client's classifier, which also honours
    /// `X-Do-Not-Retry`.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited
                | ErrorKind::Unavailable
                | ErrorKind::Timeout
                | ErrorKind::CircuitOpen
                | ErrorKind::NoEndpoints
                | ErrorKind::Transport
        )
    }

    /// A short snake_case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unprocessable => "unprocessable",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::ClientError => "client_error",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::UnexpectedStatus => "unexpected_status",
            ErrorKind::Timeout => "timeout",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::NoEndpoints => "no_endpoints",
            ErrorKind::Transport => "transport",
            ErrorKind::Signature => "signature",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Decode => "decode",
            ErrorKind::Interceptor => "interceptor",
            ErrorKind::Auth => "auth",
            ErrorKind::Config => "config",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of a sinew call.
pub struct Error {
    kind: ErrorKind,
    status: Option<StatusCode>,
    message: Option<String>,
    body: Option<bytes::Bytes>,
    source: Option<BoxError>,
    /// The classifier's verdict on the response, for status errors.
    retryable: Option<bool>,
}

impl Error {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            status: None,
            message: Some(message.into()),
            body: None,
            source: None,
            retryable: None,
        }
    }

    /// An error for a non-success response; the message is the JSON body's
    /// `message` field (or `detail`, `error`, `title`) when present. Whether
    /// it is retryable is the default classifier's verdict on the status.
    pub fn from_response(status: StatusCode, body: bytes::Bytes) -> Self {
        let (mut head, ()) = http::Response::new(()).into_parts();
        head.status = status;
        Self::from_response_parts(&head, body, &Classifier::default())
    }

    /// An error for a non-success response, retryable when `classifier`
    /// counts the response a failure (its status, and `X-Do-Not-Retry`).
    pub fn from_response_parts(
        head: &http::response::Parts,
        body: bytes::Bytes,
        classifier: &Classifier,
    ) -> Self {
        let retryable = classifier
            .classify_parts(head.status, &head.headers)
            .is_failure();
        Error {
            kind: ErrorKind::from_status(head.status),
            status: Some(head.status),
            message: message_from_body(&body),
            body: Some(body),
            source: None,
            retryable: Some(retryable),
        }
    }

    /// Wrap an error from the service stack, classifying it.
    pub fn from_stack(err: BoxError) -> Self {
        let kind = stack_error_kind(&*err);
        Error {
            kind,
            status: None,
            message: None,
            body: None,
            source: Some(err),
            retryable: None,
        }
    }

    /// Wrap any error as `kind`.
    pub fn with_source(kind: ErrorKind, err: impl Into<BoxError>) -> Self {
        Error {
            kind,
            status: None,
            message: None,
            body: None,
            source: Some(err.into()),
            retryable: None,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The response status, for status errors.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// The message: the response's JSON `message` field when present, or a
    /// description of the failure.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The response body, for status errors.
    pub fn body(&self) -> Option<&bytes::Bytes> {
        self.body.as_ref()
    }

    /// Whether trying again later may succeed: for a response, whether the
    /// client's classifier counts it a failure (so `X-Do-Not-Retry: 1` makes
    /// a 503 not retryable); otherwise the kind's
    /// [`ErrorKind::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        self.retryable.unwrap_or_else(|| self.kind.is_retryable())
    }
}

fn stack_error_kind(err: &(dyn std::error::Error + 'static)) -> ErrorKind {
    #[cfg(feature = "sign")]
    if sinew_core::error::find_source::<sinew_sign::SignError>(err).is_some() {
        return ErrorKind::Signature;
    }
    // An interceptor or auth error already classified.
    if let Some(inner) = sinew_core::error::find_source::<Error>(err) {
        return inner.kind;
    }
    match failure_kind_of(err) {
        FailureKind::Timeout => ErrorKind::Timeout,
        FailureKind::CircuitOpen => ErrorKind::CircuitOpen,
        FailureKind::NoEndpoints => ErrorKind::NoEndpoints,
        FailureKind::Connect | FailureKind::Transport => ErrorKind::Transport,
        FailureKind::Status(s) => ErrorKind::from_status(s),
    }
}

fn message_from_body(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = value.as_object()?;
    for key in ["message", "detail", "error", "title"] {
        if let Some(s) = obj.get(key).and_then(|v| v.as_str()) {
            return Some(s.to_string());
        }
    }
    None
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind);
        if let Some(s) = self.status {
            d.field("status", &s);
        }
        if let Some(m) = &self.message {
            d.field("message", m);
        }
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    /// `kind: status: message`, or `kind: message`, or `kind: cause: its
    /// cause: ...` (the whole chain of sources, each once, so a refused
    /// connection reads `transport: cannot connect to 127.0.0.1:5555:
    /// client error (Connect): tcp connect error: Connection refused`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.status, &self.message, &self.source) {
            (Some(s), Some(m), _) => write!(f, "{}: {s}: {m}", self.kind),
            (Some(s), None, _) => write!(f, "{}: {s}", self.kind),
            (None, Some(m), _) => write!(f, "{}: {m}", self.kind),
            (None, None, Some(src)) => {
                write!(f, "{}", self.kind)?;
                write_chain(f, &**src)
            }
            (None, None, None) => write!(f, "{}", self.kind),
        }
    }
}

/// `: a: b: c` for an error and its sources, skipping a message already
/// contained in the one before (wrappers that repeat their cause).
fn write_chain(f: &mut fmt::Formatter<'_>, err: &(dyn std::error::Error + 'static)) -> fmt::Result {
    let mut previous = String::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut depth = 0;
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && !previous.contains(&text) {
            write!(f, ": {text}")?;
        }
        previous = text;
        current = e.source();
        depth += 1;
        if depth == 16 {
            break;
        }
    }
    Ok(())
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| &**e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping_follows_compat() {
        let cases = [
            (400, ErrorKind::BadRequest),
            (401, ErrorKind::Unauthorized),
            (403, ErrorKind::Forbidden),
            (404, ErrorKind::NotFound),
            (409, ErrorKind::Conflict),
            (422, ErrorKind::Unprocessable),
            (429, ErrorKind::RateLimited),
            (418, ErrorKind::ClientError),
            (500, ErrorKind::Unavailable),
            (503, ErrorKind::Unavailable),
        ];
        for (code, kind) in cases {
            assert_eq!(
                ErrorKind::from_status(StatusCode::from_u16(code).unwrap()),
                kind
            );
        }
        assert!(ErrorKind::RateLimited.is_retryable());
        assert!(!ErrorKind::NotFound.is_retryable());
    }

    #[test]
    fn message_comes_from_json() {
        let e = Error::from_response(
            StatusCode::NOT_FOUND,
            bytes::Bytes::from_static(br#"{"message": "user 7 not found"}"#),
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.message(), Some("user 7 not found"));
        assert_eq!(e.to_string(), "not_found: 404 Not Found: user 7 not found");
        let e = Error::from_response(
            StatusCode::BAD_GATEWAY,
            bytes::Bytes::from_static(b"<html>"),
        );
        assert_eq!(e.message(), None);
    }

    #[test]
    fn stack_errors_are_classified() {
        let e = Error::from_stack(Box::new(sinew_core::DeadlineExceeded::new()));
        assert_eq!(e.kind(), ErrorKind::Timeout);
        let e = Error::from_stack(Box::new(sinew_core::CircuitOpen::new("a:1", None)));
        assert_eq!(e.kind(), ErrorKind::CircuitOpen);
        let e = Error::from_stack(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(e.kind(), ErrorKind::Transport);
    }
}
