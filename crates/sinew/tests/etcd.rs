#![allow(clippy::unwrap_used)]
//! `[balance] etcd` end to end: a client built from its config file follows
//! the instances registered in a real etcd (started on free loopback ports
//! by the test). Needs the `etcd` feature; `scripts/test.sh` runs it with
//! `cargo test -p sinew --features etcd --test etcd`. Real time: etcd's
//! watches and leases run on its clock, not tokio's.
#![cfg(feature = "etcd")]

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use sinew::balance::{Endpoint, Registration};
use sinew::Client;
use tokio::time::Instant;

#[path = "../../sinew-balance/tests/support/etcd.rs"]
mod support;
use support::Etcd;

/// A server answering `GET /who` with `name`; its `host:port`.
async fn serve(name: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/who", get(move || async move { name }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr.to_string()
}

async fn who(client: &Client) -> String {
    client
        .get("/who")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn register(etcd: &Etcd, id: &str, address: &str) -> Registration {
    Registration::register(
        [etcd.url()],
        "inventory",
        id,
        &Endpoint::new(address),
        Duration::from_secs(10),
    )
    .await
    .unwrap()
}

/// Call until `pred` holds for `n` answers in a row, within `within`.
async fn settles(client: &Client, n: usize, within: Duration, pred: impl Fn(&str) -> bool) {
    let t0 = Instant::now();
    let mut run = 0;
    while run < n {
        assert!(t0.elapsed() < within, "not settled in {within:?}");
        if pred(&who(client).await) {
            run += 1;
        } else {
            run = 0;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn a_client_configured_with_etcd_follows_registrations() {
    let etcd = Etcd::start().await;
    let (a, b) = (serve("a").await, serve("b").await);
    let reg_a = register(&etcd, "a", &a).await;
    let config = sinew::config::ClientConfig::from_toml(
        &format!(
            "base_url = \"http://inventory\"\n[balance]\nstrategy = \"round-robin\"\n\
             etcd = {{ endpoints = [\"{}\"], service = \"inventory\" }}\n\
             wait_for_endpoints = \"2s\"\n",
            etcd.url()
        ),
        "client.toml",
    )
    .unwrap();
    let client = sinew::ClientBuilder::from_config(config).build().unwrap();
    // The first call waits for the watch's first answer.
    assert_eq!(who(&client).await, "a");

    // A new instance gets calls within a second.
    let reg_b = register(&etcd, "b", &b).await;
    settles(&client, 1, Duration::from_secs(1), |w| w == "b").await;

    // A deregistered one gets none after a second.
    reg_a.deregister().await;
    settles(&client, 10, Duration::from_secs(1), |w| w == "b").await;
    drop(reg_b);
}
