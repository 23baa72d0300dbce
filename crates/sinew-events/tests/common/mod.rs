//! Shared test helpers: real PostgreSQL, SQLite and RabbitMQ on 127.0.0.1,
//! every test on its own table / queue / exchange names.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use sinew_events::lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use sinew_events::lapin::types::{FieldTable, ShortString};
use sinew_events::lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
};
use sinew_events::{Database, Outbox, DEFAULT_AMQP_URL};

/// An AMQP short string (names and keys in these tests are short).
pub fn ss(s: &str) -> ShortString {
    ShortString::from(s)
}

pub fn pg_url() -> String {
    std::env::var("SINEW_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn amqp_url() -> String {
    std::env::var("SINEW_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.into())
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

pub async fn pg_outbox() -> Outbox {
    let db = Database::connect(&pg_url()).await.unwrap();
    let outbox = Outbox::new(db, &unique("t_outbox")).unwrap();
    outbox.migrate().await.unwrap();
    outbox
}

pub struct SqliteFile(pub std::path::PathBuf);

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

pub async fn sqlite_outbox() -> (Outbox, SqliteFile) {
    let path = std::env::temp_dir().join(format!("{}.db", unique("sinew_events_test")));
    let db = Database::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    let outbox = Outbox::new(db, "outbox").unwrap();
    outbox.migrate().await.unwrap();
    (outbox, SqliteFile(path))
}

pub async fn amqp() -> (Connection, Channel) {
    let props = ConnectionProperties::default();
    let conn = Connection::connect(&amqp_url(), props).await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    (conn, channel)
}

pub async fn declare_exchange(channel: &Channel, exchange: &str) {
    channel
        .exchange_declare(
            ss(exchange),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
}

/// A queue bound to `exchange` with `key`, deleted (with the exchange) by
/// [`Tap::cleanup`]; auto-delete (gone after the first [`Tap::take`]) unless `durable`.
pub struct Tap {
    pub conn: Connection,
    pub channel: Channel,
    pub queue: String,
    pub exchanges: Vec<String>,
}

impl Tap {
    pub async fn new(bindings: &[(&str, &str)], durable: bool) -> Self {
        let (conn, channel) = amqp().await;
        let queue = unique("tap");
        channel
            .queue_declare(
                ss(&queue),
                QueueDeclareOptions {
                    durable,
                    auto_delete: !durable,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut exchanges = Vec::new();
        for (exchange, key) in bindings {
            declare_exchange(&channel, exchange).await;
            channel
                .queue_bind(
                    ss(&queue),
                    ss(exchange),
                    ss(key),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
            exchanges.push((*exchange).to_owned());
        }
        Self {
            conn,
            channel,
            queue,
            exchanges,
        }
    }

    /// Receive `n` messages (auto-ack) or fail after `within`; then check
    /// that nothing more arrives for `quiet`.
    pub async fn take(&self, n: usize, within: Duration, quiet: Duration) -> Vec<Received> {
        let channel = self.conn.create_channel().await.unwrap();
        channel.basic_qos(1000, Default::default()).await.unwrap();
        let mut consumer = channel
            .basic_consume(
                ss(&self.queue),
                ss(&unique("take")),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut out = Vec::with_capacity(n);
        let deadline = tokio::time::Instant::now() + within;
        while out.len() < n {
            match tokio::time::timeout_at(deadline, consumer.next()).await {
                Ok(Some(Ok(d))) => out.push(Received {
                    exchange: d.exchange.as_str().to_owned(),
                    routing_key: d.routing_key.as_str().to_owned(),
                    properties: d.properties.clone(),
                    body: d.data.clone(),
                }),
                Ok(other) => panic!("consumer ended: {other:?}"),
                Err(_) => panic!(
                    "only {} of {n} messages arrived within {within:?}",
                    out.len()
                ),
            }
        }
        if let Ok(Some(Ok(d))) = tokio::time::timeout(quiet, consumer.next()).await {
            panic!(
                "unexpected extra message: {}",
                String::from_utf8_lossy(&d.data)
            );
        }
        let _ = channel.close(200, "done".into()).await;
        out
    }

    pub async fn cleanup(self) {
        let _ = self
            .channel
            .queue_delete(ss(&self.queue), QueueDeleteOptions::default())
            .await;
        for e in &self.exchanges {
            let _ = self
                .channel
                .exchange_delete(ss(e), ExchangeDeleteOptions::default())
                .await;
        }
        let _ = self.conn.close(200, "bye".into()).await;
    }
}

#[derive(Debug, Clone)]
pub struct Received {
    pub exchange: String,
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn headers(&self) -> HashMap<String, String> {
        self.properties
            .headers()
            .as_ref()
            .map(|t| {
                t.inner()
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            sinew_events::lapin::types::AMQPValue::LongString(s) => s.to_string(),
                            other => format!("{other:?}"),
                        };
                        (k.as_str().to_owned(), v)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn relay_config() -> sinew_events::RelayConfig {
    sinew_events::RelayConfig {
        amqp_url: amqp_url(),
        app_id: "sinew-test".into(),
        poll_interval: Duration::from_millis(100),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        ..Default::default()
    }
}
