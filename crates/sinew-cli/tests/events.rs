#![allow(clippy::unwrap_used)]
//! `sinew relay` and `sinew consume` against the real RabbitMQ on 127.0.0.1
//! (scripts/test.sh starts it when it is down) and SQLite.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use futures_util::StreamExt;
use serde_json::json;
use sinew_events::lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use sinew_events::lapin::types::FieldTable;
use sinew_events::lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use sinew_events::{Database, NewEvent, Outbox, Relay, RelayConfig, DEFAULT_AMQP_URL};

#[tokio::test(flavor = "multi_thread")]
async fn relay_publishes_the_outbox_and_stops_on_sigint() {
    let dir = std::env::temp_dir().join(format!("sinew-cli-relay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite:{}", dir.join("outbox.db").display());
    let db = Database::connect(&url).await.unwrap();
    let table = "cli_outbox";
    let outbox = Outbox::new(db.clone(), table).unwrap();
    outbox.migrate().await.unwrap();
    let exchange = format!("sinew-cli-test-{}", std::process::id());
    for i in 0..5 {
        outbox
            .publish_event(&exchange, "created", json!({"item_id": i}))
            .await
            .unwrap();
    }
    assert_eq!(outbox.pending().await.unwrap(), 5);

    let mut child = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args([
            "relay",
            "--database-url",
            &url,
            "--table",
            table,
            "--app-id",
            "cli-test",
            "--poll-interval",
            "100ms",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while outbox.pending().await.unwrap() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the relay published nothing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || {
        let _ = &mut child;
        child.wait_with_output()
    })
    .await
    .unwrap()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("published 5"), "{err}");
    outbox.drop_table().await.unwrap();
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn consume_with_a_bad_config_is_a_usage_error() {
    let dir = std::env::temp_dir().join(format!("sinew-cli-consume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("consumer.toml");
    std::fs::write(&cfg, "queue = \"q\"\nprefetchh = 10\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(["consume", "--config", &cfg.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("prefetchh"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A durable queue bound to `exchange` (every key) on the local broker.
async fn tap(exchange: &str, queue: &str) -> (Connection, Channel) {
    let conn = Connection::connect(DEFAULT_AMQP_URL, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        exchange.into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    (conn, ch)
}

/// Every message in `queue`, as eventId -> how many times it came.
async fn drain_queue(ch: &Channel, queue: &str) -> HashMap<i64, u32> {
    ch.basic_qos(1000, Default::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "count".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut seen = HashMap::new();
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
    {
        let v: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
        *seen.entry(v["eventId"].as_i64().unwrap()).or_insert(0) += 1;
    }
    seen
}

/// SIGTERM while `sinew relay` is moving 5 000 rows in batches of 50: it
/// finishes the batch in flight and exits 0; every row is either published
/// (once) and gone from the outbox or still in it, and a second relay
/// publishes the rest: each row exactly once in all.
#[tokio::test(flavor = "multi_thread")]
async fn relay_stops_on_sigterm_mid_relay_and_loses_nothing() {
    const N: i64 = 5_000;
    let dir = std::env::temp_dir().join(format!("sinew-cli-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite:{}", dir.join("outbox.db").display());
    let db = Database::connect(&url).await.unwrap();
    let table = "cli_sigterm_outbox";
    let outbox = Outbox::new(db.clone(), table).unwrap();
    outbox.migrate().await.unwrap();
    let exchange = format!("sinew-cli-sigterm-{}", std::process::id());
    let queue = format!("{exchange}-tap");
    let (conn, ch) = tap(&exchange, &queue).await;
    let Database::Sqlite(pool) = &db else {
        unreachable!()
    };
    let mut tx = pool.begin().await.unwrap();
    for n in 0..N {
        outbox
            .publish(&mut *tx, &NewEvent::new(&exchange, "tick", json!({"n": n})))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args([
            "relay",
            "--database-url",
            &url,
            "--table",
            table,
            "--batch-size",
            "50",
            "--poll-interval",
            "100ms",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Some rows out, most still to go.
    let started = Instant::now();
    loop {
        let left = outbox.pending().await.unwrap();
        assert!(
            left > 0,
            "the relay finished before the signal; make N larger"
        );
        if left < N - 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the relay published nothing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let _ = &mut child;
        child.wait_with_output()
    })
    .await
    .unwrap()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(signalled.elapsed() < Duration::from_secs(10), "{err}");
    assert!(err.contains("SIGTERM"), "{err}");
    let published: i64 = err
        .split("published ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {err:?}"));

    // What it published is exactly what left the outbox: no batch cut.
    let left = outbox.pending().await.unwrap();
    assert!(left > 0, "the signal came after the last batch");
    assert_eq!(published, N - left, "{err}");
    let first = drain_queue(&ch, &queue).await;
    assert_eq!(first.len() as i64, published);
    assert!(first.values().all(|&c| c == 1), "a row published twice");

    // The rest, by another relay: each row exactly once in all.
    let mut relay = Relay::with_outbox(outbox.clone(), RelayConfig::default());
    assert_eq!(relay.drain().await.unwrap() as i64, left);
    let second = drain_queue(&ch, &queue).await;
    assert!(second.keys().all(|id| !first.contains_key(id)));
    assert_eq!((first.len() + second.len()) as i64, N);
    assert!(second.values().all(|&c| c == 1));

    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = ch
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await;
    let _ = conn.close(200, "bye".into()).await;
    outbox.drop_table().await.unwrap();
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGTERM stops `sinew consume` too: it exits 0 after acking what it
/// printed, and leaves nothing unacked behind.
#[tokio::test(flavor = "multi_thread")]
async fn consume_stops_on_sigterm() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("sinew-cli-consume-term-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exchange = format!("sinew-cli-consume-term-{}", std::process::id());
    let queue = format!("{exchange}-q");
    let cfg = dir.join("consumer.toml");
    std::fs::write(
        &cfg,
        format!("queue = \"{queue}\"\n[[bindings]]\nexchange = \"{exchange}\"\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(["consume", "--config", &cfg.display().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    // The consumer declares its queue; publish once it exists.
    let (conn, ch) = tap(&exchange, &queue).await;
    for n in 0..3 {
        ch.basic_publish(
            exchange.as_str().into(),
            "created".into(),
            Default::default(),
            json!({"n": n}).to_string().as_bytes(),
            Default::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    for _ in 0..3 {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.recv())
            .await
            .expect("a line within 20 s")
            .expect("stdout open");
        assert!(line.contains("\"routing_key\":\"created\""), "{line}");
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = Instant::now();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(signalled.elapsed() < Duration::from_secs(10), "{err}");
    // Everything printed was acked: nothing waits in the queue.
    let depth = ch
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count();
    assert_eq!(depth, 0);
    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = ch
        .queue_delete(
            format!("{queue}.dead-letter").as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await;
    let _ = ch
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await;
    let _ = conn.close(200, "bye".into()).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `sinew relay --config`: the relay's TOML with TLS to the broker
/// (scripts/tls-services.sh's amqps listener and test CA) and a fanout
/// exchange; flags and --config do not mix.
#[tokio::test(flavor = "multi_thread")]
async fn relay_from_a_config_file_over_amqps_to_a_fanout_exchange() {
    let certs =
        std::env::var("SINEW_TEST_TLS_DIR").unwrap_or_else(|_| "/var/lib/sinew-test-tls".into());
    let ca = std::path::Path::new(&certs).join("ca.pem");
    assert!(
        ca.is_file(),
        "run scripts/tls-services.sh (scripts/setup.sh does)"
    );
    let dir = std::env::temp_dir().join(format!("sinew-cli-relay-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite:{}", dir.join("outbox.db").display());
    let db = Database::connect(&url).await.unwrap();
    let table = "cli_config_outbox";
    let outbox = Outbox::new(db.clone(), table).unwrap();
    outbox.migrate().await.unwrap();
    let exchange = format!("sinew-cli-fanout-{}", std::process::id());
    // A queue bound with a key the events do not carry: only fanout routes.
    let conn = Connection::connect(DEFAULT_AMQP_URL, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        exchange.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let queue = format!("{exchange}-q");
    ch.queue_declare(
        queue.as_str().into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "no.such.key".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for i in 0..3 {
        outbox
            .publish_event(&exchange, "created", json!({"item_id": i}))
            .await
            .unwrap();
    }
    let cfg = dir.join("relay.toml");
    std::fs::write(
        &cfg,
        format!(
            "database_url = {url:?}\ntable = {table:?}\npoll_interval = \"100ms\"\n\
             amqp_url = \"amqps://guest:guest@localhost:5671/%2f\"\n\
             exchanges = [{{ name = {exchange:?}, type = \"fanout\" }}]\n\
             [amqp_tls]\nca_file = {ca:?}\n"
        ),
    )
    .unwrap();
    let cfg_arg = cfg.display().to_string();

    let out = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(["relay", "--config", &cfg_arg, "--table", "other"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(["relay", "--config", &cfg_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while outbox.pending().await.unwrap() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the relay published nothing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let _ = &mut child;
        child.wait_with_output()
    })
    .await
    .unwrap()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("published 3"), "{err}");
    let depth = ch
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count();
    assert_eq!(depth, 3);
    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = ch
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await;
    let _ = conn.close(200, "bye".into()).await;
    outbox.drop_table().await.unwrap();
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
