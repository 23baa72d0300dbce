//! Exchange types from config (fanout, direct, topic, headers) against the
//! real RabbitMQ, and an exchange that already exists with another type.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use sinew_events::lapin::options::{ExchangeDeclareOptions, QueueDeleteOptions};
use sinew_events::lapin::types::FieldTable;
use sinew_events::lapin::{BasicProperties, ExchangeKind};
use sinew_events::{
    handler_fn, Binding, Consumer, ConsumerConfig, Error, ExchangeConfig, ExchangeType, NewEvent,
    Publisher, PublisherConfig, Relay, RelayConfig, Router,
};
use tokio::sync::mpsc;

/// The exchange's type as the broker reports it.
fn broker_type(exchange: &str) -> Option<String> {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "--formatter",
            "json",
            "list_exchanges",
            "name",
            "type",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    all.iter()
        .find(|e| e["name"] == json!(exchange))
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
}

fn publisher(exchanges: Vec<ExchangeConfig>) -> Publisher {
    Publisher::new(PublisherConfig {
        amqp_url: amqp_url(),
        app_id: "sinew-exchange-test".into(),
        exchanges,
        ..PublisherConfig::default()
    })
}

async fn delete(exchange: &str, queues: &[String]) {
    let (conn, ch) = amqp().await;
    for q in queues {
        let _ = ch.queue_delete(ss(q), QueueDeleteOptions::default()).await;
    }
    let _ = ch.exchange_delete(ss(exchange), Default::default()).await;
    let _ = conn.close(200, "bye".into()).await;
}

/// A consumer of a fresh queue with `binding` on an exchange of type
/// `kind`, publishing `keys` to it: the routing keys that arrive.
async fn routed(kind: ExchangeType, binding: Binding, keys: &[&str]) -> Vec<String> {
    let exchange = binding.exchange.clone();
    let exchanges = vec![ExchangeConfig::new(&exchange, kind)];
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = ConsumerConfig {
        amqp_url: amqp_url(),
        queue: unique("xq"),
        durable: false,
        auto_delete: true,
        bindings: vec![binding],
        exchanges: exchanges.clone(),
        ..ConsumerConfig::default()
    };
    let queues = vec![config.queue.clone(), config.dead_letter_queue_name()];
    let consumer = Consumer::new(
        config,
        Router::new().default_handler(handler_fn(move |m| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(m.routing_key);
                Ok(())
            }
        })),
    );
    consumer.declare().await.unwrap();
    assert_eq!(broker_type(&exchange).as_deref(), Some(kind.as_str()));
    let (stop, rx_stop) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(consumer.run(async move {
        let _ = rx_stop.await;
    }));
    let publisher = publisher(exchanges);
    for key in keys {
        publisher
            .publish_raw(&exchange, key, b"{}", BasicProperties::default())
            .await
            .unwrap();
    }
    // Everything published is confirmed (routed or dropped by the broker):
    // what arrives arrives quickly.
    let mut got = Vec::new();
    while let Ok(Some(key)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        got.push(key);
    }
    publisher.close().await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    delete(&exchange, &queues).await;
    got.sort();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_ignores_the_routing_key() {
    let b = Binding::new(unique("fan"), "nothing.matches.this");
    assert_eq!(
        routed(ExchangeType::Fanout, b, &["a", "b.c"]).await,
        ["a", "b.c"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_matches_the_key_exactly() {
    // `*` is no pattern on a direct exchange.
    let b = Binding::new(unique("direct"), "user.*");
    assert_eq!(
        routed(ExchangeType::Direct, b, &["user.created", "user.*"]).await,
        ["user.*"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_matches_patterns() {
    let b = Binding::new(unique("topic"), "user.*");
    assert_eq!(
        routed(
            ExchangeType::Topic,
            b,
            &["user.created", "user.a.b", "order.x"]
        )
        .await,
        ["user.created"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_match_the_routing_key_header() {
    let any = Binding::new(unique("headers"), "ignored")
        .argument("x-match", "any")
        .argument("routing_key", "created");
    assert_eq!(
        routed(ExchangeType::Headers, any, &["created", "deleted"]).await,
        ["created"]
    );
    // x-match all with a header sinew does not send: nothing matches.
    let all = Binding::new(unique("headers"), "#")
        .argument("x-match", "all")
        .argument("routing_key", "created")
        .argument("region", "eu");
    assert!(routed(ExchangeType::Headers, all, &["created"])
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_to_a_fanout_exchange_from_config() {
    let exchange = unique("relay_fan");
    let (outbox, _file) = sqlite_outbox().await;
    // Bound with a key the events do not carry: only fanout delivers.
    let (conn, ch) = amqp().await;
    ch.exchange_declare(
        ss(&exchange),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let queue = unique("relay_fan_q");
    ch.queue_declare(ss(&queue), Default::default(), FieldTable::default())
        .await
        .unwrap();
    ch.queue_bind(
        ss(&queue),
        ss(&exchange),
        ss("other"),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for n in 0..3 {
        outbox
            .enqueue(&NewEvent::new(&exchange, "update.base", json!({"n": n})))
            .await
            .unwrap();
    }
    let config = RelayConfig {
        exchanges: vec![ExchangeConfig::new(&exchange, ExchangeType::Fanout)],
        ..relay_config()
    };
    let mut relay = Relay::with_outbox(outbox.clone(), config);
    assert_eq!(relay.drain().await.unwrap(), 3);
    let depth = ch
        .queue_declare(
            ss(&queue),
            sinew_events::lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count();
    assert_eq!(depth, 3);
    let _ = conn.close(200, "bye".into()).await;
    delete(&exchange, &[queue]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_that_exists_with_another_type() {
    let exchange = unique("exists_fanout");
    let (conn, ch) = amqp().await;
    ch.exchange_declare(
        ss(&exchange),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let _ = conn.close(200, "bye".into()).await;
    let mismatch = |err: Error| match err {
        Error::Exchange {
            exchange: e,
            reason,
        } => {
            assert_eq!(e, exchange);
            assert!(
                reason.contains("received 'topic' but current is 'fanout'"),
                "{reason}"
            );
            assert!(
                reason.contains("give it its type in `exchanges`"),
                "{reason}"
            );
        }
        other => panic!("expected Error::Exchange, got {other:?}"),
    };

    // A consumer binding it without saying its type (so: topic).
    let config = ConsumerConfig {
        amqp_url: amqp_url(),
        queue: unique("exists_q"),
        durable: false,
        auto_delete: true,
        bindings: vec![Binding::all(&exchange)],
        ..ConsumerConfig::default()
    };
    let queues = vec![config.queue.clone(), config.dead_letter_queue_name()];
    mismatch(
        Consumer::new(config.clone(), Router::new())
            .declare()
            .await
            .unwrap_err(),
    );
    // Told its type, it binds.
    let told = ConsumerConfig {
        exchanges: vec![ExchangeConfig::new(&exchange, ExchangeType::Fanout)],
        ..config.clone()
    };
    Consumer::new(told, Router::new()).declare().await.unwrap();

    // The publisher: the same error, then fine once told (or passive).
    let p = publisher(Vec::new());
    mismatch(
        p.publish_raw(&exchange, "k", b"{}", BasicProperties::default())
            .await
            .unwrap_err(),
    );
    p.close().await;
    for exchanges in [
        vec![ExchangeConfig::new(&exchange, ExchangeType::Fanout)],
        vec![ExchangeConfig::existing(&exchange)],
    ] {
        let p = publisher(exchanges);
        p.publish_raw(&exchange, "k", b"{}", BasicProperties::default())
            .await
            .unwrap();
        p.close().await;
    }

    // The relay: the row stays in the outbox until the config says fanout.
    let (outbox, _file) = sqlite_outbox().await;
    outbox
        .enqueue(&NewEvent::new(&exchange, "k", json!({})))
        .await
        .unwrap();
    let mut relay = Relay::with_outbox(outbox.clone(), relay_config());
    mismatch(relay.drain().await.unwrap_err());
    assert_eq!(outbox.pending().await.unwrap(), 1, "nothing lost");
    let config = RelayConfig {
        exchanges: vec![ExchangeConfig::new(&exchange, ExchangeType::Fanout)],
        ..relay_config()
    };
    let mut relay = Relay::with_outbox(outbox.clone(), config);
    assert_eq!(relay.drain().await.unwrap(), 1);
    // sinew never changed it.
    assert_eq!(broker_type(&exchange).as_deref(), Some("fanout"));

    // Passive and missing: a clear error, and nothing declared.
    let missing = unique("missing");
    let p = publisher(vec![ExchangeConfig::existing(&missing)]);
    match p
        .publish_raw(&missing, "k", b"{}", BasicProperties::default())
        .await
    {
        Err(Error::Exchange { reason, .. }) => {
            assert!(reason.contains("does not exist"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    p.close().await;
    assert_eq!(broker_type(&missing), None);
    delete(&exchange, &queues).await;
}
