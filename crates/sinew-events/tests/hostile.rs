//! Hostile input against the consumer and the real RabbitMQ: huge bodies,
//! deep JSON nesting, invalid UTF-8, wrong types, peer values that would
//! bloat the reason. Every bad message is dead-lettered (body unchanged,
//! with a short reason), none is lost or requeued, and nothing panics.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use common::*;
use sinew_events::lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use sinew_events::lapin::types::FieldTable;
use sinew_events::lapin::Channel;
use sinew_events::wire;
use sinew_events::{
    command_handler, event_handler, Binding, Consumer, ConsumerConfig, Router,
    DEFAULT_MAX_BODY_BYTES, HEADER_ATTEMPTS, HEADER_REASON, HEADER_ROUTING_KEY,
};

/// Panics anywhere in this test binary (the consumer's tasks included).
static PANICS: AtomicU32 = AtomicU32::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn config(bindings: Vec<Binding>) -> ConsumerConfig {
    ConsumerConfig {
        amqp_url: amqp_url(),
        queue: unique("hostile"),
        durable: false,
        bindings,
        prefetch: 8,
        concurrency: 4,
        max_attempts: 2,
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
        wire::properties("attacker", None),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

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

fn stopper() -> (
    tokio::sync::oneshot::Sender<()>,
    impl std::future::Future<Output = ()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

fn nested(depth: usize) -> Vec<u8> {
    let mut body = vec![b'['; depth];
    body.extend(std::iter::repeat_n(b']', depth));
    body
}

const GOOD_EVENT: &[u8] = br#"{"eventId": 1, "event_time": "2026-11-23T20:04:25.198Z", "aggregate": "user", "event_type": "ok", "payload": {"userId": 1}}"#;

#[tokio::test]
async fn every_hostile_message_is_dead_lettered_with_a_reason() {
    count_panics();
    let x = unique("x");
    let cmd = unique("cmd");
    let handled = Arc::new(AtomicU32::new(0));
    let (h1, h2) = (Arc::clone(&handled), Arc::clone(&handled));
    let router = Router::new()
        .exchange(
            &x,
            event_handler(move |_event| {
                let h = Arc::clone(&h1);
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }),
        )
        .exchange(
            &cmd,
            command_handler(move |_cmd| {
                let h = Arc::clone(&h2);
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }),
        );
    let cfg = config(vec![Binding::all(&x), Binding::all(&cmd)]);
    let consumer = Consumer::new(cfg.clone(), router);
    consumer.declare().await.unwrap();
    let dlq = Tap {
        conn: amqp().await.0,
        channel: amqp().await.1,
        queue: cfg.dead_letter_queue_name(),
        exchanges: vec![],
    };

    // (routing key, exchange, body, what the reason must say)
    let huge_timestamp = format!(
        r#"{{"eventId": 2, "event_time": "{}", "aggregate": "user", "event_type": "t"}}"#,
        "9".repeat(200_000)
    );
    let huge_id = format!(
        r#"{{"eventId": "{}", "event_time": "2026-11-23T20:04:25Z", "aggregate": "user", "event_type": "t"}}"#,
        "\\u001b[2J".repeat(50_000)
    );
    let huge_id_object = format!(
        r#"{{"eventId": {{"k": "{}"}}, "event_time": "2026-11-23T20:04:25Z", "aggregate": "user", "event_type": "t"}}"#,
        "v".repeat(300_000)
    );
    let mut over_default = br#"{"pad": ""#.to_vec();
    over_default.resize(DEFAULT_MAX_BODY_BYTES - 1, b'p');
    over_default.extend_from_slice(b"\"}");
    assert_eq!(over_default.len(), DEFAULT_MAX_BODY_BYTES + 1);
    let nines = format!(r#"invalid timestamp "{}"… (200000 bytes)"#, "9".repeat(32));
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "too.large",
            &x,
            over_default,
            "body of 1048577 bytes exceeds max_body_bytes (1048576)",
        ),
        (
            "deep.nesting",
            &x,
            nested(200_000),
            "malformed JSON: recursion limit exceeded",
        ),
        (
            "deep.object",
            &x,
            format!("{}{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000)).into_bytes(),
            "malformed JSON: recursion limit exceeded",
        ),
        (
            "invalid.utf8",
            &x,
            b"{\"eventId\": 1, \"aggregate\": \"\xff\xfe\xc0\x80\"}".to_vec(),
            "malformed JSON: ",
        ),
        ("empty", &x, Vec::new(), "malformed JSON: "),
        ("nul.bytes", &x, b"\0\0\0{}".to_vec(), "malformed JSON: "),
        (
            "not.object",
            &x,
            b"[1, 2, 3]".to_vec(),
            "message body is not a JSON object",
        ),
        ("string", &x, br#""just a string""#.to_vec(), "not a JSON object"),
        (
            "id.float",
            &x,
            br#"{"eventId": 1.5, "event_time": "2026-11-23T20:04:25Z", "aggregate": "a", "event_type": "b"}"#.to_vec(),
            r#"key "eventId" has an invalid value: 1.5 is not an integer"#,
        ),
        (
            "id.huge.string",
            &x,
            huge_id.into_bytes(),
            r#"key "eventId" has an invalid value: "\u{1b}[2J"#,
        ),
        (
            "id.huge.object",
            &x,
            huge_id_object.into_bytes(),
            r#"key "eventId" has an invalid value: unexpected an object"#,
        ),
        (
            "time.number",
            &x,
            br#"{"eventId": 1, "event_time": 5, "aggregate": "a", "event_type": "b"}"#.to_vec(),
            r#"key "event_time" has an invalid value: not a string"#,
        ),
        (
            "time.huge",
            &x,
            huge_timestamp.into_bytes(),
            &nines,
        ),
        (
            "aggregate.array",
            &x,
            br#"{"eventId": 1, "event_time": "2026-11-23T20:04:25Z", "aggregate": [], "event_type": "b"}"#.to_vec(),
            r#"key "aggregate" has an invalid value: not a string"#,
        ),
        (
            "meta.string",
            &cmd,
            br#"{"orderId": 1, "meta": "soon"}"#.to_vec(),
            r#"key "meta" has an invalid value: not an object"#,
        ),
        (
            "expiry.huge",
            &cmd,
            format!(r#"{{"meta": {{"expiredTime": "{}"}}}}"#, "\\n".repeat(100_000)).into_bytes(),
            r#"invalid timestamp "\n\n\n"#,
        ),
    ];
    let (_conn, ch) = amqp().await;
    for (key, exchange, body, _) in &cases {
        publish(&ch, exchange, key, body).await;
    }
    // Valid messages between the hostile ones are still handled.
    publish(&ch, &x, "good.event", GOOD_EVENT).await;
    publish(&ch, &cmd, "good.command", br#"{"orderId": 7, "meta": {}}"#).await;

    let (stop, shutdown) = stopper();
    let run = tokio::spawn(consumer.run(shutdown));
    let dead = dlq
        .take(
            cases.len(),
            Duration::from_secs(30),
            Duration::from_millis(500),
        )
        .await;
    let by_key: HashMap<String, &Received> = dead
        .iter()
        .map(|m| (m.headers()[HEADER_ROUTING_KEY].clone(), m))
        .collect();
    assert_eq!(by_key.len(), cases.len(), "each dead-lettered once");
    for (key, _, body, want) in &cases {
        let m = by_key
            .get(*key)
            .unwrap_or_else(|| panic!("{key} was not dead-lettered"));
        assert!(m.body == *body, "{key}: the body changed");
        let reason = &m.headers()[HEADER_REASON];
        assert!(reason.contains(want), "{key}: {reason:?} lacks {want:?}");
        assert!(
            reason.len() <= 1024,
            "{key}: reason of {} bytes",
            reason.len()
        );
        let attempts = &m.headers()[HEADER_ATTEMPTS];
        assert!(
            attempts == "LongUInt(0)" || attempts == "LongUInt(1)",
            "{key}: retried ({attempts}); bad input is dead-lettered at once"
        );
    }
    assert_eq!(
        by_key["too.large"].headers()[HEADER_ATTEMPTS],
        "LongUInt(0)",
        "dead-lettered before parsing"
    );

    stop.send(()).unwrap();
    let stats = run.await.unwrap().unwrap();
    assert_eq!(stats.dead_lettered, cases.len() as u64);
    assert_eq!(stats.handled, 2);
    assert_eq!(stats.retries, 0);
    assert_eq!(handled.load(Ordering::SeqCst), 2);
    assert_eq!(depth(&ch, &cfg.queue).await, 0, "nothing requeued or left");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "something panicked");
    for q in [cfg.queue.clone(), cfg.dead_letter_queue_name()] {
        let _ = ch.queue_delete(ss(&q), QueueDeleteOptions::default()).await;
    }
    for e in [&x, &cmd] {
        let _ = ch.exchange_delete(ss(e), Default::default()).await;
    }
}

#[tokio::test]
async fn max_body_bytes_is_configurable_and_checked_before_parsing() {
    count_panics();
    let x = unique("x");
    let handled = Arc::new(AtomicU32::new(0));
    let h = Arc::clone(&handled);
    let router = Router::new().exchange(
        &x,
        event_handler(move |_event| {
            let h = Arc::clone(&h);
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }),
    );
    let limit = GOOD_EVENT.len();
    let cfg = ConsumerConfig {
        max_body_bytes: limit,
        ..config(vec![Binding::all(&x)])
    };
    let consumer = Consumer::new(cfg.clone(), router);
    consumer.declare().await.unwrap();
    let dlq = Tap {
        conn: amqp().await.0,
        channel: amqp().await.1,
        queue: cfg.dead_letter_queue_name(),
        exchanges: vec![],
    };
    let (_conn, ch) = amqp().await;
    // Exactly at the limit: handled. One byte over (trailing space, still
    // valid JSON): dead-lettered. Far over and not even JSON: the same
    // reason, so the size is checked before the body is parsed.
    publish(&ch, &x, "at.limit", GOOD_EVENT).await;
    let mut over = GOOD_EVENT.to_vec();
    over.push(b' ');
    publish(&ch, &x, "over.limit", &over).await;
    publish(&ch, &x, "garbage", &nested(limit * 100)).await;

    let (stop, shutdown) = stopper();
    let run = tokio::spawn(consumer.run(shutdown));
    let dead = dlq
        .take(2, Duration::from_secs(10), Duration::from_millis(300))
        .await;
    let reason = |key: &str| {
        dead.iter()
            .find(|m| m.headers()[HEADER_ROUTING_KEY] == key)
            .map(|m| m.headers()[HEADER_REASON].clone())
            .unwrap()
    };
    assert_eq!(
        reason("over.limit"),
        format!(
            "body of {} bytes exceeds max_body_bytes ({limit})",
            limit + 1
        )
    );
    assert_eq!(
        reason("garbage"),
        format!(
            "body of {} bytes exceeds max_body_bytes ({limit})",
            limit * 200
        )
    );
    stop.send(()).unwrap();
    let stats = run.await.unwrap().unwrap();
    assert_eq!((stats.handled, stats.dead_lettered), (1, 2));
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    assert_eq!(depth(&ch, &cfg.queue).await, 0);
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "something panicked");
    for q in [cfg.queue.clone(), cfg.dead_letter_queue_name()] {
        let _ = ch.queue_delete(ss(&q), QueueDeleteOptions::default()).await;
    }
    let _ = ch.exchange_delete(ss(&x), Default::default()).await;
}

#[cfg(feature = "serde")]
#[test]
fn max_body_bytes_is_a_config_key() {
    let cfg: ConsumerConfig = toml::from_str("queue = \"q\"\nmax_body_bytes = 4096\n").unwrap();
    assert_eq!(cfg.max_body_bytes, 4096);
    let cfg: ConsumerConfig = toml::from_str("queue = \"q\"\n").unwrap();
    assert_eq!(cfg.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
}
