//! OpenTelemetry context on the `http.client` and `http.server` spans
//! (feature `opentelemetry`), through [`tracing_opentelemetry`].
//!
//! With an [`OpenTelemetryLayer`](tracing_opentelemetry::OpenTelemetryLayer)
//! in the application's subscriber, every span the layers open is an
//! OpenTelemetry span, and the trace context on the wire is that span's:
//!
//! * **Server.** A valid inbound `traceparent` (and its `tracestate`)
//!   becomes the `http.server` span's remote parent, so the exported span
//!   continues the caller's trace under the caller's span. The request's
//!   [`CallContext`] then carries the server span's own ids, and the handler
//!   runs inside the span, so the calls it makes are its children.
//! * **Client.** The `http.client` span's parent is the current span (the
//!   server span of the request being handled, the call span above an
//!   attempt, or whatever span the caller entered); with no current span,
//!   a `traceparent` the caller set on the request, else the ambient
//!   [`CallContext`] (work moved to a task with `sinew_core::context::spawn`
//!   keeps its trace). The outgoing `traceparent` is
//!   `00-<the span's trace id>-<the span's id>-<its flags>` and `tracestate`
//!   the span's trace state, so the next service's server span is a child
//!   of exactly the span that was exported.
//! * **Attributes** (OpenTelemetry HTTP semantic conventions): `url.full`
//!   on client spans (credentials replaced by `REDACTED:REDACTED`, query
//!   values by `REDACTED`, no fragment) and, on attempt spans after the
//!   first, `http.request.resend_count` (from sinew-retry's
//!   [`Attempt`](sinew_retry::Attempt)); the span status is `Error` for a
//!   client response of 400 or more, a server response of 500 or more, and
//!   any failed or cancelled call.
//!
//! Without an OpenTelemetry layer (or when the span is disabled) nothing
//! changes: sinew's own ids are used as without the feature. The W3C
//! headers are written and read here, not through the global propagator
//! (sinew speaks W3C Trace Context on the wire whatever the application
//! configured); the inbound `traceparent` goes through sinew's one bounded
//! parser and `tracestate` is ignored past [`TRACESTATE_MAX_BYTES`].

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Request, Uri};
use opentelemetry::trace::{SpanContext, Status, TraceContextExt, TraceState};
use opentelemetry::Context;
use sinew_core::headers::TRACEPARENT;
use sinew_core::otel::{remote_context, trace_parent};
use sinew_core::{CallContext, TraceParent};
use tracing::field::display;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::Scope;
use crate::trace::{self, Inbound, SpanIdDisplay, TraceIdDisplay};

/// The W3C `tracestate` header.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The most `tracestate` bytes read (all header lines together); a longer
/// one is ignored whole, never parsed.
pub use sinew_core::otel::TRACESTATE_MAX_BYTES;

/// The trace state of `headers`: every `tracestate` line joined with `,`,
/// bounded before it is parsed; invalid or too long is empty.
pub(crate) fn tracestate(headers: &HeaderMap) -> TraceState {
    let mut values = headers.get_all(TRACESTATE).iter();
    let Some(first) = values.next() else {
        return TraceState::NONE;
    };
    let mut joined = match first.to_str() {
        Ok(s) if s.len() <= TRACESTATE_MAX_BYTES => s.to_owned(),
        _ => return TraceState::NONE,
    };
    for v in values {
        match v.to_str() {
            Ok(s) if joined.len() + 1 + s.len() <= TRACESTATE_MAX_BYTES => {
                joined.push(',');
                joined.push_str(s);
            }
            _ => return TraceState::NONE,
        }
    }
    joined.parse().unwrap_or(TraceState::NONE)
}

/// Write `traceparent` (and `tracestate`, or remove a stale one) for span
/// `sc` into `headers`.
pub(crate) fn inject(headers: &mut HeaderMap, sc: &SpanContext) {
    let Some(tp) = trace_parent(sc) else {
        return;
    };
    if let Some(value) = trace::header_value(&tp, &tp.parent_id()) {
        headers.insert(TRACEPARENT, value);
    }
    let state = sc.trace_state().header();
    match HeaderValue::from_str(&state) {
        Ok(value) if !state.is_empty() => {
            headers.insert(TRACESTATE, value);
        }
        _ => {
            headers.remove(TRACESTATE);
        }
    }
}

/// The valid span context of `span` (building its OpenTelemetry span), if
/// an OpenTelemetry layer records it.
fn span_context(span: &Span) -> Option<SpanContext> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// Whether an OpenTelemetry span is current (the contextual parent a new
/// span gets).
fn has_current_span() -> bool {
    Context::map_current(|cx| cx.has_active_span())
}

/// Where a client span may take its parent from when no span is current:
/// read before the layer writes its own `traceparent`.
#[derive(Debug)]
pub(crate) struct ClientParent(Option<(TraceParent, TraceState)>);

/// The remote parent of a client request: none when an outer sinew layer
/// already handled the trace (its span is the current one), else a valid
/// `traceparent` the caller set (with its `tracestate`), else the ambient
/// call context's trace.
pub(crate) fn client_parent<B>(req: &Request<B>) -> ClientParent {
    if req.extensions().get::<TraceParent>().is_some() {
        return ClientParent(None);
    }
    if let Inbound::Valid(tp) = trace::inbound(req.headers()) {
        return ClientParent(Some((tp, tracestate(req.headers()))));
    }
    ClientParent(
        CallContext::current()
            .and_then(|c| c.trace())
            .map(|tp| (tp, TraceState::NONE)),
    )
}

/// Give a new `http.client` span its OpenTelemetry context and attributes,
/// and write the outgoing headers from it (when `write_header`). Without an
/// OpenTelemetry layer, record sinew's `trace` and `span_id` instead.
pub(crate) fn client_span<B>(
    span: &Span,
    req: &mut Request<B>,
    parent: ClientParent,
    write_header: bool,
    scope: Scope,
    trace: &TraceParent,
    span_id: [u8; 8],
) {
    if let Some((tp, state)) = parent.0 {
        if !has_current_span() {
            let _ = span.set_parent(remote_context(&tp, state));
        }
    }
    match span_context(span) {
        Some(sc) => {
            span.record("trace_id", display(sc.trace_id()));
            span.record("span_id", display(sc.span_id()));
            if let Some(tp) = trace_parent(&sc) {
                // Attempts below share the trace of this span.
                req.extensions_mut().insert(tp);
            }
            if write_header {
                inject(req.headers_mut(), &sc);
            }
            if let Some(url) = url_full(req.uri()) {
                span.set_attribute("url.full", url);
            }
            if scope == Scope::Attempt {
                let attempt = sinew_retry::Attempt::of(req);
                if attempt > 1 {
                    span.set_attribute("http.request.resend_count", i64::from(attempt - 1));
                }
            }
        }
        None => {
            span.record("trace_id", display(TraceIdDisplay(trace)));
            span.record("span_id", display(SpanIdDisplay(span_id)));
        }
    }
}

/// Give a new `http.server` span its OpenTelemetry parent (the valid
/// inbound `traceparent` and `tracestate`, else the trace an outer layer
/// stored when no span is current) and return the call context the handler
/// runs in: carrying the server span's own ids when OpenTelemetry records
/// it, else unchanged.
pub(crate) fn server_span(
    span: &Span,
    headers: &HeaderMap,
    inbound: Inbound,
    existing: Option<CallContext>,
    ctx: CallContext,
) -> CallContext {
    match inbound {
        Inbound::Valid(tp) => {
            let _ = span.set_parent(remote_context(&tp, tracestate(headers)));
        }
        _ => {
            if let Some(tp) = existing.and_then(|c| c.trace()) {
                if !has_current_span() {
                    let _ = span.set_parent(remote_context(&tp, TraceState::NONE));
                }
            }
        }
    }
    match span_context(span).and_then(|sc| trace_parent(&sc)) {
        Some(tp) => {
            span.record("trace_id", display(TraceIdDisplay(&tp)));
            ctx.with_trace(tp)
        }
        None => {
            if let Some(tp) = ctx.trace() {
                span.record("trace_id", display(TraceIdDisplay(&tp)));
            }
            ctx
        }
    }
}

/// Mark `span` failed (OpenTelemetry status `Error`).
pub(crate) fn set_error(span: &Span, description: &'static str) {
    span.set_status(Status::error(description));
}

/// `url.full` of an absolute request URI, per the HTTP semantic
/// conventions: user info replaced by `REDACTED:REDACTED`, every query
/// value by `REDACTED` (names kept), no fragment. `None` for a URI without
/// a scheme and authority.
pub(crate) fn url_full(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?.as_str();
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => host,
        None => authority,
    };
    let mut out = String::with_capacity(scheme.len() + authority.len() + uri.path().len() + 24);
    out.push_str(scheme);
    out.push_str("://");
    if host.len() != authority.len() {
        out.push_str("REDACTED:REDACTED@");
    }
    out.push_str(host);
    out.push_str(uri.path());
    if let Some(query) = uri.query() {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, _)) => {
                    out.push_str(name);
                    out.push_str("=REDACTED");
                }
                None => out.push_str(pair),
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId};

    #[test]
    fn url_full_redacts() {
        let full = |s: &str| url_full(&s.parse::<Uri>().unwrap());
        assert_eq!(
            full("http://inventory:8080/items/7").as_deref(),
            Some("http://inventory:8080/items/7")
        );
        assert_eq!(
            full("https://bob:s3cret@api.example/x?token=abc&page=2&flag").as_deref(),
            Some("https://REDACTED:REDACTED@api.example/x?token=REDACTED&page=REDACTED&flag")
        );
        assert_eq!(full("/items/7"), None);
    }

    #[test]
    fn tracestate_is_bounded_and_joined() {
        let mut h = HeaderMap::new();
        assert_eq!(tracestate(&h), TraceState::NONE);
        h.append(TRACESTATE, "a=1,b=2".parse().unwrap());
        h.append(TRACESTATE, "c=3".parse().unwrap());
        assert_eq!(tracestate(&h).header(), "a=1,b=2,c=3");
        let long = format!("d={}", "x".repeat(TRACESTATE_MAX_BYTES));
        h.append(TRACESTATE, long.parse().unwrap());
        assert_eq!(tracestate(&h), TraceState::NONE, "too long: ignored whole");
        let mut h = HeaderMap::new();
        h.insert(TRACESTATE, "not a list member".parse().unwrap());
        assert_eq!(tracestate(&h), TraceState::NONE);
    }

    #[test]
    fn injected_headers_name_the_span() {
        let sc = SpanContext::new(
            TraceId::from_bytes([0x4b; 16]),
            SpanId::from_bytes([0x0f; 8]),
            TraceFlags::SAMPLED,
            false,
            "vendor=v1".parse().unwrap(),
        );
        let mut h = HeaderMap::new();
        h.insert(TRACESTATE, "stale=1".parse().unwrap());
        inject(&mut h, &sc);
        assert_eq!(
            h[TRACEPARENT],
            "00-4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b-0f0f0f0f0f0f0f0f-01"
        );
        assert_eq!(h[TRACESTATE], "vendor=v1");
        let plain = SpanContext::new(
            TraceId::from_bytes([1; 16]),
            SpanId::from_bytes([2; 8]),
            TraceFlags::default(),
            false,
            TraceState::NONE,
        );
        inject(&mut h, &plain);
        assert!(h[TRACEPARENT].to_str().unwrap().ends_with("-00"));
        assert!(!h.contains_key(TRACESTATE), "stale tracestate removed");
    }
}
