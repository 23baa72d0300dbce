#![allow(clippy::unwrap_used)]
//! The Nacos registry against a real Nacos-compatible server (`rnacos`,
//! which `scripts/setup.sh` installs) that each test starts on free loopback
//! ports and stops afterwards (`support/nacos.rs`). Other clients are played
//! by the raw HTTP open API.
#![cfg(feature = "nacos")]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use futures_util::{Stream, StreamExt};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sinew_balance::nacos::NacosError;
use sinew_balance::source::Discovered;
use sinew_balance::{
    BalanceConfig, Endpoint, LoadBalanceLayer, NacosConfig, NacosDiscovery, NacosRegistration,
    Strategy,
};
use sinew_core::config::Secret;
use tokio::time::{timeout, Instant};
use tower::discover::Change;
use tower::{Layer, ServiceExt};

#[path = "support/nacos.rs"]
mod support;
use support::Nacos;

/// What a discovery stream announced so far.
struct Seen<S> {
    stream: S,
    set: BTreeMap<String, Endpoint>,
    errors: Vec<String>,
}

impl<S: Stream<Item = Discovered> + Unpin> Seen<S> {
    fn new(stream: S) -> Self {
        Seen {
            stream,
            set: BTreeMap::new(),
            errors: Vec::new(),
        }
    }

    /// Follow the stream until `done` holds of the set (and errors), or
    /// panic after `within`.
    async fn until(
        &mut self,
        within: Duration,
        what: &str,
        done: impl Fn(&BTreeMap<String, Endpoint>, &[String]) -> bool,
    ) {
        let deadline = Instant::now() + within;
        while !done(&self.set, &self.errors) {
            let next = tokio::time::timeout_at(deadline, self.stream.next()).await;
            match next {
                Ok(Some(Ok(Change::Insert(k, e)))) => {
                    self.set.insert(k, e);
                }
                Ok(Some(Ok(Change::Remove(k)))) => {
                    self.set.remove(&k);
                }
                Ok(Some(Err(e))) => self.errors.push(e.to_string()),
                Ok(None) => panic!("discovery stream ended"),
                Err(_) => panic!(
                    "{what}: not within {within:?}; set {:?}, errors {:?}",
                    self.set.keys().collect::<Vec<_>>(),
                    self.errors
                ),
            }
        }
    }

    fn addresses(&self) -> Vec<&str> {
        self.set.keys().map(String::as_str).collect()
    }
}

fn watch(config: &NacosConfig) -> Seen<impl Stream<Item = Discovered> + Unpin> {
    Seen::new(Box::pin(
        NacosDiscovery::new(config)
            .unwrap()
            .refresh(Duration::from_millis(100))
            .max_backoff(Duration::from_millis(300))
            .into_stream(),
    ))
}

/// An axum server on a free port answering `/who` with its own address;
/// the times of the calls it got.
async fn server() -> (String, Arc<Mutex<Vec<Instant>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hits = Arc::new(Mutex::new(Vec::new()));
    let (me, seen) = (addr.clone(), hits.clone());
    let app = Router::new().route(
        "/who",
        get(move || {
            seen.lock().unwrap().push(Instant::now());
            let me = me.clone();
            async move { me }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

#[tokio::test]
async fn instances_registered_by_another_client_are_discovered_with_weight_and_metadata() {
    let nacos = Nacos::start().await;
    nacos
        .register_raw(
            "inventory",
            "127.0.0.1:9001",
            "&weight=2.5&metadata=%7B%22zone%22%3A%22a%22%7D",
        )
        .await;
    nacos.register_raw("inventory", "127.0.0.1:9002", "").await;
    // Not to be called: disabled, weight 0, another service, another group.
    nacos
        .register_raw("inventory", "127.0.0.1:9003", "&enabled=false")
        .await;
    nacos
        .register_raw("inventory", "127.0.0.1:9004", "&weight=0")
        .await;
    nacos.register_raw("billing", "127.0.0.1:9005", "").await;
    nacos
        .register_raw("inventory", "127.0.0.1:9006", "&groupName=OTHER")
        .await;

    let config = NacosConfig::new(nacos.addr(), "inventory");
    let mut seen = watch(&config);
    seen.until(Duration::from_secs(2), "two instances", |s, _| s.len() == 2)
        .await;
    assert_eq!(seen.addresses(), ["127.0.0.1:9001", "127.0.0.1:9002"]);
    let a = &seen.set["127.0.0.1:9001"];
    assert_eq!(a.weight, 2.5);
    assert_eq!(a.metadata.get("zone").map(String::as_str), Some("a"));
    assert_eq!(seen.set["127.0.0.1:9002"].weight, 1.0);
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);

    // The other group is its own service; the one-shot list agrees.
    let other = NacosConfig {
        group: "OTHER".into(),
        ..config.clone()
    };
    let (list, invalid) = NacosDiscovery::new(&other).unwrap().list().await.unwrap();
    assert_eq!(list, [Endpoint::new("127.0.0.1:9006")]);
    assert!(invalid.is_empty());

    // A service nobody registered, and a namespace that does not exist:
    // an empty set, not an error.
    let none = NacosConfig::new(nacos.addr(), "nobody");
    assert!(NacosDiscovery::new(&none)
        .unwrap()
        .list()
        .await
        .unwrap()
        .0
        .is_empty());
    let elsewhere = NacosConfig {
        namespace: "no-such-namespace".into(),
        ..config.clone()
    };
    let got = NacosDiscovery::new(&elsewhere)
        .unwrap()
        .list()
        .await
        .unwrap();
    assert!(got.0.is_empty(), "{got:?}");
}

#[tokio::test]
async fn the_cluster_filter_and_the_weights_reach_the_balancer() {
    let nacos = Nacos::start().await;
    let (a, _) = server().await;
    let (b, _) = server().await;
    let (c, c_hits) = server().await;
    nacos
        .register_raw("search", &a, "&clusterName=east&weight=3")
        .await;
    nacos
        .register_raw("search", &b, "&clusterName=east&weight=1")
        .await;
    nacos.register_raw("search", &c, "&clusterName=west").await;

    let config = NacosConfig {
        cluster: Some("east".into()),
        ..NacosConfig::new(nacos.addr(), "search")
    };
    let mut seen = watch(&config);
    seen.until(Duration::from_secs(2), "the east cluster", |s, _| {
        s.len() == 2
    })
    .await;
    assert!(!seen.set.contains_key(&c));

    // Smooth weighted round robin over what Nacos said, to real servers.
    let layer = LoadBalanceLayer::new(
        BalanceConfig {
            strategy: Strategy::WeightedRoundRobin,
            ..BalanceConfig::default()
        },
        vec![],
    )
    .unwrap()
    .discover(NacosDiscovery::new(&config).unwrap().into_stream());
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let svc = layer.layer(http);
    let t0 = Instant::now();
    while layer.endpoints().len() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(2), "not discovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..40 {
        let req = Request::get("http://search/who")
            .body(Full::default())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        *counts
            .entry(String::from_utf8(body.to_vec()).unwrap())
            .or_default() += 1;
    }
    assert_eq!(counts.get(&a), Some(&30), "{counts:?}");
    assert_eq!(counts.get(&b), Some(&10), "{counts:?}");
    assert!(c_hits.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_instance_removed_and_one_added_while_calls_run() {
    let nacos = Nacos::start().await;
    let (a, a_hits) = server().await;
    let (b, _) = server().await;
    let (c, c_hits) = server().await;
    nacos.register_raw("orders", &a, "").await;
    nacos.register_raw("orders", &b, "").await;

    let config = NacosConfig::new(nacos.addr(), "orders");
    let layer = LoadBalanceLayer::new(
        BalanceConfig {
            strategy: Strategy::RoundRobin,
            ..BalanceConfig::default()
        },
        vec![],
    )
    .unwrap()
    .discover(
        NacosDiscovery::new(&config)
            .unwrap()
            .refresh(Duration::from_millis(100))
            .into_stream(),
    );
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let svc = layer.layer(http);
    let t0 = Instant::now();
    while layer.endpoints().len() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(2), "not discovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Calls run all along: (when it started, who answered).
    let calls = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut callers = Vec::new();
    for _ in 0..4 {
        let (svc, calls, stop) = (svc.clone(), calls.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let req = Request::get("http://orders/who")
                    .body(Full::default())
                    .unwrap();
                let res = svc.clone().oneshot(req).await.unwrap();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                let who = String::from_utf8(body.to_vec()).unwrap();
                calls.lock().unwrap().push((started, who));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!a_hits.lock().unwrap().is_empty(), "a was called before");

    let changed = Instant::now();
    nacos.deregister_raw("orders", &a, "").await;
    nacos.register_raw("orders", &c, "").await;
    let seen = loop {
        let now: Vec<String> = layer
            .endpoints()
            .into_iter()
            .map(|(e, _)| e.address)
            .collect();
        if !now.contains(&a) && now.contains(&c) {
            break Instant::now();
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the change was not seen within 1 s: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in callers {
        c.await.unwrap();
    }
    let calls = calls.lock().unwrap();
    let late_to_a = calls
        .iter()
        .filter(|(t, who)| *t > seen && *who == a)
        .count();
    assert_eq!(
        late_to_a, 0,
        "calls to the removed instance after the change was seen"
    );
    let after = calls.iter().filter(|(t, _)| *t > seen).count();
    assert!(after > 20, "only {after} calls after the change");
    assert!(
        !c_hits.lock().unwrap().is_empty(),
        "the new instance got no call"
    );
}

#[tokio::test]
async fn a_server_restart_keeps_the_last_good_set_then_recovers() {
    let mut nacos = Nacos::start().await;
    let config = NacosConfig::new(nacos.addr(), "cart");
    // Registered by this crate (heartbeats re-register after the restart),
    // and by a raw client (gone with the server's memory).
    let reg = NacosRegistration::register_with_heartbeat(
        &config,
        &Endpoint::new("127.0.0.1:9101").meta("v", "1"),
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    let mut seen = watch(&config);
    seen.until(Duration::from_secs(2), "the instance", |s, _| s.len() == 1)
        .await;

    nacos.kill();
    // Errors are reported while it is down, and the set stays.
    seen.until(Duration::from_secs(3), "an unreachable error", |_, e| {
        e.iter().any(|e| e.contains("Nacos: unreachable"))
    })
    .await;
    assert_eq!(seen.addresses(), ["127.0.0.1:9101"]);
    let down = Instant::now();
    while down.elapsed() < Duration::from_millis(600) {
        if let Ok(Some(Ok(c))) = timeout(Duration::from_millis(100), seen.stream.next()).await {
            panic!("a change while the server was down: {c:?}");
        }
    }

    nacos.spawn().await;
    nacos.register_raw("cart", "127.0.0.1:9102", "").await;
    seen.until(
        Duration::from_secs(5),
        "both instances after the restart",
        |s, _| {
            s.len() == 2
                && s.get("127.0.0.1:9101")
                    .is_some_and(|e| e.metadata.contains_key("v"))
        },
    )
    .await;
    reg.deregister().await;
    seen.until(
        Duration::from_secs(2),
        "the deregistered instance gone",
        |s, _| !s.contains_key("127.0.0.1:9101"),
    )
    .await;
}

#[tokio::test]
async fn a_registration_is_visible_to_another_client_and_gone_after_drop() {
    let nacos = Nacos::start().await;
    let config = NacosConfig {
        namespace: "dev".into(),
        group: "SHOP".into(),
        cluster: Some("c1".into()),
        ..NacosConfig::new(nacos.addr(), "payments")
    };
    let me = Endpoint::new("127.0.0.1:9201")
        .weight(2.5)
        .meta("version", "1.4");
    let mut seen = watch(&config);
    let reg = NacosRegistration::register(&config, &me).await.unwrap();
    assert!(
        reg.instance()
            .starts_with("127.0.0.1:9201 in SHOP@@payments"),
        "{}",
        reg.instance()
    );
    seen.until(Duration::from_secs(1), "the registration", |s, _| {
        !s.is_empty()
    })
    .await;
    assert_eq!(seen.set.get("127.0.0.1:9201"), Some(&me));

    // What any other Nacos client reads.
    let list = nacos
        .list_raw("serviceName=payments&groupName=SHOP&namespaceId=dev&healthyOnly=true")
        .await;
    let host = &list["hosts"][0];
    assert_eq!(host["ip"], "127.0.0.1");
    assert_eq!(host["port"], 9201);
    assert_eq!(host["weight"], 2.5);
    assert_eq!(host["clusterName"], "c1");
    assert_eq!(host["ephemeral"], true);
    assert_eq!(host["metadata"]["version"], "1.4");

    drop(reg);
    let t0 = Instant::now();
    seen.until(Duration::from_secs(2), "gone after drop", |s, _| {
        s.is_empty()
    })
    .await;
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());

    // deregister() returns once the server has removed it.
    let reg = NacosRegistration::register(&config, &me).await.unwrap();
    reg.deregister().await;
    let list = nacos
        .list_raw("serviceName=payments&groupName=SHOP&namespaceId=dev&healthyOnly=false")
        .await;
    assert_eq!(list["hosts"], serde_json::json!([]), "{list}");
}

#[tokio::test]
async fn a_crashed_registrant_disappears_after_the_heartbeat_timeout() {
    // rnacos marks an instance unhealthy 3 s after this timeout (4 s
    // without a heartbeat), and deletes it 3 s after the other (5 s).
    let nacos = Nacos::start_with(&[
        ("RNACOS_NAMING_HEALTH_TIMEOUT_SECOND", "1"),
        ("RNACOS_NAMING_INSTANCE_TIMEOUT_SECOND", "2"),
    ])
    .await;
    let config = NacosConfig::new(nacos.addr(), "billing");
    // A live instance alongside: when every instance is unhealthy, Nacos's
    // protection threshold lists them all until they are deleted.
    let _alive = NacosRegistration::register_with_heartbeat(
        &config,
        &Endpoint::new("127.0.0.1:9302"),
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    let c = config.clone();
    // The registrant "dies": its runtime goes without the handle being
    // dropped, so heartbeats just stop and nothing is deregistered.
    let died = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let reg = rt
            .block_on(NacosRegistration::register_with_heartbeat(
                &c,
                &Endpoint::new("127.0.0.1:9301"),
                Duration::from_millis(500),
            ))
            .unwrap();
        std::mem::forget(reg);
        drop(rt);
        Instant::now()
    })
    .join()
    .unwrap();
    let mut seen = watch(&config);
    seen.until(Duration::from_secs(2), "both instances", |s, _| {
        s.len() == 2
    })
    .await;
    seen.until(Duration::from_secs(10), "the dead instance gone", |s, _| {
        !s.contains_key("127.0.0.1:9301")
    })
    .await;
    let gone = died.elapsed();
    // Not before the server's timeout, and not long after it.
    assert!(gone >= Duration::from_secs(3), "{gone:?}");
    assert!(gone < Duration::from_secs(7), "{gone:?}");
    assert!(
        seen.set.contains_key("127.0.0.1:9302"),
        "the live one stays"
    );
}

#[tokio::test]
async fn with_authentication_the_right_password_works_and_a_wrong_one_is_refused() {
    let nacos = Nacos::start_with(&[
        ("RNACOS_ENABLE_OPEN_API_AUTH", "true"),
        ("RNACOS_INIT_ADMIN_USERNAME", "admin"),
        ("RNACOS_INIT_ADMIN_PASSWORD", "s3cret-pw"),
        // Tokens live 2 s: the clients must renew them.
        ("RNACOS_API_LOGIN_TIMEOUT", "2"),
    ])
    .await;
    let dir = std::env::temp_dir().join(format!("sinew-nacos-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("password");
    std::fs::write(&file, "s3cret-pw\n").unwrap();
    let good = NacosConfig {
        username: Some("admin".into()),
        password: Some(Secret::File(file.clone())),
        ..NacosConfig::new(nacos.addr(), "secure")
    };

    // No login: the server's refusal, and what to do about it.
    let anonymous = NacosConfig::new(nacos.addr(), "secure");
    let err = NacosDiscovery::new(&anonymous)
        .unwrap()
        .list()
        .await
        .unwrap_err();
    assert!(matches!(err, NacosError::Auth(_)), "{err:?}");
    assert!(
        err.to_string().contains("HTTP 403")
            && err.to_string().contains("set username and password"),
        "{err}"
    );

    // A wrong password: registration fails at once, discovery reports it.
    let wrong = NacosConfig {
        password: Some(Secret::Text("guess".into())),
        ..good.clone()
    };
    let t0 = Instant::now();
    let err = NacosRegistration::register(&wrong, &Endpoint::new("127.0.0.1:9401"))
        .await
        .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, NacosError::Auth(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("login as \"admin\" refused (HTTP 403)"),
        "{err}"
    );
    let mut refused = watch(&wrong);
    refused
        .until(Duration::from_secs(2), "the refusal", |_, e| {
            e.iter()
                .any(|e| e.contains("authentication failed: login as \"admin\" refused"))
        })
        .await;
    assert!(refused.set.is_empty());

    // The right one (from a file): registered, discovered, and still
    // working after the tokens ran out twice.
    let reg = NacosRegistration::register_with_heartbeat(
        &good,
        &Endpoint::new("127.0.0.1:9402"),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    let mut seen = watch(&good);
    seen.until(Duration::from_secs(2), "the instance", |s, _| s.len() == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let reg2 = NacosRegistration::register(&good, &Endpoint::new("127.0.0.1:9403"))
        .await
        .unwrap();
    seen.until(Duration::from_secs(2), "both instances", |s, _| {
        s.len() == 2
    })
    .await;
    assert!(
        !seen.errors.iter().any(|e| e.contains("authentication")),
        "{:?}",
        seen.errors
    );
    reg.deregister().await;
    reg2.deregister().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unreachable_server_is_a_prompt_error_and_the_next_server_is_tried() {
    let nacos = Nacos::start().await;
    // Nothing listens here (it was free a moment ago).
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let config = NacosConfig::new(dead.clone(), "orders");
    let t0 = Instant::now();
    let err = NacosRegistration::register(&config, &Endpoint::new("127.0.0.1:9501"))
        .await
        .unwrap_err();
    assert!(matches!(err, NacosError::Unreachable(_)), "{err:?}");
    assert!(err.to_string().contains(&dead), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());

    // A balancer over it fails calls within their wait, not never.
    let layer = LoadBalanceLayer::new(
        BalanceConfig {
            wait_for_endpoints: Duration::from_millis(300),
            ..BalanceConfig::default()
        },
        vec![],
    )
    .unwrap()
    .discover(NacosDiscovery::new(&config).unwrap().into_stream());
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let t0 = Instant::now();
    let req = Request::get("http://orders/who")
        .body(Full::default())
        .unwrap();
    let err = layer.layer(http).oneshot(req).await.unwrap_err();
    assert!(err.is::<sinew_core::NoEndpoints>(), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());

    // With the dead address first in the list, the live one answers.
    let both = NacosConfig::new(format!("{dead},{}", nacos.addr()), "orders");
    let reg = NacosRegistration::register(&both, &Endpoint::new("127.0.0.1:9502"))
        .await
        .unwrap();
    let (list, _) = NacosDiscovery::new(&both).unwrap().list().await.unwrap();
    assert_eq!(list, [Endpoint::new("127.0.0.1:9502")]);
    reg.deregister().await;
}
