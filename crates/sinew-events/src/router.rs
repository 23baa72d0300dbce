//! Routing by exchange and routing key, and the handler types.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use sinew_core::BoxError;

use crate::error::{Permanent, WireError};
use crate::wire::{snakeize, CommandEnvelope, EventEnvelope};

/// A received message, its body already parsed as JSON.
#[derive(Debug, Clone)]
pub struct Message {
    /// The exchange it was published to.
    pub exchange: String,
    /// Its routing key.
    pub routing_key: String,
    /// The body.
    pub body: Value,
    /// The `app_id` property.
    pub app_id: Option<String>,
    /// The `correlation_id` property.
    pub correlation_id: Option<String>,
    /// Whether the broker delivered it before (to this or another consumer).
    pub redelivered: bool,
    /// The consumer's clock when it arrived.
    pub received_at: SystemTime,
    /// 1 on the first call of the handler, 2 on the first retry, …
    pub attempt: u32,
}

/// An aggregate event, parsed from a [`Message`].
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `eventId`.
    pub event_id: i64,
    /// `event_time`.
    pub event_time: SystemTime,
    /// `aggregate`.
    pub aggregate: String,
    /// `event_type`.
    pub event_type: String,
    /// `payload`, keys as sent (camelCase from Django and sinew).
    pub payload: Value,
    /// The `correlation_id` property.
    pub correlation_id: Option<String>,
    /// The `app_id` property (the publishing service).
    pub app_id: Option<String>,
}

impl Event {
    /// Read an event from a message (either key casing).
    pub fn from_message(message: &Message) -> Result<Self, WireError> {
        let Value::Object(map) = &message.body else {
            return Err(WireError::NotAnObject);
        };
        let env = EventEnvelope::from_value(map.clone())?;
        Ok(Self {
            event_id: env.event_id,
            event_time: env.event_time,
            aggregate: env.aggregate,
            event_type: env.event_type,
            payload: env.payload,
            correlation_id: message.correlation_id.clone(),
            app_id: message.app_id.clone(),
        })
    }

    /// The payload as `T`, its keys snake_cased first, so a Rust struct
    /// with snake_case fields reads camelCase and snake_case senders alike.
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(snakeize(self.payload.clone()))
    }
}

/// A command, parsed from a [`Message`].
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The target service (the exchange).
    pub service: String,
    /// The command name (the routing key).
    pub name: String,
    /// The arguments, keys as sent.
    pub args: Map<String, Value>,
    /// `meta.expiredTime`.
    pub expired_time: Option<SystemTime>,
    /// The `correlation_id` property.
    pub correlation_id: Option<String>,
}

impl Command {
    /// Read a command from a message.
    pub fn from_message(message: &Message) -> Result<Self, WireError> {
        let Value::Object(map) = &message.body else {
            return Err(WireError::NotAnObject);
        };
        let env = CommandEnvelope::from_value(map.clone())?;
        Ok(Self {
            service: message.exchange.clone(),
            name: message.routing_key.clone(),
            args: env.args,
            expired_time: env.expired_time,
            correlation_id: message.correlation_id.clone(),
        })
    }

    /// The arguments as `T`, keys snake_cased first.
    pub fn args_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(snakeize(Value::Object(self.args.clone())))
    }
}

/// Handles messages. Return `Err` to have the message retried (with
/// backoff, a bounded number of times, then dead-lettered); return an error
/// wrapped in [`Permanent`] to dead-letter it at once.
pub trait Handler: Send + Sync + 'static {
    /// Handle one message.
    fn call(&self, message: Message) -> BoxFuture<'static, Result<(), BoxError>>;
}

/// A [`Handler`] from a closure over [`Message`]; see [`handler_fn`].
#[derive(Debug, Clone)]
pub struct HandlerFn<F>(F);

/// A handler from `async fn(Message) -> Result<(), BoxError>`.
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    HandlerFn(f)
}

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    fn call(&self, message: Message) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin((self.0)(message))
    }
}

/// A typed event [`Handler`]; see [`event_handler`].
#[derive(Debug, Clone)]
pub struct EventHandler<F>(F);

/// A handler from `async fn(Event) -> Result<(), BoxError>`. A message that
/// is not an event is dead-lettered at once.
pub fn event_handler<F, Fut>(f: F) -> EventHandler<F>
where
    F: Fn(Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    EventHandler(f)
}

impl<F, Fut> Handler for EventHandler<F>
where
    F: Fn(Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    fn call(&self, message: Message) -> BoxFuture<'static, Result<(), BoxError>> {
        match Event::from_message(&message) {
            Ok(event) => Box::pin((self.0)(event)),
            Err(e) => Box::pin(async move { Err(Box::new(Permanent::new(e)) as BoxError) }),
        }
    }
}

/// A typed command [`Handler`]; see [`command_handler`].
#[derive(Debug, Clone)]
pub struct CommandHandler<F>(F);

/// A handler from `async fn(Command) -> Result<(), BoxError>`. Expired
/// commands (`meta.expiredTime` before the message arrived) are acked and
/// dropped without calling it, as the Python consumer does; a message that
/// is not a command is dead-lettered at once.
pub fn command_handler<F, Fut>(f: F) -> CommandHandler<F>
where
    F: Fn(Command) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    CommandHandler(f)
}

impl<F, Fut> Handler for CommandHandler<F>
where
    F: Fn(Command) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    fn call(&self, message: Message) -> BoxFuture<'static, Result<(), BoxError>> {
        match Command::from_message(&message) {
            Ok(cmd) if cmd.expired_time.is_some_and(|t| t < message.received_at) => {
                metrics::counter!("sinew_events_commands_expired_total").increment(1);
                tracing::info!(service = %cmd.service, name = %cmd.name, "expired command dropped");
                Box::pin(async { Ok(()) })
            }
            Ok(cmd) => Box::pin((self.0)(cmd)),
            Err(e) => Box::pin(async move { Err(Box::new(Permanent::new(e)) as BoxError) }),
        }
    }
}

/// A handler that prints each message as one JSON line on stdout
/// (`{"exchange", "routing_key", "app_id", "correlation_id", "redelivered", "body"}`),
/// for `sinew consume` tailing an exchange.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrintHandler;

impl PrintHandler {
    /// The JSON line printed for `message` (without the newline).
    pub fn line(message: &Message) -> String {
        serde_json::json!({
            "exchange": message.exchange,
            "routing_key": message.routing_key,
            "app_id": message.app_id,
            "correlation_id": message.correlation_id,
            "redelivered": message.redelivered,
            "body": message.body,
        })
        .to_string()
    }
}

impl Handler for PrintHandler {
    fn call(&self, message: Message) -> BoxFuture<'static, Result<(), BoxError>> {
        use std::io::Write;
        let line = Self::line(&message);
        Box::pin(async move {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()?;
            Ok(())
        })
    }
}

/// Whether `routing_key` matches the topic `pattern` (`*` = exactly one
/// word, `#` = zero or more words, words separated by `.`).
///
/// The cost is linear in (pattern words + 1) × (key words + 1) whatever the
/// pattern, however many `#` it has (no backtracking).
///
/// ```
/// use sinew_events::topic_matches;
/// assert!(topic_matches("update.*", "update.base"));
/// assert!(!topic_matches("update.*", "update.base.extra"));
/// assert!(topic_matches("#.base", "update.base"));
/// assert!(topic_matches("#", ""));
/// ```
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    topic_matches_counted(pattern, routing_key, &mut 0)
}

/// [`topic_matches`], adding the cells it computed to `steps`.
///
/// A dynamic programme over words: after the first `i` pattern words,
/// `row[j]` says whether they match the first `j` key words. A `#` row is
/// the running OR of the previous row (zero or more words), any other word
/// moves each match one key word on when the word fits.
fn topic_matches_counted(pattern: &str, routing_key: &str, steps: &mut u64) -> bool {
    let key: Vec<&str> = if routing_key.is_empty() {
        Vec::new()
    } else {
        routing_key.split('.').collect()
    };
    let mut row = vec![false; key.len() + 1];
    let mut next = vec![false; key.len() + 1];
    row[0] = true;
    let words = (!pattern.is_empty()).then(|| pattern.split('.'));
    for word in words.into_iter().flatten() {
        if word == "#" {
            let mut any = false;
            for (cell, &prev) in next.iter_mut().zip(&row) {
                any |= prev;
                *cell = any;
            }
        } else {
            next[0] = false;
            for (j, &kw) in key.iter().enumerate() {
                next[j + 1] = row[j] && (word == "*" || word == kw);
            }
        }
        *steps += next.len() as u64;
        std::mem::swap(&mut row, &mut next);
        if !row.contains(&true) {
            return false;
        }
    }
    row[key.len()]
}

type Shared = Arc<dyn Handler>;

/// Handlers by exchange and routing key. Lookup order: an exact routing
/// key, then topic patterns (`*`, `#`) in the order added, then the
/// exchange's catch-all, then the default handler.
///
/// ```
/// use sinew_events::{handler_fn, Router};
/// let ok = || handler_fn(|_m| async { Ok(()) });
/// let router = Router::new()
///     .route("user", "update.base", ok())
///     .route("user", "remind.*", ok())
///     .exchange("user", ok())
///     .default_handler(ok());
/// assert_eq!(router.resolve("user", "update.base"), Some("user/update.base"));
/// assert_eq!(router.resolve("user", "remind.photo"), Some("user/remind.*"));
/// assert_eq!(router.resolve("user", "delete"), Some("user/*"));
/// assert_eq!(router.resolve("order", "x"), Some("default"));
/// ```
#[derive(Clone, Default)]
pub struct Router {
    exact: HashMap<String, HashMap<String, (String, Shared)>>,
    patterns: Vec<(String, String, String, Shared)>,
    catch_all: HashMap<String, (String, Shared)>,
    default: Option<Shared>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut routes: Vec<&str> = self
            .exact
            .values()
            .flat_map(|m| m.values().map(|(n, _)| n.as_str()))
            .collect();
        routes.extend(self.patterns.iter().map(|(_, _, n, _)| n.as_str()));
        routes.extend(self.catch_all.values().map(|(n, _)| n.as_str()));
        f.debug_struct("Router")
            .field("routes", &routes)
            .field("default", &self.default.is_some())
            .finish()
    }
}

impl Router {
    /// An empty router (every message is unrouted: acked and counted).
    pub fn new() -> Self {
        Self::default()
    }

    /// Handle `routing_key` on `exchange`; a key with `*` or `#` words is a
    /// topic pattern.
    pub fn route(mut self, exchange: &str, routing_key: &str, handler: impl Handler) -> Self {
        let name = format!("{exchange}/{routing_key}");
        let h: Shared = Arc::new(handler);
        if routing_key.split('.').any(|w| w == "*" || w == "#") {
            self.patterns
                .push((exchange.to_owned(), routing_key.to_owned(), name, h));
        } else {
            self.exact
                .entry(exchange.to_owned())
                .or_default()
                .insert(routing_key.to_owned(), (name, h));
        }
        self
    }

    /// Handle every routing key of `exchange` not routed otherwise.
    pub fn exchange(mut self, exchange: &str, handler: impl Handler) -> Self {
        self.catch_all.insert(
            exchange.to_owned(),
            (format!("{exchange}/*"), Arc::new(handler)),
        );
        self
    }

    /// Handle every message not routed otherwise.
    pub fn default_handler(mut self, handler: impl Handler) -> Self {
        self.default = Some(Arc::new(handler));
        self
    }

    /// The name of the route a message would take (`exchange/key`,
    /// `exchange/pattern`, `exchange/*` or `default`), if any.
    pub fn resolve(&self, exchange: &str, routing_key: &str) -> Option<&str> {
        self.lookup(exchange, routing_key).map(|(n, _)| n)
    }

    pub(crate) fn lookup(&self, exchange: &str, routing_key: &str) -> Option<(&str, &Shared)> {
        if let Some((n, h)) = self.exact.get(exchange).and_then(|m| m.get(routing_key)) {
            return Some((n, h));
        }
        if let Some((_, _, n, h)) = self
            .patterns
            .iter()
            .find(|(e, p, _, _)| e == exchange && topic_matches(p, routing_key))
        {
            return Some((n, h));
        }
        if let Some((n, h)) = self.catch_all.get(exchange) {
            return Some((n, h));
        }
        self.default.as_ref().map(|h| ("default", h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn topic_patterns() {
        let cases = [
            ("a.b", "a.b", true),
            ("a.*", "a.b", true),
            ("a.*", "a", false),
            ("a.*", "a.b.c", false),
            ("a.#", "a", true),
            ("a.#", "a.b.c", true),
            ("#.c", "a.b.c", true),
            ("#.c", "c", true),
            ("*.b.#", "a.b", true),
            ("*.b.#", "b", false),
            ("#", "anything.at.all", true),
            ("*", "", false),
            ("", "", true),
            ("a.#.c", "a.c", true),
            ("a.#.c", "a.x.y.c", true),
            ("a.#.c", "a.x.y.d", false),
        ];
        for (p, k, want) in cases {
            assert_eq!(topic_matches(p, k), want, "{p} ~ {k}");
        }
    }

    /// The backtracking matcher this replaced: exponential in the number of
    /// `#`, kept as the reference for the property test.
    fn reference(pattern: &str, routing_key: &str) -> bool {
        fn go(p: &[&str], k: &[&str]) -> bool {
            match p.split_first() {
                None => k.is_empty(),
                Some((&"#", rest)) => (0..=k.len()).any(|i| go(rest, &k[i..])),
                Some((&w, rest)) => match k.split_first() {
                    Some((&kw, krest)) => (w == "*" || w == kw) && go(rest, krest),
                    None => false,
                },
            }
        }
        let p: Vec<&str> = if pattern.is_empty() {
            Vec::new()
        } else {
            pattern.split('.').collect()
        };
        let k: Vec<&str> = if routing_key.is_empty() {
            Vec::new()
        } else {
            routing_key.split('.').collect()
        };
        go(&p, &k)
    }

    #[test]
    fn pathological_patterns_cost_linear_steps() {
        // 60 `#` then a word the key lacks, against a 127-word key (the
        // most an AMQP routing key of 255 bytes can have): the backtracking
        // matcher explored ~C(187, 60) splits; this one fills one row per
        // pattern word.
        let pattern = format!("{}.x", vec!["#"; 60].join("."));
        let key = vec!["a"; 127].join(".");
        assert!(key.len() <= 255);
        let mut steps = 0u64;
        assert!(!topic_matches_counted(&pattern, &key, &mut steps));
        let (p, k) = (61u64, 127u64);
        assert!(steps <= (p + 1) * (k + 1), "{steps} steps");
        // The same with alternating `#` and `*`, which matches.
        let pattern = vec!["#.*"; 60].join(".");
        let mut steps = 0u64;
        assert!(topic_matches_counted(&pattern, &key, &mut steps));
        assert!(steps <= (120 + 1) * (k + 1), "{steps} steps");
        // Doubling the `#` count doubles the steps, no more.
        let long = format!("{}.x", vec!["#"; 120].join("."));
        let mut double = 0u64;
        assert!(!topic_matches_counted(&long, &key, &mut double));
        let mut single = 0u64;
        topic_matches_counted(&format!("{}.x", vec!["#"; 60].join(".")), &key, &mut single);
        assert!(double <= 2 * single, "{single} then {double}");
    }

    proptest! {
        #[test]
        fn hash_matches_everything(key in "[a-z]{1,3}(\\.[a-z]{1,3}){0,4}") {
            prop_assert!(topic_matches("#", &key));
            prop_assert!(topic_matches(&key, &key));
            let stars = key.split('.').map(|_| "*").collect::<Vec<_>>().join(".");
            prop_assert!(topic_matches(&stars, &key));
        }

        #[test]
        fn same_answers_as_backtracking(
            pattern in "(#|\\*|a|b|)(\\.(#|\\*|a|b|)){0,6}",
            key in "(a|b|)(\\.(a|b|)){0,6}",
        ) {
            prop_assert_eq!(topic_matches(&pattern, &key), reference(&pattern, &key), "{} ~ {}", pattern, key);
        }
    }
}
