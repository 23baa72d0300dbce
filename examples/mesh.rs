//! `mesh`: the main job. A small service mesh in one process on 127.0.0.1,
//! no outside services:
//!
//! * three instances of an `inventory` service: one healthy, one that fails
//!   a share of its calls, one slow; each verifies signatures (callers must
//!   be `orders`) and reads the caller's deadline and priority;
//! * an `orders` service that verifies signatures (callers must be
//!   `frontend`) and calls `inventory` through a full sinew client, passing
//!   on the deadline and priority it inherited;
//! * a `frontend` driver that sends a few hundred signed orders, and one
//!   tampered request to show it refused.
//!
//! It prints a short report: outcomes, retries, breaker transitions, how the
//! balancer spread the load, p50 and p99, and an excerpt of `orders`'
//! `/metrics`; and it checks what it prints: it exits with status 1 when the
//! tampered call was not refused, an instance served nothing, a priority did
//! not arrive as sent, or more than 1 % of the orders failed.
//!
//! ```text
//! cargo run --example mesh
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use sinew::balance::{BalanceConfig, Endpoint, LoadBalanceLayer};
use sinew::breaker::{BreakerConfig, CircuitBreakerLayer, TripPolicy, Window};
use sinew::server::ServerStack;
use sinew::sign::{
    HmacSignLayer, SecretKey, SignConfig, Signer, StaticKeyStore, VerifiedCaller, Verifier,
    VerifyConfig, VerifySignatureLayer,
};
use sinew::{CallContext, Client, ErrorKind, Priority};
use sinew_metrics::prometheus::{MetricsHandle, PrometheusBuilder};
use sinew_metrics::ServerMetricsLayer;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How an inventory instance misbehaves.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    Healthy,
    /// Answers 503 to every `n`-th call.
    Flaky(u64),
    /// Takes this long per call.
    Slow(Duration),
}

#[derive(Clone)]
struct Inventory {
    name: &'static str,
    behaviour: Behaviour,
    calls: Arc<AtomicU64>,
}

#[derive(Serialize, Deserialize)]
struct Item {
    sku: String,
    in_stock: bool,
    instance: String,
    deadline_ms_left: Option<u64>,
    priority: String,
}

async fn item(
    State(inv): State<Inventory>,
    Extension(caller): Extension<VerifiedCaller>,
    Path(sku): Path<String>,
) -> Result<Json<Item>, StatusCode> {
    if caller.key_id != "orders" {
        return Err(StatusCode::FORBIDDEN);
    }
    let n = inv.calls.fetch_add(1, Ordering::Relaxed) + 1;
    match inv.behaviour {
        Behaviour::Flaky(every) if n % every == 0 => return Err(StatusCode::SERVICE_UNAVAILABLE),
        Behaviour::Slow(d) => tokio::time::sleep(d).await,
        _ => {}
    }
    let ctx = CallContext::current().unwrap_or_default();
    Ok(Json(Item {
        sku,
        in_stock: true,
        instance: inv.name.to_string(),
        deadline_ms_left: ctx.remaining().map(|d| d.as_millis() as u64),
        priority: ctx.priority().to_string(),
    }))
}

/// The server stack of every service: metrics → verify → deadline/priority
/// (sinew's `ServerStack`; `[server]` in a config file builds the same).
fn server(app: Router, keys: StaticKeyStore) -> Router {
    app.layer(
        ServerStack::new()
            .metrics(ServerMetricsLayer::new())
            .verify(VerifySignatureLayer::new(Verifier::new(
                VerifyConfig::default(),
                keys,
            ))),
    )
}

async fn listen(app: Router) -> Result<SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

#[derive(Clone)]
struct Orders {
    inventory: Client,
}

#[derive(Serialize, Deserialize)]
struct OrderRequest {
    sku: String,
    quantity: u32,
}

#[derive(Serialize, Deserialize)]
struct Order {
    sku: String,
    quantity: u32,
    reserved_from: String,
    inventory_saw_deadline_ms: Option<u64>,
    inventory_saw_priority: String,
}

async fn place_order(
    State(orders): State<Orders>,
    Extension(caller): Extension<VerifiedCaller>,
    Json(req): Json<OrderRequest>,
) -> Result<Json<Order>, (StatusCode, String)> {
    if caller.key_id != "frontend" {
        return Err((
            StatusCode::FORBIDDEN,
            "orders are placed by the frontend".into(),
        ));
    }
    // The inventory call inherits this request's deadline and priority.
    let item: Item = orders
        .inventory
        .get("/items/{sku}")
        .param("sku", &req.sku)
        .send_json()
        .await
        .map_err(|e| {
            let status = match e.kind() {
                ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            };
            (status, e.to_string())
        })?;
    Ok(Json(Order {
        sku: item.sku,
        quantity: req.quantity,
        reserved_from: item.instance,
        inventory_saw_deadline_ms: item.deadline_ms_left,
        inventory_saw_priority: item.priority,
    }))
}

fn key(text: &str) -> Result<SecretKey, BoxError> {
    Ok(SecretKey::from_text(text)?)
}

fn signer(key_id: &str, secret: &str) -> Result<HmacSignLayer, BoxError> {
    Ok(HmacSignLayer::new(Signer::new(
        SignConfig::rfc9421(key_id),
        key(secret)?,
    )?))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let started = Instant::now();
    let metrics: MetricsHandle = PrometheusBuilder::new().install()?;
    // What the report shows that must hold; any entry fails the run.
    let mut failures: Vec<String> = Vec::new();

    // Three inventory instances; only `orders` may call them.
    let inventory_keys = StaticKeyStore::new().with_key("orders", key("orders-secret")?);
    let mut instances = Vec::new();
    for (name, behaviour) in [
        ("inventory-a (healthy)", Behaviour::Healthy),
        ("inventory-b (flaky)", Behaviour::Flaky(4)),
        (
            "inventory-c (slow)",
            Behaviour::Slow(Duration::from_millis(30)),
        ),
    ] {
        let inv = Inventory {
            name,
            behaviour,
            calls: Arc::default(),
        };
        let app = Router::new()
            .route("/items/{sku}", get(item))
            .with_state(inv.clone());
        let addr = listen(server(app, inventory_keys.clone())).await?;
        instances.push((inv, addr));
    }

    // The orders service calls inventory through one full sinew client:
    // P2C balancing over the three instances, a breaker per instance,
    // retries (the default ones; with a balancer, a refusal by one
    // instance's breaker is retried on another), signing, deadline
    // propagation, metrics.
    let balancer = LoadBalanceLayer::new(
        BalanceConfig::default(),
        instances
            .iter()
            .map(|(_, addr)| Endpoint::new(addr.to_string()))
            .collect(),
    )?;
    let breaker = CircuitBreakerLayer::from_config(BreakerConfig {
        policies: vec![TripPolicy::FailureRate {
            ratio: 0.2,
            minimum_calls: 20,
            window: Window::Time {
                length: Duration::from_secs(5),
                buckets: 10,
            },
        }],
        open_duration: Duration::from_millis(500),
        ..BreakerConfig::default()
    })?;
    let inventory = Client::builder()
        .base_url("http://inventory")
        .balance(balancer.clone())
        .breaker(breaker)
        .sign(signer("orders", "orders-secret")?)
        .metrics(sinew_metrics::MetricsConfig::default())
        .build()?;
    let orders_keys = StaticKeyStore::new().with_key("frontend", key("frontend-secret")?);
    let orders_app = Router::new()
        .route("/orders", post(place_order))
        .with_state(Orders { inventory })
        .merge(metrics.router());
    let orders_addr = listen(server(orders_app, orders_keys)).await?;

    // The frontend: signed calls with a deadline and a priority.
    let frontend = Client::builder()
        .base_url(&format!("http://{orders_addr}"))
        .sign(signer("frontend", "frontend-secret")?)
        .timeout(Duration::from_secs(2))
        .build()?;

    println!("sinew mesh: orders on {orders_addr}, inventory on {}", {
        let addrs: Vec<String> = instances.iter().map(|(_, a)| a.to_string()).collect();
        addrs.join(", ")
    });

    // One tampered call: signed for one path, sent to another.
    {
        let (_, mut req) = frontend
            .post("/orders")
            .json(&OrderRequest {
                sku: "sku-1".into(),
                quantity: 1,
            })
            .build()?;
        let signed = {
            use tower::ServiceExt;
            let capture =
                tower::service_fn(
                    |r: http::Request<sinew::Body>| async move { Ok::<_, BoxError>(r) },
                );
            let layer = signer("frontend", "frontend-secret")?;
            tower::Layer::layer(&layer, capture)
                .oneshot(std::mem::take(&mut req))
                .await?
        };
        let (mut parts, body) = signed.into_parts();
        parts.uri = format!("http://{orders_addr}/orders?sku=sku-999").parse()?;
        let raw = Client::builder().no_retry().build()?;
        let outcome = raw.execute(http::Request::from_parts(parts, body)).await;
        match outcome {
            Err(e) if e.status() == Some(StatusCode::UNAUTHORIZED) => println!(
                "tampered call: refused with 401 ({})",
                e.body()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            ),
            other => {
                println!("tampered call: NOT refused: {other:?}");
                failures.push("the tampered call was not refused with 401".to_string());
            }
        }
    }

    // The load: a few hundred orders, 8 at a time, mixed priorities.
    let total = 300;
    let outcomes = Arc::new(std::sync::Mutex::new(BTreeMap::<String, u64>::new()));
    let spread = Arc::new(std::sync::Mutex::new(BTreeMap::<String, u64>::new()));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total)));
    let saw_priority = Arc::new(std::sync::Mutex::new(BTreeMap::<String, u64>::new()));
    let calls = (0..total).map(|i| {
        let priority = match i % 3 {
            0 => Priority::High,
            1 => Priority::Normal,
            _ => Priority::Low,
        };
        let req = frontend
            .post("/orders")
            .priority(priority)
            .json(&OrderRequest {
                sku: format!("sku-{}", i % 17),
                quantity: 1 + (i % 3) as u32,
            });
        let (outcomes, spread, latencies, saw) = (
            outcomes.clone(),
            spread.clone(),
            latencies.clone(),
            saw_priority.clone(),
        );
        async move {
            let t = Instant::now();
            let result = req.send_json::<Order>().await;
            let key = match &result {
                Ok(order) => {
                    *spread
                        .lock()
                        .map_err(|_| "poisoned")?
                        .entry(order.reserved_from.clone())
                        .or_default() += 1;
                    *saw.lock()
                        .map_err(|_| "poisoned")?
                        .entry(format!(
                            "sent {priority}, inventory saw {}",
                            order.inventory_saw_priority
                        ))
                        .or_default() += 1;
                    "200 ok".to_string()
                }
                Err(e) => match e.status() {
                    Some(s) => format!("{} {}", s.as_u16(), e.kind()),
                    None => e.kind().to_string(),
                },
            };
            *outcomes
                .lock()
                .map_err(|_| "poisoned")?
                .entry(key)
                .or_default() += 1;
            latencies.lock().map_err(|_| "poisoned")?.push(t.elapsed());
            Ok::<_, BoxError>(())
        }
    });
    use futures_util::stream::{self, StreamExt};
    let results: Vec<Result<(), BoxError>> =
        stream::iter(calls).buffer_unordered(8).collect().await;
    for r in results {
        r?;
    }

    // The report.
    let mut lat = latencies.lock().map_err(|_| "poisoned")?.clone();
    lat.sort();
    println!(
        "\n{total} orders in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("outcomes:");
    for (k, v) in outcomes.lock().map_err(|_| "poisoned")?.iter() {
        println!("  {k:<24} {v}");
    }
    println!("balancer picks per instance (P2C over peak-EWMA, every attempt):");
    for (addr, n) in balancer.picks() {
        let name = instances
            .iter()
            .find(|(_, a)| a.to_string() == addr)
            .map(|(i, _)| i.name)
            .unwrap_or("?");
        println!("  {name:<24} {n}");
    }
    println!("served by (after retries):");
    for (k, v) in spread.lock().map_err(|_| "poisoned")?.iter() {
        println!("  {k:<24} {v}");
    }
    println!("inventory calls seen by each instance (including retried attempts):");
    for (inv, _) in &instances {
        let served = inv.calls.load(Ordering::Relaxed);
        println!("  {:<24} {served}", inv.name);
        if served == 0 {
            failures.push(format!("{} served no call", inv.name));
        }
    }
    println!("priority propagation:");
    let saw = saw_priority.lock().map_err(|_| "poisoned")?.clone();
    for (k, v) in &saw {
        println!("  {k:<34} {v}");
    }
    for p in ["high", "normal", "low"] {
        if !saw.contains_key(&format!("sent {p}, inventory saw {p}")) {
            failures.push(format!("no order sent with priority {p} arrived with it"));
        }
    }
    if let Some(k) = saw.keys().find(|k| {
        let (sent, got) = k.split_once(", inventory saw ").unwrap_or_default();
        sent.trim_start_matches("sent ") != got
    }) {
        failures.push(format!("a priority changed on the way: {k}"));
    }
    let ok = outcomes
        .lock()
        .map_err(|_| "poisoned")?
        .get("200 ok")
        .copied()
        .unwrap_or(0);
    if (ok as f64) < total as f64 * 0.99 {
        failures.push(format!("only {ok} of {total} orders succeeded"));
    }
    println!(
        "latency: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );

    let text = metrics.render();
    println!("\n/metrics excerpt (orders' process):");
    for line in text.lines().filter(|l| {
        (l.starts_with("http_client_request_duration_seconds_count")
            || l.starts_with("http_server_request_duration_seconds_count")
            || l.starts_with("sinew_retry_attempts_total")
            || l.starts_with("sinew_circuit_breaker_transitions_total")
            || l.starts_with("sinew_balance_ejections_total")
            || l.starts_with("sinew_signature_verifications_total"))
            && !l.contains("le=")
    }) {
        println!("  {line}");
    }
    if !failures.is_empty() {
        eprintln!("\nmesh: FAILED");
        for f in &failures {
            eprintln!("  {f}");
        }
        std::process::exit(1);
    }
    println!("\nmesh: every check passed");
    Ok(())
}
