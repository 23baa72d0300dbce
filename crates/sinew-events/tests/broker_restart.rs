//! A real RabbitMQ restart (`rabbitmqctl stop_app` / `start_app`) in the
//! middle of relaying 10 000 events: none is lost, and a consumer running
//! through the restart reconnects and receives every one of them. In a test binary of its
//! own (cargo runs test binaries one after another), and the broker is
//! started again even when the test fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use sinew_events::lapin::options::{BasicConsumeOptions, QueueDeleteOptions};
use sinew_events::lapin::types::FieldTable;
use std::sync::{Arc, Mutex};

use sinew_events::{
    event_handler, Binding, Consumer, ConsumerConfig, Database, NewEvent, Relay, RelayConfig,
    Router,
};

fn rabbitmqctl(args: &[&str]) -> bool {
    Command::new("rabbitmqctl")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn amqp_port_open() -> bool {
    std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5672".parse().unwrap(),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// Starts the RabbitMQ app again on drop (also when the test panics).
struct RestoreBroker;

impl Drop for RestoreBroker {
    fn drop(&mut self) {
        if !amqp_port_open() {
            rabbitmqctl(&["-q", "start_app"]);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !amqp_port_open() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_relay_loses_nothing() {
    const N: usize = 10_000;
    let outbox = pg_outbox().await;
    let aggregate = unique("restart");
    // Durable queue: persistent messages confirmed before the restart survive it.
    let tap = Tap::new(&[(&aggregate, "#")], true).await;
    let Database::Postgres(pool) = outbox.database() else {
        unreachable!()
    };
    let mut tx = pool.begin().await.unwrap();
    for n in 0..N {
        outbox
            .publish(
                &mut *tx,
                &NewEvent::new(&aggregate, "tick", json!({"n": n})),
            )
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let _ = tap.conn.close(200, "broker restart ahead").await;

    // A consumer of its own durable queue, running through the restart.
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let s = Arc::clone(&seen);
    let consumer_config = ConsumerConfig {
        amqp_url: amqp_url(),
        queue: unique("restart_consumer"),
        bindings: vec![Binding::all(&aggregate)],
        prefetch: 200,
        concurrency: 32,
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        ..ConsumerConfig::default()
    };
    let consumer = Consumer::new(
        consumer_config.clone(),
        Router::new().exchange(
            &aggregate,
            event_handler(move |e| {
                let s = Arc::clone(&s);
                async move {
                    s.lock().unwrap().insert(e.payload["n"].as_u64().unwrap());
                    Ok(())
                }
            }),
        ),
    );
    consumer.declare().await.unwrap();
    let (stop_consumer, rx_c) = tokio::sync::oneshot::channel::<()>();
    let consumer = tokio::spawn(consumer.run(async move {
        let _ = rx_c.await;
    }));

    let _restore = RestoreBroker;
    let config = RelayConfig {
        batch_size: 100,
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        confirm_timeout: Duration::from_secs(5),
        ..relay_config()
    };
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(Relay::with_outbox(outbox.clone(), config).run(async move {
        let _ = rx.await;
    }));
    // Restart once some, but not all, rows are out.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = outbox.pending().await.unwrap();
        assert!(left > 0, "relay finished before the restart; make N larger");
        if left < (N as i64) - 1000 {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at_stop = outbox.pending().await.unwrap();
    assert!(
        tokio::task::spawn_blocking(|| rabbitmqctl(&["-q", "stop_app"]))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = outbox.pending().await.unwrap();
    assert!(
        during > 0,
        "rows left while the broker is down ({at_stop} at stop)"
    );
    assert!(
        tokio::task::spawn_blocking(|| rabbitmqctl(&["-q", "start_app"]))
            .await
            .unwrap()
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    while outbox.pending().await.unwrap() > 0 {
        assert!(
            Instant::now() < deadline,
            "relay did not finish after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(()).unwrap();
    let stats = relay.await.unwrap().unwrap();
    assert!(stats.errors >= 1, "the relay saw the outage: {stats:?}");
    assert!(stats.published >= N as u64 - during as u64);

    // The consumer reconnected and saw every event.
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < N {
        assert!(
            Instant::now() < deadline,
            "consumer saw {} of {N} events",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_consumer.send(()).unwrap();
    let consumer_stats = consumer.await.unwrap().unwrap();
    assert!(consumer_stats.handled >= N as u64);
    assert_eq!(consumer_stats.dead_lettered, 0);

    // Every event is in the durable queue (duplicates allowed: at-least-once).
    let (conn, ch) = amqp().await;
    ch.basic_qos(1000, Default::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            &tap.queue,
            "check",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut ids = HashSet::new();
    let mut total = 0usize;
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
    {
        let v: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
        ids.insert(v["payload"]["n"].as_u64().unwrap());
        total += 1;
    }
    assert_eq!(
        ids.len(),
        N,
        "every event arrived ({total} messages in all)"
    );
    let _ = ch
        .queue_delete(&tap.queue, QueueDeleteOptions::default())
        .await;
    let _ = ch.exchange_delete(&aggregate, Default::default()).await;
    let _ = conn.close(200, "bye").await;
    outbox.drop_table().await.unwrap();
}
