//! OpenTelemetry span contexts and sinew's [`TraceParent`] (feature
//! `opentelemetry`): the one conversion both ways, and the bound on
//! `tracestate`, shared by the HTTP layers (sinew-metrics) and AMQP
//! messages (sinew-events).
//!
//! ```
//! use opentelemetry::trace::{TraceContextExt, TraceState};
//! use sinew_core::otel::{remote_context, trace_parent};
//! use sinew_core::TraceParent;
//!
//! let tp = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .unwrap();
//! let cx = remote_context(&tp, TraceState::NONE);
//! assert_eq!(trace_parent(cx.span().span_context()), Some(tp));
//! ```

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;

use crate::TraceParent;

/// The most `tracestate` bytes read from a peer: W3C asks vendors to
/// propagate at least 512; a longer one is ignored whole, never parsed.
pub const TRACESTATE_MAX_BYTES: usize = 2048;

/// An OpenTelemetry context whose span is the remote `parent`.
pub fn remote_context(parent: &TraceParent, state: TraceState) -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_bytes(parent.trace_id()),
        SpanId::from_bytes(parent.parent_id()),
        TraceFlags::new(parent.flags()),
        true,
        state,
    ))
}

/// The `traceparent` naming span `sc` (`None` for an invalid context).
pub fn trace_parent(sc: &SpanContext) -> Option<TraceParent> {
    if !sc.is_valid() {
        return None;
    }
    TraceParent::from_parts(
        sc.trace_id().to_bytes(),
        sc.span_id().to_bytes(),
        sc.trace_flags().to_u8(),
    )
}
