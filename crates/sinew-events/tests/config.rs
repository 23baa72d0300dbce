//! Config files (serde feature): what `sinew consume --config` and
//! `sinew relay` read.
#![cfg(feature = "serde")]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sinew_events::{
    Binding, ConsumerConfig, ExchangeConfig, ExchangeType, PrintHandler, PublisherConfig,
    RelayConfig, Secret, TlsConfig,
};

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

#[test]
fn tls_sections_from_toml() {
    let c: RelayConfig = toml::from_str(
        r#"
        database_url = "postgres://orders@db.internal/app"
        amqp_url = "amqps://orders@broker.internal:5671/%2f"

        [database_tls]
        ca_file = "/etc/sinew/db-ca.pem"
        verify_hostname = false

        [amqp_tls]
        ca_file = "/etc/sinew/ca.pem"
        cert_file = "/etc/sinew/orders.pem"
        key = { env = "ORDERS_AMQP_KEY" }
    "#,
    )
    .unwrap();
    assert_eq!(
        c.database_tls,
        Some(TlsConfig {
            ca_file: Some("/etc/sinew/db-ca.pem".into()),
            verify_hostname: false,
            ..TlsConfig::default()
        })
    );
    let amqp = c.amqp_tls.clone().unwrap();
    assert_eq!(amqp.cert_file, Some("/etc/sinew/orders.pem".into()));
    assert_eq!(amqp.key, Some(Secret::Env("ORDERS_AMQP_KEY".into())));
    assert!(amqp.verify_hostname, "verify-full unless turned off");
    // Round trip, and the key never printed.
    let back: RelayConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    let c: ConsumerConfig = toml::from_str("[amqp_tls]\nkey = { text = \"s3cret\" }\n").unwrap();
    assert!(!format!("{c:?}").contains("s3cret"));
    // No section: no TLS settings (an amqps:// URL still verifies with the system's roots).
    assert_eq!(RelayConfig::default().amqp_tls, None);
    // A misspelt key is refused with its name.
    let err = toml::from_str::<ConsumerConfig>("[amqp_tls]\nca = \"/x\"\n").unwrap_err();
    assert!(err.to_string().contains("unknown field `ca`"), "{err}");
}

#[test]
fn exchanges_like_django_exchanges() {
    let c: ConsumerConfig = toml::from_str(
        r#"
        queue = "billing"
        exchanges = [
            "my-exchange1",
            { name = "my-other-exchange", type = "fanout" },
            { name = "owned-elsewhere", type = "direct", passive = true },
            { name = "by-header", type = "headers" },
        ]

        [[bindings]]
        exchange = "my-exchange1"
        routing_key = "event.*"

        [[bindings]]
        exchange = "my-other-exchange"

        [[bindings]]
        exchange = "by-header"
        arguments = { x-match = "any", routing_key = "created" }
    "#,
    )
    .unwrap();
    assert_eq!(
        c.exchanges,
        vec![
            ExchangeConfig::new("my-exchange1", ExchangeType::Topic),
            ExchangeConfig::new("my-other-exchange", ExchangeType::Fanout),
            ExchangeConfig {
                passive: true,
                ..ExchangeConfig::new("owned-elsewhere", ExchangeType::Direct)
            },
            ExchangeConfig::new("by-header", ExchangeType::Headers),
        ]
    );
    assert_eq!(
        c.bindings[2],
        Binding::new("by-header", "#")
            .argument("x-match", "any")
            .argument("routing_key", "created")
    );
    let back: ConsumerConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    let r: RelayConfig =
        toml::from_str("exchanges = [{ name = \"audit\", type = \"fanout\" }]").unwrap();
    assert_eq!(
        r.exchanges,
        vec![ExchangeConfig::new("audit", ExchangeType::Fanout)]
    );
    let p: PublisherConfig = toml::from_str("exchanges = [\"user\"]").unwrap();
    assert_eq!(p.exchanges[0].kind, ExchangeType::Topic);
    // Unknown types and keys are refused.
    for bad in [
        "exchanges = [{ name = \"a\", type = \"fanot\" }]",
        "exchanges = [{ name = \"a\", kind = \"fanout\" }]",
        "exchanges = [{ type = \"fanout\" }]",
    ] {
        let err = toml::from_str::<ConsumerConfig>(bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("exchange name or { name, type, passive }"),
            "{bad}: {err}"
        );
    }
}
