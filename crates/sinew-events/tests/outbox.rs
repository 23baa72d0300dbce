//! The outbox and the relay against real PostgreSQL, SQLite and RabbitMQ.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::{json, Value};
use sinew_events::wire::{format_timestamp, parse_timestamp};
use sinew_events::{Database, NewCommand, NewEvent, Outbox, Relay, RelayConfig};

fn stopper() -> (
    tokio::sync::oneshot::Sender<()>,
    impl std::future::Future<Output = ()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

/// One committed event, one rolled-back event, one command: exactly the
/// committed ones reach the broker, with the envelope and properties of docs/compatibility.md.
async fn atomicity(outbox: Outbox) {
    let aggregate = unique("user");
    let service = unique("inventory");
    let tap = Tap::new(&[(&aggregate, "#"), (&service, "#")], false).await;

    let rolled_back = NewEvent::new(&aggregate, "update.base", json!({"user_id": 0}));
    let committed = NewEvent::new(
        &aggregate,
        "update.base",
        json!({"user_id": 1, "city_name": "Tashkent", "nested": {"updated_at": "x"}}),
    )
    .correlation_id("corr-42");
    let command = NewCommand::new(&service, json!({"order_id": "ord-1"}))
        .name("reserve")
        .timeout(Duration::from_secs(3600));
    let id = match outbox.database() {
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            outbox.publish(&mut *tx, &rolled_back).await.unwrap();
            tx.rollback().await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            let id = outbox.publish(&mut *tx, &committed).await.unwrap();
            outbox.send_command(&mut *tx, &command).await.unwrap();
            tx.commit().await.unwrap();
            id
        }
        Database::Sqlite(pool) => {
            let mut tx = pool.begin().await.unwrap();
            outbox.publish(&mut *tx, &rolled_back).await.unwrap();
            tx.rollback().await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            let id = outbox.publish(&mut *tx, &committed).await.unwrap();
            outbox.send_command(&mut *tx, &command).await.unwrap();
            tx.commit().await.unwrap();
            id
        }
    };
    assert_eq!(outbox.pending().await.unwrap(), 2);

    let before = SystemTime::now();
    let mut relay = Relay::with_outbox(outbox.clone(), relay_config());
    assert_eq!(relay.drain().await.unwrap(), 2);
    assert_eq!(outbox.pending().await.unwrap(), 0);

    let got = tap
        .take(2, Duration::from_secs(10), Duration::from_millis(300))
        .await;
    let event = got.iter().find(|m| m.exchange == aggregate).unwrap();
    assert_eq!(event.routing_key, "update.base");
    let body = event.json();
    assert_eq!(body["eventId"], json!(id));
    assert_eq!(body["aggregate"], json!(aggregate));
    assert_eq!(body["event_type"], "update.base");
    assert_eq!(
        body["payload"],
        json!({"userId": 1, "cityName": "Tashkent", "nested": {"updatedAt": "x"}})
    );
    let t = body["event_time"].as_str().unwrap();
    assert_eq!(t.len(), "2026-11-23T20:04:25.198Z".len(), "{t}");
    assert!(t.ends_with('Z'));
    assert!(parse_timestamp(t).unwrap() <= before);
    let p = &event.properties;
    assert_eq!(p.content_type().as_ref().unwrap().as_str(), "text/json");
    assert_eq!(*p.delivery_mode(), Some(2));
    assert_eq!(p.app_id().as_ref().unwrap().as_str(), "sinew-test");
    assert_eq!(p.correlation_id().as_ref().unwrap().as_str(), "corr-42");

    let cmd = got.iter().find(|m| m.exchange == service).unwrap();
    assert_eq!(cmd.routing_key, "reserve");
    let body = cmd.json();
    assert_eq!(body["orderId"], "ord-1");
    let expired = body["meta"]["expiredTime"].as_str().unwrap();
    assert_eq!(expired.len(), 24, "{expired}");
    assert!(parse_timestamp(expired).unwrap() > SystemTime::now() + Duration::from_secs(3000));

    tap.cleanup().await;
    outbox.drop_table().await.unwrap();
}

#[tokio::test]
async fn pg_rolled_back_transaction_publishes_nothing() {
    atomicity(pg_outbox().await).await;
}

#[tokio::test]
async fn sqlite_rolled_back_transaction_publishes_nothing() {
    let (outbox, _file) = sqlite_outbox().await;
    atomicity(outbox).await;
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Future events wait for their time; cancellation matches aggregate +
/// event type + a subset of the tags (string values).
async fn future_events(outbox: Outbox) {
    let aggregate = unique("user");
    let tap = Tap::new(&[(&aggregate, "#")], false).await;
    let hour = SystemTime::now() + Duration::from_secs(3600);
    let past = SystemTime::now() - Duration::from_secs(1);
    let remind = |user: i64| {
        NewEvent::new(&aggregate, "remind.photo", json!({"user_id": user}))
            .send_after(hour)
            .tag("user_id", user)
            .tag("any_other_tag", "any_value")
    };
    outbox.enqueue(&remind(1)).await.unwrap();
    outbox.enqueue(&remind(2)).await.unwrap();
    outbox.enqueue(&remind(11)).await.unwrap();
    // Same tags, other event type: not cancelled below.
    outbox
        .enqueue(
            &NewEvent::new(&aggregate, "remind.email", json!({}))
                .send_after(hour)
                .tag("user_id", 1),
        )
        .await
        .unwrap();
    // A boolean tag is stored as its string form ("true"), which is not "1".
    outbox
        .enqueue(
            &NewEvent::new(&aggregate, "remind.photo", json!({}))
                .send_after(hour)
                .tag("user_id", true),
        )
        .await
        .unwrap();
    // Due already (send-after in the past) and a plain event.
    let due = NewEvent::new(&aggregate, "remind.photo", json!({"due": true}))
        .send_after(past)
        .tag("user_id", 3);
    outbox.enqueue(&due).await.unwrap();
    outbox
        .publish_event(&aggregate, "update.base", json!({"plain": 1}))
        .await
        .unwrap();
    assert_eq!(outbox.pending().await.unwrap(), 7);

    // No match: a tag that is not there, a value of another type.
    assert_eq!(
        outbox
            .cancel(
                &aggregate,
                "remind.photo",
                &tags(&[("user_id", "1"), ("missing", "x")])
            )
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        outbox
            .cancel(&aggregate, "remind.photo", &tags(&[("user_id", "True")]))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        outbox
            .cancel(&unique("other"), "remind.photo", &tags(&[("user_id", "1")]))
            .await
            .unwrap(),
        0
    );
    // Subset match: only user 1's photo reminder (not 11, not the email one).
    assert_eq!(
        outbox
            .cancel(&aggregate, "remind.photo", &tags(&[("user_id", "1")]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        outbox
            .cancel(
                &aggregate,
                "remind.photo",
                &tags(&[("any_other_tag", "any_value"), ("user_id", "2")])
            )
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        outbox
            .cancel(&aggregate, "remind.photo", &tags(&[("user_id", "true")]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(outbox.pending().await.unwrap(), 4);

    let mut relay = Relay::with_outbox(outbox.clone(), relay_config());
    assert_eq!(
        relay.drain().await.unwrap(),
        2,
        "only the due future event and the plain one"
    );
    let got = tap
        .take(2, Duration::from_secs(10), Duration::from_millis(300))
        .await;
    let due_msg = got
        .iter()
        .find(|m| m.routing_key == "remind.photo")
        .unwrap()
        .json();
    assert_eq!(due_msg["payload"], json!({"due": true}));
    // A future event's event_time is its send-after time.
    assert_eq!(due_msg["event_time"], json!(format_timestamp(past)));
    assert!(got.iter().any(|m| m.routing_key == "update.base"));
    // user 11's photo reminder and the email reminder still wait.
    assert_eq!(outbox.pending().await.unwrap(), 2);
    assert_eq!(relay.drain().await.unwrap(), 0);
    // An empty tag set cancels every remaining future event of that type.
    assert_eq!(
        outbox
            .cancel(&aggregate, "remind.photo", &BTreeMap::new())
            .await
            .unwrap(),
        1
    );
    assert_eq!(outbox.pending().await.unwrap(), 1);

    tap.cleanup().await;
    outbox.drop_table().await.unwrap();
}

#[tokio::test]
async fn pg_future_events_and_cancellation() {
    future_events(pg_outbox().await).await;
}

#[tokio::test]
async fn sqlite_future_events_and_cancellation() {
    let (outbox, _file) = sqlite_outbox().await;
    future_events(outbox).await;
}

/// With a one-minute poll interval, only NOTIFY can wake the relay in time.
#[tokio::test]
async fn pg_notify_wakes_the_relay() {
    let outbox = pg_outbox().await;
    let aggregate = unique("user");
    let tap = Tap::new(&[(&aggregate, "#")], true).await;
    let (stop, shutdown) = stopper();
    let config = RelayConfig {
        poll_interval: Duration::from_secs(60),
        listen: true,
        ..relay_config()
    };
    let relay = tokio::spawn(Relay::with_outbox(outbox.clone(), config).run(shutdown));
    // A first event, then (once it arrived, so the relay has found the
    // outbox empty and sleeps on its one-minute poll) a second one: only a
    // NOTIFY brings that in time.
    for n in 0..2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        outbox
            .publish_event(&aggregate, "created", json!({ "n": n }))
            .await
            .unwrap();
        let got = tap
            .take(1, Duration::from_secs(10), Duration::from_millis(100))
            .await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(got[0].json()["payload"], json!({ "n": n }));
    }
    stop.send(()).unwrap();
    let stats = relay.await.unwrap().unwrap();
    assert_eq!(stats.published, 2);
    tap.cleanup().await;
    outbox.drop_table().await.unwrap();
}

/// Without LISTEN (or on SQLite) the relay polls.
async fn polling(outbox: Outbox) {
    let aggregate = unique("user");
    let tap = Tap::new(&[(&aggregate, "#")], false).await;
    let (stop, shutdown) = stopper();
    let config = RelayConfig {
        poll_interval: Duration::from_millis(100),
        listen: false,
        ..relay_config()
    };
    let relay = tokio::spawn(Relay::with_outbox(outbox.clone(), config).run(shutdown));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 0..3 {
        outbox
            .publish_event(&aggregate, "created", json!({"n": n}))
            .await
            .unwrap();
    }
    // A future event due shortly: the relay sleeps until it is due.
    outbox
        .enqueue(
            &NewEvent::new(&aggregate, "later", json!({}))
                .send_after(SystemTime::now() + Duration::from_millis(300)),
        )
        .await
        .unwrap();
    let got = tap
        .take(4, Duration::from_secs(10), Duration::from_millis(200))
        .await;
    let ids: Vec<i64> = got
        .iter()
        .map(|m| m.json()["eventId"].as_i64().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "published in id order");
    stop.send(()).unwrap();
    assert_eq!(relay.await.unwrap().unwrap().published, 4);
    tap.cleanup().await;
    outbox.drop_table().await.unwrap();
}

#[tokio::test]
async fn pg_polling_fallback() {
    polling(pg_outbox().await).await;
}

#[tokio::test]
async fn sqlite_polling() {
    let (outbox, _file) = sqlite_outbox().await;
    polling(outbox).await;
}

/// 10 000 rows, two relays at once: every row published exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_two_relays_race_without_duplicates() {
    const N: usize = 10_000;
    let outbox = pg_outbox().await;
    let aggregate = unique("race");
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

    let config = RelayConfig {
        batch_size: 100,
        ..relay_config()
    };
    let (stop_a, shutdown_a) = stopper();
    let (stop_b, shutdown_b) = stopper();
    let a = tokio::spawn(Relay::with_outbox(outbox.clone(), config.clone()).run(shutdown_a));
    let b = tokio::spawn(Relay::with_outbox(outbox.clone(), config).run(shutdown_b));
    let got = tap
        .take(N, Duration::from_secs(120), Duration::from_millis(500))
        .await;
    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert_eq!(a.published + b.published, N as u64);
    assert!(
        a.published > 0 && b.published > 0,
        "both relays worked: {a:?} {b:?}"
    );
    let ids: HashSet<i64> = got
        .iter()
        .map(|m| m.json()["eventId"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), N, "no duplicates");
    let ns: HashSet<u64> = got
        .iter()
        .map(|m| m.json()["payload"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns.len(), N);
    assert_eq!(outbox.pending().await.unwrap(), 0);
    tap.cleanup().await;
    outbox.drop_table().await.unwrap();
}

#[tokio::test]
async fn relay_run_connects_from_config_and_migrates() {
    let table = unique("t_cfg");
    let aggregate = unique("user");
    let tap = Tap::new(&[(&aggregate, "#")], false).await;
    let config = RelayConfig {
        database_url: pg_url(),
        table: table.clone(),
        ..relay_config()
    };
    let (stop, shutdown) = stopper();
    let relay = tokio::spawn(Relay::new(config).run(shutdown));
    // The relay creates the table; write once it exists.
    let outbox = Outbox::connect(&pg_url(), &table).await.unwrap();
    let mut tries = 0;
    while outbox.pending().await.is_err() {
        tries += 1;
        assert!(tries < 100, "relay never created its table");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    outbox
        .publish_event(&aggregate, "created", json!({"ok": true}))
        .await
        .unwrap();
    let got = tap
        .take(1, Duration::from_secs(10), Duration::from_millis(100))
        .await;
    assert_eq!(got[0].json()["payload"], json!({"ok": true}));
    stop.send(()).unwrap();
    relay.await.unwrap().unwrap();
    tap.cleanup().await;
    outbox.drop_table().await.unwrap();
}

#[tokio::test]
async fn bad_configuration_is_a_clear_error() {
    let err = Outbox::connect("mysql://x", "t").await.unwrap_err();
    assert!(err.to_string().contains("postgres://"), "{err}");
    let db = Database::connect(&pg_url()).await.unwrap();
    let err = Outbox::new(db, "t; drop table x").unwrap_err();
    assert!(err.to_string().contains("plain identifier"), "{err}");
    let _: Value = json!(null);
}

#[tokio::test]
async fn sqlite_in_memory_keeps_one_database() {
    let outbox = Outbox::connect("sqlite::memory:", "outbox").await.unwrap();
    outbox.migrate().await.unwrap();
    for n in 0..3 {
        outbox
            .publish_event("a", "b", json!({ "n": n }))
            .await
            .unwrap();
    }
    assert_eq!(outbox.pending().await.unwrap(), 3);
}
