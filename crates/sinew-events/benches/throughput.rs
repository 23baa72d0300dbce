//! Relay throughput (events/s from commit to broker confirm) and consumer
//! throughput (messages/s to a no-op handler), each against a raw-lapin
//! baseline measured in the same run. Needs RabbitMQ and PostgreSQL on
//! 127.0.0.1 (scripts/services.sh).
//!
//! `cargo bench -p sinew-events --bench throughput -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::StreamExt;
use sinew_events::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use sinew_events::lapin::types::{FieldTable, ShortString};
use sinew_events::lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use sinew_events::{
    handler_fn, wire, Binding, Consumer, ConsumerConfig, Database, NewEvent, Outbox, Relay,
    RelayConfig, Router, DEFAULT_AMQP_URL,
};

fn ss(s: &str) -> ShortString {
    ShortString::from(s)
}

const N: usize = 5_000;
const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn unique(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

async fn channel() -> (Connection, Channel) {
    let props = ConnectionProperties::default();
    let conn = Connection::connect(DEFAULT_AMQP_URL, props).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

/// A durable topic exchange with a queue bound to it (so messages are
/// really routed and stored), both deleted at the end.
async fn sink(ch: &Channel) -> (String, String) {
    let exchange = unique("bench_x");
    let queue = unique("bench_q");
    ch.exchange_declare(
        ss(&exchange),
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
        ss(&queue),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        ss(&queue),
        ss(&exchange),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    (exchange, queue)
}

async fn drop_sink(ch: &Channel, exchange: &str, queue: &str) {
    let _ = ch
        .queue_delete(ss(queue), QueueDeleteOptions::default())
        .await;
    let _ = ch
        .exchange_delete(ss(exchange), ExchangeDeleteOptions::default())
        .await;
}

fn payload(n: usize) -> serde_json::Value {
    serde_json::json!({"user_id": n, "city_name": "Tashkent", "updated_at": "2026-11-23T20:04:25.198Z"})
}

async fn fill_outbox(outbox: &Outbox, exchange: &str) {
    match outbox.database() {
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            for n in 0..N {
                outbox
                    .publish(
                        &mut *tx,
                        &NewEvent::new(exchange, "update.base", payload(n)),
                    )
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }
        Database::Sqlite(pool) => {
            let mut tx = pool.begin().await.unwrap();
            for n in 0..N {
                outbox
                    .publish(
                        &mut *tx,
                        &NewEvent::new(exchange, "update.base", payload(n)),
                    )
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }
    }
}

async fn relay_run(
    outbox: &Outbox,
    exchange: &str,
    ch: &Channel,
    queue: &str,
    iters: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    let config = RelayConfig {
        batch_size: 500,
        ..RelayConfig::default()
    };
    let mut relay = Relay::with_outbox(outbox.clone(), config);
    for _ in 0..iters {
        fill_outbox(outbox, exchange).await;
        let start = Instant::now();
        let n = relay.drain().await.unwrap();
        total += start.elapsed();
        assert_eq!(n, N as u64);
        ch.queue_purge(ss(queue), QueuePurgeOptions::default())
            .await
            .unwrap();
    }
    total
}

fn relay(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (conn, ch, exchange, queue, pg, lite, path) = rt.block_on(async {
        let (conn, ch) = channel().await;
        let (exchange, queue) = sink(&ch).await;
        let pg = Outbox::connect(PG_URL, &unique("bench_outbox"))
            .await
            .unwrap();
        pg.migrate().await.unwrap();
        let path = std::env::temp_dir().join(format!("{}.db", unique("sinew_bench")));
        let lite = Outbox::connect(&format!("sqlite:{}", path.display()), "outbox")
            .await
            .unwrap();
        lite.migrate().await.unwrap();
        (conn, ch, exchange, queue, pg, lite, path)
    });
    let mut group = c.benchmark_group("relay");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("baseline_lapin_publish_confirm", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (ch, exchange, queue) = (ch.clone(), exchange.clone(), queue.clone());
            async move {
                let (c2, pch) = channel().await;
                pch.confirm_select(ConfirmSelectOptions::default())
                    .await
                    .unwrap();
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let bodies: Vec<Vec<u8>> = (0..N)
                        .map(|n| {
                            wire::EventEnvelope {
                                event_id: n as i64,
                                event_time: std::time::SystemTime::now(),
                                aggregate: exchange.clone(),
                                event_type: "update.base".into(),
                                payload: payload(n),
                            }
                            .to_body()
                        })
                        .collect();
                    let start = Instant::now();
                    let mut confirms = Vec::with_capacity(N);
                    for body in &bodies {
                        confirms.push(
                            pch.basic_publish(
                                ss(&exchange),
                                "update.base".into(),
                                BasicPublishOptions::default(),
                                body,
                                wire::properties("bench", None),
                            )
                            .await
                            .unwrap(),
                        );
                    }
                    for c in confirms {
                        assert!(c.await.unwrap().is_ack());
                    }
                    total += start.elapsed();
                    ch.queue_purge(ss(&queue), QueuePurgeOptions::default())
                        .await
                        .unwrap();
                }
                let _ = c2.close(200, "bye".into()).await;
                total
            }
        })
    });
    group.bench_function("sinew_relay_postgres", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (o, exchange, ch, queue) =
                (pg.clone(), exchange.clone(), ch.clone(), queue.clone());
            async move { relay_run(&o, &exchange, &ch, &queue, iters).await }
        })
    });
    group.bench_function("sinew_relay_sqlite", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (o, exchange, ch, queue) =
                (lite.clone(), exchange.clone(), ch.clone(), queue.clone());
            async move { relay_run(&o, &exchange, &ch, &queue, iters).await }
        })
    });
    group.finish();
    rt.block_on(async {
        pg.drop_table().await.unwrap();
        drop_sink(&ch, &exchange, &queue).await;
        let _ = conn.close(200, "bye".into()).await;
    });
    let _ = std::fs::remove_file(&path);
}

/// Put N event messages in a fresh queue.
async fn fill_queue(ch: &Channel, exchange: &str) {
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .ok();
    let mut confirms = Vec::with_capacity(N);
    for n in 0..N {
        let body = wire::EventEnvelope {
            event_id: n as i64,
            event_time: std::time::SystemTime::now(),
            aggregate: exchange.to_owned(),
            event_type: "update.base".into(),
            payload: payload(n),
        }
        .to_body();
        confirms.push(
            ch.basic_publish(
                ss(exchange),
                "update.base".into(),
                BasicPublishOptions::default(),
                &body,
                wire::properties("bench", None),
            )
            .await
            .unwrap(),
        );
    }
    for c in confirms {
        c.await.unwrap();
    }
}

fn consumer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (conn, ch, exchange, queue) = rt.block_on(async {
        let (conn, ch) = channel().await;
        let (exchange, queue) = sink(&ch).await;
        (conn, ch, exchange, queue)
    });
    let prefetch = 500u16;
    let mut group = c.benchmark_group("consumer");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("baseline_lapin_consume_ack", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (ch, exchange, queue) = (ch.clone(), exchange.clone(), queue.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    fill_queue(&ch, &exchange).await;
                    let (c2, cch) = channel().await;
                    cch.basic_qos(prefetch, Default::default()).await.unwrap();
                    let start = Instant::now();
                    let mut stream = cch
                        .basic_consume(
                            ss(&queue),
                            ss(&unique("raw")),
                            BasicConsumeOptions::default(),
                            FieldTable::default(),
                        )
                        .await
                        .unwrap();
                    for _ in 0..N {
                        let d = stream.next().await.unwrap().unwrap();
                        let _: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
                        d.acker.ack(BasicAckOptions::default()).await.unwrap();
                    }
                    total += start.elapsed();
                    let _ = c2.close(200, "bye".into()).await;
                }
                total
            }
        })
    });
    group.bench_function("baseline_lapin_consume_ack_pipelined", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (ch, exchange, queue) = (ch.clone(), exchange.clone(), queue.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    fill_queue(&ch, &exchange).await;
                    let (c2, cch) = channel().await;
                    cch.basic_qos(prefetch, Default::default()).await.unwrap();
                    let start = Instant::now();
                    let mut stream = cch
                        .basic_consume(
                            ss(&queue),
                            ss(&unique("raw")),
                            BasicConsumeOptions::default(),
                            FieldTable::default(),
                        )
                        .await
                        .unwrap();
                    let mut acks = Vec::with_capacity(N);
                    for _ in 0..N {
                        let d = stream.next().await.unwrap().unwrap();
                        let _: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
                        acks.push(tokio::spawn(async move {
                            d.acker.ack(BasicAckOptions::default()).await.unwrap();
                        }));
                    }
                    for a in acks {
                        a.await.unwrap();
                    }
                    total += start.elapsed();
                    let _ = c2.close(200, "bye".into()).await;
                }
                total
            }
        })
    });
    group.bench_function("sinew_consumer_noop", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (ch, exchange, queue) = (ch.clone(), exchange.clone(), queue.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    fill_queue(&ch, &exchange).await;
                    let seen = Arc::new(AtomicUsize::new(0));
                    let done = Arc::new(tokio::sync::Notify::new());
                    let (s, d) = (Arc::clone(&seen), Arc::clone(&done));
                    let router = Router::new().route(
                        &exchange,
                        "update.base",
                        handler_fn(move |_m| {
                            let (s, d) = (Arc::clone(&s), Arc::clone(&d));
                            async move {
                                if s.fetch_add(1, Ordering::Relaxed) + 1 == N {
                                    d.notify_one();
                                }
                                Ok(())
                            }
                        }),
                    );
                    let config = ConsumerConfig {
                        queue: queue.clone(),
                        durable: false,
                        bindings: vec![Binding::all(exchange.clone())],
                        dead_letter_queue: Some(format!("{queue}.dlq")),
                        prefetch,
                        concurrency: 256,
                        ..ConsumerConfig::default()
                    };
                    let start = Instant::now();
                    let done2 = Arc::clone(&done);
                    let stats = Consumer::new(config, router)
                        .run(async move { done2.notified().await })
                        .await
                        .unwrap();
                    total += start.elapsed();
                    assert_eq!(stats.handled, N as u64);
                }
                total
            }
        })
    });
    group.finish();
    rt.block_on(async {
        let _ = ch
            .queue_delete(ss(&format!("{queue}.dlq")), QueueDeleteOptions::default())
            .await;
        drop_sink(&ch, &exchange, &queue).await;
        let _ = conn.close(200, "bye".into()).await;
    });
}

criterion_group!(benches, relay, consumer);
criterion_main!(benches);
