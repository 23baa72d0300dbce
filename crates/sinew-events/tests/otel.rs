//! Feature `opentelemetry` against the real RabbitMQ: a command sent inside
//! a request's span carries the `publish` span's context in its headers,
//! and the consumer handles it in a `process` span continuing that trace;
//! the relay's messages carry their `publish` span's context too. Spans go
//! to the SDK's in-memory exporter through tracing-opentelemetry.
#![cfg(feature = "opentelemetry")]
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use sinew_events::lapin::options::QueueDeleteOptions;
use sinew_events::{
    command_handler, Binding, Consumer, ConsumerConfig, Database, NewCommand, NewEvent, Publisher,
    PublisherConfig, Relay, Router,
};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// One global subscriber for this test binary (the consumer's tasks must
/// see it), exporting to one in-memory exporter.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    &EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            let subscriber = tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("events")));
            tracing::subscriber::set_global_default(subscriber).unwrap();
            (exporter, provider)
        })
        .0
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// The finished spans named `name` whose destination is `exchange`.
async fn spans_to(name: &str, exchange: &str, n: usize) -> Vec<SpanData> {
    for _ in 0..500 {
        let found: Vec<SpanData> = exporter()
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| {
                s.name == format!("{name} {exchange}")
                    && attr(s, "messaging.destination.name").as_deref() == Some(exchange)
            })
            .collect();
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {n} {name} spans for {exchange}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_consume_continue_the_trace() {
    exporter();
    let x = unique("otel_cmd");
    let seen = Arc::new(Mutex::new(Vec::<SpanContext>::new()));
    let s = Arc::clone(&seen);
    let router = Router::new().exchange(
        &x,
        command_handler(move |_cmd| {
            let s = Arc::clone(&s);
            async move {
                let cx = tracing::Span::current().context();
                s.lock().unwrap().push(cx.span().span_context().clone());
                Ok(())
            }
        }),
    );
    let cfg = ConsumerConfig {
        amqp_url: amqp_url(),
        queue: unique("otel_q"),
        durable: false,
        bindings: vec![Binding::all(&x)],
        ..ConsumerConfig::default()
    };
    let consumer = Consumer::new(cfg.clone(), router);
    consumer.declare().await.unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(consumer.run(async move {
        let _ = rx.await;
    }));

    // The command is sent while handling a request.
    let publisher = Publisher::new(PublisherConfig {
        amqp_url: amqp_url(),
        app_id: "orders".into(),
        ..PublisherConfig::default()
    });
    let request = tracing::info_span!("POST /orders");
    let request_cx = request.context().span().span_context().clone();
    assert!(
        request_cx.is_valid(),
        "the OpenTelemetry layer records spans"
    );
    publisher
        .send_command(
            &NewCommand::new(&x, json!({"order_id": 7}))
                .name("reserve")
                .correlation_id("c-7"),
        )
        .instrument(request)
        .await
        .unwrap();

    let publish = &spans_to("publish", &x, 1).await[0];
    let process = &spans_to("process", &x, 1).await[0];
    stop.send(()).unwrap();
    run.await.unwrap().unwrap();

    let trace = request_cx.trace_id();
    assert_eq!(publish.span_kind, SpanKind::Producer);
    assert_eq!(publish.span_context.trace_id(), trace);
    assert_eq!(publish.parent_span_id, request_cx.span_id());
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert_eq!(process.span_context.trace_id(), trace, "one trace");
    assert_eq!(process.parent_span_id, publish.span_context.span_id());
    assert!(process.parent_span_is_remote);
    for (span, op) in [(publish, "send"), (process, "process")] {
        assert_eq!(attr(span, "messaging.system").as_deref(), Some("rabbitmq"));
        assert_eq!(attr(span, "messaging.operation.type").as_deref(), Some(op));
        assert_eq!(
            attr(span, "messaging.rabbitmq.destination.routing_key").as_deref(),
            Some("reserve")
        );
        assert_eq!(
            attr(span, "messaging.message.conversation_id").as_deref(),
            Some("c-7")
        );
    }
    // The handler ran inside the process span.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].span_id(), process.span_context.span_id());
    assert_eq!(seen[0].trace_id(), trace);

    let (_conn, ch) = amqp().await;
    for q in [cfg.queue.clone(), cfg.dead_letter_queue_name()] {
        let _ = ch.queue_delete(ss(&q), QueueDeleteOptions::default()).await;
    }
    let _ = ch.exchange_delete(ss(&x), Default::default()).await;
    publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_events_carry_their_publish_span() {
    exporter();
    let y = unique("otel_evt");
    let tap = Tap::new(&[(&y, "#")], false).await;
    let (outbox, _file) = sqlite_outbox().await;
    let Database::Sqlite(pool) = outbox.database() else {
        unreachable!()
    };
    let mut tx = pool.begin().await.unwrap();
    outbox
        .publish(&mut *tx, &NewEvent::new(&y, "created", json!({"id": 1})))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut relay = Relay::with_outbox(outbox.clone(), relay_config());
    let batch = tracing::info_span!("relay batch");
    let batch_cx = batch.context().span().span_context().clone();
    assert_eq!(relay.drain().instrument(batch).await.unwrap(), 1);

    let got = tap
        .take(1, Duration::from_secs(10), Duration::from_millis(200))
        .await;
    let publish = &spans_to("publish", &y, 1).await[0];
    assert_eq!(publish.parent_span_id, batch_cx.span_id());
    let headers = got[0].headers();
    assert_eq!(
        headers["traceparent"],
        format!(
            "00-{}-{}-01",
            publish.span_context.trace_id(),
            publish.span_context.span_id()
        )
    );
    assert!(
        !headers.contains_key("tracestate"),
        "empty tracestate not sent"
    );
    assert_eq!(
        attr(publish, "messaging.message.body.size"),
        Some(got[0].body.len().to_string())
    );
    tap.cleanup().await;
}
