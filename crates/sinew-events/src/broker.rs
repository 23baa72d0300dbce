//! An AMQP connection with a publisher-confirm channel, and a publisher for
//! messages that bypass the outbox (commands sent at once).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lapin::options::ConfirmSelectOptions;
use lapin::types::{AMQPValue, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, PublisherConfirm};
use rand::RngExt;
use tokio::sync::Mutex;

use crate::error::Error;
use crate::exchange::{type_of, ExchangeConfig, ExchangeType, HEADER_ROUTING_KEY_MATCH};
use crate::message::NewCommand;
use crate::tls::TlsConfig;
use crate::wire;

/// Connection properties naming the connection (lapin runs on the current
/// tokio runtime).
pub(crate) fn connection_properties(name: &str) -> ConnectionProperties {
    ConnectionProperties::default().with_connection_name(name.into())
}

/// An AMQP short string (exchange, queue, routing key, consumer tag: at most
/// 255 bytes), or a clear error naming `what` instead of lapin's panic.
pub(crate) fn short(value: &str, what: &str) -> Result<ShortString, Error> {
    ShortString::try_new(value).map_err(|_| {
        Error::Config(format!(
            "{what} is {} bytes long; AMQP allows at most 255",
            value.len()
        ))
    })
}

/// Delay before reconnect attempt `attempt` (0-based): exponential from
/// `min`, capped at `max`, with "equal jitter" (half fixed, half random).
pub(crate) fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let exp = min.saturating_mul(1u32 << attempt.min(20)).min(max);
    let half = exp / 2;
    let jitter = rand::rng().random_range(0..=half.as_micros().min(u128::from(u64::MAX)) as u64);
    half + Duration::from_micros(jitter)
}

/// A connection plus a confirm-mode channel, remembering what it declared.
pub(crate) struct BrokerLink {
    conn: Connection,
    pub(crate) channel: Channel,
    exchanges: Arc<[ExchangeConfig]>,
    declared: HashSet<String>,
}

impl BrokerLink {
    pub(crate) async fn connect(
        url: &str,
        tls: Option<&TlsConfig>,
        name: &str,
        exchanges: Arc<[ExchangeConfig]>,
    ) -> Result<Self, Error> {
        let conn = crate::amqp::connect(url, tls, name).await?;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            conn,
            channel,
            exchanges,
            declared: HashSet::new(),
        })
    }

    /// Declare `exchange` as configured (topic and durable when not
    /// listed) once per connection.
    pub(crate) async fn ensure_exchange(&mut self, exchange: &str) -> Result<(), Error> {
        if self.declared.contains(exchange) {
            return Ok(());
        }
        crate::exchange::declare(&self.channel, &self.exchanges, exchange).await?;
        self.declared.insert(exchange.to_owned());
        Ok(())
    }

    /// Publish; the returned future resolves on the broker's confirm.
    pub(crate) async fn publish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<PublisherConfirm, Error> {
        self.ensure_exchange(exchange).await?;
        #[cfg(feature = "opentelemetry")]
        let span = crate::otel::publish_span(exchange, routing_key, body.len(), &properties);
        let properties = if type_of(&self.exchanges, exchange) == ExchangeType::Headers {
            // Headers exchanges ignore the routing key: carry it as a header.
            let mut headers = properties.headers().clone().unwrap_or_default();
            headers.insert(
                ShortString::from(HEADER_ROUTING_KEY_MATCH),
                AMQPValue::LongString(routing_key.into()),
            );
            properties.with_headers(headers)
        } else {
            properties
        };
        let publish = self.channel.basic_publish(
            short(exchange, "exchange name")?,
            short(routing_key, "routing key")?,
            lapin::options::BasicPublishOptions::default(),
            body,
            #[cfg(feature = "opentelemetry")]
            crate::otel::inject(&span, properties),
            #[cfg(not(feature = "opentelemetry"))]
            properties,
        );
        #[cfg(feature = "opentelemetry")]
        let publish = tracing::Instrument::instrument(publish, span);
        Ok(publish.await?)
    }

    pub(crate) async fn close(self) {
        let _ = self.channel.close(200, "bye".into()).await;
        let _ = self.conn.close(200, "bye".into()).await;
    }
}

/// Settings of a [`Publisher`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct PublisherConfig {
    /// AMQP URL (`amqp://` or `amqps://`). Default
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`. Its `connection_timeout`
    /// query parameter (milliseconds) bounds opening a connection; 30 s
    /// when unset.
    pub amqp_url: String,
    /// TLS to the broker (with an `amqps://` URL): CA file, client
    /// certificate, host name check. Default none (an `amqps://` URL then
    /// verifies against the system's roots).
    pub amqp_tls: Option<TlsConfig>,
    /// The `app_id` property (this service's name). Default `sinew`.
    pub app_id: String,
    /// Types of the exchanges published to (see [`ExchangeConfig`]); one
    /// not listed is declared `topic`. Default none.
    pub exchanges: Vec<ExchangeConfig>,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            amqp_url: crate::DEFAULT_AMQP_URL.into(),
            amqp_tls: None,
            app_id: "sinew".into(),
            exchanges: Vec::new(),
        }
    }
}

/// Publishes straight to the broker with publisher confirms, without the
/// outbox (for commands: fire-and-forget, not transactional). Reconnects on
/// the next call after a broker error.
pub struct Publisher {
    config: PublisherConfig,
    link: Mutex<Option<BrokerLink>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("config", &self.config)
            .finish()
    }
}

impl Publisher {
    /// A publisher; it connects on first use.
    pub fn new(config: PublisherConfig) -> Self {
        Self {
            config,
            link: Mutex::new(None),
        }
    }

    /// `send_command(service, name, args, timeout)`: published at once and
    /// confirmed by the broker; `meta.expiredTime` is now + timeout.
    pub async fn send_command(&self, command: &NewCommand) -> Result<(), Error> {
        let body = command.body_at(SystemTime::now())?;
        let props = wire::properties(&self.config.app_id, command.correlation_id.as_deref());
        self.publish_raw(&command.service, &command.name, &body, props)
            .await?;
        metrics::counter!("sinew_events_published_total", "kind" => "command").increment(1);
        Ok(())
    }

    /// Publish any body to `exchange` (declared first, as configured in
    /// `exchanges`, topic when not listed) and
    /// wait for the broker's confirm.
    pub async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), Error> {
        let confirm = {
            let mut guard = self.link.lock().await;
            if guard.is_none() {
                let c = &self.config;
                let exchanges = c.exchanges.clone().into();
                *guard = Some(
                    BrokerLink::connect(&c.amqp_url, c.amqp_tls.as_ref(), &c.app_id, exchanges)
                        .await?,
                );
            }
            let Some(link) = guard.as_mut() else {
                return Err(Error::Config("no broker link".into()));
            };
            match link.publish(exchange, routing_key, body, properties).await {
                Ok(c) => c,
                Err(e) => {
                    if let Some(link) = guard.take() {
                        link.close().await;
                    }
                    return Err(e);
                }
            }
        };
        match confirm.await {
            Ok(c) if c.is_ack() => Ok(()),
            Ok(_) => Err(Error::Nacked {
                exchange: exchange.to_owned(),
            }),
            Err(e) => {
                *self.link.lock().await = None;
                Err(e.into())
            }
        }
    }

    /// Close the connection.
    pub async fn close(&self) {
        if let Some(link) = self.link.lock().await.take() {
            link.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        for attempt in 0..40 {
            let d = backoff(attempt, min, max);
            let cap = min.saturating_mul(1u32 << attempt.min(20)).min(max);
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d:?}");
        }
        assert!(backoff(30, min, max) >= Duration::from_millis(2500));
    }
}
