//! Exchange types and how sinew declares the exchanges it binds and
//! publishes to (django-microservices-communication's `EXCHANGES`).

use lapin::options::ExchangeDeclareOptions;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};

use crate::broker::short;
use crate::error::Error;

/// An exchange's type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum ExchangeType {
    /// Routing key patterns (`*` one word, `#` any words). The default, as
    /// in django-microservices-communication.
    #[default]
    Topic,
    /// Every bound queue, whatever the routing key.
    Fanout,
    /// Queues whose binding key equals the routing key.
    Direct,
    /// Queues whose binding arguments match the message's headers
    /// ([`Binding::arguments`](crate::Binding::arguments), `x-match` `all`
    /// or `any`). sinew adds the header [`HEADER_ROUTING_KEY_MATCH`] (the
    /// routing key) to what it publishes to a headers exchange, so bindings
    /// can match on it.
    Headers,
}

/// The header carrying the routing key on messages sinew publishes to a
/// `headers` exchange (headers exchanges ignore the routing key itself).
pub const HEADER_ROUTING_KEY_MATCH: &str = "routing_key";

impl ExchangeType {
    /// The AMQP type name: `topic`, `fanout`, `direct`, `headers`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Topic => "topic",
            Self::Fanout => "fanout",
            Self::Direct => "direct",
            Self::Headers => "headers",
        }
    }

    fn kind(self) -> ExchangeKind {
        match self {
            Self::Topic => ExchangeKind::Topic,
            Self::Fanout => ExchangeKind::Fanout,
            Self::Direct => ExchangeKind::Direct,
            Self::Headers => ExchangeKind::Headers,
        }
    }
}

impl std::fmt::Display for ExchangeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An exchange of `exchanges`: its name, its type, and whether sinew
/// declares it or only checks that it exists.
///
/// sinew declares each exchange it binds or publishes to (durable) with
/// the type given here, `topic` for one not listed. Declaring an exchange
/// that already exists with another type is refused by the broker; sinew
/// reports that as [`Error::Exchange`] naming both types, and changes
/// nothing. With `passive = true` sinew never declares the exchange: it
/// must exist (with any type), which suits exchanges another service owns
/// or a user without the `configure` permission.
///
/// In a config file, a list of names and tables, as
/// django-microservices-communication's `EXCHANGES`:
///
/// ```toml
/// exchanges = [
///     "user",                                  # topic
///     { name = "audit", type = "fanout" },
///     { name = "billing", type = "direct", passive = true },
/// ]
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ExchangeConfig {
    /// The exchange's name.
    pub name: String,
    /// Its type. Default `topic`.
    #[cfg_attr(feature = "serde", serde(rename = "type"))]
    pub kind: ExchangeType,
    /// Only check that it exists (a passive declare), never declare it.
    /// Default false.
    pub passive: bool,
}

impl ExchangeConfig {
    /// `name`, declared with type `kind`.
    pub fn new(name: impl Into<String>, kind: ExchangeType) -> Self {
        Self {
            name: name.into(),
            kind,
            passive: false,
        }
    }

    /// `name`, which must exist already (never declared).
    pub fn existing(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: ExchangeType::default(),
            passive: true,
        }
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for ExchangeConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            name: String,
            #[serde(default, rename = "type")]
            kind: ExchangeType,
            #[serde(default)]
            passive: bool,
        }
        #[derive(serde::Deserialize)]
        #[serde(untagged, expecting = "an exchange name or { name, type, passive }")]
        enum Form {
            Name(String),
            Table(Table),
        }
        Ok(match Form::deserialize(d)? {
            Form::Name(name) => Self::new(name, ExchangeType::default()),
            Form::Table(t) => Self {
                name: t.name,
                kind: t.kind,
                passive: t.passive,
            },
        })
    }
}

/// Whether an exchange name can (and must) be declared: not the default
/// exchange, not a broker-owned `amq.*` one.
pub(crate) fn declarable(exchange: &str) -> bool {
    !exchange.is_empty() && !exchange.starts_with("amq.")
}

/// The configured exchange named `name`, if any.
pub(crate) fn find<'a>(exchanges: &'a [ExchangeConfig], name: &str) -> Option<&'a ExchangeConfig> {
    exchanges.iter().find(|e| e.name == name)
}

/// The type `name` is published and bound with: as configured, else topic.
pub(crate) fn type_of(exchanges: &[ExchangeConfig], name: &str) -> ExchangeType {
    find(exchanges, name).map_or(ExchangeType::Topic, |e| e.kind)
}

/// Declare `name` on `channel` as configured in `exchanges` (topic and
/// durable when not listed; a passive declare when `passive`). A type
/// mismatch or a missing passive exchange is [`Error::Exchange`]; the
/// broker closes the channel after either.
pub(crate) async fn declare(
    channel: &Channel,
    exchanges: &[ExchangeConfig],
    name: &str,
) -> Result<(), Error> {
    if !declarable(name) {
        return Ok(());
    }
    let config = find(exchanges, name);
    let kind = config.map_or(ExchangeType::Topic, |e| e.kind);
    let passive = config.is_some_and(|e| e.passive);
    let options = ExchangeDeclareOptions {
        durable: true,
        passive,
        ..ExchangeDeclareOptions::default()
    };
    match channel
        .exchange_declare(
            short(name, "exchange name")?,
            kind.kind(),
            options,
            FieldTable::default(),
        )
        .await
    {
        Ok(()) => {
            tracing::debug!(
                exchange = name,
                kind = kind.as_str(),
                passive,
                "exchange declared"
            );
            Ok(())
        }
        Err(e) => Err(explain(e, name, kind, passive)),
    }
}

fn explain(e: lapin::Error, name: &str, kind: ExchangeType, passive: bool) -> Error {
    let soft = match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => match p.kind() {
            AMQPErrorKind::Soft(s) => Some((s.clone(), p.get_message().to_string())),
            _ => None,
        },
        _ => None,
    };
    match soft {
        Some((AMQPSoftError::PRECONDITIONFAILED, message)) => Error::Exchange {
            exchange: name.to_owned(),
            reason: format!(
                "it exists with other settings than the {kind} (durable) exchange sinew \
                 declares ({message}); give it its type in `exchanges` \
                 ({{ name = {name:?}, type = \"...\" }}), or passive = true to use it as it is"
            ),
        },
        Some((AMQPSoftError::NOTFOUND, message)) if passive => Error::Exchange {
            exchange: name.to_owned(),
            reason: format!(
                "it does not exist and is configured passive (never declared by sinew) ({message})"
            ),
        },
        Some((AMQPSoftError::ACCESSREFUSED, message)) => Error::Exchange {
            exchange: name.to_owned(),
            reason: format!(
                "the broker refused to declare it ({message}); without the configure \
                 permission, list it with passive = true"
            ),
        },
        _ => Error::Broker(e),
    }
}
