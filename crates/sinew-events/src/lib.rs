//! Events and commands over RabbitMQ with a transactional outbox, wire
//! compatible with django-microservices-communication.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use sinew_events::{Database, NewEvent, Outbox};
//! use serde_json::json;
//!
//! // The outbox lives in the service's own database (SQLite here; PostgreSQL alike).
//! let path = std::env::temp_dir().join(format!("sinew-events-doc-{}.db", std::process::id()));
//! let db = Database::connect(&format!("sqlite:{}", path.display())).await?;
//! let outbox = Outbox::new(db.clone(), "outbox")?;
//! outbox.migrate().await?;
//!
//! // The event row commits or rolls back with the caller's own writes.
//! let Database::Sqlite(pool) = &db else { unreachable!() };
//! let mut tx = pool.begin().await?;
//! sqlx::query("CREATE TABLE IF NOT EXISTS users (id INTEGER, city_name TEXT)").execute(&mut *tx).await?;
//! sqlx::query("INSERT INTO users VALUES (1, 'Tashkent')").execute(&mut *tx).await?;
//! let event = NewEvent::new("user", "update.base", json!({"user_id": 1, "city_name": "Tashkent"}));
//! outbox.publish(&mut *tx, &event).await?;
//! tx.commit().await?;
//! assert_eq!(outbox.pending().await?, 1);
//!
//! // `sinew relay` (or `Relay::new(config).run(shutdown)`) then publishes it to
//! // exchange `user`, routing key `update.base`, as
//! // {"eventId":1,"event_time":"…Z","aggregate":"user","event_type":"update.base",
//! //  "payload":{"cityName":"Tashkent","userId":1}}
//! outbox.drop_table().await?;
//! db.close().await;
//! let _ = std::fs::remove_file(&path);
//! # Ok(()) }
//! ```
//!
//! # Pieces
//!
//! * [`Outbox`] — writes events ([`NewEvent`], optionally future with tags,
//!   cancellable by aggregate + event type + tag subset) and commands
//!   ([`NewCommand`]) as rows inside the caller's `sqlx` transaction
//!   (PostgreSQL or SQLite).
//! * [`Relay`] — claims due rows in id order (`FOR UPDATE SKIP LOCKED`),
//!   publishes with publisher confirms, deletes after the confirm; wakes on
//!   `LISTEN/NOTIFY` with a polling fallback; reconnects with backoff.
//! * [`Publisher`] — commands sent at once (confirmed), outside the outbox.
//! * [`Consumer`] + [`Router`] — handlers by exchange and routing key (exact,
//!   `*`/`#` patterns, exchange catch-all, default), typed [`event_handler`]
//!   and [`command_handler`] (expired commands acked and dropped), bounded
//!   retries with backoff, then a dead-letter queue; a body over
//!   `max_body_bytes` (1 MiB by default, checked before parsing) and
//!   malformed JSON go to the dead-letter queue at once with the reason in
//!   `x-sinew-reason`.
//! * [`wire`] — the envelope, camelCasing and timestamps of docs/compatibility.md (django-microservices-communication).
//!
//! # Guarantees and limits
//!
//! * **At-least-once.** A row is deleted only after the broker confirmed it;
//!   a crash (or a broker/database restart) between publish and commit
//!   publishes that batch again. Consumers should be idempotent (`eventId`
//!   is the outbox row id). Nothing committed is lost.
//! * **Order.** One relay publishes in row-id order. Several relays on
//!   PostgreSQL share the rows (`SKIP LOCKED`) and never publish a row twice
//!   while it is claimed, but give no order across relays.
//! * **SQLite.** A batch runs under `BEGIN IMMEDIATE`, so relays on one file
//!   take turns and writers wait for a batch (milliseconds); run one relay
//!   per database file. No `NOTIFY`: the relay polls (and sleeps until the
//!   next future event is due).
//! * **A row that can never be published** (e.g. its exchange exists with
//!   another type than configured: [`Error::Exchange`]) is retried with
//!   backoff and holds back the rows after it; it is logged at every attempt.
//! * **Consumer retries** run in the consumer while the message stays
//!   unacknowledged; if the consumer dies meanwhile the broker redelivers
//!   the message and the attempt count starts again. Unrouted messages are
//!   acked and counted, never requeued.
//! * **Peer input is bounded.** A body over `max_body_bytes` is
//!   dead-lettered before it is parsed; JSON nesting is bounded (serde_json's
//!   recursion limit, 128); topic patterns match in O(pattern words × key
//!   words) with no backtracking; error messages and `x-sinew-reason` quote
//!   at most a short escaped prefix of a peer's value and stay under 1 KiB.
//!   Bad input is dead-lettered with its body unchanged, never dropped.
//!
//! # Exchanges
//!
//! Events go to the exchange named after their aggregate, commands to the
//! one named after the target service. sinew declares each exchange it
//! binds or publishes to (durable), with the type `exchanges` gives it, as
//! django-microservices-communication's `EXCHANGES` does; `topic` when it
//! is not listed. [`ExchangeType`]: `topic`, `fanout`, `direct`, `headers`.
//!
//! ```toml
//! exchanges = ["user", { name = "audit", type = "fanout" }, { name = "billing", passive = true }]
//!
//! [[bindings]]
//! exchange = "audit"                       # fanout: every message
//!
//! [[bindings]]
//! exchange = "by-header"                   # headers: matched on arguments
//! arguments = { x-match = "any", routing_key = "created" }
//! ```
//!
//! * **An exchange that exists with another type** is never redeclared
//!   or changed: the broker refuses the declaration and sinew returns
//!   [`Error::Exchange`] naming both types and the fix (list it in
//!   `exchanges` with its type, or `passive = true`). The relay keeps the
//!   row (and those after it) and retries with backoff, logging that error.
//! * **`passive = true`**: sinew only checks the exchange exists (any
//!   type), for exchanges another service owns; a missing one is
//!   [`Error::Exchange`].
//! * **Headers exchanges** ignore the routing key, so sinew adds it to
//!   what it publishes there as the header [`HEADER_ROUTING_KEY_MATCH`]
//!   (`routing_key`); bindings match on it with [`Binding::arguments`].
//!
//! # TLS
//!
//! rustls (ring) to both ends, configured by [`TlsConfig`]: `amqp_tls` in
//! [`RelayConfig`], [`ConsumerConfig`] and [`PublisherConfig`] (used with an
//! `amqps://` URL), `database_tls` in [`RelayConfig`] (or
//! [`Database::connect_with_tls`]) for PostgreSQL.
//!
//! ```toml
//! database_url = "postgres://orders@db.internal:5432/orders"
//! amqp_url = "amqps://orders@broker.internal:5671/%2f"
//!
//! [database_tls]                  # sslmode becomes verify-full
//! ca_file = "/etc/sinew/ca.pem"
//!
//! [amqp_tls]
//! ca_file = "/etc/sinew/ca.pem"   # trusted beside the system's roots
//! cert_file = "/etc/sinew/orders.pem"
//! key = { file = "/run/secrets/orders-key.pem" }
//! # verify_hostname = false       # verify-ca: the chain, not the name
//! ```
//!
//! * An `amqps://` URL without `amqp_tls` verifies the broker against the
//!   system's roots and the URL's host; `amqp_tls` with an `amqp://` URL is
//!   an error, not a silent plaintext connection.
//! * `database_tls` sets `sslmode` to `verify-full` (`verify-ca` with
//!   `verify_hostname = false`) whatever the URL says; without it the URL's
//!   own `sslmode`/`sslrootcert`/`sslcert`/`sslkey` apply (sqlx's default
//!   `prefer` uses TLS when offered, unverified).
//! * A handshake that fails is [`Error::Tls`] naming the peer and what did
//!   not match: a CA that did not sign the server's certificate (naming
//!   `ca_file`), a certificate for another host name, a client certificate
//!   the server refused. Missing or unreadable files, a certificate without
//!   its key and `verify_hostname = false` without `ca_file` are
//!   [`Error::Config`] before anything is sent.
//! * The files are read at every connect: rotated certificates are picked
//!   up at the next reconnect.
//!
//! # Metrics
//!
//! `sinew_events_outbox_writes_total{kind}`, `sinew_events_published_total{kind}`,
//! `sinew_events_relay_batches_total`, `sinew_events_relay_errors_total{stage}`,
//! `sinew_events_relay_nacked_total`, `sinew_events_future_cancelled_total`,
//! `sinew_events_consumed_total{outcome}` (`ok`, `unrouted`, `dead_lettered`),
//! `sinew_events_handler_retries_total`, `sinew_events_dead_lettered_total{reason}`
//! (`too_large`, `malformed`, `permanent`, `handler_failed`), `sinew_events_commands_expired_total`.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

mod amqp;
mod broker;
mod config;
mod consumer;
mod error;
mod exchange;
mod message;
#[cfg(feature = "opentelemetry")]
pub mod otel;
mod outbox;
mod relay;
mod router;
mod time;
mod tls;
pub mod wire;

pub use broker::{Publisher, PublisherConfig};
pub use consumer::{
    Binding, Consumer, ConsumerConfig, ConsumerStats, DEFAULT_MAX_BODY_BYTES, HEADER_ATTEMPTS,
    HEADER_EXCHANGE, HEADER_REASON, HEADER_ROUTING_KEY,
};
pub use error::{Error, Permanent, WireError};
pub use exchange::{ExchangeConfig, ExchangeType, HEADER_ROUTING_KEY_MATCH};
pub use message::{NewCommand, NewEvent};
pub use outbox::{Database, Outbox, OutboxConn, DEFAULT_TABLE};
pub use relay::{Relay, RelayConfig, RelayStats};
pub use router::{
    command_handler, event_handler, handler_fn, topic_matches, Command, CommandHandler, Event,
    EventHandler, Handler, HandlerFn, Message, PrintHandler, Router,
};
pub use sinew_core::config::Secret;
pub use tls::TlsConfig;

/// The default AMQP URL: the local broker with the guest account.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub use lapin;
pub use sqlx;
