//! Trace context in AMQP headers (feature `opentelemetry`), after
//! OpenTelemetry's messaging semantic conventions.
//!
//! With a tracing-opentelemetry layer in the application's subscriber:
//!
//! * **Publish** (the [`Publisher`](crate::Publisher) and the
//!   [`Relay`](crate::Relay)): each message gets a `producer` span
//!   `publish <exchange>` (a child of the current span, e.g. the HTTP
//!   request that sent a command) and carries that span's context in its
//!   headers: `traceparent` and, when not empty, `tracestate` (W3C Trace
//!   Context, as AMQP long strings).
//! * **Consume** (the [`Consumer`](crate::Consumer)): each delivery is
//!   handled inside a `consumer` span `process <exchange>` whose parent is
//!   the message's `traceparent`/`tracestate`, so the handler, and the calls
//!   it makes, continue the publisher's trace. Headers that do not parse are
//!   ignored (a new trace starts); `tracestate` over 2 KiB is never parsed.
//!
//! Attributes: `messaging.system` (`rabbitmq`), `messaging.operation.type`
//! (`send` / `process`), `messaging.operation.name` (`publish` /
//! `process`), `messaging.destination.name` (the exchange),
//! `messaging.rabbitmq.destination.routing_key`,
//! `messaging.message.body.size` and `messaging.message.conversation_id`
//! (the correlation id). Without an OpenTelemetry layer no header is added
//! and nothing is read.
//!
//! Outbox rows do not store the context they were written in: the relay's
//! `publish` span is a child of whatever span the relay runs in (a new
//! trace by default).

use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;
use opentelemetry::trace::{TraceContextExt, TraceState};
use opentelemetry::Context;
use sinew_core::otel::{remote_context, trace_parent};
use sinew_core::TraceParent;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header carrying the W3C `traceparent`.
pub const HEADER_TRACEPARENT: &str = "traceparent";
/// The header carrying the W3C `tracestate`.
pub const HEADER_TRACESTATE: &str = "tracestate";
/// The most `tracestate` bytes read from a message; a longer one is
/// ignored, never parsed.
pub use sinew_core::otel::TRACESTATE_MAX_BYTES;

/// The `producer` span of one message about to be published.
pub(crate) fn publish_span(
    exchange: &str,
    routing_key: &str,
    body_len: usize,
    properties: &BasicProperties,
) -> Span {
    tracing::info_span!(
        "publish",
        otel.name = %format_args!("publish {exchange}"),
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = exchange,
        messaging.rabbitmq.destination.routing_key = routing_key,
        messaging.message.body.size = body_len,
        messaging.message.conversation_id = properties.correlation_id().as_ref().map(|c| c.as_str()),
    )
}

/// `properties` with `span`'s trace context in its headers (unchanged when
/// OpenTelemetry does not record the span).
pub(crate) fn inject(span: &Span, properties: BasicProperties) -> BasicProperties {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    let Some(tp) = trace_parent(&sc) else {
        return properties;
    };
    let mut headers = FieldTable::default();
    if let Some(old) = properties.headers() {
        for (k, v) in old.inner() {
            if k.as_str() != HEADER_TRACEPARENT && k.as_str() != HEADER_TRACESTATE {
                headers.insert(k.clone(), v.clone());
            }
        }
    }
    headers.insert(
        ShortString::from(HEADER_TRACEPARENT),
        AMQPValue::LongString(tp.to_string().into()),
    );
    let state = sc.trace_state().header();
    if !state.is_empty() {
        headers.insert(
            ShortString::from(HEADER_TRACESTATE),
            AMQPValue::LongString(state.into()),
        );
    }
    properties.with_headers(headers)
}

/// The bytes of a string header.
fn header<'a>(headers: &'a FieldTable, name: &str) -> Option<&'a [u8]> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        _ => None,
    }
}

/// The remote parent a message's headers name, if they name a valid one.
pub(crate) fn extract(headers: Option<&FieldTable>) -> Option<Context> {
    let headers = headers?;
    let parent = TraceParent::parse(header(headers, HEADER_TRACEPARENT)?)?;
    let state = header(headers, HEADER_TRACESTATE)
        .filter(|s| s.len() <= TRACESTATE_MAX_BYTES)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(TraceState::NONE);
    Some(remote_context(&parent, state))
}

/// The `consumer` span a delivery is handled in, its parent the message's
/// trace context.
pub(crate) fn process_span(delivery: &lapin::message::Delivery) -> Span {
    let exchange = delivery.exchange.as_str();
    let properties = &delivery.properties;
    let span = tracing::info_span!(
        "process",
        otel.name = %format_args!("process {exchange}"),
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = exchange,
        messaging.rabbitmq.destination.routing_key = delivery.routing_key.as_str(),
        messaging.message.body.size = delivery.data.len(),
        messaging.message.conversation_id = properties.correlation_id().as_ref().map(|c| c.as_str()),
    );
    if let Some(parent) = extract(properties.headers().as_ref()) {
        let _ = span.set_parent(parent);
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    #[test]
    fn extract_reads_valid_headers_only() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = table(&[
            (HEADER_TRACEPARENT, AMQPValue::LongString(tp.into())),
            (HEADER_TRACESTATE, AMQPValue::LongString("v=1".into())),
        ]);
        let cx = extract(Some(&t)).unwrap();
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_state().header(), "v=1");

        assert!(extract(None).is_none());
        for bad in [
            AMQPValue::LongString("00-xyz".into()),
            AMQPValue::LongString(format!("{tp}{}", "-".repeat(1 << 20)).into()),
            AMQPValue::LongUInt(7),
        ] {
            assert!(extract(Some(&table(&[(HEADER_TRACEPARENT, bad)]))).is_none());
        }
        let long_state = format!("v={}", "x".repeat(TRACESTATE_MAX_BYTES));
        let t = table(&[
            (HEADER_TRACEPARENT, AMQPValue::LongString(tp.into())),
            (HEADER_TRACESTATE, AMQPValue::LongString(long_state.into())),
        ]);
        let cx = extract(Some(&t)).unwrap();
        assert_eq!(cx.span().span_context().trace_state().header(), "");
    }
}
