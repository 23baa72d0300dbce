//! The wire format of django-microservices-communication (docs/compatibility.md).
//!
//! **Events**: exchange = aggregate (topic, durable), routing key = event
//! type, body `{"eventId": <int>, "event_time": "<UTC ms>Z", "aggregate": …,
//! "event_type": …, "payload": {camelCased}}`.
//! **Commands**: exchange = target service, routing key = command name, body
//! = camelCased arguments plus `"meta": {"expiredTime": "…fffZ"}` or
//! `"meta": {}`.
//! Both carry `content_type=text/json`, `delivery_mode=2`, `app_id` and an
//! optional `correlation_id`.
//!
//! What this module emits parses identically on the Python side; what it
//! accepts is lenient where that side is sloppy (timestamps with or without a
//! fraction, `Z` or `+00:00`, either key casing, `eventId` as a number or a
//! numeric string).

use std::time::SystemTime;

use lapin::types::ShortString;
use lapin::BasicProperties;
use serde_json::{Map, Value};

use crate::error::{snippet, WireError};
pub use crate::time::{format_timestamp, parse_timestamp};

/// The AMQP content type of every message.
pub const CONTENT_TYPE: &str = "text/json";
/// The AMQP delivery mode of every message (persistent).
pub const DELIVERY_MODE_PERSISTENT: u8 = 2;

/// camelCase one key the way the Python side does
/// (`re.sub("[a-z0-9]?_[a-z0-9]", …)`): `user_id` → `userId`,
/// `a_b_c` → `aBC`, `_x` → `X`; anything else is kept.
///
/// ```
/// assert_eq!(sinew_events::wire::camelize_key("city_name"), "cityName");
/// assert_eq!(sinew_events::wire::camelize_key("userId"), "userId");
/// ```
pub fn camelize_key(key: &str) -> String {
    let c: Vec<char> = key.chars().collect();
    let word =
        |ch: Option<&char>| ch.is_some_and(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit());
    let mut out = String::with_capacity(key.len());
    let mut i = 0;
    while i < c.len() {
        if word(c.get(i)) && c.get(i + 1) == Some(&'_') && word(c.get(i + 2)) {
            out.push(c[i]);
            out.push(c[i + 2].to_ascii_uppercase());
            i += 3;
        } else if c[i] == '_' && word(c.get(i + 1)) {
            out.push(c[i + 1].to_ascii_uppercase());
            i += 2;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// snake_case one key: `userId` → `user_id`; snake keys are kept.
///
/// ```
/// assert_eq!(sinew_events::wire::snake_key("cityName"), "city_name");
/// assert_eq!(sinew_events::wire::snake_key("city_name"), "city_name");
/// ```
pub fn snake_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut prev_lower = false;
    for ch in key.chars() {
        if ch.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
            prev_lower = false;
        } else {
            out.push(ch);
            prev_lower = ch.is_ascii_lowercase() || ch.is_ascii_digit();
        }
    }
    out
}

fn map_keys(value: Value, f: &impl Fn(&str) -> String) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (f(&k), map_keys(v, f)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| map_keys(v, f)).collect()),
        other => other,
    }
}

/// camelCase every object key, recursively (through arrays too); values are
/// never changed.
pub fn camelize(value: Value) -> Value {
    map_keys(value, &camelize_key)
}

/// snake_case every object key, recursively.
pub fn snakeize(value: Value) -> Value {
    map_keys(value, &snake_key)
}

/// An aggregate event as it travels on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope {
    /// `eventId`: the outbox row id.
    pub event_id: i64,
    /// `event_time`: when it happened (or, for a future event, when it is due).
    pub event_time: SystemTime,
    /// `aggregate`, also the exchange.
    pub aggregate: String,
    /// `event_type`, also the routing key.
    pub event_type: String,
    /// `payload`, with its keys as they are on the wire.
    pub payload: Value,
}

/// What kind of JSON value `v` is (for errors: never the value itself,
/// which a peer chose and may be huge).
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn get<'a>(map: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| map.get(*k))
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, WireError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(WireError::NotAnObject),
        Err(e) => Err(WireError::Json(e.to_string())),
    }
}

impl EventEnvelope {
    /// The JSON body (payload keys camelCased on the way out).
    pub fn to_body(&self) -> Vec<u8> {
        event_body(
            self.event_id,
            self.event_time,
            &self.aggregate,
            &self.event_type,
            &camelize(self.payload.clone()).to_string(),
        )
    }

    /// Parse a body, accepting either key casing (`event_time`/`eventTime`,
    /// `event_type`/`eventType`, `eventId`/`event_id`).
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        Self::from_value(parse_object(body)?)
    }

    /// Read an already parsed JSON object.
    pub fn from_value(mut map: Map<String, Value>) -> Result<Self, WireError> {
        let event_id = match get(&map, &["eventId", "event_id"]) {
            Some(Value::Number(n)) => n.as_i64().ok_or(WireError::InvalidValue {
                key: "eventId",
                reason: format!("{n} is not an integer"),
            })?,
            Some(Value::String(s)) => s.trim().parse().map_err(|_| WireError::InvalidValue {
                key: "eventId",
                reason: format!("{} is not an integer", snippet(s)),
            })?,
            Some(other) => {
                return Err(WireError::InvalidValue {
                    key: "eventId",
                    reason: format!("unexpected {}", json_kind(other)),
                })
            }
            None => return Err(WireError::MissingKey("eventId")),
        };
        let string = |keys: &[&str], name: &'static str| match get(&map, keys) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(WireError::InvalidValue {
                key: name,
                reason: "not a string".into(),
            }),
            None => Err(WireError::MissingKey(name)),
        };
        let event_time = parse_timestamp(&string(&["event_time", "eventTime"], "event_time")?)?;
        let aggregate = string(&["aggregate"], "aggregate")?;
        let event_type = string(&["event_type", "eventType"], "event_type")?;
        let payload = map.remove("payload").unwrap_or(Value::Null);
        Ok(Self {
            event_id,
            event_time,
            aggregate,
            event_type,
            payload,
        })
    }
}

/// Build an event body; `payload_json` is JSON text written as given
/// (already camelCased).
pub(crate) fn event_body(
    event_id: i64,
    event_time: SystemTime,
    aggregate: &str,
    event_type: &str,
    payload_json: &str,
) -> Vec<u8> {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut out =
        String::with_capacity(96 + aggregate.len() + event_type.len() + payload_json.len());
    out.push_str("{\"eventId\":");
    out.push_str(&event_id.to_string());
    out.push_str(",\"event_time\":\"");
    out.push_str(&format_timestamp(event_time));
    out.push_str("\",\"aggregate\":");
    out.push_str(&quote(aggregate));
    out.push_str(",\"event_type\":");
    out.push_str(&quote(event_type));
    out.push_str(",\"payload\":");
    out.push_str(if payload_json.is_empty() {
        "null"
    } else {
        payload_json
    });
    out.push('}');
    out.into_bytes()
}

/// A command as it travels on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandEnvelope {
    /// The arguments (every key but `meta`), as on the wire.
    pub args: Map<String, Value>,
    /// `meta.expiredTime`, if the command expires.
    pub expired_time: Option<SystemTime>,
}

impl CommandEnvelope {
    /// The JSON body: camelCased arguments plus `meta` (`expiredTime` always
    /// with a millisecond fraction).
    pub fn to_body(&self) -> Vec<u8> {
        let mut map = match camelize(Value::Object(self.args.clone())) {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let mut meta = Map::new();
        if let Some(t) = self.expired_time {
            meta.insert("expiredTime".into(), Value::from(format_timestamp(t)));
        }
        map.insert("meta".into(), Value::Object(meta));
        serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
    }

    /// Parse a body; `meta` may be missing, `{}`, or carry `expiredTime` /
    /// `expired_time` in any accepted timestamp form.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        Self::from_value(parse_object(body)?)
    }

    /// Read an already parsed JSON object.
    pub fn from_value(mut map: Map<String, Value>) -> Result<Self, WireError> {
        let expired_time = match map.remove("meta") {
            None | Some(Value::Null) => None,
            Some(Value::Object(meta)) => match get(&meta, &["expiredTime", "expired_time"]) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(parse_timestamp(s)?),
                Some(_) => {
                    return Err(WireError::InvalidValue {
                        key: "meta.expiredTime",
                        reason: "not a string".into(),
                    })
                }
            },
            Some(_) => {
                return Err(WireError::InvalidValue {
                    key: "meta",
                    reason: "not an object".into(),
                })
            }
        };
        Ok(Self {
            args: map,
            expired_time,
        })
    }

    /// Whether the command has expired at `now` (a command without
    /// `expiredTime` never expires).
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expired_time.is_some_and(|t| t < now)
    }
}

/// The AMQP properties of every message: `text/json`, persistent, `app_id`,
/// optional `correlation_id`.
pub fn properties(app_id: &str, correlation_id: Option<&str>) -> BasicProperties {
    let props = BasicProperties::default()
        .with_content_type(ShortString::from(CONTENT_TYPE))
        .with_delivery_mode(DELIVERY_MODE_PERSISTENT)
        .with_app_id(ShortString::from(app_id));
    match correlation_id {
        Some(id) => props.with_correlation_id(ShortString::from(id)),
        None => props,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn camelize_is_recursive_and_matches_python() {
        let v = camelize(json!({
            "user_id": 1,
            "city_name": "x_y",
            "nested_obj": {"inner_key": [{"deep_key": null}], "a_b_c": 1},
            "_private": 1,
            "already_Camel": 2,
            "trailing_": 3
        }));
        assert_eq!(
            v,
            json!({
                "userId": 1,
                "cityName": "x_y",
                "nestedObj": {"innerKey": [{"deepKey": null}], "aBC": 1},
                "Private": 1,
                "already_Camel": 2,
                "trailing_": 3
            })
        );
    }

    #[test]
    fn snakeize_undoes_camelize_for_plain_keys() {
        let v = json!({"user_id": 1, "nested": {"city_name": [{"updated_at": 2}]}});
        assert_eq!(snakeize(camelize(v.clone())), v);
    }

    #[test]
    fn command_without_meta_or_with_empty_meta() {
        let c = CommandEnvelope::parse(br#"{"a": 1}"#).unwrap();
        assert_eq!(c.expired_time, None);
        let c = CommandEnvelope::parse(br#"{"a": 1, "meta": {}}"#).unwrap();
        assert_eq!(c.expired_time, None);
        assert_eq!(c.args.len(), 1);
        let body = c.to_body();
        assert_eq!(body, br#"{"a":1,"meta":{}}"#);
        assert!(matches!(
            CommandEnvelope::parse(br#"{"meta": {"expiredTime": "soon"}}"#),
            Err(WireError::Timestamp(_))
        ));
        assert!(matches!(
            CommandEnvelope::parse(b"[1]"),
            Err(WireError::NotAnObject)
        ));
        assert!(matches!(
            CommandEnvelope::parse(b"{"),
            Err(WireError::Json(_))
        ));
    }

    #[test]
    fn event_rejects_bad_ids() {
        for body in [
            r#"{"eventId": 1.5, "event_time": "2026-11-23T20:04:25Z", "aggregate": "a", "event_type": "b"}"#,
            r#"{"eventId": "x", "event_time": "2026-11-23T20:04:25Z", "aggregate": "a", "event_type": "b"}"#,
            r#"{"event_time": "2026-11-23T20:04:25Z", "aggregate": "a", "event_type": "b"}"#,
            r#"{"eventId": 1, "event_time": 5, "aggregate": "a", "event_type": "b"}"#,
        ] {
            assert!(EventEnvelope::parse(body.as_bytes()).is_err(), "{body}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = EventEnvelope::parse(&body);
            let _ = CommandEnvelope::parse(&body);
        }

        #[test]
        fn camelize_key_never_panics(key in "\\PC{0,30}") {
            let _ = camelize_key(&key);
            let _ = snake_key(&key);
        }
    }
}
