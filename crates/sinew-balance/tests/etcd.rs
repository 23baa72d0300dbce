#![allow(clippy::unwrap_used)]
//! The etcd registry against a real `etcd` (Debian's `etcd-server`, which
//! `scripts/setup.sh` installs) that each test starts on free loopback ports
//! and stops afterwards (`support/etcd.rs`).
#![cfg(feature = "etcd")]

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use sinew_balance::source::Discovered;
use sinew_balance::{Endpoint, EtcdDiscovery, Registration};
use tokio::time::{timeout, Instant};
use tower::discover::Change;

#[path = "support/etcd.rs"]
mod support;
use support::Etcd;

/// The next change, skipping reported errors (a restart reports some).
async fn next_change(
    s: &mut (impl Stream<Item = Discovered> + Unpin),
    within: Duration,
) -> Change<String, Endpoint> {
    timeout(within, async {
        loop {
            match s.next().await {
                Some(Ok(c)) => return c,
                Some(Err(_)) => continue,
                None => panic!("discovery stream ended"),
            }
        }
    })
    .await
    .expect("a change in time")
}

fn inserted(c: &Change<String, Endpoint>) -> Option<&Endpoint> {
    match c {
        Change::Insert(_, e) => Some(e),
        Change::Remove(_) => None,
    }
}

#[tokio::test]
async fn registration_appears_within_a_second_and_goes_on_drop() {
    let etcd = Etcd::start().await;
    let mut watch = Box::pin(EtcdDiscovery::new([etcd.url()], "orders").into_stream());
    // Nothing there yet: give the watcher time to read the (empty) prefix.
    let endpoint = Endpoint::new("127.0.0.1:7001")
        .weight(2.5)
        .meta("zone", "a");
    let t0 = Instant::now();
    let reg = Registration::register(
        [etcd.url()],
        "orders",
        "i-1",
        &endpoint,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(reg.key(), "/sinew/services/orders/i-1");
    let c = next_change(&mut watch, Duration::from_secs(1)).await;
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(inserted(&c), Some(&endpoint));

    // The value is the shared JSON layout.
    let mut raw = etcd_client::Client::connect([etcd.url()], None)
        .await
        .unwrap();
    let got = raw.get("/sinew/services/orders/i-1", None).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(got.kvs()[0].value()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"address": "127.0.0.1:7001", "weight": 2.5, "metadata": {"zone": "a"}})
    );

    drop(reg);
    let c = next_change(&mut watch, Duration::from_secs(2)).await;
    assert!(
        matches!(c, Change::Remove(ref a) if a == "127.0.0.1:7001"),
        "{c:?}"
    );
    let got = raw
        .get(
            "/sinew/services/orders/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    assert!(got.kvs().is_empty());
}

#[tokio::test]
async fn a_dead_registrant_disappears_after_the_lease_ttl() {
    let etcd = Etcd::start().await;
    let url = etcd.url();
    // The registrant "dies": its runtime is shut down without the handle
    // being dropped, so keep-alives just stop and nothing is revoked.
    let registered = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let reg = rt.block_on(Registration::register(
            [url],
            "billing",
            "i-9",
            &Endpoint::new("127.0.0.1:7009"),
            Duration::from_secs(2),
        ));
        let reg = reg.unwrap();
        std::mem::forget(reg);
        drop(rt);
        Instant::now()
    })
    .join()
    .unwrap();
    let mut watch = Box::pin(EtcdDiscovery::new([etcd.url()], "billing").into_stream());
    let c = next_change(&mut watch, Duration::from_secs(2)).await;
    assert_eq!(
        inserted(&c).map(|e| e.address.as_str()),
        Some("127.0.0.1:7009")
    );
    let c = next_change(&mut watch, Duration::from_secs(10)).await;
    assert!(
        matches!(c, Change::Remove(ref a) if a == "127.0.0.1:7009"),
        "{c:?}"
    );
    let gone = registered.elapsed();
    // Not before the TTL (2 s), and not long after it.
    assert!(gone >= Duration::from_millis(1500), "{gone:?}");
    assert!(gone < Duration::from_secs(8), "{gone:?}");
}

#[tokio::test]
async fn a_watcher_survives_an_etcd_restart() {
    let mut etcd = Etcd::start().await;
    let mut watch = Box::pin(
        EtcdDiscovery::new([etcd.url()], "search")
            .max_backoff(Duration::from_millis(200))
            .into_stream(),
    );
    let _a = Registration::register(
        [etcd.url()],
        "search",
        "a",
        &Endpoint::new("127.0.0.1:7101"),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let c = next_change(&mut watch, Duration::from_secs(2)).await;
    assert_eq!(
        inserted(&c).map(|e| e.address.as_str()),
        Some("127.0.0.1:7101")
    );

    etcd.kill();
    etcd.spawn().await;

    // A registration made after the restart reaches the same watcher, and
    // the one from before is not announced again (nothing changed for it).
    let _b = Registration::register(
        [etcd.url()],
        "search",
        "b",
        &Endpoint::new("127.0.0.1:7102"),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let c = next_change(&mut watch, Duration::from_secs(10)).await;
    assert_eq!(
        inserted(&c).map(|e| e.address.as_str()),
        Some("127.0.0.1:7102")
    );
}

#[tokio::test]
async fn bad_records_are_skipped_and_reported_and_the_rest_kept() {
    let etcd = Etcd::start().await;
    let mut raw = etcd_client::Client::connect([etcd.url()], None)
        .await
        .unwrap();
    raw.put(
        "/sinew/services/cart/good",
        r#"{"address":"127.0.0.1:7201"}"#,
        None,
    )
    .await
    .unwrap();
    raw.put("/sinew/services/cart/bad", "not json", None)
        .await
        .unwrap();
    raw.put(
        "/sinew/services/cart/noport",
        r#"{"address":"example"}"#,
        None,
    )
    .await
    .unwrap();
    // A record larger than the limit is refused before it is parsed.
    let huge = format!(
        r#"{{"address":"127.0.0.1:7202","metadata":{{"pad":"{}"}}}}"#,
        "x".repeat(sinew_balance::etcd::MAX_RECORD_BYTES)
    );
    raw.put("/sinew/services/cart/huge", huge, None)
        .await
        .unwrap();
    let mut watch = Box::pin(EtcdDiscovery::new([etcd.url()], "cart").into_stream());
    let mut errors = Vec::new();
    let mut inserts = Vec::new();
    while inserts.is_empty() || errors.len() < 3 {
        match timeout(Duration::from_secs(2), watch.next()).await.unwrap() {
            Some(Ok(c)) => inserts.push(c),
            Some(Err(e)) => errors.push(e.to_string()),
            None => panic!("ended"),
        }
    }
    assert_eq!(inserts.len(), 1);
    assert_eq!(inserted(&inserts[0]).map(|e| e.weight), Some(1.0));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("/sinew/services/cart/bad")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("host:port")), "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("cart/huge") && e.contains("larger than")),
        "{errors:?}"
    );
    // Registering with a bad service name is refused before any traffic.
    let err = Registration::register(
        [etcd.url()],
        "a/b",
        "x",
        &Endpoint::new("127.0.0.1:1"),
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("service name"));
}

#[tokio::test]
async fn registering_with_etcd_down_is_an_error_not_a_hang() {
    // Nothing listens on this port (it was free a moment ago).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t0 = Instant::now();
    let got = Registration::register(
        [format!("http://127.0.0.1:{port}")],
        "orders",
        "i-1",
        &Endpoint::new("127.0.0.1:7001"),
        Duration::from_secs(10),
    )
    .await;
    let err = got.expect_err("no etcd: registration fails");
    assert!(
        err.to_string().starts_with("etcd registration failed:"),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    // Bad names are refused before any connection.
    for (service, id) in [
        ("", "i-1"),
        ("a/b", "i-1"),
        ("orders", ""),
        ("orders", "x/y"),
    ] {
        let got = Registration::register(
            [format!("http://127.0.0.1:{port}")],
            service,
            id,
            &Endpoint::new("127.0.0.1:7001"),
            Duration::from_secs(10),
        )
        .await;
        assert!(got.is_err(), "{service:?} {id:?}");
    }
    let got = Registration::register(
        [format!("http://127.0.0.1:{port}")],
        "orders",
        "i-1",
        &Endpoint::new("no-port"),
        Duration::from_secs(10),
    )
    .await;
    let err = got.expect_err("an address without a port is refused");
    assert!(err.to_string().contains("host:port"), "{err}");
}
