//! Config files (serde feature): what `sinew consume --config` and
//! `sinew relay` read.
#![cfg(feature = "serde")]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sinew_events::{Binding, ConsumerConfig, PrintHandler, RelayConfig};

#[test]
fn consumer_config_from_toml() {
    let text = r#"
        amqp_url = "amqp://guest:guest@127.0.0.1:5672/%2f"
        queue = "tail-user"
        durable = false
        auto_delete = true
        prefetch = 100
        concurrency = 8
        max_attempts = 3
        retry_delay = "250ms"
        max_retry_delay = "2s"

        [[bindings]]
        exchange = "user"

        [[bindings]]
        exchange = "order"
        routing_key = "created.*"
    "#;
    let c: ConsumerConfig = toml::from_str(text).unwrap();
    assert_eq!(c.queue, "tail-user");
    assert!(!c.durable && c.auto_delete);
    assert_eq!(c.retry_delay, Duration::from_millis(250));
    assert_eq!(c.max_retry_delay, Duration::from_secs(2));
    assert_eq!(
        c.bindings,
        vec![Binding::all("user"), Binding::new("order", "created.*")]
    );
    assert_eq!(c.dead_letter_queue_name(), "tail-user.dead-letter");
    // Unset keys keep their defaults.
    assert_eq!(c.reconnect_max, ConsumerConfig::default().reconnect_max);
    // Round trip.
    let back: ConsumerConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
}

#[test]
fn bad_config_is_rejected_with_the_key() {
    let err = toml::from_str::<ConsumerConfig>("queue = \"q\"\nprefech = 5\n").unwrap_err();
    assert!(err.to_string().contains("prefech"), "{err}");
    let err = toml::from_str::<ConsumerConfig>("retry_delay = \"soon\"\n").unwrap_err();
    assert!(err.to_string().contains("invalid duration"), "{err}");
    let err = toml::from_str::<RelayConfig>("batch_size = -1\n").unwrap_err();
    assert!(err.to_string().contains("batch_size"), "{err}");
}

#[test]
fn relay_config_from_toml() {
    let c: RelayConfig = toml::from_str(
        r#"
        database_url = "postgres://postgres@127.0.0.1/app"
        app_id = "orders"
        poll_interval = "500ms"
        listen = false
    "#,
    )
    .unwrap();
    assert_eq!(c.app_id, "orders");
    assert_eq!(c.poll_interval, Duration::from_millis(500));
    assert!(!c.listen);
    assert_eq!(c.batch_size, 500);
    assert_eq!(c.table, "sinew_outbox");
}

#[test]
fn print_handler_line() {
    let m = sinew_events::Message {
        exchange: "user".into(),
        routing_key: "update.base".into(),
        body: serde_json::json!({"eventId": 1}),
        app_id: Some("orders".into()),
        correlation_id: None,
        redelivered: false,
        received_at: std::time::UNIX_EPOCH,
        attempt: 1,
    };
    let v: serde_json::Value = serde_json::from_str(&PrintHandler::line(&m)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"exchange": "user", "routing_key": "update.base", "app_id": "orders",
            "correlation_id": null, "redelivered": false, "body": {"eventId": 1}})
    );
}
