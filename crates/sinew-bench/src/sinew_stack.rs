//! The sinew stacks under test: the full client, and the server layers.

use std::net::SocketAddr;
use std::time::Duration;

use sinew::sign::{HmacSignLayer, SecretKey, SignConfig, Signer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The shared secret of the bench's signed calls.
pub(crate) const KEY_ID: &str = "bench";
pub(crate) const KEY_TEXT: &str = "bench-secret-bench-secret";

pub(crate) fn signer() -> Result<HmacSignLayer, BoxError> {
    Ok(HmacSignLayer::new(Signer::new(
        SignConfig::rfc9421(KEY_ID),
        SecretKey::from_text(KEY_TEXT)?,
    )?))
}

/// The sinew client with every layer on: metrics per call and per attempt,
/// deadline, retry with budget, P2C over the backends, a breaker per
/// backend, signing.
pub(crate) fn client(backends: &[SocketAddr]) -> Result<sinew::Client, BoxError> {
    use sinew::balance::{BalanceConfig, Endpoint, LoadBalanceLayer};
    let balancer = LoadBalanceLayer::new(
        BalanceConfig::default(),
        backends
            .iter()
            .map(|a| Endpoint::new(a.to_string()))
            .collect(),
    )?;
    Ok(sinew::Client::builder()
        .base_url("http://backends")
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(2))
        .balance(balancer)
        .breaker(sinew::breaker::CircuitBreakerLayer::new())
        .retry(sinew_retry::RetryLayer::new().retry_circuit_open(true))
        .sign(signer()?)
        .metrics(sinew_metrics::MetricsConfig::default())
        .build()?)
}

/// The client of the server pair: signing only.
pub(crate) fn signing_client(target: SocketAddr) -> Result<sinew::Client, BoxError> {
    Ok(sinew::Client::builder()
        .base_url(&format!("http://{target}"))
        .pool_max_idle_per_host(256)
        .no_retry()
        .no_deadline()
        .sign(signer()?)
        .build()?)
}

/// The names of [`variant`]s, in `--breakdown` order.
pub(crate) const VARIANTS: [&str; 7] = [
    "sinew-bare",
    "sinew+deadline",
    "sinew+retry",
    "sinew+sign",
    "sinew+metrics",
    "sinew+balance",
    "sinew+breaker",
];

/// One layer at a time, for `--breakdown`: where the full client's time goes.
pub(crate) fn variant(name: &str, backends: &[SocketAddr]) -> Result<sinew::Client, BoxError> {
    let first = backends.first().ok_or("no backends")?;
    let b = sinew::Client::builder()
        .base_url(&format!("http://{first}"))
        .pool_max_idle_per_host(256)
        .no_retry()
        .no_deadline();
    let b = match name {
        "sinew-bare" => b,
        "sinew+deadline" => b
            .deadline(sinew_deadline::DeadlineConfig::default())
            .timeout(Duration::from_secs(2)),
        "sinew+retry" => b.retry(sinew_retry::RetryLayer::new()),
        "sinew+sign" => b.sign(signer()?),
        "sinew+metrics" => b.metrics(sinew_metrics::MetricsConfig::default()),
        // P2C over the three backends (the base URL's authority is replaced).
        "sinew+balance" => b.balance(sinew::balance::LoadBalanceLayer::new(
            sinew::balance::BalanceConfig::default(),
            backends
                .iter()
                .map(|a| sinew::balance::Endpoint::new(a.to_string()))
                .collect(),
        )?),
        "sinew+breaker" => b.breaker(sinew::breaker::CircuitBreakerLayer::new()),
        other => return Err(format!("unknown variant {other}").into()),
    };
    Ok(b.build()?)
}

/// The soak's client and what it needs to judge the run.
pub(crate) struct SoakClient {
    pub(crate) client: sinew::Client,
    /// (ratio, floor per second) of the retry budget.
    pub(crate) budget: (f64, f64),
    pub(crate) breakers: sinew::breaker::CircuitBreakerHandle,
}

/// A full sinew client over the chaos backends: P2C, a breaker per
/// backend, retries with the default budget (on another backend), deadline
/// propagation, signing and metrics.
pub(crate) fn soak_client(ports: &crate::chaos::ChaosPorts) -> Result<SoakClient, BoxError> {
    use sinew::balance::{BalanceConfig, Endpoint, LoadBalanceLayer};
    use sinew::breaker::{BreakerConfig, CircuitBreakerLayer, TripPolicy};
    // Short ejections: the breaker, not the balancer, is what the soak
    // watches recover.
    let balancer = LoadBalanceLayer::new(
        BalanceConfig {
            ejection: Some(sinew::balance::Ejection {
                base: Duration::from_millis(300),
                max: Duration::from_secs(1),
                ..Default::default()
            }),
            ..BalanceConfig::default()
        },
        vec![
            Endpoint::new(ports.flaky.to_string()),
            Endpoint::new(ports.reset.to_string()),
            Endpoint::new(ports.slowish.to_string()),
        ],
    )?;
    let breaker = CircuitBreakerLayer::from_config(BreakerConfig {
        policies: vec![TripPolicy::ConsecutiveFailures(5)],
        open_duration: Duration::from_millis(500),
        max_open_duration: Duration::from_secs(2),
        ..BreakerConfig::default()
    })?;
    let breakers = breaker.handle();
    let client = sinew::Client::builder()
        .base_url("http://chaos")
        .pool_max_idle_per_host(64)
        .connect_timeout(Duration::from_millis(200))
        .balance(balancer)
        .breaker(breaker)
        .retry(sinew_retry::RetryLayer::new().retry_circuit_open(true))
        .sign(signer()?)
        .metrics(sinew_metrics::MetricsConfig::default())
        .build()?;
    Ok(SoakClient {
        client,
        budget: (0.2, 10.0),
        breakers,
    })
}
