//! W3C `traceparent` helpers shared by the client and server layers.

use std::fmt;

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use http::{HeaderMap, HeaderValue};
use sinew_core::headers::TRACEPARENT;
use sinew_core::TraceParent;

/// The ids of a trace parent, written as a `traceparent` value.
fn format(trace_id: &[u8; 16], span_id: &[u8; 8], flags: u8) -> [u8; 55] {
    fn put(out: &mut [u8], bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0xf)];
        }
    }
    let mut out = [b'-'; 55];
    out[0] = b'0';
    out[1] = b'0';
    put(&mut out[3..35], trace_id);
    put(&mut out[36..52], span_id);
    put(&mut out[53..55], &[flags]);
    out
}

fn build(trace_id: &[u8; 16], span_id: &[u8; 8], flags: u8) -> TraceParent {
    // Ids are never all zeros here; fall back to a fresh root regardless.
    TraceParent::from_parts(*trace_id, *span_id, flags).unwrap_or_else(TraceParent::new_root)
}

thread_local! {
    /// A per-thread SipHash key drawn from the OS once (std's `RandomState`)
    /// and a counter: SipHash is a keyed PRF, so its outputs on successive
    /// counter values are unpredictable without the key. No system call per
    /// id, unlike `TraceParent::new_root` (which asks the OS for every id).
    static RNG: (RandomState, Cell<u64>) = (RandomState::new(), Cell::new(0));
}

fn next_u64() -> u64 {
    RNG.with(|(key, counter)| {
        let n = counter.get().wrapping_add(1);
        counter.set(n);
        let mut h = key.build_hasher();
        h.write_u64(n);
        h.finish()
    })
}

/// Random non-zero bytes.
fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    while out.iter().all(|b| *b == 0) {
        for chunk in out.chunks_mut(8) {
            let r = next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
    out
}

/// A new trace, sampled.
pub(crate) fn new_root() -> TraceParent {
    build(&random::<16>(), &random::<8>(), 1)
}

/// A new span id.
pub(crate) fn new_span_id() -> [u8; 8] {
    random::<8>()
}

/// The `traceparent` header value of span `span_id` in `trace`.
pub(crate) fn header_value(trace: &TraceParent, span_id: &[u8; 8]) -> Option<HeaderValue> {
    HeaderValue::from_bytes(&format(&trace.trace_id(), span_id, trace.flags())).ok()
}

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

/// Formats a span id as 16 lower-case hex digits.
pub(crate) struct SpanIdDisplay(pub(crate) [u8; 8]);

impl fmt::Display for SpanIdDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The initial value of a span's `trace_id`/`span_id` field: the value
/// itself, or with the `opentelemetry` feature nothing yet (the span's
/// OpenTelemetry ids are known only once it exists; `otel::client_span` and
/// `otel::server_span` record them, or these values when no OpenTelemetry
/// layer is installed).
#[cfg(not(feature = "opentelemetry"))]
#[inline(always)]
pub(crate) fn field<T>(value: T) -> Option<T> {
    Some(value)
}

/// See the other `field`: with the feature, the field starts empty.
#[cfg(feature = "opentelemetry")]
#[inline(always)]
pub(crate) fn field<T>(_value: T) -> Option<T> {
    None
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
        assert_eq!(
            SpanIdDisplay(tp.parent_id()).to_string(),
            "00f067aa0ba902b7"
        );
        h.append(TRACEPARENT, good.parse().unwrap());
        assert_eq!(inbound(&h), Inbound::Invalid);
        h.insert(TRACEPARENT, "00-xyz".parse().unwrap());
        assert_eq!(inbound(&h), Inbound::Invalid);
    }

    #[test]
    fn fast_ids_are_valid_and_distinct() {
        let root = new_root();
        assert_eq!(root.flags(), 1);
        let value = header_value(&root, &root.parent_id()).unwrap();
        assert_eq!(value.to_str().unwrap(), root.to_string());
        assert_eq!(TraceParent::parse(value.as_bytes()), Some(root));
        let span = new_span_id();
        assert_ne!(span, root.parent_id());
        let kid = TraceParent::parse(header_value(&root, &span).unwrap().as_bytes()).unwrap();
        assert_eq!(kid.trace_id(), root.trace_id());
        assert_eq!(kid.parent_id(), span);
        let other = new_root();
        assert_ne!(other.trace_id(), root.trace_id());
        let unsampled =
            TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        let kid = header_value(&unsampled, &span).unwrap();
        assert!(kid.to_str().unwrap().ends_with("-00"));
    }
}
