#![allow(clippy::unwrap_used)]
//! `sinew relay` and `sinew consume` against the real RabbitMQ on 127.0.0.1
//! (scripts/test.sh starts it when it is down) and SQLite.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sinew_events::{Database, Outbox};

#[tokio::test(flavor = "multi_thread")]
async fn relay_publishes_the_outbox_and_stops_on_sigint() {
    let dir = std::env::temp_dir().join(format!("sinew-cli-relay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite:{}", dir.join("outbox.db").display());
    let db = Database::connect(&url).await.unwrap();
    let table = "cli_outbox";
    let outbox = Outbox::new(db.clone(), table).unwrap();
    outbox.migrate().await.unwrap();
    let exchange = format!("sinew-cli-test-{}", std::process::id());
    for i in 0..5 {
        outbox
            .publish_event(&exchange, "created", json!({"item_id": i}))
            .await
            .unwrap();
    }
    assert_eq!(outbox.pending().await.unwrap(), 5);

    let mut child = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args([
            "relay",
            "--database-url",
            &url,
            "--table",
            table,
            "--app-id",
            "cli-test",
            "--poll-interval",
            "100ms",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while outbox.pending().await.unwrap() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the relay published nothing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || {
        let _ = &mut child;
        child.wait_with_output()
    })
    .await
    .unwrap()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("published 5"), "{err}");
    outbox.drop_table().await.unwrap();
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn consume_with_a_bad_config_is_a_usage_error() {
    let dir = std::env::temp_dir().join(format!("sinew-cli-consume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("consumer.toml");
    std::fs::write(&cfg, "queue = \"q\"\nprefetchh = 10\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(["consume", "--config", &cfg.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("prefetchh"));
    let _ = std::fs::remove_dir_all(&dir);
}
