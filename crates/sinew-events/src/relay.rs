//! The relay: moves due outbox rows to the broker.
//!
//! Each batch is one database transaction: claim due rows in id order
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several relays share the work
//! and never publish the same row; `BEGIN IMMEDIATE` on SQLite), publish them
//! with publisher confirms, delete the confirmed ones, commit. A crash or a
//! broker error before the commit rolls the claim back: the rows are
//! published again later (at-least-once), never lost.

use std::future::Future;
use std::time::{Duration, SystemTime};

use sqlx::postgres::PgListener;

use crate::broker::{backoff, BrokerLink};
use crate::error::Error;
use crate::outbox::{Database, Outbox, DEFAULT_TABLE, KIND_EVENT};
use crate::time::{from_millis, to_millis};
use crate::tls::TlsConfig;
use crate::wire;

/// Settings of a [`Relay`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct RelayConfig {
    /// `postgres://…` or `sqlite:…`. Default `sqlite:sinew-outbox.db`.
    pub database_url: String,
    /// TLS to PostgreSQL: sets `sslmode` to `verify-full` (`verify-ca`
    /// with `verify_hostname = false`), whatever the URL says, with the CA
    /// file and client certificate given. Default none: the URL's own
    /// `sslmode` (sqlx's default is `prefer`, unverified).
    pub database_tls: Option<TlsConfig>,
    /// AMQP URL (`amqp://` or `amqps://`). Default
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`. Its `connection_timeout`
    /// query parameter (milliseconds) bounds opening a connection; 30 s
    /// when unset.
    pub amqp_url: String,
    /// TLS to the broker (with an `amqps://` URL): CA file, client
    /// certificate, host name check. Default none (an `amqps://` URL then
    /// verifies against the system's roots).
    pub amqp_tls: Option<TlsConfig>,
    /// Outbox table. Default `sinew_outbox`.
    pub table: String,
    /// The `app_id` property (the publishing service). Default `sinew`.
    pub app_id: String,
    /// Types of the exchanges the outbox publishes to (see
    /// [`ExchangeConfig`](crate::ExchangeConfig)); one not listed is
    /// declared `topic`. Default none.
    pub exchanges: Vec<crate::ExchangeConfig>,
    /// Rows per batch (one transaction). Default 500.
    pub batch_size: usize,
    /// Polling fallback when no `NOTIFY` arrives. Default 1s.
    #[cfg_attr(feature = "serde", serde(with = "crate::config::duration"))]
    pub poll_interval: Duration,
    /// Wake on PostgreSQL `LISTEN/NOTIFY` (ignored on SQLite). Default true.
    pub listen: bool,
    /// How long a batch may wait for the broker's confirms before the
    /// connection is dropped and the batch retried. Default 30s.
    #[cfg_attr(feature = "serde", serde(with = "crate::config::duration"))]
    pub confirm_timeout: Duration,
    /// First reconnect delay after a broker or database error. Default 100ms.
    #[cfg_attr(feature = "serde", serde(with = "crate::config::duration"))]
    pub reconnect_min: Duration,
    /// Largest reconnect delay. Default 10s.
    #[cfg_attr(feature = "serde", serde(with = "crate::config::duration"))]
    pub reconnect_max: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            database_url: "sqlite:sinew-outbox.db".into(),
            database_tls: None,
            amqp_url: crate::DEFAULT_AMQP_URL.into(),
            amqp_tls: None,
            table: DEFAULT_TABLE.into(),
            app_id: "sinew".into(),
            exchanges: Vec::new(),
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            listen: true,
            confirm_timeout: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
        }
    }
}

/// What a relay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Messages published and confirmed (and deleted from the outbox).
    pub published: u64,
    /// Batches committed.
    pub batches: u64,
    /// Errors recovered from (each followed by a backoff).
    pub errors: u64,
}

/// Moves outbox rows to the broker: claim a batch of due rows in id order,
/// publish with publisher confirms, delete the confirmed rows, commit.
///
/// ```no_run
/// # async fn f() -> Result<(), sinew_events::Error> {
/// use sinew_events::{Relay, RelayConfig};
/// let config = RelayConfig {
///     database_url: "postgres://postgres@127.0.0.1/app".into(),
///     app_id: "orders".into(),
///     ..RelayConfig::default()
/// };
/// let stats = Relay::new(config).run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// println!("published {}", stats.published);
/// # Ok(()) }
/// ```
pub struct Relay {
    config: RelayConfig,
    outbox: Option<Outbox>,
    link: Option<BrokerLink>,
    stats: RelayStats,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish()
    }
}

type Claimed = (i64, i16, String, String, String, i64, Option<String>);

impl Relay {
    /// A relay that connects to `config.database_url` when run.
    pub fn new(config: RelayConfig) -> Self {
        Self {
            config,
            outbox: None,
            link: None,
            stats: RelayStats::default(),
        }
    }

    /// A relay over an existing outbox (its pool and table; the config's
    /// `database_url` and `table` are ignored).
    pub fn with_outbox(outbox: Outbox, config: RelayConfig) -> Self {
        Self {
            config: RelayConfig {
                table: outbox.table().to_owned(),
                ..config
            },
            outbox: Some(outbox),
            link: None,
            stats: RelayStats::default(),
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    async fn outbox(&mut self) -> Result<Outbox, Error> {
        if let Some(o) = &self.outbox {
            return Ok(o.clone());
        }
        let c = &self.config;
        let db = Database::connect_with_tls(&c.database_url, c.database_tls.as_ref()).await?;
        let outbox = Outbox::new(db, &c.table)?;
        outbox.migrate().await?;
        self.outbox = Some(outbox.clone());
        Ok(outbox)
    }

    /// Run until `shutdown` completes: publish due rows, then sleep until a
    /// `NOTIFY`, the poll interval or the next future event's due time.
    /// Broker and database errors are logged and retried with backoff; the
    /// batch in progress when `shutdown` fires is finished first.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<RelayStats, Error> {
        tokio::pin!(shutdown);
        let mut attempt = 0u32;
        let mut listener: Option<PgListener> = None;
        let mut want_listener = self.config.listen;
        tracing::info!(table = %self.config.table, "relay started");
        loop {
            let result = async {
                let outbox = self.outbox().await?;
                if want_listener && listener.is_none() {
                    if let Database::Postgres(pool) = outbox.database() {
                        let mut l = PgListener::connect_with(pool).await?;
                        l.listen(outbox.notify_channel()).await?;
                        listener = Some(l);
                    } else {
                        want_listener = false;
                    }
                }
                self.step(&outbox).await.map(|n| (n, outbox))
            }
            .await;
            match result {
                Ok((n, _)) if n >= self.config.batch_size.max(1) => {
                    attempt = 0;
                    if futures_util::FutureExt::now_or_never(&mut shutdown).is_some() {
                        break;
                    }
                }
                Ok((_, outbox)) => {
                    attempt = 0;
                    let mut wait = self.config.poll_interval;
                    if let Ok(Some(due)) = outbox.next_due_ms().await {
                        let until = u64::try_from(due - to_millis(SystemTime::now())).unwrap_or(0);
                        wait = wait.min(Duration::from_millis(until));
                    }
                    let notified = async {
                        match listener.as_mut() {
                            Some(l) => match l.recv().await {
                                Ok(_) => {
                                    while l.next_buffered().is_some() {}
                                    tracing::trace!("relay woken by NOTIFY");
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "LISTEN connection failed; polling");
                                    std::future::pending::<()>().await;
                                }
                            },
                            None => std::future::pending::<()>().await,
                        }
                    };
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = notified => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Err(e) => {
                    self.stats.errors += 1;
                    let stage = if e.is_broker() {
                        "broker"
                    } else {
                        listener = None;
                        "database"
                    };
                    metrics::counter!("sinew_events_relay_errors_total", "stage" => stage)
                        .increment(1);
                    let delay = backoff(
                        attempt,
                        self.config.reconnect_min,
                        self.config.reconnect_max,
                    );
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(error = %e, stage, ?delay, "relay batch failed; retrying");
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        if let Some(link) = self.link.take() {
            link.close().await;
        }
        tracing::info!(published = self.stats.published, "relay stopped");
        Ok(self.stats)
    }

    /// Publish every due row now, batch after batch, and return how many
    /// were published. Errors are returned, not retried.
    pub async fn drain(&mut self) -> Result<u64, Error> {
        let outbox = self.outbox().await?;
        let mut total = 0u64;
        loop {
            let n = self.step(&outbox).await?;
            total += n as u64;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// One batch; a broker error drops the connection (reconnect next time).
    async fn step(&mut self, outbox: &Outbox) -> Result<usize, Error> {
        let result = self.step_inner(outbox).await;
        if let Err(e) = &result {
            if e.is_broker() {
                if let Some(link) = self.link.take() {
                    link.close().await;
                }
            }
        }
        result
    }

    /// One batch: claim, publish, confirm, delete, commit.
    async fn step_inner(&mut self, outbox: &Outbox) -> Result<usize, Error> {
        if self.link.is_none() {
            let c = &self.config;
            let exchanges = c.exchanges.clone().into();
            self.link = Some(
                BrokerLink::connect(&c.amqp_url, c.amqp_tls.as_ref(), &c.app_id, exchanges).await?,
            );
        }
        let now = to_millis(SystemTime::now());
        let limit = i64::try_from(self.config.batch_size.max(1)).unwrap_or(i64::MAX);
        let sql = outbox.sql();
        let n = match outbox.database() {
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // Losing this commit in a database crash only re-publishes
                // the batch (at-least-once), so it need not wait for fsync.
                sqlx::query("SET LOCAL synchronous_commit = off")
                    .execute(&mut *tx)
                    .await?;
                let rows: Vec<Claimed> = sqlx::query_as(sql.claim_pg.clone())
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                if rows.is_empty() {
                    return Ok(0);
                }
                let acked = self.publish_rows_timed(&rows).await?;
                sqlx::query(sql.delete_pg.clone())
                    .bind(&acked)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows.len()
            }
            Database::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let rows: Vec<Claimed> = sqlx::query_as(sql.claim_lite.clone())
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                if rows.is_empty() {
                    return Ok(0);
                }
                let acked = self.publish_rows_timed(&rows).await?;
                let ids = serde_json::to_string(&acked).unwrap_or_else(|_| "[]".into());
                sqlx::query(sql.delete_lite.clone())
                    .bind(ids)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows.len()
            }
        };
        self.stats.batches += 1;
        metrics::counter!("sinew_events_relay_batches_total").increment(1);
        tracing::debug!(rows = n, "relay batch committed");
        Ok(n)
    }

    async fn publish_rows_timed(&mut self, rows: &[Claimed]) -> Result<Vec<i64>, Error> {
        let limit = self.config.confirm_timeout;
        match tokio::time::timeout(limit, self.publish_rows(rows)).await {
            Ok(r) => r,
            Err(_) => Err(Error::ConfirmTimeout(limit)),
        }
    }

    /// Publish rows in id order, then wait for every confirm; the ids the
    /// broker acked.
    async fn publish_rows(&mut self, rows: &[Claimed]) -> Result<Vec<i64>, Error> {
        let Some(link) = self.link.as_mut() else {
            return Err(Error::Config("relay has no broker link".into()));
        };
        let mut pending = Vec::with_capacity(rows.len());
        for (id, kind, exchange, routing_key, payload, event_time_ms, correlation_id) in rows {
            let props = wire::properties(&self.config.app_id, correlation_id.as_deref());
            let body = if *kind == KIND_EVENT {
                wire::event_body(
                    *id,
                    from_millis(*event_time_ms),
                    exchange,
                    routing_key,
                    payload,
                )
            } else {
                payload.as_bytes().to_vec()
            };
            let confirm = link.publish(exchange, routing_key, &body, props).await?;
            pending.push((*id, *kind, exchange, confirm));
        }
        let mut acked = Vec::with_capacity(rows.len());
        let (mut events, mut commands) = (0u64, 0u64);
        for (id, kind, exchange, confirm) in pending {
            let confirmation = confirm.await?;
            if confirmation.is_ack() {
                acked.push(id);
                if kind == KIND_EVENT {
                    events += 1;
                } else {
                    commands += 1;
                }
            } else {
                metrics::counter!("sinew_events_relay_nacked_total").increment(1);
                tracing::warn!(id, exchange = %exchange, "broker nacked an outbox row; it stays for the next batch");
            }
        }
        metrics::counter!("sinew_events_published_total", "kind" => "event").increment(events);
        metrics::counter!("sinew_events_published_total", "kind" => "command").increment(commands);
        self.stats.published += events + commands;
        Ok(acked)
    }
}
