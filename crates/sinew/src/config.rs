//! The client configuration file (TOML), as DESIGN.md specifies it.
//!
//! Every section is optional. A missing section turns its layer off, except
//! `[deadline]` and `[retry]`, which are on by default (write
//! `enabled = false` to turn them off). Unknown keys and bad values are
//! errors that name the key and the line.
//!
//! ```
//! let config = sinew::config::ClientConfig::from_toml(r#"
//!     base_url = "http://127.0.0.1:8080"
//!     [deadline]
//!     timeout = "2s"
//!     [retry]
//!     max_attempts = 3
//!     backoff = "decorrelated"
//! "#, "client.toml").unwrap();
//! assert_eq!(config.deadline.timeout, Some(std::time::Duration::from_secs(2)));
//!
//! let err = sinew::config::ClientConfig::from_toml("[retry]\nmax_atempts = 3\n", "client.toml")
//!     .unwrap_err();
//! assert!(err.to_string().contains("line 2"), "{err}");
//! assert!(err.to_string().contains("max_atempts"), "{err}");
//! ```

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::transport::PoolConfig;
use crate::{Error, ErrorKind};

/// The whole client configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Relative paths are joined to this URL.
    pub base_url: Option<String>,
    /// `[pool]`: connections and protocol.
    #[serde(default)]
    pub pool: PoolConfig,
    /// `[deadline]` (on by default).
    #[serde(default)]
    pub deadline: DeadlineSection,
    /// `[retry]` (on by default).
    #[serde(default)]
    pub retry: RetrySection,
    /// `[hedge]`.
    pub hedge: Option<HedgeSection>,
    /// `[breaker]`.
    pub breaker: Option<BreakerSection>,
    /// `[balance]`.
    pub balance: Option<BalanceSection>,
    /// `[sign]`.
    pub sign: Option<SignSection>,
    /// `[metrics]`.
    pub metrics: Option<MetricsSection>,
}

impl ClientConfig {
    /// Parse TOML; `origin` (a file name) prefixes error messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<ClientConfig, Error> {
        toml::from_str(text).map_err(|e| Error::new(ErrorKind::Config, format!("{origin}: {e}")))
    }

    /// Read and parse a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ClientConfig, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }
}

fn yes() -> bool {
    true
}

/// `[deadline]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadlineSection {
    /// Whether the layer is on (default true).
    pub enabled: bool,
    /// Every call must finish within this long (default: only inherited or
    /// per-request deadlines apply).
    #[serde(with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Fail at once when less than this is left (default 5 ms).
    #[serde(with = "duration")]
    pub min_remaining: Duration,
    /// Also send `grpc-timeout` (default false).
    pub grpc_timeout: bool,
}

impl Default for DeadlineSection {
    fn default() -> Self {
        DeadlineSection {
            enabled: true,
            timeout: None,
            min_remaining: Duration::from_millis(5),
            grpc_timeout: false,
        }
    }
}

/// The backoff curve between retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackoffKind {
    /// Decorrelated jitter (Polly v8), the default.
    Decorrelated,
    /// Exponential with jitter.
    Exponential,
    /// aio-request's `0.05·n s ± 20 %` shape, scaled by `base_delay`.
    Linear,
    /// The same delay every time.
    Constant,
}

/// Which methods are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryMethods {
    /// RFC 9110's idempotent methods, and POST/PATCH marked idempotent.
    Idempotent,
    /// Every method.
    All,
    /// aio-request's defaults: GET only.
    AioRequest,
}

/// `[retry]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySection {
    /// Whether the layer is on (default true).
    pub enabled: bool,
    /// Attempts in all, counting the first (default 3).
    #[serde(deserialize_with = "positive_u32")]
    pub max_attempts: u32,
    /// The backoff curve (default decorrelated).
    pub backoff: BackoffKind,
    /// The base delay (default 50 ms).
    #[serde(with = "duration")]
    pub base_delay: Duration,
    /// The cap on one delay (default 2 s).
    #[serde(with = "duration")]
    pub max_delay: Duration,
    /// Which methods are retried (default idempotent).
    pub methods: RetryMethods,
    /// Retries may add at most this share of the traffic (default 0.2).
    #[serde(deserialize_with = "ratio")]
    pub budget_ratio: f64,
    /// …plus this many retries per second (default 10).
    pub budget_min_per_sec: u32,
    /// Honour `Retry-After` up to this long (default 10 s).
    #[serde(with = "duration")]
    pub max_retry_after: Duration,
}

impl Default for RetrySection {
    fn default() -> Self {
        RetrySection {
            enabled: true,
            max_attempts: 3,
            backoff: BackoffKind::Decorrelated,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            methods: RetryMethods::Idempotent,
            budget_ratio: 0.2,
            budget_min_per_sec: 10,
            max_retry_after: Duration::from_secs(10),
        }
    }
}

/// `[hedge]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HedgeSection {
    /// Start attempt k+1 this long after the start.
    #[serde(with = "durations")]
    pub delays: Vec<Duration>,
}

/// The breaker's trip policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerPolicy {
    /// N consecutive failures.
    Consecutive,
    /// A failure ratio over a window.
    FailureRate,
    /// A slow-call ratio over a window.
    SlowCall,
}

/// `[breaker]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSection {
    /// The trip policy (default consecutive).
    pub policy: BreakerPolicy,
    /// consecutive: a count; failure-rate / slow-call: a ratio 0..1.
    pub failure_threshold: f64,
    /// Calls in the window before it may trip (default 10).
    pub minimum_calls: u32,
    /// The window (default 10 s).
    #[serde(with = "duration")]
    pub window: Duration,
    /// How long it stays open before a probe (default 30 s).
    #[serde(with = "duration")]
    pub open_duration: Duration,
    /// Probes allowed at once when half-open (default 1).
    #[serde(deserialize_with = "positive_u32")]
    pub half_open_probes: u32,
    /// slow-call: calls slower than this are slow (default 1 s).
    #[serde(with = "duration")]
    pub slow_call: Duration,
}

impl Default for BreakerSection {
    fn default() -> Self {
        BreakerSection {
            policy: BreakerPolicy::Consecutive,
            failure_threshold: 5.0,
            minimum_calls: 10,
            window: Duration::from_secs(10),
            open_duration: Duration::from_secs(30),
            half_open_probes: 1,
            slow_call: Duration::from_secs(1),
        }
    }
}

/// One endpoint: `"host:port"` or `{ address = "host:port", weight = 3 }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum EndpointEntry {
    /// `"host:port"`, weight 1.
    Address(String),
    /// With a weight.
    Weighted {
        /// `host:port`.
        address: String,
        /// The weight (default 1).
        #[serde(default = "one")]
        weight: f64,
    },
}

fn one() -> f64 {
    1.0
}

impl EndpointEntry {
    /// `host:port`.
    pub fn address(&self) -> &str {
        match self {
            EndpointEntry::Address(a) => a,
            EndpointEntry::Weighted { address, .. } => address,
        }
    }

    /// The weight.
    pub fn weight(&self) -> f64 {
        match self {
            EndpointEntry::Address(_) => 1.0,
            EndpointEntry::Weighted { weight, .. } => *weight,
        }
    }
}

/// `etcd = { endpoints = [...], service = "..." }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSource {
    /// etcd client URLs.
    pub endpoints: Vec<String>,
    /// The service name under `/sinew/services/`.
    pub service: String,
}

/// `[balance]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceSection {
    /// round-robin | random | weighted-random | weighted-round-robin |
    /// least-outstanding | p2c-ewma (default).
    #[serde(default = "default_strategy")]
    pub strategy: String,
    /// A static list of endpoints.
    #[serde(default)]
    pub endpoints: Vec<EndpointEntry>,
    /// A DNS name to resolve: `"host:port"` (A/AAAA) or `"srv:_svc._tcp.name"`
    /// (SRV); needs the `dns` feature (default).
    pub dns: Option<String>,
    /// An etcd registry; needs the `etcd` feature.
    pub etcd: Option<EtcdSource>,
    /// When no endpoint is available, wait up to this long (within the
    /// call's deadline) for one; default: fail at once.
    #[serde(default, with = "opt_duration")]
    pub wait_for_endpoints: Option<Duration>,
}

fn default_strategy() -> String {
    "p2c-ewma".into()
}

/// Where a secret comes from.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum KeySource {
    /// An environment variable holding the secret text.
    Env(String),
    /// The secret itself (UTF-8).
    Text(String),
    /// The secret, base64-encoded.
    Base64(String),
    /// A file holding the secret bytes.
    File(String),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        match self {
            KeySource::Env(v) => write!(f, "Env({v:?})"),
            KeySource::Text(_) => f.write_str("Text(..)"),
            KeySource::Base64(_) => f.write_str("Base64(..)"),
            KeySource::File(p) => write!(f, "File({p:?})"),
        }
    }
}

impl KeySource {
    /// The secret's bytes.
    pub fn load(&self) -> Result<Vec<u8>, Error> {
        use base64::Engine as _;
        let cfg = |m: String| Error::new(ErrorKind::Config, m);
        match self {
            KeySource::Env(var) => std::env::var(var)
                .map(String::into_bytes)
                .map_err(|_| cfg(format!("[sign] key: environment variable {var} is not set"))),
            KeySource::Text(t) => Ok(t.clone().into_bytes()),
            KeySource::Base64(b) => base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|_| cfg("[sign] key: the base64 value is not valid base64".into())),
            KeySource::File(p) => {
                std::fs::read(p).map_err(|e| cfg(format!("[sign] key: cannot read {p}: {e}")))
            }
        }
    }
}

/// `[sign]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignSection {
    /// rfc9421 (default) | legacy.
    #[serde(default = "default_profile")]
    pub profile: String,
    /// The key id (rfc9421).
    pub key_id: Option<String>,
    /// The secret.
    pub key: KeySource,
    /// The service id (legacy).
    pub service_id: Option<String>,
}

fn default_profile() -> String {
    "rfc9421".into()
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Also record each attempt (default true).
    pub per_attempt: bool,
    /// otel (default) | aio-request.
    pub naming: String,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            per_attempt: yes(),
            naming: "otel".into(),
        }
    }
}

fn positive_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(n)
}

fn ratio<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let r = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&r) {
        return Err(serde::de::Error::custom(format!(
            "must be a ratio between 0 and 1, got {r}"
        )));
    }
    Ok(r)
}

use sinew_core::config::{durations, opt_duration};

/// serde helpers for durations written like `250ms` or `2s` (shared with
/// every sinew crate).
pub use sinew_core::config::duration;

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
base_url = "http://inventory.internal:8080"

[pool]
connect_timeout = "1s"
idle_timeout = "90s"
max_idle_per_host = 32
http2 = false

[deadline]
timeout = "2s"
min_remaining = "5ms"
grpc_timeout = false

[retry]
max_attempts = 3
backoff = "decorrelated"
base_delay = "50ms"
max_delay = "2s"
methods = "idempotent"
budget_ratio = 0.2
budget_min_per_sec = 10
max_retry_after = "10s"

[hedge]
delays = ["50ms", "100ms"]

[breaker]
policy = "consecutive"
failure_threshold = 5
minimum_calls = 10
window = "10s"
open_duration = "30s"
half_open_probes = 1

[balance]
strategy = "p2c-ewma"
endpoints = ["127.0.0.1:8001", { address = "127.0.0.1:8002", weight = 3 }]

[sign]
profile = "rfc9421"
key_id = "orders"
key = { env = "SINEW_KEY" }

[metrics]
per_attempt = true
naming = "otel"
"#;

    #[test]
    fn design_md_example_parses() {
        let c = ClientConfig::from_toml(FULL, "client.toml").unwrap();
        assert_eq!(
            c.base_url.as_deref(),
            Some("http://inventory.internal:8080")
        );
        assert_eq!(c.deadline.timeout, Some(Duration::from_secs(2)));
        assert_eq!(c.retry.backoff, BackoffKind::Decorrelated);
        assert_eq!(
            c.hedge.unwrap().delays,
            [Duration::from_millis(50), Duration::from_millis(100)]
        );
        let b = c.balance.unwrap();
        assert_eq!(b.endpoints[1].address(), "127.0.0.1:8002");
        assert_eq!(b.endpoints[1].weight(), 3.0);
        assert_eq!(c.sign.unwrap().key, KeySource::Env("SINEW_KEY".into()));
        assert_eq!(c.breaker.unwrap().failure_threshold, 5.0);
    }

    #[test]
    fn defaults_when_empty() {
        let c = ClientConfig::from_toml("", "x.toml").unwrap();
        assert!(c.deadline.enabled && c.retry.enabled);
        assert!(c.breaker.is_none() && c.sign.is_none() && c.balance.is_none());
    }

    fn err(text: &str) -> String {
        ClientConfig::from_toml(text, "client.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let e = err("base_url = \"x\"\n[retry]\nmax_attempts = 0\n");
        assert!(
            e.contains("client.toml") && e.contains("line 3") && e.contains("at least 1"),
            "{e}"
        );
        let e = err("[deadline]\ntimeout = \"soon\"\n");
        assert!(
            e.contains("line 2") && e.contains("invalid duration"),
            "{e}"
        );
        let e = err("[retry]\nbudget_ratio = 1.5\n");
        assert!(e.contains("line 2") && e.contains("ratio"), "{e}");
        let e = err("[breaker]\npolicy = \"sometimes\"\n");
        assert!(e.contains("line 2") && e.contains("sometimes"), "{e}");
        let e = err("[pool]\nhttp3 = true\n");
        assert!(e.contains("line 2") && e.contains("http3"), "{e}");
        let e = err("[sign]\nkey = { env = \"X\" }\nkey_idd = \"a\"\n");
        assert!(e.contains("key_idd"), "{e}");
    }

    #[test]
    fn key_sources_load_and_never_print() {
        let k = KeySource::Text("s3cret".into());
        assert_eq!(k.load().unwrap(), b"s3cret");
        assert!(!format!("{k:?}").contains("s3cret"));
        let k = KeySource::Base64("c2VjcmV0".into());
        assert_eq!(k.load().unwrap(), b"secret");
        assert!(KeySource::Base64("***".into()).load().is_err());
        assert!(KeySource::Env("SINEW_TEST_SURELY_UNSET_VAR".into())
            .load()
            .is_err());
    }
}
