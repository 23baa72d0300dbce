//! W3C `traceparent` helpers shared by the client and server layers.

use std::fmt;

use http::HeaderMap;
use sinew_core::headers::TRACEPARENT;
use sinew_core::TraceParent;

/// Formats a trace id as 32 lower-case hex digits, lazily (only when a
/// span is actually recorded).
pub(crate) struct TraceIdDisplay<'a>(pub(crate) &'a TraceParent);

impl fmt::Display for TraceIdDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.trace_id() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Formats a span (parent) id as 16 lower-case hex digits.
pub(crate) struct SpanIdDisplay<'a>(pub(crate) &'a TraceParent);

impl fmt::Display for SpanIdDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.parent_id() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What the inbound `traceparent` header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// No header.
    Absent,
    /// A valid header.
    Valid(TraceParent),
    /// A header that does not parse (or several headers): ignored, never
    /// trusted.
    Invalid,
}

/// Read the inbound `traceparent`. More than one header is invalid (the
/// spec allows exactly one).
pub(crate) fn inbound(headers: &HeaderMap) -> Inbound {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let Some(first) = values.next() else {
        return Inbound::Absent;
    };
    if values.next().is_some() {
        return Inbound::Invalid;
    }
    match TraceParent::parse(first.as_bytes()) {
        Some(tp) => Inbound::Valid(tp),
        None => Inbound::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_header() {
        let mut h = HeaderMap::new();
        assert_eq!(inbound(&h), Inbound::Absent);
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert(TRACEPARENT, good.parse().unwrap());
        let Inbound::Valid(tp) = inbound(&h) else {
            panic!("valid header rejected")
        };
        assert_eq!(
            TraceIdDisplay(&tp).to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(SpanIdDisplay(&tp).to_string(), "00f067aa0ba902b7");
        h.append(TRACEPARENT, good.parse().unwrap());
        assert_eq!(inbound(&h), Inbound::Invalid);
        h.insert(TRACEPARENT, "00-xyz".parse().unwrap());
        assert_eq!(inbound(&h), Inbound::Invalid);
    }
}
