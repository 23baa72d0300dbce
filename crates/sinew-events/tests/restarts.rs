//! Real restarts in the middle of relaying 10 000 events: RabbitMQ
//! (`rabbitmqctl stop_app` / `start_app`) and PostgreSQL (`pg_ctlcluster`).
//! None is lost, and a consumer running through the broker restart
//! reconnects and receives every event. In a test binary of its own (cargo
//! runs test binaries one after another), the two tests serialised by a
//! lock, and each service is started again even when a test fails.
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

/// One restart at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let _serial = SERIAL.lock().await;
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
    let _ = tap.conn.close(200, "broker restart ahead".into()).await;

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
            ss(&tap.queue),
            "check".into(),
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
        .queue_delete(ss(&tap.queue), QueueDeleteOptions::default())
        .await;
    let _ = ch.exchange_delete(ss(&aggregate), Default::default()).await;
    let _ = conn.close(200, "bye".into()).await;
    outbox.drop_table().await.unwrap();
}

fn pg_version() -> String {
    std::fs::read_dir("/etc/postgresql")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
        .unwrap()
}

fn pg_ctl(action: &str) -> bool {
    Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &pg_version(), "main", action])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn pg_ready() -> bool {
    Command::new("pg_isready")
        .args(["-q", "-h", "127.0.0.1"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Starts PostgreSQL again on drop (also when the test panics).
struct RestoreDatabase;

impl Drop for RestoreDatabase {
    fn drop(&mut self) {
        if !pg_ready() {
            pg_ctl("start");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pg_ready() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `pending()`, retried while the database comes back.
async fn pending(outbox: &sinew_events::Outbox) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match outbox.pending().await {
            Ok(n) => return n,
            Err(e) => {
                assert!(Instant::now() < deadline, "database did not come back: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_restart_mid_relay_loses_nothing() {
    const N: usize = 10_000;
    let _serial = SERIAL.lock().await;
    let outbox = pg_outbox().await;
    let aggregate = unique("dbrestart");
    let tap = Tap::new(&[(&aggregate, "#")], false).await;
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

    let _restore = RestoreDatabase;
    let config = RelayConfig {
        batch_size: 100,
        listen: true,
        // NOTIFY must come back too: polling alone would take a minute.
        poll_interval: Duration::from_secs(60),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        ..relay_config()
    };
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(Relay::with_outbox(outbox.clone(), config).run(async move {
        let _ = rx.await;
    }));
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
    // Hold the relay inside a query when the server goes down (it relays
    // 10 000 rows in well under a second, faster than pg_ctlcluster stops
    // the server): the lock waits for the batch in flight, then the relay's
    // next claim blocks until the restart cuts its connection.
    use sinew_events::sqlx::{self, AssertSqlSafe};
    let mut blocker = pool.begin().await.unwrap();
    let t = outbox.table();
    sqlx::query(AssertSqlSafe(format!(
        "LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE"
    )))
    .execute(&mut *blocker)
    .await
    .unwrap();
    let left: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {t}")))
        .fetch_one(&mut *blocker)
        .await
        .unwrap();
    assert!(left > 0, "rows are left for after the restart");
    assert!(tokio::task::spawn_blocking(|| pg_ctl("restart"))
        .await
        .unwrap());
    drop(blocker);
    let deadline = Instant::now() + Duration::from_secs(120);
    while pending(&outbox).await > 0 {
        assert!(
            Instant::now() < deadline,
            "relay did not finish after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every event arrived (a batch cut by the restart may come twice).
    let (conn, ch) = amqp().await;
    ch.basic_qos(1000, Default::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            ss(&tap.queue),
            "check".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut ids = HashSet::new();
    while ids.len() < N {
        match tokio::time::timeout(Duration::from_secs(10), consumer.next()).await {
            Ok(Some(Ok(d))) => {
                let v: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
                ids.insert(v["payload"]["n"].as_u64().unwrap());
            }
            other => panic!("{} of {N} events arrived: {other:?}", ids.len()),
        }
    }

    // After the restart the relay still wakes on NOTIFY (LISTEN reconnected).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut tries = 0;
    let id = loop {
        match outbox
            .publish_event(&aggregate, "late", json!({"n": "late"}))
            .await
        {
            Ok(id) => break id,
            Err(e) => {
                tries += 1;
                assert!(tries < 50, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    loop {
        match tokio::time::timeout(Duration::from_secs(20), consumer.next()).await {
            Ok(Some(Ok(d))) => {
                let v: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
                if v["eventId"] == json!(id) {
                    break;
                }
            }
            other => panic!("the late event did not arrive: {other:?}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    stop.send(()).unwrap();
    let stats = relay.await.unwrap().unwrap();
    assert!(stats.errors >= 1, "the relay saw the outage: {stats:?}");
    let _ = conn.close(200, "bye".into()).await;
    tap.cleanup().await;
    outbox.drop_table().await.unwrap();
}
