//! Outgoing events and commands (what a service publishes).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::error::WireError;
use crate::wire::{camelize, CommandEnvelope};

/// An aggregate event to publish: exchange = `aggregate`, routing key =
/// `event_type`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use sinew_events::NewEvent;
/// let reminder = NewEvent::new("user", "remind.photo", serde_json::json!({"user_id": 7}))
///     .send_after(SystemTime::now() + Duration::from_secs(3600))
///     .tag("user_id", 7)
///     .tag("kind", "photo");
/// assert_eq!(reminder.tags().get("user_id").map(String::as_str), Some("7"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub(crate) aggregate: String,
    pub(crate) event_type: String,
    pub(crate) payload: Value,
    pub(crate) event_time: Option<SystemTime>,
    pub(crate) send_after: Option<SystemTime>,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) correlation_id: Option<String>,
}

impl NewEvent {
    /// An event of `aggregate` of type `event_type`; payload keys are
    /// camelCased (recursively) when it is stored.
    pub fn new(
        aggregate: impl Into<String>,
        event_type: impl Into<String>,
        payload: Value,
    ) -> Self {
        Self {
            aggregate: aggregate.into(),
            event_type: event_type.into(),
            payload,
            event_time: None,
            send_after: None,
            tags: BTreeMap::new(),
            correlation_id: None,
        }
    }

    /// Make it a future event: the relay publishes it at `at`, not before.
    /// Its `event_time` is `at` unless set with [`NewEvent::event_time`].
    pub fn send_after(mut self, at: SystemTime) -> Self {
        self.send_after = Some(at);
        self
    }

    /// Add a tag (the value is stored as its string form: `1` equals `"1"`,
    /// not `true`). Tags select future events to cancel.
    pub fn tag(mut self, key: impl Into<String>, value: impl Display) -> Self {
        self.tags.insert(key.into(), value.to_string());
        self
    }

    /// Set `event_time` (default: now, or the send-after time).
    pub fn event_time(mut self, at: SystemTime) -> Self {
        self.event_time = Some(at);
        self
    }

    /// Set the AMQP `correlation_id`.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// The tags.
    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.tags
    }

    pub(crate) fn resolved_time(&self, now: SystemTime) -> SystemTime {
        self.event_time.or(self.send_after).unwrap_or(now)
    }

    pub(crate) fn payload_text(&self) -> String {
        camelize(self.payload.clone()).to_string()
    }
}

/// A fire-and-forget command: exchange = target `service`, routing key =
/// command name (default empty).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use sinew_events::NewCommand;
/// let cmd = NewCommand::new("inventory", serde_json::json!({"order_id": "ord-1"}))
///     .name("reserve")
///     .timeout(Duration::from_secs(60));
/// let body = cmd.body_at(UNIX_EPOCH).unwrap();
/// assert_eq!(body, br#"{"meta":{"expiredTime":"1970-01-01T00:01:00.000Z"},"orderId":"ord-1"}"#);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewCommand {
    pub(crate) service: String,
    pub(crate) name: String,
    pub(crate) args: Value,
    pub(crate) timeout: Option<Duration>,
    pub(crate) correlation_id: Option<String>,
}

impl NewCommand {
    /// A command to `service` with arguments `args` (a JSON object; keys are
    /// camelCased).
    pub fn new(service: impl Into<String>, args: Value) -> Self {
        Self {
            service: service.into(),
            name: String::new(),
            args,
            timeout: None,
            correlation_id: None,
        }
    }

    /// The command name (routing key).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The receiver must not execute it once `timeout` has passed since it
    /// was sent (`meta.expiredTime`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Set the AMQP `correlation_id`.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// The body as sent at `now`.
    pub fn body_at(&self, now: SystemTime) -> Result<Vec<u8>, WireError> {
        let Value::Object(args) = &self.args else {
            return Err(WireError::NotAnObject);
        };
        let envelope = CommandEnvelope {
            args: args.clone(),
            expired_time: self.timeout.map(|t| now + t),
        };
        Ok(envelope.to_body())
    }
}
