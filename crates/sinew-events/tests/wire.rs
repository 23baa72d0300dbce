//! docs/compatibility.md (django-microservices-communication): the exact captured bytes,
//! parsed by sinew; sinew's bytes, parsed as the Python side would read them.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};
use sinew_events::wire::{
    format_timestamp, parse_timestamp, properties, CommandEnvelope, EventEnvelope,
};
use sinew_events::NewCommand;

/// The real captured event (exchange `user`, routing key `update.base`),
/// byte for byte: jsonb key order, `\uXXXX` escapes, `", "`/`": "` separators.
const CAPTURED_EVENT: &str = r#"{"eventId": 10, "payload": {"userId": 1, "cityName": "\u0422\u0430\u0448\u043a\u0435\u043d\u0442", "updatedAt": "2026-11-23T20:04:25.198Z", "middleName": null}, "aggregate": "user", "event_time": "2026-11-23T20:04:25.198Z", "event_type": "update.base"}"#;

/// The real captured command (exchange `inventory`, routing key `reserve`).
const CAPTURED_COMMAND: &str = r#"{"orderId": "ord-31059", "quantity": 2, "shipping": {"warehouseId": 3, "expressDelivery": true}, "meta": {"expiredTime": "2026-11-23T20:05:25.207Z"}}"#;

fn at(s: &str) -> std::time::SystemTime {
    parse_timestamp(s).unwrap()
}

#[test]
fn captured_event_parses() {
    let e = EventEnvelope::parse(CAPTURED_EVENT.as_bytes()).unwrap();
    assert_eq!(e.event_id, 10);
    assert_eq!(e.aggregate, "user");
    assert_eq!(e.event_type, "update.base");
    assert_eq!(
        e.event_time,
        UNIX_EPOCH + Duration::from_millis(1_795_464_265_198)
    );
    assert_eq!(
        e.payload,
        json!({"userId": 1, "cityName": "Ташкент", "updatedAt": "2026-11-23T20:04:25.198Z", "middleName": null})
    );
}

#[test]
fn sinew_event_reads_like_the_captured_one() {
    // What sinew emits for the same event, from a snake_case payload.
    let ours = EventEnvelope {
        event_id: 10,
        event_time: at("2026-11-23T20:04:25.198Z"),
        aggregate: "user".into(),
        event_type: "update.base".into(),
        payload: json!({"user_id": 1, "city_name": "Ташкент", "updated_at": "2026-11-23T20:04:25.198Z", "middle_name": null}),
    }
    .to_body();
    // The Python consumer does json.loads(body): same keys, casing, types
    // and timestamp format => equal values.
    let theirs: Value = serde_json::from_str(CAPTURED_EVENT).unwrap();
    let mine: Value = serde_json::from_slice(&ours).unwrap();
    assert_eq!(mine, theirs);
    // And the exact bytes sinew sends (compact, sorted-free fixed order).
    assert_eq!(
        String::from_utf8(ours.clone()).unwrap(),
        r#"{"eventId":10,"event_time":"2026-11-23T20:04:25.198Z","aggregate":"user","event_type":"update.base","payload":{"cityName":"Ташкент","middleName":null,"updatedAt":"2026-11-23T20:04:25.198Z","userId":1}}"#
    );
    // Round trip through our own parser.
    let back = EventEnvelope::parse(&ours).unwrap();
    assert_eq!(back.payload, theirs["payload"]);
}

#[test]
fn captured_command_parses_and_round_trips() {
    let c = CommandEnvelope::parse(CAPTURED_COMMAND.as_bytes()).unwrap();
    assert_eq!(c.expired_time, Some(at("2026-11-23T20:05:25.207Z")));
    assert_eq!(
        Value::Object(c.args.clone()),
        json!({"orderId": "ord-31059", "quantity": 2, "shipping": {"warehouseId": 3, "expressDelivery": true}})
    );
    assert!(c.is_expired(at("2026-11-23T20:05:25.208Z")));
    assert!(!c.is_expired(at("2026-11-23T20:05:25.207Z")));

    // sinew's command for the same arguments, sent 60s before expiry.
    let sent = at("2026-11-23T20:04:25.207Z");
    let ours = NewCommand::new(
        "inventory",
        json!({"order_id": "ord-31059", "quantity": 2, "shipping": {"warehouse_id": 3, "express_delivery": true}}),
    )
    .name("reserve")
    .timeout(Duration::from_secs(60))
    .body_at(sent)
    .unwrap();
    let theirs: Value = serde_json::from_str(CAPTURED_COMMAND).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&ours).unwrap(), theirs);
}

#[test]
fn expired_time_always_has_a_millisecond_fraction() {
    let body = NewCommand::new("sms", json!({"phone": "998990000000"}))
        .timeout(Duration::from_secs(5))
        .body_at(UNIX_EPOCH + Duration::from_secs(1_795_464_265))
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["meta"]["expiredTime"], "2026-11-23T20:04:30.000Z");
    let no_timeout = NewCommand::new("sms", json!({"phone": "1"}))
        .body_at(UNIX_EPOCH)
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&no_timeout).unwrap()["meta"],
        json!({})
    );
    assert!(NewCommand::new("sms", json!([1]))
        .body_at(UNIX_EPOCH)
        .is_err());
}

#[test]
fn lenient_on_what_the_python_side_may_send() {
    // The README's form: string eventId, camelCase eventTime/eventType,
    // microseconds; and +00:00 offsets.
    let readme = br#"{"eventId": "2", "eventTime": "2023-06-02T10:58:58.340174Z", "eventType": "update.base", "aggregate": "user", "payload": {}}"#;
    let e = EventEnvelope::parse(readme).unwrap();
    assert_eq!(e.event_id, 2);
    assert_eq!(e.event_type, "update.base");
    assert_eq!(format_timestamp(e.event_time), "2023-06-02T10:58:58.340Z");
    for ts in [
        "2023-06-02T10:58:58Z",
        "2023-06-02T10:58:58+00:00",
        "2023-06-02T10:58:58.000+00:00",
    ] {
        let body = format!(
            r#"{{"eventId": 1, "event_time": "{ts}", "aggregate": "a", "event_type": "b", "payload": null}}"#
        );
        let e = EventEnvelope::parse(body.as_bytes()).unwrap();
        assert_eq!(
            format_timestamp(e.event_time),
            "2023-06-02T10:58:58.000Z",
            "{ts}"
        );
    }
    let cmd = CommandEnvelope::parse(
        br#"{"x": 1, "meta": {"expired_time": "2023-06-02T10:58:58+00:00"}}"#,
    )
    .unwrap();
    assert_eq!(cmd.expired_time, Some(at("2023-06-02T10:58:58.000Z")));
}

#[test]
fn properties_match_the_python_publisher() {
    let p = properties("orders", Some("corr-1"));
    assert_eq!(p.content_type().as_ref().unwrap().as_str(), "text/json");
    assert_eq!(*p.delivery_mode(), Some(2));
    assert_eq!(p.app_id().as_ref().unwrap().as_str(), "orders");
    assert_eq!(p.correlation_id().as_ref().unwrap().as_str(), "corr-1");
    assert!(properties("orders", None).correlation_id().is_none());
}
