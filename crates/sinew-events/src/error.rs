//! Error types.

use std::fmt;

/// A message body that does not follow the wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The body is not JSON.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// The body is JSON but not an object.
    #[error("message body is not a JSON object")]
    NotAnObject,
    /// A required key is missing (either casing was tried).
    #[error("missing key {0:?}")]
    MissingKey(&'static str),
    /// A key has a value of the wrong type.
    #[error("key {key:?} has an invalid value: {reason}")]
    InvalidValue {
        /// The key (as sent on the wire).
        key: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A timestamp that is not ISO 8601 / RFC 3339: the value as a short,
    /// escaped, quoted prefix (32 characters and the length when cut), never
    /// the whole input.
    #[error("invalid timestamp {0}")]
    Timestamp(String),
}

/// How many characters of a peer's value an error message quotes.
pub(crate) const SNIPPET_CHARS: usize = 32;

/// A peer's value as it may appear in an error message or a dead-letter
/// reason: at most [`SNIPPET_CHARS`] characters, quoted and escaped (control
/// characters, quotes and backslashes as Rust escapes), and, when cut, the
/// whole value's length in bytes. The cost is bounded whatever the input.
pub(crate) fn snippet(value: &str) -> String {
    let mut chars = value.char_indices();
    let cut = chars.nth(SNIPPET_CHARS).map(|(i, _)| i);
    let prefix = &value[..cut.unwrap_or(value.len())];
    match cut {
        Some(_) => format!("{prefix:?}… ({} bytes)", value.len()),
        None => format!("{prefix:?}"),
    }
}

/// At most this many bytes of a dead-letter reason (`x-sinew-reason`): a
/// handler's error may quote what it was given.
pub(crate) const REASON_MAX_BYTES: usize = 1024;

/// `reason` cut to [`REASON_MAX_BYTES`] at a character boundary, marked `…`
/// when cut.
pub(crate) fn bounded_reason(reason: String) -> String {
    if reason.len() <= REASON_MAX_BYTES {
        return reason;
    }
    let mut end = REASON_MAX_BYTES - '…'.len_utf8();
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = reason;
    out.truncate(end);
    out.push('…');
    out
}

/// Errors of the outbox, the relay, the publisher and the consumer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A database error.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A broker (AMQP) error.
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    /// The broker refused (nacked) a published message.
    #[error("broker did not confirm the message to exchange {exchange:?}")]
    Nacked {
        /// The exchange published to.
        exchange: String,
    },
    /// The broker did not confirm a batch in time.
    #[error("broker did not confirm within {0:?}")]
    ConfirmTimeout(std::time::Duration),
    /// A bad configuration value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The TLS handshake with the broker or the database failed: the
    /// reason says what did not match (the CA, the host name, the client
    /// certificate).
    #[error("TLS to the {target} at {address} failed: {reason}")]
    Tls {
        /// `broker` or `database`.
        target: &'static str,
        /// `host:port`.
        address: String,
        /// What failed, in the config's terms.
        reason: String,
    },
    /// An exchange could not be used as configured: it exists with another
    /// type, or (passive) does not exist, or may not be declared.
    #[error("exchange {exchange:?}: {reason}")]
    Exchange {
        /// The exchange.
        exchange: String,
        /// What is wrong and what to change.
        reason: String,
    },
    /// A message body could not be built or read.
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl Error {
    /// Whether the broker (connection, channel, confirms) failed, rather
    /// than the database or the configuration.
    pub fn is_broker(&self) -> bool {
        matches!(
            self,
            Self::Broker(_)
                | Self::Nacked { .. }
                | Self::ConfirmTimeout(_)
                | Self::Exchange { .. }
                | Self::Tls {
                    target: "broker",
                    ..
                }
        )
    }
}

/// Wrap a handler error to send the message to the dead-letter queue at once,
/// without retries (the message can never succeed, e.g. it does not parse).
///
/// ```
/// use sinew_events::Permanent;
/// let err: sinew_core::BoxError = Box::new(Permanent::new("unknown order"));
/// assert!(err.downcast_ref::<Permanent>().is_some());
/// ```
#[derive(Debug)]
pub struct Permanent {
    inner: sinew_core::BoxError,
}

impl Permanent {
    /// A permanent failure caused by `err`.
    pub fn new(err: impl Into<sinew_core::BoxError>) -> Self {
        Self { inner: err.into() }
    }

    /// The underlying error.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.inner
    }
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl std::error::Error for Permanent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_short_and_escaped() {
        assert_eq!(snippet("soon"), r#""soon""#);
        let long = format!("2026-{}", "\u{1b}[31m\"x".repeat(10_000));
        let s = snippet(&long);
        assert!(s.len() < 4 * SNIPPET_CHARS + 40, "{s}");
        assert!(s.starts_with(r#""2026-\u{1b}[31m\"x"#), "{s}");
        assert!(s.ends_with(&format!("… ({} bytes)", long.len())), "{s}");
        assert!(!s.contains('\u{1b}'));
        // Multi-byte characters are never split.
        let s = snippet(&"я".repeat(100));
        assert!(
            s.starts_with(&format!("\"{}\"…", "я".repeat(SNIPPET_CHARS))),
            "{s}"
        );
    }

    #[test]
    fn reasons_are_bounded() {
        assert_eq!(bounded_reason("short".into()), "short");
        let r = bounded_reason("ж".repeat(5000));
        assert!(r.len() <= REASON_MAX_BYTES);
        assert!(r.ends_with('…'));
    }
}
