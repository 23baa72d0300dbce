//! [`Services`]: call any service by its registered name, with one pooled,
//! fully layered client per service made on first use, from one config file.
//!
//! ```toml
//! timeout = "5s"                  # the defaults for every service ...
//! [retry]
//! max_attempts = 3
//!
//! [registry]                      # ... where names resolve ...
//! nacos = { server_addr = "10.0.0.5:8848" }
//!
//! [services.inventory]            # ... and what one service does differently
//! timeout = "2s"
//! [services.inventory.retry]      # merged key by key into [retry]
//! max_attempts = 5
//! [services.inventory.balance]
//! strategy = "round-robin"
//! ```
//!
//! ```no_run
//! # async fn f() -> Result<(), sinew::Error> {
//! let services = sinew::Services::from_file("services.toml")?;
//! let item: serde_json::Value = services
//!     .get("inventory", "/items/{id}")
//!     .param("id", 7)
//!     .send_json()
//!     .await?;
//! # let _ = item; Ok(()) }
//! ```
//!
//! A service's client is the top-level sections with its `[services.NAME]`
//! table merged over them (a key there replaces the same key at the top; a
//! section there that is absent at the top is added), then pointed at the
//! service: `base_url` `http://NAME` (unless set), and `[balance]` at the
//! service's instances from `[registry]` (unless its own `[balance]` names
//! endpoints or a source).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use http::Method;

use crate::config::ClientConfig;
use crate::request::RequestBuilder;
use crate::{Client, ClientBuilder, Error, ErrorKind};

/// The most services one [`Services`] keeps a client for.
pub const MAX_SERVICES: usize = 1024;

/// Clients for services by name. Cheap to clone; clones share the clients.
#[derive(Clone)]
pub struct Services {
    inner: Arc<Inner>,
}

/// A change applied to every service's builder before it builds.
type Customize = Arc<dyn Fn(ClientBuilder) -> ClientBuilder + Send + Sync>;

struct Inner {
    customize: Option<Customize>,
    origin: String,
    /// The file's top-level keys and sections, but `services`, `registry`
    /// and `server`.
    base: toml::Table,
    config: ClientConfig,
    clients: RwLock<HashMap<String, Client>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("origin", &self.inner.origin)
            .field(
                "services",
                &self.inner.config.services.keys().collect::<Vec<_>>(),
            )
            .field("registry", &self.inner.config.registry)
            .finish_non_exhaustive()
    }
}

fn cfg(m: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, m)
}

/// Whether `name` can be a service name: what a URL host may be (letters,
/// digits, `-`, `_`, `.`), 1 to 253 bytes.
pub fn is_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Services {
    /// Read and parse a config file (at most
    /// [`MAX_CONFIG_FILE`](crate::config::MAX_CONFIG_FILE) bytes).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Services, Error> {
        let path = path.as_ref();
        let text = crate::config::read_bounded(path, crate::config::MAX_CONFIG_FILE)
            .map_err(|e| cfg(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parse TOML; `origin` (a file name) prefixes error messages. Every
    /// `[services.NAME]` is checked now, so a bad one fails at start-up.
    pub fn from_toml(text: &str, origin: &str) -> Result<Services, Error> {
        let config = ClientConfig::from_toml(text, origin)?;
        let mut base: toml::Table =
            toml::from_str(text).map_err(|e| cfg(format!("{origin}: {e}")))?;
        for key in ["services", "registry", "server"] {
            base.remove(key);
        }
        let services = Services {
            inner: Arc::new(Inner {
                customize: None,
                origin: origin.to_string(),
                base,
                config,
                clients: RwLock::new(HashMap::new()),
            }),
        };
        for (name, table) in &services.inner.config.services {
            // Sections that describe this process, not a service it calls.
            if let Some(key) = ["server", "registry", "services", "proxy"]
                .into_iter()
                .find(|k| table.contains_key(*k))
            {
                return Err(cfg(format!(
                    "{origin}: [services.{name}.{key}]: [{key}] is not per service; write it at the top of the file"
                )));
            }
            if !is_service_name(name) {
                return Err(cfg(format!(
                    "{origin}: [services.{name}]: not a service name (letters, digits, '-', '_', '.')"
                )));
            }
            services.config_for(name)?;
        }
        Ok(services)
    }

    /// Apply `f` to every service's [`ClientBuilder`] before it builds
    /// (a hook, your own layers, a classifier). Set it before the first
    /// call: clients already made keep what they were built with.
    pub fn customize(
        mut self,
        f: impl Fn(ClientBuilder) -> ClientBuilder + Send + Sync + 'static,
    ) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.customize = Some(Arc::new(f)),
            None => {
                let inner = &self.inner;
                let clients = inner
                    .clients
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                self.inner = Arc::new(Inner {
                    customize: Some(Arc::new(f)),
                    origin: inner.origin.clone(),
                    base: inner.base.clone(),
                    config: inner.config.clone(),
                    clients: RwLock::new(clients),
                });
            }
        }
        self
    }

    /// Whether a call to `name` can be resolved: it has a `[services.NAME]`
    /// table, or the registry knows it.
    pub fn knows(&self, name: &str) -> bool {
        self.inner.config.services.contains_key(name)
            || self
                .inner
                .config
                .registry
                .as_ref()
                .is_some_and(|r| r.knows(name))
    }

    /// The client config of `name`: the top-level sections, its
    /// `[services.NAME]` merged over them, pointed at its instances.
    pub fn config_for(&self, name: &str) -> Result<ClientConfig, Error> {
        let origin = &self.inner.origin;
        if !is_service_name(name) {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!("{name:?} is not a service name (letters, digits, '-', '_', '.')"),
            ));
        }
        let mut table = self.inner.base.clone();
        if let Some(own) = self.inner.config.services.get(name) {
            merge(&mut table, own);
        }
        let text = toml::to_string(&table).map_err(|e| cfg(format!("{origin}: {e}")))?;
        let mut config = ClientConfig::from_toml(&text, &format!("{origin}: [services.{name}]"))?;
        if config.base_url.is_none() {
            let scheme = if config.balance.as_ref().is_some_and(|b| b.https) {
                "https"
            } else {
                "http"
            };
            config.base_url = Some(format!("{scheme}://{name}"));
        }
        let mut balance = config.balance.take().unwrap_or_default();
        if balance.endpoints.is_empty() && !balance.has_source() {
            let registry = self.inner.config.registry.as_ref().ok_or_else(|| {
                cfg(format!(
                    "{origin}: no endpoints for service {name:?}: add a [registry] or [services.{name}.balance] endpoints"
                ))
            })?;
            registry
                .resolve(name, &mut balance)
                .map_err(|e| cfg(format!("{origin}: {e}")))?;
        }
        config.balance = Some(balance);
        Ok(config)
    }

    /// The client of `name`, made on first use and shared after.
    pub fn client(&self, name: &str) -> Result<Client, Error> {
        if let Some(c) = self
            .inner
            .clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(c.clone());
        }
        let config = self.config_for(name)?;
        let mut clients = self
            .inner
            .clients
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(name) {
            return Ok(c.clone());
        }
        if clients.len() >= MAX_SERVICES {
            return Err(cfg(format!(
                "more than {MAX_SERVICES} services called through one Services"
            )));
        }
        let mut builder = ClientBuilder::from_config(config);
        if let Some(f) = &self.inner.customize {
            builder = f(builder);
        }
        let client = builder.build()?;
        clients.insert(name.to_string(), client.clone());
        Ok(client)
    }

    /// Start a call to `service` with any method (`path` as for
    /// [`Client::request`]). An unknown service fails when sent.
    pub fn request(&self, method: Method, service: &str, path: &str) -> RequestBuilder {
        match self.client(service) {
            Ok(c) => c.request(method, path),
            Err(e) => RequestBuilder::failed(e, method, path),
        }
    }

    /// Start a GET to `service`.
    pub fn get(&self, service: &str, path: &str) -> RequestBuilder {
        self.request(Method::GET, service, path)
    }

    /// Start a POST to `service`.
    pub fn post(&self, service: &str, path: &str) -> RequestBuilder {
        self.request(Method::POST, service, path)
    }

    /// Start a PUT to `service`.
    pub fn put(&self, service: &str, path: &str) -> RequestBuilder {
        self.request(Method::PUT, service, path)
    }

    /// Start a DELETE to `service`.
    pub fn delete(&self, service: &str, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, service, path)
    }
}

/// Merge `over` into `base`: tables merge key by key (recursively), any
/// other value replaces.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const FILE: &str = r#"
timeout = "5s"
[retry]
max_attempts = 3
backoff = "constant"
[registry]
static = { billing = ["127.0.0.1:9001"] }
dns = "{service}.internal:8080"
[services.inventory]
timeout = "2s"
[services.inventory.retry]
max_attempts = 5
[services.inventory.balance]
strategy = "round-robin"
endpoints = ["127.0.0.1:9002"]
"#;

    #[test]
    fn per_service_configs_merge_over_the_top() {
        let s = Services::from_toml(FILE, "services.toml").unwrap();
        let inv = s.config_for("inventory").unwrap();
        assert_eq!(
            inv.timeout,
            Some(crate::config::CallTimeout::After(
                std::time::Duration::from_secs(2)
            ))
        );
        let r = inv.retry.get().unwrap();
        assert_eq!(r.max_attempts, 5);
        assert_eq!(r.backoff, sinew_retry::BackoffKind::Constant);
        let b = inv.balance.unwrap();
        assert_eq!(b.strategy, sinew_balance::Strategy::RoundRobin);
        assert_eq!(b.endpoints.len(), 1);
        assert_eq!(inv.base_url.as_deref(), Some("http://inventory"));

        let billing = s.config_for("billing").unwrap();
        assert_eq!(billing.retry.get().unwrap().max_attempts, 3);
        assert_eq!(billing.balance.unwrap().endpoints.len(), 1);
        let other = s.config_for("search").unwrap();
        assert_eq!(
            other.balance.unwrap().dns.as_deref(),
            Some("search.internal:8080")
        );
        assert!(s.knows("anything") && s.knows("inventory"));
    }

    #[test]
    fn bad_services_fail_at_start() {
        let e = Services::from_toml("[services.inventory.retry]\nmax_atempts = 2\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[services.inventory]") && e.contains("max_atempts"),
            "{e}"
        );
        let e = Services::from_toml("[services.inventory]\ntimeout = \"2s\"\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no endpoints for service \"inventory\""), "{e}");
        let e = Services::from_toml(
            "[registry]\ndns = \"{service}:80\"\n[services.inventory.server.shed]\nmax_concurrency = 1\n",
            "s.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("[services.inventory.server]") && e.contains("not per service"),
            "{e}"
        );
        let e = Services::from_toml("[services.\"a b\"]\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a service name"), "{e}");
        let s = Services::from_toml("", "s.toml").unwrap();
        assert!(!s.knows("inventory"));
        let e = s.client("inventory").unwrap_err().to_string();
        assert!(e.contains("no endpoints"), "{e}");
        let e = s.client("in/ventory").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    }
}
