#![allow(clippy::unwrap_used)]
//! DNS discovery against a DNS server on 127.0.0.1 that each test runs (a
//! small UDP responder built on hickory-proto), with tokio's clock paused:
//! refreshes follow the records' TTL without the test sleeping.
#![cfg(feature = "dns")]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use http::{Request, Response};
use sinew_balance::source::Discovered;
use sinew_balance::{BalanceConfig, DnsDiscovery, Endpoint, LoadBalanceLayer, Strategy};
use sinew_core::Body;
use tokio::net::UdpSocket;
use tower::discover::Change;
use tower::{service_fn, Layer, ServiceExt};

/// What the responder answers: records by (name, type), or SERVFAIL.
#[derive(Default)]
struct Zone {
    records: BTreeMap<(String, RecordType), Vec<Record>>,
    fail: bool,
}

struct Dns {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    queries: Arc<AtomicUsize>,
}

impl Dns {
    async fn start() -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone::default()));
        let queries = Arc::new(AtomicUsize::new(0));
        let (z, q) = (zone.clone(), queries.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(req) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                q.fetch_add(1, Ordering::SeqCst);
                let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
                resp.metadata.recursion_desired = req.metadata.recursion_desired;
                resp.metadata.recursion_available = true;
                resp.metadata.authoritative = true;
                for query in &req.queries {
                    resp.add_query(query.clone());
                    let zone = z.lock().unwrap();
                    if zone.fail {
                        resp.metadata.response_code = ResponseCode::ServFail;
                        continue;
                    }
                    let key = (query.name().to_ascii(), query.query_type());
                    if let Some(records) = zone.records.get(&key) {
                        resp.add_answers(records.iter().cloned());
                    }
                }
                let _ = socket.send_to(&resp.to_vec().unwrap(), from).await;
            }
        });
        Dns {
            addr,
            zone,
            queries,
        }
    }

    fn set(&self, name: &str, ttl: u32, ips: &[&str]) {
        let name = Name::from_ascii(name).unwrap();
        let mut z = self.zone.lock().unwrap();
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for ip in ips {
            match ip.parse::<IpAddr>().unwrap() {
                IpAddr::V4(a) => v4.push(Record::from_rdata(name.clone(), ttl, RData::A(A(a)))),
                IpAddr::V6(a) => {
                    v6.push(Record::from_rdata(name.clone(), ttl, RData::AAAA(AAAA(a))))
                }
            }
        }
        z.records.insert((name.to_ascii(), RecordType::A), v4);
        z.records.insert((name.to_ascii(), RecordType::AAAA), v6);
    }

    fn srv(&self, name: &str, ttl: u32, records: &[(u16, u16, u16, &str)]) {
        let owner = Name::from_ascii(name).unwrap();
        let rs = records
            .iter()
            .map(|(prio, weight, port, target)| {
                let srv = SRV::new(*prio, *weight, *port, Name::from_ascii(target).unwrap());
                Record::from_rdata(owner.clone(), ttl, RData::SRV(srv))
            })
            .collect();
        self.zone
            .lock()
            .unwrap()
            .records
            .insert((owner.to_ascii(), RecordType::SRV), rs);
    }

    fn fail(&self, fail: bool) {
        self.zone.lock().unwrap().fail = fail;
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

/// Changes until the stream goes quiet, as "+addr/weight" and "-addr", and
/// how many errors came with them.
async fn drain(s: &mut (impl Stream<Item = Discovered> + Unpin)) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut errors = 0;
    // Paused clock: this timeout passes only once the runtime is idle.
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(10), s.next()).await {
        match item {
            Ok(Change::Insert(k, e)) => out.push(format!("+{k}/{}", e.weight)),
            Ok(Change::Remove(k)) => out.push(format!("-{k}")),
            Err(_) => errors += 1,
        }
    }
    out.sort();
    (out, errors)
}

#[tokio::test(start_paused = true)]
async fn a_and_aaaa_follow_the_ttl_and_a_failure_keeps_the_last_good_set() {
    let dns = Dns::start().await;
    dns.set("inventory.test.", 30, &["127.0.0.1", "::1"]);
    let mut s = Box::pin(
        DnsDiscovery::host("inventory.test.", 8080)
            .name_server(dns.addr)
            .into_stream(),
    );
    let (changes, errors) = drain(&mut s).await;
    assert_eq!(changes, ["+127.0.0.1:8080/1", "+[::1]:8080/1"]);
    assert_eq!(errors, 0);
    let first = dns.queries();

    // Changed in DNS, but the TTL (30 s) has not run out: nobody asks.
    dns.set("inventory.test.", 5, &["127.0.0.2"]);
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(drain(&mut s).await.0, Vec::<String>::new());
    assert_eq!(dns.queries(), first);
    // At 30 s it asks again and announces the difference.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        drain(&mut s).await.0,
        ["+127.0.0.2:8080/1", "-127.0.0.1:8080", "-[::1]:8080"]
    );

    // The server fails: an error is reported, nothing is removed, and it
    // tries again (1 s, then 2 s) until the server answers.
    dns.fail(true);
    tokio::time::advance(Duration::from_secs(5)).await;
    let (changes, errors) = drain(&mut s).await;
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(errors, 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(drain(&mut s).await, (vec![], 1));
    dns.fail(false);
    dns.set("inventory.test.", 5, &["127.0.0.2", "127.0.0.3"]);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        drain(&mut s).await,
        (vec!["+127.0.0.3:8080/1".to_string()], 0)
    );

    // A name with no addresses is a failure too: the set stays.
    dns.set("inventory.test.", 5, &[]);
    tokio::time::advance(Duration::from_secs(5)).await;
    let (changes, errors) = drain(&mut s).await;
    assert!(changes.is_empty() && errors == 1, "{changes:?} {errors}");
}

#[tokio::test(start_paused = true)]
async fn srv_uses_the_lowest_priority_with_ports_and_weights() {
    let dns = Dns::start().await;
    dns.srv(
        "_http._tcp.search.test.",
        60,
        &[
            (10, 5, 9001, "a.search.test."),
            (10, 1, 9002, "b.search.test."),
            (10, 0, 9003, "c.search.test."),
            (20, 1, 9004, "backup.search.test."),
        ],
    );
    dns.set("a.search.test.", 60, &["127.0.0.11"]);
    dns.set("b.search.test.", 60, &["127.0.0.12"]);
    dns.set("c.search.test.", 60, &["127.0.0.13"]);
    dns.set("backup.search.test.", 60, &["127.0.0.14"]);
    let mut s = Box::pin(
        DnsDiscovery::srv("_http._tcp.search.test.")
            .name_server(dns.addr)
            .into_stream(),
    );
    let (changes, errors) = drain(&mut s).await;
    assert_eq!(errors, 0);
    assert_eq!(
        changes,
        [
            "+127.0.0.11:9001/5",
            "+127.0.0.12:9002/1",
            "+127.0.0.13:9003/0.01"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_balancer_fed_by_dns_sends_to_what_dns_says() {
    let dns = Dns::start().await;
    dns.set("pay.test.", 10, &["127.0.0.21", "127.0.0.22"]);
    let layer = LoadBalanceLayer::new(
        BalanceConfig {
            strategy: Strategy::RoundRobin,
            wait_for_endpoints: Duration::from_secs(1),
            ..BalanceConfig::default()
        },
        Vec::<Endpoint>::new(),
    )
    .unwrap()
    .discover(
        DnsDiscovery::host("pay.test.", 7000)
            .name_server(dns.addr)
            .into_stream(),
    );
    let svc = layer.layer(service_fn(|req: Request<Body>| async move {
        Ok::<_, std::convert::Infallible>(Response::new(req.uri().authority().unwrap().to_string()))
    }));
    let call = || {
        svc.clone()
            .oneshot(Request::get("http://pay/x").body(Body::empty()).unwrap())
    };
    // The first call waits (within wait_for_endpoints) for the first lookup.
    let mut seen = vec![call().await.unwrap().into_body()];
    seen.push(call().await.unwrap().into_body());
    seen.sort();
    assert_eq!(seen, ["127.0.0.21:7000", "127.0.0.22:7000"]);
}
