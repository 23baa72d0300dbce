//! [`NacosRegistration`]: this instance in Nacos as an ephemeral instance,
//! kept alive by heartbeats.

use std::time::Duration;

use http::Method;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::client::Client;
use super::config::{Checked, NacosConfig};
use super::{NacosError, DEFAULT_CLUSTER};
use crate::Endpoint;

/// The default time between heartbeats (Nacos's clients send one every
/// 5 s; the server marks an instance unhealthy after 15 s without one and
/// deletes it after 30 s).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// One instance registered in Nacos as an ephemeral instance
/// (`POST /nacos/v1/ns/instance`, `ephemeral=true`) with its ip, port,
/// weight, metadata, cluster, group and namespace; a background task sends
/// a heartbeat (`PUT /nacos/v1/ns/instance/beat`) every
/// [`DEFAULT_HEARTBEAT`] and registers again when the server no longer
/// knows the instance (it restarted).
///
/// * [`deregister`](NacosRegistration::deregister) removes it
///   (`DELETE /nacos/v1/ns/instance`) and waits for the answer: call it when
///   the process is told to stop (SIGTERM), before it stops serving, so
///   that callers stop picking it first.
/// * Dropping the handle removes it too, without waiting (the runtime must
///   still be running for the request to go out).
/// * If the process dies, the heartbeats stop: the server marks the
///   instance unhealthy (no longer discovered) after its heartbeat timeout
///   (15 s in Nacos) and deletes it later (30 s). If it was the last
///   healthy instance, Nacos's protection threshold keeps listing it until
///   it is deleted.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use sinew_balance::{Endpoint, NacosConfig, NacosRegistration};
/// use tokio::signal::unix::{signal, SignalKind};
///
/// let config = NacosConfig::new("127.0.0.1:8848", "orders");
/// let me = Endpoint::new("10.0.0.7:8080").weight(2.0).meta("version", "1.4");
/// let registration = NacosRegistration::register(&config, &me).await?;
/// // ... serve; on SIGTERM leave the registry first, then drain.
/// signal(SignalKind::terminate())?.recv().await;
/// registration.deregister().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct NacosRegistration {
    instance: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The heartbeat body (`beat=`), as Nacos's own clients send it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Beat<'a> {
    ip: &'a str,
    port: u16,
    weight: f64,
    metadata: &'a std::collections::BTreeMap<String, String>,
    cluster: &'a str,
    service_name: String,
    scheduled: bool,
    period: u64,
}

/// What the registry needs to know of the instance.
struct Instance {
    config: Checked,
    ip: String,
    port: u16,
    port_text: String,
    weight: f64,
    weight_text: String,
    metadata: std::collections::BTreeMap<String, String>,
    metadata_json: String,
    cluster: String,
}

impl NacosRegistration {
    /// Register `endpoint` (`ip:port`, weight, metadata) as an instance of
    /// `config.service`, with heartbeats every [`DEFAULT_HEARTBEAT`]. Fails
    /// at once (within `config.timeout` per server) when no server accepts
    /// it, and before any traffic when the config or the endpoint is not
    /// usable (no port, weight not a number > 0, an unspecified address
    /// such as `0.0.0.0` that no one could call).
    pub async fn register(config: &NacosConfig, endpoint: &Endpoint) -> Result<Self, NacosError> {
        Self::register_with_heartbeat(config, endpoint, DEFAULT_HEARTBEAT).await
    }

    /// [`register`](NacosRegistration::register) with heartbeats every
    /// `every` (at least 100 ms; keep it well under the server's heartbeat
    /// timeout).
    pub async fn register_with_heartbeat(
        config: &NacosConfig,
        endpoint: &Endpoint,
        every: Duration,
    ) -> Result<Self, NacosError> {
        let instance = Instance::new(Checked::new(config)?, endpoint)?;
        let every = every.max(Duration::from_millis(100));
        let mut client = Client::new(&instance.config, 64 * 1024);
        instance.register(&mut client).await?;
        let name = format!(
            "{}:{} in {}@@{} (cluster {}, namespace {:?})",
            instance.ip,
            instance.port,
            instance.config.group,
            instance.config.service,
            instance.cluster,
            instance.config.namespace
        );
        tracing::info!(instance = %name, "registered in Nacos");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            tokio::select! {
                () = instance.keep(&mut client, every) => {}
                _ = stopped => {
                    match instance.deregister(&mut client).await {
                        Ok(()) => tracing::info!(ip = %instance.ip, port = instance.port, "deregistered from Nacos"),
                        Err(e) => tracing::warn!(error = %e, "Nacos deregistration failed; the instance expires with its heartbeats"),
                    }
                }
            }
        });
        Ok(NacosRegistration {
            instance: name,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// What was registered, for logs: `ip:port in group@@service (cluster
    /// c, namespace "n")`.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Remove the instance now and wait until the server has answered (or
    /// every server failed within the timeout); heartbeats stop.
    pub async fn deregister(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for NacosRegistration {
    fn drop(&mut self) {
        // The task deregisters and ends; nothing to wait for here.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `host` and port of `host:port` (IPv6 without its brackets).
fn split_address(address: &str) -> Option<(String, u16)> {
    let authority: http::uri::Authority = address.parse().ok()?;
    let port = authority.port_u16().filter(|p| *p != 0)?;
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || authority.as_str().contains('@') {
        return None;
    }
    Some((host.to_owned(), port))
}

impl Instance {
    fn new(config: Checked, endpoint: &Endpoint) -> Result<Self, NacosError> {
        let bad = |m: String| Err(NacosError::Config(m));
        let Some((ip, port)) = split_address(&endpoint.address) else {
            return bad(format!(
                "the instance address {:?} is not host:port",
                endpoint.address
            ));
        };
        if ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_unspecified())
        {
            return bad(format!(
                "the instance address {:?} is unspecified; register the address others can reach",
                endpoint.address
            ));
        }
        if !endpoint.weight.is_finite() || endpoint.weight <= 0.0 || endpoint.weight > 10_000.0 {
            return bad(format!(
                "the instance weight {} is not a number from just above 0 to 10000",
                endpoint.weight
            ));
        }
        let metadata_json = serde_json::to_string(&endpoint.metadata)
            .map_err(|e| NacosError::Config(format!("metadata: {e}")))?;
        if metadata_json.len() > 16 * 1024 {
            return bad(format!(
                "the instance metadata is {} bytes as JSON; keep it under 16 KiB",
                metadata_json.len()
            ));
        }
        let cluster = config
            .cluster
            .clone()
            .unwrap_or_else(|| DEFAULT_CLUSTER.to_owned());
        Ok(Instance {
            port_text: port.to_string(),
            weight_text: endpoint.weight.to_string(),
            weight: endpoint.weight,
            metadata: endpoint.metadata.clone(),
            metadata_json,
            ip,
            port,
            cluster,
            config,
        })
    }

    /// The parameters that name the instance.
    fn key_params(&self) -> Vec<(&str, &str)> {
        let c = &self.config;
        let mut p = vec![
            ("serviceName", c.service.as_str()),
            ("groupName", c.group.as_str()),
            ("clusterName", self.cluster.as_str()),
            ("ip", self.ip.as_str()),
            ("port", self.port_text.as_str()),
            ("ephemeral", "true"),
        ];
        if !c.namespace.is_empty() {
            p.push(("namespaceId", c.namespace.as_str()));
        }
        p
    }

    async fn register(&self, client: &mut Client) -> Result<(), NacosError> {
        let mut p = self.key_params();
        p.extend([
            ("weight", self.weight_text.as_str()),
            ("enabled", "true"),
            ("healthy", "true"),
            ("metadata", self.metadata_json.as_str()),
        ]);
        let answer = client
            .call(Method::POST, "/nacos/v1/ns/instance", &p)
            .await?;
        // Nacos answers `ok`.
        if answer.trim_ascii() != b"ok" {
            tracing::debug!(answer = %super::client::quote(&answer), "unexpected Nacos registration answer");
        }
        Ok(())
    }

    async fn deregister(&self, client: &mut Client) -> Result<(), NacosError> {
        client
            .call(Method::DELETE, "/nacos/v1/ns/instance", &self.key_params())
            .await
            .map(drop)
    }

    /// One heartbeat; `Ok(false)` when the server no longer knows the
    /// instance.
    async fn beat(&self, client: &mut Client, every: Duration) -> Result<bool, NacosError> {
        let beat = Beat {
            ip: &self.ip,
            port: self.port,
            weight: self.weight,
            metadata: &self.metadata,
            cluster: &self.cluster,
            service_name: format!("{}@@{}", self.config.group, self.config.service),
            scheduled: true,
            period: every.as_millis() as u64,
        };
        let beat = serde_json::to_string(&beat)
            .map_err(|e| NacosError::Config(format!("heartbeat: {e}")))?;
        let mut p = self.key_params();
        p.push(("beat", beat.as_str()));
        let answer = client
            .call(Method::PUT, "/nacos/v1/ns/instance/beat", &p)
            .await?;
        // `{"code":10200,...}`; 20404: the instance is not there.
        let code = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v.get("code").and_then(serde_json::Value::as_i64));
        Ok(code != Some(20404))
    }

    /// Heartbeats for ever; register again when the server forgot the
    /// instance.
    async fn keep(&self, client: &mut Client, every: Duration) {
        let mut failing = false;
        loop {
            tokio::time::sleep(every).await;
            match self.beat(client, every).await {
                Ok(true) => {
                    if failing {
                        tracing::info!(ip = %self.ip, port = self.port, "Nacos heartbeats answered again");
                        failing = false;
                    }
                }
                Ok(false) => {
                    tracing::info!(ip = %self.ip, port = self.port, "Nacos no longer knows this instance; registering again");
                    if let Err(e) = self.register(client).await {
                        tracing::warn!(error = %e, "Nacos registration retry failed");
                        failing = true;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "Nacos heartbeat failed; retrying");
                    }
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_split_and_bad_instances_are_refused() {
        assert_eq!(
            split_address("10.0.0.7:8080"),
            Some(("10.0.0.7".into(), 8080))
        );
        assert_eq!(split_address("[::1]:80"), Some(("::1".into(), 80)));
        assert_eq!(
            split_address("host.internal:1"),
            Some(("host.internal".into(), 1))
        );
        for bad in ["10.0.0.7", "10.0.0.7:0", ":80", "a@b:1", "x y:1", ""] {
            assert_eq!(split_address(bad), None, "{bad}");
        }
        let config = || Checked::new(&NacosConfig::new("127.0.0.1:1", "s")).unwrap();
        for (e, want) in [
            (Endpoint::new("0.0.0.0:80"), "unspecified"),
            (Endpoint::new("[::]:80"), "unspecified"),
            (Endpoint::new("10.0.0.1"), "host:port"),
            (Endpoint::new("10.0.0.1:80").weight(0.0), "weight"),
            (Endpoint::new("10.0.0.1:80").weight(f64::NAN), "weight"),
            (
                Endpoint::new("10.0.0.1:80").meta("k", "v".repeat(20_000)),
                "16 KiB",
            ),
        ] {
            let err = Instance::new(config(), &e).err().unwrap().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        let i = Instance::new(config(), &Endpoint::new("10.0.0.1:80").meta("a", "b")).unwrap();
        assert_eq!(i.cluster, "DEFAULT");
        assert_eq!(i.metadata_json, r#"{"a":"b"}"#);
    }
}
