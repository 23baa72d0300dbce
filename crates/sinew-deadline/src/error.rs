//! Errors of this crate.
//!
//! The client layer fails with [`DeadlineExceeded`](sinew_core::DeadlineExceeded)
//! (re-exported at the crate root); the server layers answer refusals with
//! responses, not errors. [`InvalidHeader`] is what the server layer found
//! wrong with a request, also returned by [`parse_headers`](crate::server::parse_headers).

use std::fmt;

use http::HeaderName;

use crate::parse::ParseErrorKind;

/// A deadline or priority header the server layer does not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidHeader {
    header: HeaderName,
    kind: ParseErrorKind,
}

impl InvalidHeader {
    pub(crate) fn new(header: HeaderName, kind: ParseErrorKind) -> Self {
        InvalidHeader { header, kind }
    }

    /// The header at fault.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// What is wrong with it.
    pub fn kind(&self) -> ParseErrorKind {
        self.kind
    }

    /// The title of the problem document the server layer answers with:
    /// `invalid priority header` or `invalid deadline header`.
    pub fn title(&self) -> &'static str {
        if self.is_priority() {
            "invalid priority header"
        } else {
            "invalid deadline header"
        }
    }

    /// The stable `reason` of that problem document: `invalid_priority`
    /// for `x-request-priority`; for a deadline header, what is wrong with
    /// it ([`ParseErrorKind::as_str`]: `malformed`, `negative`, …).
    pub fn reason(&self) -> &'static str {
        if self.is_priority() {
            "invalid_priority"
        } else {
            self.kind.as_str()
        }
    }

    fn is_priority(&self) -> bool {
        self.header == sinew_core::headers::X_REQUEST_PRIORITY
    }

    /// What a valid value of this header looks like.
    pub fn expected(&self) -> &'static str {
        match self.header.as_str() {
            "x-request-timeout" => "a non-negative, finite number of seconds such as 4.999",
            "x-request-deadline-at" => "a UTC date-time such as 2026-11-24T08:40:00.250",
            "grpc-timeout" => "1 to 8 digits followed by one of H M S m u n, such as 250m",
            "x-envoy-expected-rq-timeout-ms" => "a non-negative integer number of milliseconds",
            "x-request-priority" => "one of high, normal, low",
            _ => "a valid value",
        }
    }
}

impl fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} header ({}): expected {}",
            self.header,
            self.kind,
            self.expected()
        )
    }
}

impl std::error::Error for InvalidHeader {}
