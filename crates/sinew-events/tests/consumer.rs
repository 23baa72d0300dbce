//! The consumer against the real RabbitMQ: routing, typed handlers, command
//! expiry, bounded retries, dead-lettering, graceful shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::json;
use sinew_events::lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use sinew_events::lapin::types::FieldTable;
use sinew_events::lapin::Channel;
use sinew_events::wire::{self, format_timestamp};
use sinew_events::{
    command_handler, event_handler, handler_fn, Binding, Consumer, ConsumerConfig, NewCommand,
    Permanent, Publisher, PublisherConfig, Router, HEADER_ATTEMPTS, HEADER_EXCHANGE, HEADER_REASON,
    HEADER_ROUTING_KEY,
};
use tokio::sync::mpsc;

const CAPTURED_EVENT: &str = r#"{"eventId": 10, "payload": {"userId": 1, "cityName": "\u0422\u0430\u0448\u043a\u0435\u043d\u0442", "updatedAt": "2026-11-23T20:04:25.198Z", "middleName": null}, "aggregate": "user", "event_time": "2026-11-23T20:04:25.198Z", "event_type": "update.base"}"#;

fn config(bindings: Vec<Binding>) -> ConsumerConfig {
    let queue = unique("q");
    ConsumerConfig {
        amqp_url: amqp_url(),
        queue,
        durable: false,
        bindings,
        prefetch: 16,
        concurrency: 4,
        max_attempts: 3,
        retry_delay: Duration::from_millis(5),
        max_retry_delay: Duration::from_millis(20),
        ..ConsumerConfig::default()
    }
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    ch.basic_publish(
        ss(exchange),
        ss(key),
        BasicPublishOptions::default(),
        body,
        wire::properties("test", Some("c-1")),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

/// Messages waiting in `queue` (passive declare).
async fn depth(ch: &Channel, queue: &str) -> u32 {
    ch.queue_declare(
        ss(queue),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap()
    .message_count()
}

async fn cleanup(ch: &Channel, config: &ConsumerConfig, exchanges: &[&str]) {
    for q in [config.queue.clone(), config.dead_letter_queue_name()] {
        let _ = ch.queue_delete(ss(&q), QueueDeleteOptions::default()).await;
    }
    for e in exchanges {
        let _ = ch.exchange_delete(ss(e), Default::default()).await;
    }
}

fn stopper() -> (
    tokio::sync::oneshot::Sender<()>,
    impl std::future::Future<Output = ()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

async fn recv_n<T>(rx: &mut mpsc::UnboundedReceiver<T>, n: usize) -> Vec<T> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(v)) => out.push(v),
            _ => panic!("only {} of {n} arrived", out.len()),
        }
    }
    out
}

#[tokio::test]
async fn routing_exact_wildcards_catch_all_default() {
    let (x, y, z) = (unique("x"), unique("y"), unique("z"));
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, String, String)>();
    let record = |name: &'static str| {
        let tx = tx.clone();
        handler_fn(move |m| {
            let tx = tx.clone();
            async move {
                tx.send((name.to_owned(), m.exchange, m.routing_key))
                    .unwrap();
                Ok(())
            }
        })
    };
    let router = Router::new()
        .route(&x, "update.base", record("exact"))
        .route(&x, "update.*", record("star"))
        .route(&x, "#.deleted", record("hash"))
        .exchange(&x, record("x-all"))
        .route(&y, "a.#", record("y-hash"))
        .default_handler(record("default"));
    let cfg = config(vec![
        Binding::all(&x),
        Binding::all(&y),
        Binding::new(&z, "only.this"),
    ]);
    let consumer = Consumer::new(cfg.clone(), router);
    consumer.declare().await.unwrap();
    let (_conn, ch) = amqp().await;
    let sent = [
        (&x, "update.base", "exact"),
        (&x, "update.other", "star"),
        (&x, "user.deleted", "hash"),
        (&x, "deleted", "hash"),
        (&x, "update.base.more", "x-all"),
        (&x, "misc", "x-all"),
        (&y, "a", "y-hash"),
        (&y, "a.b.c", "y-hash"),
        (&y, "b", "default"),
        (&z, "only.this", "default"),
        (&z, "not.bound", ""),
    ];
    for (e, k, _) in &sent {
        publish(&ch, e, k, br#"{"any": "json"}"#).await;
    }
    let (stop, shutdown) = stopper();
    let run = tokio::spawn(consumer.run(shutdown));
    let mut got = recv_n(&mut rx, sent.len() - 1).await;
    got.sort();
    let mut want: Vec<(String, String, String)> = sent
        .iter()
        .filter(|(_, _, r)| !r.is_empty())
        .map(|(e, k, r)| ((*r).to_owned(), (*e).clone(), (*k).to_owned()))
        .collect();
    want.sort();
    assert_eq!(got, want);
    stop.send(()).unwrap();
    let stats = run.await.unwrap().unwrap();
    assert_eq!(stats.handled, 10);
    assert_eq!(stats.dead_lettered, 0);
    assert!(rx.try_recv().is_err(), "the unbound key was not delivered");
    cleanup(&ch, &cfg, &[&x, &y, &z]).await;
}

#[tokio::test]
async fn unrouted_messages_are_acked_not_requeued() {
    let x = unique("x");
    // One at a time, in order: when "known" is handled, "unknown" is done.
    let cfg = ConsumerConfig {
        concurrency: 1,
        ..config(vec![Binding::all(&x)])
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = Consumer::new(
        cfg.clone(),
        Router::new().route(
            &x,
            "known",
            handler_fn(move |_| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(());
                    Ok(())
                }
            }),
        ),
    );
    consumer.declare().await.unwrap();
    let (_conn, ch) = amqp().await;
    publish(&ch, &x, "unknown", b"{}").await;
    publish(&ch, &x, "known", b"{}").await;
    let (stop, shutdown) = stopper();
    let run = tokio::spawn(consumer.run(shutdown));
    recv_n(&mut rx, 1).await;
    stop.send(()).unwrap();
    let stats = run.await.unwrap().unwrap();
    assert_eq!((stats.handled, stats.unrouted), (1, 1));
    assert_eq!(depth(&ch, &cfg.queue).await, 0);
    cleanup(&ch, &cfg, &[&x]).await;
}

#[derive(Debug, serde::Deserialize, PartialEq)]
struct User {
    user_id: i64,
    city_name: String,
    middle_name: Option<String>,
}

#[tokio::test]
async fn typed_event_handler_reads_either_casing() {
    let x = unique("user");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let router = Router::new().exchange(
        &x,
        event_handler(move |e| {
            let tx = tx.clone();
            async move {
                let user: User = e.payload_as()?;
                tx.send((
                    e.event_id,
                    format_timestamp(e.event_time),
                    e.event_type,
                    e.correlation_id,
                    user,
                ))
                .unwrap();
                Ok(())
            }
        }),
    );
    let cfg = config(vec![Binding::all(&x)]);
    let consumer = Consumer::new(cfg.clone(), router);
    consumer.declare().await.unwrap();
    let (_conn, ch) = amqp().await;
    // The captured Django bytes, then the README's camelCase envelope with a
    // snake_case payload and a +00:00 offset.
    publish(&ch, &x, "update.base", CAPTURED_EVENT.as_bytes()).await;
    publish(
        &ch,
        &x,
        "update.base",
        br#"{"eventId": "11", "eventTime": "2026-11-23T20:04:25+00:00", "eventType": "update.base", "aggregate": "user", "payload": {"user_id": 2, "city_name": "Samarkand"}}"#,
    )
    .await;
    let (stop, shutdown) = stopper();
    let run = tokio::spawn(consumer.run(shutdown));
    let mut got = recv_n(&mut rx, 2).await;
    got.sort_by_key(|g| g.0);
    assert_eq!(
        got[0],
        (
            10,
            "2026-11-23T20:04:25.198Z".to_owned(),
            "update.base".to_owned(),
            Some("c-1".to_owned()),
            User {
                user_id: 1,
                city_name: "Ташкент".into(),
                middle_name: None
            }
        )
    );
    assert_eq!(got[1].0, 11);
    assert_eq!(got[1].1, "2026-11-23T20:04:25.000Z");
    assert_eq!(
        got[1].4,
        User {
            user_id: 2,
            city_name: "Samarkand".into(),
            middle_name: None
        }
    );
    stop.send(()).unwrap();
    run.await.unwrap().unwrap();
    cleanup(&ch, &cfg, &[&x]).await;
}

#[tokio::test]
async fn expired_commands_are_acked_and_dropped() {
    let service = unique("inventory");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let router = Router::new().exchange(
        &service,
        command_handler(move |c| {
            let tx = tx.clone();
            async move {
                tx.send((c.name, c.args)).unwrap();
                Ok(())
            }
        }),
    );
    let cfg = config(vec![Binding::all(&service)]);
    let consumer = Consumer::new(cfg.clone(), router);
    consumer.declare().await.unwrap();
    let (_conn, ch) = amqp().await;
    // Expired a second ago (what a slow queue delivers late).
    let past = format_timestamp(SystemTime::now() - Duration::from_secs(1));
    publish(
        &ch,
        &service,
        "reserve",
        format!(r#"{{"orderId": "old", "meta": {{"expiredTime": "{past}"}}}}"#).as_bytes(),
    )
    .await;
    // Sent through the Publisher with a timeout, and one without meta at all.
    let publisher = Publisher::new(PublisherConfig {
        amqp_url: amqp_url(),
        app_id: "test".into(),
        ..PublisherConfig::default()
    });
    publisher
        .send_command(
            &NewCommand::new(&service, json!({"order_id": "fresh"}))
                .name("reserve")
                .timeout(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    publish(&ch, &service, "reserve", br#"{"orderId": "no-meta"}"#).await;
    publisher.close().await;

    let (stop, shutdown) = stopper();
    let run = tokio::spawn(consumer.run(shutdown));
    let got = recv_n(&mut rx, 2).await;
    let ids: Vec<&str> = got
        .iter()
        .map(|(_, a)| a["orderId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["fresh", "no-meta"]);
    let mut waited = 0;
    while depth(&ch, &cfg.queue).await > 0 {
        waited += 1;
        assert!(waited < 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    let stats = run.await.unwrap().unwrap();
    assert_eq!(stats.handled, 3, "the expired one is acked too");
    assert_eq!(stats.dead_lettered, 0);
    assert!(
        rx.try_recv().is_err(),
        "the expired command never reached the handler"
    );
    assert_eq!(depth(&ch, &cfg.dead_letter_queue_name()).await, 0);
    cleanup(&ch, &cfg, &[&service]).await;
}

#[tokio::test]
async fn failing_handler_is_retried_then_dead_lettered() {
    let x = unique("x");
    let calls = Arc::new(Mutex::new(Vec::<(String, u32)>::new()));
    let c = Arc::clone(&calls);
    let router = Router::new().exchange(
        &x,
        handler_fn(move |m| {
            let c = Arc::clone(&c);
            async move {
                c.lock().unwrap().push((m.routing_key.clone(), m.attempt));
                match m.routing_key.as_str() {
                    "always.fails" => Err("database is down".into()),
                    "fails.twice" if m.attempt < 3 => Err("flaky".into()),
                    "permanent" => {
                        Err(Box::new(Permanent::new("unknown order")) as sinew_core::BoxError)
                    }
                    _ => Ok(()),
                }
            }
        }),
    );
    let cfg = config(vec![Binding::all(&x)]);
    let consumer = Consumer::new(cfg.clone(), router);
    consumer.declare().await.unwrap();
    let dlq = Tap {
        conn: amqp().await.0,
        channel: amqp().await.1,
        queue: cfg.dead_letter_queue_name(),
        exchanges: vec![],
    };
    let (_conn, ch) = amqp().await;
    publish(&ch, &x, "always.fails", br#"{"n": 1}"#).await;
    publish(&ch, &x, "fails.twice", br#"{"n": 2}"#).await;
    publish(&ch, &x, "permanent", br#"{"n": 3}"#).await;
    publish(&ch, &x, "malformed", b"{\"n\": 4").await;
    let (stop, shutdown) = stopper();
    let run = tokio::spawn(consumer.run(shutdown));

    let dead = dlq
        .take(3, Duration::from_secs(10), Duration::from_millis(300))
        .await;
    let by_key = |k: &str| {
        dead.iter()
            .find(|m| m.headers()[HEADER_ROUTING_KEY] == k)
            .unwrap()
    };
    let failed = by_key("always.fails");
    assert_eq!(failed.body, br#"{"n": 1}"#);
    assert!(
        failed.headers()[HEADER_REASON].contains("failed 3 times; last error: database is down")
    );
    assert_eq!(failed.headers()[HEADER_EXCHANGE], x);
    assert_eq!(failed.headers()[HEADER_ATTEMPTS], "LongUInt(3)");
    assert_eq!(
        failed
            .properties
            .correlation_id()
            .as_ref()
            .unwrap()
            .as_str(),
        "c-1"
    );
    let permanent = by_key("permanent");
    assert!(permanent.headers()[HEADER_REASON].contains("unknown order"));
    assert_eq!(permanent.headers()[HEADER_ATTEMPTS], "LongUInt(1)");
    let malformed = by_key("malformed");
    assert_eq!(malformed.body, b"{\"n\": 4");
    assert!(
        malformed.headers()[HEADER_REASON].starts_with("malformed JSON: "),
        "{:?}",
        malformed.headers()
    );
    assert_eq!(malformed.headers()[HEADER_ATTEMPTS], "LongUInt(0)");

    stop.send(()).unwrap();
    let stats = run.await.unwrap().unwrap();
    assert_eq!(stats.dead_lettered, 3);
    assert_eq!(stats.handled, 1);
    assert_eq!(stats.retries, 4, "2 for always.fails, 2 for fails.twice");
    let mut calls = calls.lock().unwrap().clone();
    calls.sort();
    assert_eq!(
        calls,
        [
            ("always.fails".to_owned(), 1),
            ("always.fails".to_owned(), 2),
            ("always.fails".to_owned(), 3),
            ("fails.twice".to_owned(), 1),
            ("fails.twice".to_owned(), 2),
            ("fails.twice".to_owned(), 3),
            ("permanent".to_owned(), 1),
        ]
    );
    assert_eq!(depth(&ch, &cfg.queue).await, 0, "nothing requeued");
    cleanup(&ch, &cfg, &[&x]).await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_messages() {
    let x = unique("x");
    let started = Arc::new(tokio::sync::Notify::new());
    let finished = Arc::new(AtomicU32::new(0));
    let (s, f) = (Arc::clone(&started), Arc::clone(&finished));
    let router = Router::new().exchange(
        &x,
        handler_fn(move |_| {
            let (s, f) = (Arc::clone(&s), Arc::clone(&f));
            async move {
                s.notify_one();
                tokio::time::sleep(Duration::from_millis(300)).await;
                f.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }),
    );
    let mut cfg = config(vec![Binding::all(&x)]);
    cfg.prefetch = 4;
    cfg.concurrency = 4;
    let consumer = Consumer::new(cfg.clone(), router);
    consumer.declare().await.unwrap();
    let (_conn, ch) = amqp().await;
    for _ in 0..4 {
        publish(&ch, &x, "k", b"{}").await;
    }
    let (stop, shutdown) = stopper();
    let run = tokio::spawn(consumer.run(shutdown));
    started.notified().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(()).unwrap();
    let stats = run.await.unwrap().unwrap();
    assert_eq!(
        finished.load(Ordering::SeqCst),
        4,
        "in-flight handlers finished before run returned"
    );
    assert_eq!(stats.handled, 4);
    assert_eq!(depth(&ch, &cfg.queue).await, 0, "all acked");
    cleanup(&ch, &cfg, &[&x]).await;
}

#[tokio::test]
async fn graceful_shutdown_gives_back_what_it_has_not_started() {
    let x = unique("x");
    let started = Arc::new(tokio::sync::Notify::new());
    let s = Arc::clone(&started);
    let router = Router::new().exchange(
        &x,
        handler_fn(move |_| {
            let s = Arc::clone(&s);
            async move {
                s.notify_one();
                tokio::time::sleep(Duration::from_millis(1500)).await;
                Ok(())
            }
        }),
    );
    // One handler at a time, ten messages sent ahead: nine wait in the
    // consumer when it is told to stop.
    let mut cfg = config(vec![Binding::all(&x)]);
    cfg.prefetch = 10;
    cfg.concurrency = 1;
    let consumer = Consumer::new(cfg.clone(), router);
    consumer.declare().await.unwrap();
    let (_conn, ch) = amqp().await;
    for _ in 0..10 {
        publish(&ch, &x, "k", b"{}").await;
    }
    let (stop, shutdown) = stopper();
    let run = tokio::spawn(consumer.run(shutdown));
    started.notified().await;
    // Let the broker push the rest ahead (prefetch) before stopping.
    let mut waited = 0;
    while depth(&ch, &cfg.queue).await > 0 {
        waited += 1;
        assert!(waited < 100);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    // They are given back at once, while the started one still runs (not
    // only when the connection closes after it).
    let mut waited = 0;
    while depth(&ch, &cfg.queue).await < 9 {
        waited += 1;
        assert!(waited < 50, "not given back within 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!run.is_finished(), "the started handler is still running");
    let stats = run.await.unwrap().unwrap();
    assert_eq!(stats.handled, 1, "only the started one is handled");
    assert_eq!(stats.dead_lettered, 0);
    // The other nine are back in the queue, none lost, none acked unhandled.
    assert_eq!(depth(&ch, &cfg.queue).await, 9);
    cleanup(&ch, &cfg, &[&x]).await;
}
