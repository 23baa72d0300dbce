#![allow(clippy::unwrap_used)]
//! Services by name through a real Nacos-compatible server (rnacos, which
//! `scripts/setup.sh` installs): `[registry]`, `[services.NAME]` and
//! `[server.register]`.

#[path = "../../sinew-balance/tests/support/nacos.rs"]
mod nacos;
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use sinew::config::ClientConfig;
use sinew::registry::Registration;
use sinew::{ErrorKind, Services};

/// A backend answering its name on `/who`, counting calls on `/flaky`
/// (503 the first time).
async fn backend(name: &'static str, flaky: Arc<AtomicUsize>) -> String {
    let app = Router::new()
        .route("/who", get(move || async move { name }))
        .route(
            "/flaky",
            get(move || {
                let flaky = flaky.clone();
                async move {
                    if flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            }),
        );
    support::serve(app)
        .await
        .trim_start_matches("http://")
        .to_string()
}

async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !f().await {
        assert!(Instant::now() < until, "not within 5 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_by_name_through_nacos() {
    let nacos = nacos::Nacos::start().await;
    let flaky = Arc::new(AtomicUsize::new(0));
    let a = backend("a", flaky.clone()).await;
    let b = backend("b", flaky.clone()).await;
    // Another client (as aio-service-caller would) registers `a`.
    nacos.register_raw("inventory", &a, "").await;

    let text = format!(
        r#"
timeout = "5s"
[retry]
max_attempts = 1
[balance]
wait_for_endpoints = "2s"
[registry]
nacos = {{ server_addr = "{addr}" }}
static = {{ billing = ["{b}"] }}
[services.inventory]
timeout = "3s"
[services.inventory.retry]
max_attempts = 2
backoff = "constant"
base_delay = "1ms"
[services.inventory.balance]
strategy = "round-robin"
[server.register]
service = "inventory"
address = "{b}"
metadata = {{ zone = "b" }}
"#,
        addr = nacos.addr()
    );
    let services = Services::from_toml(&text, "services.toml").unwrap();

    // [registry] nacos: the instance another client registered.
    let who = services.get("inventory", "/who").send().await.unwrap();
    assert_eq!(who.text().await.unwrap(), "a");
    // [services.inventory]: its own retry (2 attempts) over the top-level 1.
    services.get("inventory", "/flaky").send().await.unwrap();
    assert_eq!(flaky.load(Ordering::SeqCst), 2);
    // [registry] static: a fixed table, no registry server involved.
    let who = services.get("billing", "/who").send().await.unwrap();
    assert_eq!(who.text().await.unwrap(), "b");

    // [server.register]: `b` registers itself as an instance of inventory;
    // the client sees it within a second or so and spreads calls over both.
    let config = ClientConfig::from_toml(&text, "services.toml").unwrap();
    let registration = Registration::register(
        config.registry.as_ref().unwrap(),
        config.server.as_ref().unwrap().register.as_ref().unwrap(),
    )
    .await
    .unwrap();
    let listed = nacos
        .list_raw("serviceName=inventory&healthyOnly=true")
        .await;
    let hosts = listed["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{listed}");
    assert!(
        hosts.iter().any(|h| h["metadata"]["zone"] == "b"),
        "{listed}"
    );
    eventually("both instances called", async || {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..4 {
            let r = services.get("inventory", "/who").send().await.unwrap();
            seen.insert(r.text().await.unwrap());
        }
        seen.len() == 2
    })
    .await;

    // Deregistered: gone from Nacos, and no call goes to it once the
    // client has seen the change.
    registration.deregister().await;
    let listed = nacos
        .list_raw("serviceName=inventory&healthyOnly=true")
        .await;
    assert_eq!(listed["hosts"].as_array().unwrap().len(), 1, "{listed}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..6 {
        let r = services.get("inventory", "/who").send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "a");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_and_unreachable_registries_fail_clearly_and_in_time() {
    let nacos = nacos::Nacos::start().await;
    let text = format!(
        "timeout = \"1s\"\n[balance]\nwait_for_endpoints = \"300ms\"\n[registry]\nnacos = {{ server_addr = \"{}\", namespace = \"nowhere\" }}\n",
        nacos.addr()
    );
    let services = Services::from_toml(&text, "services.toml").unwrap();
    // A service nobody registered (or a namespace with nothing in it): no
    // endpoints, within the wait, never a hang.
    let started = Instant::now();
    let err = services.get("ghost", "/who").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoEndpoints, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A registry that cannot be reached: the same, within the deadline.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = closed.local_addr().unwrap();
    drop(closed);
    let text = format!(
        "timeout = \"1s\"\n[balance]\nwait_for_endpoints = \"300ms\"\n[registry]\nnacos = {{ server_addr = \"{gone}\" }}\n"
    );
    let services = Services::from_toml(&text, "services.toml").unwrap();
    let started = Instant::now();
    let err = services.get("inventory", "/who").send().await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::NoEndpoints | ErrorKind::Timeout),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A name that cannot be a host, and a registry that cannot register.
    let err = services.get("not a name", "/x").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    let config = ClientConfig::from_toml(
        "[registry]\ndns = \"{service}.internal:80\"\n[server.register]\nservice = \"a\"\naddress = \"127.0.0.1:1\"\n",
        "s.toml",
    )
    .unwrap();
    let err = Registration::register(
        config.registry.as_ref().unwrap(),
        config.server.as_ref().unwrap().register.as_ref().unwrap(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("needs [registry] nacos"), "{err}");
}
