//! The consumer: declares its queue, dead-letter queue and bindings, routes
//! each message to a handler, retries failures a bounded number of times with
//! backoff, and dead-letters what cannot be handled.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection};
use sinew_core::{Clock, SystemClock};
use tokio::sync::Semaphore;

use crate::broker::{backoff, short};
use crate::error::{Error, Permanent};
use crate::exchange::ExchangeConfig;
use crate::router::{Message, Router};
use crate::tls::TlsConfig;

/// Header of a dead-lettered message: why.
pub const HEADER_REASON: &str = "x-sinew-reason";
/// Header of a dead-lettered message: the exchange it came from.
pub const HEADER_EXCHANGE: &str = "x-sinew-exchange";
/// Header of a dead-lettered message: its routing key.
pub const HEADER_ROUTING_KEY: &str = "x-sinew-routing-key";
/// Header of a dead-lettered message: how many times the handler ran.
pub const HEADER_ATTEMPTS: &str = "x-sinew-attempts";

/// The default [`ConsumerConfig::max_body_bytes`]: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// A queue binding: `exchange` with `routing_key` (default `#`, every key)
/// and, for a `headers` exchange, `arguments`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Binding {
    /// The exchange (declared as `exchanges` says, `topic` when not listed).
    pub exchange: String,
    /// The binding key: a topic pattern for `topic`, the exact key for
    /// `direct`, ignored by `fanout` and `headers`. Default `#`.
    #[cfg_attr(feature = "serde", serde(default = "hash"))]
    pub routing_key: String,
    /// Binding arguments (string values), for a `headers` exchange:
    /// `x-match` (`all`, the default, or `any`) and the header values to
    /// match, e.g. `{ x-match = "any", routing_key = "created" }` (sinew
    /// puts the routing key in the `routing_key` header of what it
    /// publishes to a headers exchange). Default none.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "BTreeMap::is_empty")
    )]
    pub arguments: BTreeMap<String, String>,
}

#[cfg(feature = "serde")]
fn hash() -> String {
    "#".into()
}

impl Binding {
    /// Bind `exchange` with `routing_key`.
    pub fn new(exchange: impl Into<String>, routing_key: impl Into<String>) -> Self {
        Self {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            arguments: BTreeMap::new(),
        }
    }

    /// Bind every routing key of `exchange`.
    pub fn all(exchange: impl Into<String>) -> Self {
        Self::new(exchange, "#")
    }

    /// With the binding argument `key = value` (headers exchanges).
    pub fn argument(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.arguments.insert(key.into(), value.into());
        self
    }

    fn arguments_table(&self) -> Result<FieldTable, Error> {
        let mut table = FieldTable::default();
        for (k, v) in &self.arguments {
            table.insert(
                short(k, "binding argument name")?,
                AMQPValue::LongString(v.as_str().into()),
            );
        }
        Ok(table)
    }
}

/// Settings of a [`Consumer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ConsumerConfig {
    /// AMQP URL (`amqp://` or `amqps://`). Default
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`. Its `connection_timeout`
    /// query parameter (milliseconds) bounds opening a connection; 30 s
    /// when unset.
    pub amqp_url: String,
    /// TLS to the broker (with an `amqps://` URL): CA file, client
    /// certificate, host name check. Default none (an `amqps://` URL then
    /// verifies against the system's roots).
    pub amqp_tls: Option<TlsConfig>,
    /// The queue. Default `sinew`.
    pub queue: String,
    /// Declare the queue durable. Default true.
    pub durable: bool,
    /// Declare the queue (and its dead-letter queue) auto-delete. Default false.
    pub auto_delete: bool,
    /// Bindings of the queue. Default none.
    pub bindings: Vec<Binding>,
    /// Exchanges declared at connect, with their types (see
    /// [`ExchangeConfig`]); a bound exchange not listed is declared
    /// `topic`. Default none.
    pub exchanges: Vec<ExchangeConfig>,
    /// The dead-letter queue (durable). Default `<queue>.dead-letter`.
    pub dead_letter_queue: Option<String>,
    /// Unacknowledged messages the broker may send ahead. Default 64.
    pub prefetch: u16,
    /// Handlers running at once. Default 16.
    pub concurrency: usize,
    /// The largest message body the consumer parses, in bytes; a larger one
    /// is dead-lettered unparsed with the reason `body of N bytes exceeds
    /// max_body_bytes (M)`. Default 1 MiB (1048576). The broker's own
    /// limit (`max_message_size`) still applies before this.
    pub max_body_bytes: usize,
    /// Handler calls per message before it is dead-lettered (1 = no retry).
    /// Default 5.
    pub max_attempts: u32,
    /// First retry delay. Default 100ms.
    #[cfg_attr(feature = "serde", serde(with = "crate::config::duration"))]
    pub retry_delay: Duration,
    /// Largest retry delay. Default 10s.
    #[cfg_attr(feature = "serde", serde(with = "crate::config::duration"))]
    pub max_retry_delay: Duration,
    /// First reconnect delay. Default 100ms.
    #[cfg_attr(feature = "serde", serde(with = "crate::config::duration"))]
    pub reconnect_min: Duration,
    /// Largest reconnect delay. Default 10s.
    #[cfg_attr(feature = "serde", serde(with = "crate::config::duration"))]
    pub reconnect_max: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            amqp_url: crate::DEFAULT_AMQP_URL.into(),
            amqp_tls: None,
            queue: "sinew".into(),
            durable: true,
            auto_delete: false,
            bindings: Vec::new(),
            exchanges: Vec::new(),
            dead_letter_queue: None,
            prefetch: 64,
            concurrency: 16,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_attempts: 5,
            retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
        }
    }
}

impl ConsumerConfig {
    /// The dead-letter queue's name.
    pub fn dead_letter_queue_name(&self) -> String {
        self.dead_letter_queue
            .clone()
            .unwrap_or_else(|| format!("{}.dead-letter", self.queue))
    }
}

/// What a consumer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Messages handled successfully (including expired commands).
    pub handled: u64,
    /// Messages sent to the dead-letter queue.
    pub dead_lettered: u64,
    /// Messages no handler was routed to (acked).
    pub unrouted: u64,
    /// Handler retries.
    pub retries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    handled: AtomicU64,
    dead_lettered: AtomicU64,
    unrouted: AtomicU64,
    retries: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ConsumerStats {
        ConsumerStats {
            handled: self.handled.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            unrouted: self.unrouted.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

/// Consumes one queue through a [`Router`].
///
/// ```no_run
/// # async fn f() -> Result<(), sinew_events::Error> {
/// use sinew_events::{event_handler, Binding, Consumer, ConsumerConfig, Router};
/// let router = Router::new().route(
///     "user",
///     "update.*",
///     event_handler(|event| async move {
///         println!("user {} changed: {}", event.event_id, event.payload);
///         Ok(())
///     }),
/// );
/// let config = ConsumerConfig {
///     queue: "billing".into(),
///     bindings: vec![Binding::new("user", "update.*")],
///     ..ConsumerConfig::default()
/// };
/// Consumer::new(config, router)
///     .run(async { let _ = tokio::signal::ctrl_c().await; })
///     .await?;
/// # Ok(()) }
/// ```
pub struct Consumer {
    config: ConsumerConfig,
    router: Arc<Router>,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("config", &self.config)
            .field("router", &self.router)
            .finish()
    }
}

struct Session {
    conn: Connection,
    channel: Channel,
    dlq_channel: Channel,
    queue: ShortString,
    dlq: ShortString,
}

/// `sinew-<random>-<queue>`, cut to AMQP's 255 bytes.
fn consumer_tag(queue: &str) -> ShortString {
    let mut tag = format!("sinew-{:08x}-{queue}", rand::random::<u32>());
    let mut end = tag.len().min(255);
    while !tag.is_char_boundary(end) {
        end -= 1;
    }
    tag.truncate(end);
    ShortString::try_new(tag).unwrap_or_default()
}

impl Consumer {
    /// A consumer of `config.queue` routing through `router`.
    pub fn new(config: ConsumerConfig, router: Router) -> Self {
        Self {
            config,
            router: Arc::new(router),
            clock: Arc::new(SystemClock),
            counters: Arc::default(),
        }
    }

    /// The wall clock that decides command expiry (default: the system's).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// What it did so far.
    pub fn stats(&self) -> ConsumerStats {
        self.counters.snapshot()
    }

    /// Connect and declare the queue, the dead-letter queue, the exchanges
    /// and the bindings, then disconnect (so publishers may start before the
    /// consumer runs).
    pub async fn declare(&self) -> Result<(), Error> {
        let session = self.connect().await?;
        let _ = session.conn.close(200, "declared".into()).await;
        Ok(())
    }

    async fn connect(&self) -> Result<Session, Error> {
        let c = &self.config;
        let queue = short(&c.queue, "queue name")?;
        let dlq = short(&c.dead_letter_queue_name(), "dead-letter queue name")?;
        let conn = crate::amqp::connect(&c.amqp_url, c.amqp_tls.as_ref(), &c.queue).await?;
        let channel = conn.create_channel().await?;
        let queue_options = QueueDeclareOptions {
            durable: c.durable,
            auto_delete: c.auto_delete,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(dlq.clone(), queue_options, FieldTable::default())
            .await?;
        channel
            .queue_declare(queue.clone(), queue_options, FieldTable::default())
            .await?;
        let mut declared = std::collections::HashSet::new();
        let listed = c.exchanges.iter().map(|e| e.name.as_str());
        for exchange in listed.chain(c.bindings.iter().map(|b| b.exchange.as_str())) {
            if declared.insert(exchange) {
                crate::exchange::declare(&channel, &c.exchanges, exchange).await?;
            }
        }
        for b in &c.bindings {
            channel
                .queue_bind(
                    queue.clone(),
                    short(&b.exchange, "exchange name")?,
                    short(&b.routing_key, "binding key")?,
                    QueueBindOptions::default(),
                    b.arguments_table()?,
                )
                .await?;
        }
        channel
            .basic_qos(c.prefetch, BasicQosOptions::default())
            .await?;
        let dlq_channel = conn.create_channel().await?;
        dlq_channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Session {
            conn,
            channel,
            dlq_channel,
            queue,
            dlq,
        })
    }

    /// Consume until `shutdown` completes, then stop taking messages, give
    /// back (nack, requeue) the ones received but not started, let the
    /// in-flight ones finish (ack, retry or dead-letter) and return.
    /// Broker errors are logged and the consumer reconnects with backoff.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<ConsumerStats, Error> {
        tokio::pin!(shutdown);
        let concurrency = self.config.concurrency.max(1);
        let permits = Arc::new(Semaphore::new(concurrency));
        let mut attempt = 0u32;
        'outer: loop {
            let session = match self.connect().await {
                Ok(s) => s,
                Err(e) => {
                    let delay = backoff(
                        attempt,
                        self.config.reconnect_min,
                        self.config.reconnect_max,
                    );
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(error = %e, ?delay, "consumer cannot connect; retrying");
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break 'outer,
                        () = tokio::time::sleep(delay) => continue 'outer,
                    }
                }
            };
            let tag = consumer_tag(&self.config.queue);
            let mut stream = match session
                .channel
                .basic_consume(
                    session.queue.clone(),
                    tag.clone(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "basic.consume failed; reconnecting");
                    let _ = session.conn.close(200, "retry".into()).await;
                    tokio::time::sleep(backoff(
                        attempt,
                        self.config.reconnect_min,
                        self.config.reconnect_max,
                    ))
                    .await;
                    attempt = attempt.saturating_add(1);
                    continue 'outer;
                }
            };
            attempt = 0;
            let task = Arc::new(Task {
                router: Arc::clone(&self.router),
                clock: Arc::clone(&self.clock),
                counters: Arc::clone(&self.counters),
                dlq_channel: session.dlq_channel.clone(),
                dlq: session.dlq.clone(),
                max_body_bytes: self.config.max_body_bytes,
                max_attempts: self.config.max_attempts.max(1),
                retry_delay: self.config.retry_delay,
                max_retry_delay: self.config.max_retry_delay,
            });
            tracing::info!(queue = %self.config.queue, "consumer started");
            loop {
                let permit = tokio::select! {
                    biased;
                    () = &mut shutdown => {
                        stop(&session, &mut stream, tag, &permits, concurrency).await;
                        break 'outer;
                    }
                    p = Arc::clone(&permits).acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break 'outer,
                    },
                };
                let next = tokio::select! {
                    biased;
                    () = &mut shutdown => {
                        drop(permit);
                        stop(&session, &mut stream, tag, &permits, concurrency).await;
                        break 'outer;
                    }
                    n = stream.next() => n,
                };
                match next {
                    Some(Ok(delivery)) => {
                        let task = Arc::clone(&task);
                        tokio::spawn(async move {
                            task.process(delivery).await;
                            drop(permit);
                        });
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "consumer stream failed; reconnecting");
                        break;
                    }
                    None => {
                        tracing::warn!("consumer cancelled by the broker; reconnecting");
                        break;
                    }
                }
            }
            let _ = session.conn.close(200, "reconnect".into()).await;
            tokio::select! {
                biased;
                () = &mut shutdown => break 'outer,
                () = tokio::time::sleep(self.config.reconnect_min) => {}
            }
        }
        let _ = permits.acquire_many(concurrency as u32).await;
        let stats = self.counters.snapshot();
        tracing::info!(?stats, "consumer stopped");
        Ok(stats)
    }
}

/// A graceful stop: no new deliveries (basic.cancel), the ones received but
/// not started given back at once (nack, requeue: another consumer gets
/// them without waiting for this connection to close), the handlers in
/// flight finished (each acks, retries or dead-letters its message), then
/// the connection closed.
async fn stop(
    session: &Session,
    stream: &mut lapin::Consumer,
    tag: ShortString,
    permits: &Semaphore,
    concurrency: usize,
) {
    let _ = session
        .channel
        .basic_cancel(tag, BasicCancelOptions::default())
        .await;
    let mut returned = 0u32;
    // What the broker sent before the cancel is already buffered here.
    while let Ok(Some(Ok(delivery))) =
        tokio::time::timeout(Duration::from_millis(100), stream.next()).await
    {
        let requeue = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        if delivery.acker.nack(requeue).await.is_ok() {
            returned += 1;
        }
    }
    if returned > 0 {
        tracing::info!(returned, "unstarted messages given back to the queue");
    }
    let _ = permits.acquire_many(concurrency as u32).await;
    let _ = session.conn.close(200, "shutdown".into()).await;
}

struct Task {
    router: Arc<Router>,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
    dlq_channel: Channel,
    dlq: ShortString,
    max_body_bytes: usize,
    max_attempts: u32,
    retry_delay: Duration,
    max_retry_delay: Duration,
}

fn header_str(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

impl Task {
    async fn process(&self, delivery: lapin::message::Delivery) {
        #[cfg(feature = "opentelemetry")]
        {
            let span = crate::otel::process_span(&delivery);
            tracing::Instrument::instrument(self.process_inner(delivery), span).await
        }
        #[cfg(not(feature = "opentelemetry"))]
        self.process_inner(delivery).await
    }

    async fn process_inner(&self, delivery: lapin::message::Delivery) {
        let exchange = delivery.exchange.as_str().to_owned();
        let routing_key = delivery.routing_key.as_str().to_owned();
        if delivery.data.len() > self.max_body_bytes {
            let reason = format!(
                "body of {} bytes exceeds max_body_bytes ({})",
                delivery.data.len(),
                self.max_body_bytes
            );
            self.dead_letter(&delivery, &reason, "too_large", 0).await;
            return;
        }
        let body = match serde_json::from_slice::<serde_json::Value>(&delivery.data) {
            Ok(v) => v,
            Err(e) => {
                let reason = format!("malformed JSON: {e}");
                self.dead_letter(&delivery, &reason, "malformed", 0).await;
                return;
            }
        };
        let Some((route, handler)) = self.router.lookup(&exchange, &routing_key) else {
            self.counters.unrouted.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("sinew_events_consumed_total", "outcome" => "unrouted").increment(1);
            tracing::warn!(exchange, routing_key, "no handler for message; acked");
            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            return;
        };
        let props = &delivery.properties;
        let mut message = Message {
            exchange: exchange.clone(),
            routing_key: routing_key.clone(),
            body,
            app_id: props.app_id().as_ref().map(|s| s.as_str().to_owned()),
            correlation_id: props
                .correlation_id()
                .as_ref()
                .map(|s| s.as_str().to_owned()),
            redelivered: delivery.redelivered,
            received_at: self.clock.now(),
            attempt: 1,
        };
        loop {
            let attempt = message.attempt;
            match handler.call(message.clone()).await {
                Ok(()) => {
                    self.counters.handled.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("sinew_events_consumed_total", "outcome" => "ok")
                        .increment(1);
                    if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                        tracing::warn!(error = %e, "ack failed; the broker will redeliver");
                    }
                    return;
                }
                Err(e) if e.downcast_ref::<Permanent>().is_some() => {
                    let reason = format!("rejected by handler {route}: {e}");
                    self.dead_letter(&delivery, &reason, "permanent", attempt)
                        .await;
                    return;
                }
                Err(e) if attempt >= self.max_attempts => {
                    let reason = format!("handler {route} failed {attempt} times; last error: {e}");
                    self.dead_letter(&delivery, &reason, "handler_failed", attempt)
                        .await;
                    return;
                }
                Err(e) => {
                    let delay = backoff(attempt - 1, self.retry_delay, self.max_retry_delay);
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("sinew_events_handler_retries_total").increment(1);
                    tracing::info!(route, attempt, error = %e, ?delay, "handler failed; retrying");
                    tokio::time::sleep(delay).await;
                    message.attempt += 1;
                }
            }
        }
    }

    /// Publish to the dead-letter queue (confirmed), then ack; if that
    /// fails, nack with requeue so nothing is lost.
    async fn dead_letter(
        &self,
        delivery: &lapin::message::Delivery,
        reason: &str,
        kind: &'static str,
        attempts: u32,
    ) {
        let reason = crate::error::bounded_reason(reason.to_owned());
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(ShortString::from(HEADER_REASON), header_str(&reason));
        headers.insert(
            ShortString::from(HEADER_EXCHANGE),
            header_str(delivery.exchange.as_str()),
        );
        headers.insert(
            ShortString::from(HEADER_ROUTING_KEY),
            header_str(delivery.routing_key.as_str()),
        );
        headers.insert(
            ShortString::from(HEADER_ATTEMPTS),
            AMQPValue::LongUInt(attempts),
        );
        let props = delivery.properties.clone().with_headers(headers);
        let published = async {
            let confirm = self
                .dlq_channel
                .basic_publish(
                    ShortString::default(),
                    self.dlq.clone(),
                    BasicPublishOptions::default(),
                    &delivery.data,
                    props,
                )
                .await?
                .await?;
            Ok::<bool, lapin::Error>(confirm.is_ack())
        }
        .await;
        match published {
            Ok(true) => {
                self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("sinew_events_consumed_total", "outcome" => "dead_lettered")
                    .increment(1);
                metrics::counter!("sinew_events_dead_lettered_total", "reason" => kind)
                    .increment(1);
                tracing::warn!(queue = %self.dlq, reason, "message dead-lettered");
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            }
            other => {
                tracing::error!(result = ?other.map_err(|e| e.to_string()), "dead-lettering failed; message requeued");
                let _ = delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await;
            }
        }
    }
}
