//! `[registry]`: where service names resolve (for
//! [`Services`](crate::Services) and `sinew call http://NAME/...`), and
//! registering this instance in it (`[server.register]`).
//!
//! ```toml
//! [registry]
//! nacos = { server_addr = "10.0.0.5:8848", namespace = "dev", username = "nacos", password = { env = "NACOS_PASSWORD" } }
//! # or: etcd = { endpoints = ["http://10.0.0.9:2379"] }
//! # or: dns = "{service}.svc.cluster.local:8080"     ({service} is replaced by the name)
//! # and/or fixed addresses, looked up first:
//! static = { billing = ["10.0.0.3:8080", "10.0.0.4:8080"] }
//!
//! [server.register]          # this instance, kept registered while it runs
//! service = "orders"
//! address = "10.0.0.7:8080"
//! weight = 1.0
//! metadata = { zone = "a" }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use sinew_balance::config::{EtcdSource, NacosSource};
use sinew_balance::{BalanceSection, Endpoint, EndpointSpec};

use crate::{Error, ErrorKind};

/// The `[registry]` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// A Nacos server (sinew-balance's `NacosConfig` without `service`:
    /// the name of each service called fills it in); feature `nacos`.
    #[serde(default)]
    pub nacos: Option<NacosSource>,
    /// An etcd registry (instances under `/sinew/services/<name>/`);
    /// feature `etcd`.
    #[serde(default)]
    pub etcd: Option<EtcdRegistry>,
    /// A DNS name template: `{service}` is replaced by the service's name
    /// (`"{service}.internal:8080"`, or `"srv:_http._tcp.{service}.internal"`).
    #[serde(default)]
    pub dns: Option<String>,
    /// Fixed endpoints by service name, looked up before any other source.
    #[serde(default, rename = "static")]
    pub fixed: BTreeMap<String, Vec<EndpointSpec>>,
}

/// `etcd = { endpoints = [...] }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdRegistry {
    /// etcd client URLs.
    pub endpoints: Vec<String>,
}

impl RegistryConfig {
    /// Whether this registry can resolve `name` (every name, when a
    /// registry server or a DNS template is configured).
    pub fn knows(&self, name: &str) -> bool {
        self.fixed.contains_key(name)
            || self.nacos.is_some()
            || self.etcd.is_some()
            || self.dns.is_some()
    }

    /// Point `balance` at where `name`'s instances are: its fixed endpoints,
    /// or the registry's source for it.
    pub(crate) fn resolve(&self, name: &str, balance: &mut BalanceSection) -> Result<(), String> {
        if let Some(list) = self.fixed.get(name) {
            balance.endpoints = list.clone();
            return Ok(());
        }
        let configured = [
            self.nacos.is_some(),
            self.etcd.is_some(),
            self.dns.is_some(),
        ];
        if configured.iter().filter(|c| **c).count() > 1 {
            return Err("[registry] name one of nacos, etcd and dns".into());
        }
        #[cfg_attr(not(feature = "nacos"), allow(unused_mut))]
        if let Some(mut nacos) = self.nacos.clone() {
            #[cfg(feature = "nacos")]
            {
                nacos.service = name.to_string();
            }
            balance.nacos = Some(nacos);
        } else if let Some(etcd) = &self.etcd {
            balance.etcd = Some(EtcdSource {
                endpoints: etcd.endpoints.clone(),
                service: name.to_string(),
            });
        } else if let Some(template) = &self.dns {
            if !template.contains("{service}") {
                return Err(format!(
                    "[registry] dns: {template:?} has no {{service}} to replace with the name"
                ));
            }
            balance.dns = Some(template.replace("{service}", name));
        } else {
            return Err(format!(
                "no endpoints for service {name:?}: add it to [registry] static, name a registry (nacos, etcd, dns), or give [services.{name}.balance] endpoints"
            ));
        }
        Ok(())
    }
}

/// `[server.register]`: this instance, registered in `[registry]`'s Nacos
/// or etcd while it runs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterConfig {
    /// The service this instance serves.
    pub service: String,
    /// Where others reach it: `ip:port`.
    pub address: String,
    /// Its weight (default 1).
    #[serde(default = "one")]
    pub weight: f64,
    /// What else to tell (zone, version, ...).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// etcd: the instance id (default: the address).
    #[serde(default)]
    pub instance_id: Option<String>,
    /// etcd: the lease's time to live (default 10 s).
    #[serde(default, with = "sinew_core::config::opt_duration")]
    pub ttl: Option<Duration>,
}

fn one() -> f64 {
    1.0
}

/// This instance's entry in a registry, kept alive in the background.
/// Call [`deregister`](Registration::deregister) when stopping (on
/// SIGTERM); dropping it deregisters too, without waiting.
#[derive(Debug)]
pub enum Registration {
    /// In Nacos, as an ephemeral instance.
    #[cfg(feature = "nacos")]
    Nacos(sinew_balance::NacosRegistration),
    /// In etcd, under a lease.
    #[cfg(feature = "etcd")]
    Etcd(sinew_balance::Registration),
}

impl Registration {
    /// Register `register` in `registry` (its Nacos or etcd server).
    pub async fn register(
        registry: &RegistryConfig,
        register: &RegisterConfig,
    ) -> Result<Registration, Error> {
        let cfg = |m: String| Error::new(ErrorKind::Config, format!("[server.register] {m}"));
        let endpoint = Endpoint {
            address: register.address.clone(),
            weight: register.weight,
            metadata: register.metadata.clone(),
        };
        #[cfg(feature = "nacos")]
        if let Some(nacos) = &registry.nacos {
            let mut config = nacos.clone();
            config.service = register.service.clone();
            let r = sinew_balance::NacosRegistration::register(&config, &endpoint)
                .await
                .map_err(|e| cfg(e.to_string()))?;
            return Ok(Registration::Nacos(r));
        }
        #[cfg(feature = "etcd")]
        if let Some(etcd) = &registry.etcd {
            let id = register
                .instance_id
                .clone()
                .unwrap_or_else(|| register.address.clone());
            let r = sinew_balance::Registration::register(
                etcd.endpoints.clone(),
                &register.service,
                &id,
                &endpoint,
                register.ttl.unwrap_or(Duration::from_secs(10)),
            )
            .await
            .map_err(|e| cfg(e.to_string()))?;
            return Ok(Registration::Etcd(r));
        }
        let _ = (&endpoint, registry);
        Err(cfg(
            "needs [registry] nacos (feature `nacos`) or etcd (feature `etcd`) to register in"
                .into(),
        ))
    }

    /// Remove this instance from the registry, and wait until it is gone.
    pub async fn deregister(self) {
        match self {
            #[cfg(feature = "nacos")]
            Registration::Nacos(r) => r.deregister().await,
            #[cfg(feature = "etcd")]
            Registration::Etcd(r) => r.deregister().await,
        }
    }
}
