//! [`BalanceSection`]: the `[balance]` section of sinew's config file (feature
//! `serde`): the balancer's settings and where its endpoints come from.
//!
//! ```toml
//! [balance]
//! strategy = "p2c-ewma"        # round-robin | random | weighted-random |
//!                              # weighted-round-robin | least-outstanding | p2c-ewma
//! endpoints = ["10.0.0.1:8080", { address = "10.0.0.2:8080", weight = 3 }]
//! # or one discovery source instead of (or besides) the static list:
//! # dns = "inventory.internal:8080"          (A/AAAA)  or "srv:_http._tcp.inventory.internal"
//! # etcd = { endpoints = ["http://127.0.0.1:2379"], service = "inventory" }
//! # nacos = { server_addr = "127.0.0.1:8848", service = "inventory", ... }
//! wait_for_endpoints = "250ms" # wait this long for an endpoint when none is available
//! https = false                # rewrite attempts to https://endpoint
//!
//! [balance.ejection]           # outlier ejection; `ejection = false` turns it off
//! consecutive_failures = 5
//! base = "30s"
//! max = "5m"
//! max_ejected = 0.5
//! ```

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sinew_core::config::Toggle;

use crate::endpoints::{Endpoint, Strategy};
use crate::layer::{BalanceConfig, Ejection, LoadBalanceLayer};

/// The `[balance]` section. Build the layer with [`BalanceSection::build`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceSection {
    /// How endpoints are picked (default `p2c-ewma`).
    #[serde(default)]
    pub strategy: Strategy,
    /// A static list: `"host:port"` or `{ address = "host:port", weight = 3 }`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointSpec>,
    /// A DNS name: `"host:port"` (A/AAAA) or `"srv:_svc._tcp.name"` (SRV);
    /// needs the `dns` feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    /// An etcd registry; needs the `etcd` feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdSource>,
    /// A Nacos registry; needs the `nacos` feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nacos: Option<NacosSource>,
    /// When no endpoint is available, wait up to this long (within the
    /// call's deadline) for one; default: fail at once.
    #[serde(
        default,
        with = "sinew_core::config::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub wait_for_endpoints: Option<Duration>,
    /// Outlier ejection (on by default; `ejection = false` turns it off).
    #[serde(default)]
    pub ejection: Toggle<Ejection>,
    /// Send attempts to `https://endpoint` (default `http`).
    #[serde(default)]
    pub https: bool,
}

/// What `nacos = { ... }` holds: sinew-balance's
/// [`NacosConfig`](crate::nacos::NacosConfig) with the `nacos` feature;
/// without it, any table (naming one is then an error at
/// [`BalanceSection::build`]).
#[cfg(feature = "nacos")]
pub type NacosSource = crate::nacos::NacosConfig;
/// What `nacos = { ... }` holds: without the `nacos` feature, any table
/// (naming one is an error at [`BalanceSection::build`]).
#[cfg(not(feature = "nacos"))]
pub type NacosSource = serde_json::Value;

/// One endpoint of a static list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EndpointSpec {
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

impl EndpointSpec {
    /// The endpoint it describes.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            EndpointSpec::Address(a) => Endpoint::new(a.clone()),
            EndpointSpec::Weighted { address, weight } => {
                Endpoint::new(address.clone()).weight(*weight)
            }
        }
    }
}

/// `etcd = { endpoints = [...], service = "..." }`: the instances of
/// `service` under `/sinew/services/<service>/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSource {
    /// etcd client URLs (`http://host:port` or `host:port`).
    pub endpoints: Vec<String>,
    /// The service name.
    pub service: String,
}

/// A `[balance]` section that cannot work; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceConfigError(pub String);

impl std::fmt::Display for BalanceConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[balance] {}", self.0)
    }
}

impl std::error::Error for BalanceConfigError {}

impl BalanceSection {
    /// The balancer's settings (the classifier and availability check are
    /// left at their defaults: the sinew facade sets them).
    pub fn balance_config(&self) -> BalanceConfig {
        BalanceConfig {
            strategy: self.strategy,
            ejection: self.ejection.get().copied(),
            wait_for_endpoints: self.wait_for_endpoints.unwrap_or_default(),
            ..BalanceConfig::default()
        }
    }

    /// Whether the section names a discovery source (DNS, etcd, Nacos).
    pub fn has_source(&self) -> bool {
        self.dns.is_some() || self.etcd.is_some() || self.nacos.is_some()
    }

    /// Build the layer: the static endpoints, and the discovery source
    /// (started with the first call, or at once inside a runtime).
    pub fn build(&self) -> Result<LoadBalanceLayer, BalanceConfigError> {
        let err = |m: String| BalanceConfigError(m);
        let sources = [
            self.dns.is_some(),
            self.etcd.is_some(),
            self.nacos.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            return Err(err("dns, etcd, nacos: choose one discovery source".into()));
        }
        if self.endpoints.is_empty() && !self.has_source() {
            return Err(err(
                "list `endpoints` or name a `dns`, `etcd` or `nacos` source".into(),
            ));
        }
        if let Some(e) = self.ejection.get() {
            if e.consecutive_failures == 0 || !(0.0..=1.0).contains(&e.max_ejected) {
                return Err(err(
                    "ejection: consecutive_failures must be at least 1 and max_ejected in [0, 1]"
                        .into(),
                ));
            }
        }
        let endpoints = self.endpoints.iter().map(EndpointSpec::endpoint).collect();
        let mut layer = LoadBalanceLayer::new(self.balance_config(), endpoints)
            .map_err(|e| err(format!("endpoints: {e}")))?;
        if self.https {
            layer = layer.https();
        }
        if let Some(name) = &self.dns {
            layer = dns_source(layer, name).map_err(|e| err(format!("dns: {e}")))?;
        }
        if let Some(etcd) = &self.etcd {
            layer = etcd_source(layer, etcd).map_err(|e| err(format!("etcd: {e}")))?;
        }
        if let Some(nacos) = &self.nacos {
            layer = nacos_source(layer, nacos).map_err(|e| err(format!("nacos: {e}")))?;
        }
        Ok(layer)
    }
}

#[cfg(feature = "dns")]
fn dns_source(layer: LoadBalanceLayer, name: &str) -> Result<LoadBalanceLayer, String> {
    let source = crate::dns::DnsDiscovery::parse(name).map_err(|e| e.to_string())?;
    Ok(layer.discover(source.into_stream()))
}

#[cfg(not(feature = "dns"))]
fn dns_source(_: LoadBalanceLayer, _: &str) -> Result<LoadBalanceLayer, String> {
    Err("needs the `dns` feature".into())
}

#[cfg(feature = "etcd")]
fn etcd_source(layer: LoadBalanceLayer, etcd: &EtcdSource) -> Result<LoadBalanceLayer, String> {
    if etcd.endpoints.is_empty() {
        return Err("endpoints: list at least one etcd URL".into());
    }
    for url in &etcd.endpoints {
        let full = if url.contains("://") {
            url.clone()
        } else {
            format!("http://{url}")
        };
        let ok = full
            .parse::<http::Uri>()
            .is_ok_and(|u| u.authority().is_some() && u.scheme().is_some());
        if !ok {
            return Err(format!(
                "endpoints: {url:?} is not an etcd URL (write http://host:port or host:port)"
            ));
        }
    }
    if !crate::etcd::is_key_segment(&etcd.service) {
        return Err(format!(
            "service: {:?} is not a service name (non-empty, no '/')",
            etcd.service
        ));
    }
    let source = crate::etcd::EtcdDiscovery::new(etcd.endpoints.clone(), etcd.service.clone());
    Ok(layer.discover(source.into_stream()))
}

#[cfg(not(feature = "etcd"))]
fn etcd_source(_: LoadBalanceLayer, _: &EtcdSource) -> Result<LoadBalanceLayer, String> {
    Err("needs the `etcd` feature (it builds etcd-client, which needs `protoc`)".into())
}

#[cfg(feature = "nacos")]
fn nacos_source(
    layer: LoadBalanceLayer,
    nacos: &crate::nacos::NacosConfig,
) -> Result<LoadBalanceLayer, String> {
    let source = crate::nacos::NacosDiscovery::new(nacos).map_err(|e| e.to_string())?;
    Ok(layer.discover(source.into_stream()))
}

#[cfg(not(feature = "nacos"))]
fn nacos_source(_: LoadBalanceLayer, _: &serde_json::Value) -> Result<LoadBalanceLayer, String> {
    Err("needs the `nacos` feature".into())
}

impl Serialize for Strategy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Strategy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        Strategy::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown strategy {name:?}: expected round-robin, random, weighted-random, \
                 weighted-round-robin, least-outstanding or p2c-ewma"
            ))
        })
    }
}

impl Serialize for Ejection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EjectionSpec::from(*self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ejection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        EjectionSpec::deserialize(d).map(Into::into)
    }
}

/// [`Ejection`] as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct EjectionSpec {
    consecutive_failures: u32,
    #[serde(with = "sinew_core::config::duration")]
    base: Duration,
    #[serde(with = "sinew_core::config::duration")]
    max: Duration,
    max_ejected: f64,
}

impl Default for EjectionSpec {
    fn default() -> Self {
        Ejection::default().into()
    }
}

impl From<Ejection> for EjectionSpec {
    fn from(e: Ejection) -> Self {
        EjectionSpec {
            consecutive_failures: e.consecutive_failures,
            base: e.base,
            max: e.max,
            max_ejected: e.max_ejected,
        }
    }
}

impl From<EjectionSpec> for Ejection {
    fn from(e: EjectionSpec) -> Self {
        Ejection {
            consecutive_failures: e.consecutive_failures,
            base: e.base,
            max: e.max,
            max_ejected: e.max_ejected,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_key() {
        let s: BalanceSection = toml::from_str(
            r#"
strategy = "weighted-round-robin"
endpoints = ["127.0.0.1:8001", { address = "127.0.0.1:8002", weight = 3 }]
wait_for_endpoints = "250ms"
https = true
[ejection]
consecutive_failures = 2
base = "1s"
max = "10s"
max_ejected = 0.25
"#,
        )
        .unwrap();
        assert_eq!(s.strategy, Strategy::WeightedRoundRobin);
        assert_eq!(s.endpoints[1].endpoint().weight, 3.0);
        let c = s.balance_config();
        assert_eq!(c.wait_for_endpoints, Duration::from_millis(250));
        assert_eq!(
            c.ejection,
            Some(Ejection {
                consecutive_failures: 2,
                base: Duration::from_secs(1),
                max: Duration::from_secs(10),
                max_ejected: 0.25
            })
        );
        let layer = s.build().unwrap();
        assert_eq!(layer.endpoints().len(), 2);
        let back: BalanceSection = toml::from_str(&toml::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);

        let off: BalanceSection =
            toml::from_str("endpoints = [\"a:1\"]\nejection = false\n").unwrap();
        assert_eq!(off.balance_config().ejection, None);
        let aio: BalanceSection = toml::from_str("strategy = \"weight_round_robin\"\n").unwrap();
        assert_eq!(aio.strategy, Strategy::WeightedRoundRobin);
    }

    #[test]
    fn errors_name_the_key() {
        let e = toml::from_str::<BalanceSection>("\nstrategy = \"fastest\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("fastest"), "{e}");
        let e = toml::from_str::<BalanceSection>("\n[ejection]\nbase = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3") && e.contains("invalid duration"),
            "{e}"
        );
        let none = BalanceSection::default().build().unwrap_err().to_string();
        assert!(none.contains("list `endpoints`"), "{none}");
        let two: BalanceSection =
            toml::from_str("dns = \"a:1\"\netcd = { endpoints = [\"b:2\"], service = \"s\" }\n")
                .unwrap();
        assert!(two.build().unwrap_err().to_string().contains("choose one"));
        let bad: BalanceSection = toml::from_str("endpoints = [\"not an address\"]\n").unwrap();
        assert!(bad.build().unwrap_err().to_string().contains("endpoints"));
    }
}
