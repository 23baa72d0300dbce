//! [`NacosDiscovery`]: the healthy instances of one service, polled from
//! `/nacos/v1/ns/instance/list`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use futures_util::Stream;
use http::Method;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::client::{quote, Client};
use super::config::{Checked, NacosConfig};
use super::NacosError;
use crate::source::{send_all, spawn_on_poll, Announced, Discovered, Sender, SourceError};
use crate::Endpoint;

/// The most bytes read of one instance list (default).
pub const DEFAULT_MAX_RESPONSE: usize = 4 * 1024 * 1024;
/// The most instances accepted in one list (default).
pub const DEFAULT_MAX_INSTANCES: usize = 10_000;

/// Polls the healthy instances of a service from Nacos and turns them into
/// endpoint changes for
/// [`LoadBalanceLayer::discover`](crate::LoadBalanceLayer::discover).
///
/// Every [`refresh`](NacosDiscovery::refresh) (default 500 ms) it asks
/// `GET /nacos/v1/ns/instance/list?serviceName=..&groupName=..&namespaceId=..
/// &clusters=..&healthyOnly=true` and announces the difference from what it
/// announced before, so a change in Nacos reaches the balancer within one
/// refresh and one round trip. Instances registered over gRPC (Nacos 2.x
/// clients such as nacos-sdk-python) and over HTTP are both listed.
///
/// * An instance becomes `ip:port` with its weight and its metadata;
///   instances that are unhealthy, disabled, of weight 0 (Nacos's "no
///   traffic") or of another cluster than the configured one are left out.
/// * An instance that cannot be an endpoint (no ip, port out of range) is
///   skipped and reported once as [`SourceError::InvalidRecord`]; the rest
///   stay.
/// * The answer is read up to [`max_response`](NacosDiscovery::max_response)
///   bytes and at most [`max_instances`](NacosDiscovery::max_instances)
///   instances are parsed; a larger answer is an error.
/// * While the server cannot be reached, refuses, or answers something
///   that is not an instance list, the last good set stays and the error
///   is reported ([`SourceError::Unreachable`]); it asks again after
///   `refresh`, doubling up to [`max_backoff`](NacosDiscovery::max_backoff).
/// * Health is the server's word: when no instance of a service is healthy,
///   Nacos's protection threshold lists them all as healthy (rnacos does
///   the same), so a crashed last instance stays listed until the server
///   deletes it (30 s in Nacos); outlier ejection covers that window.
/// * A service with no (healthy) instances, or a namespace that does not
///   exist, is an empty set: the balancer then fails calls with
///   [`NoEndpoints`](sinew_core::NoEndpoints) (or waits for one, within the
///   call's deadline).
/// * With `username` and `password` it logs in first and sends the token
///   (`Authorization: Bearer`), renewed at 80% of its lifetime and when the
///   server refuses it; a refused login is reported like an unreachable
///   server, with the server's answer.
#[derive(Debug, Clone)]
pub struct NacosDiscovery {
    config: Checked,
    refresh: Duration,
    max_backoff: Duration,
    max_response: usize,
    max_instances: usize,
}

impl NacosDiscovery {
    /// Discovery of `config.service`; the config is checked and the
    /// password loaded here ([`NacosError::Config`]).
    pub fn new(config: &NacosConfig) -> Result<Self, NacosError> {
        Ok(NacosDiscovery {
            config: Checked::new(config)?,
            refresh: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            max_response: DEFAULT_MAX_RESPONSE,
            max_instances: DEFAULT_MAX_INSTANCES,
        })
    }

    /// How often the list is asked for (default 500 ms; at least 10 ms).
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = every.max(Duration::from_millis(10));
        self
    }

    /// The longest wait between attempts while the server fails (default
    /// 5 s; the first wait is `refresh`, doubling).
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// The most bytes of one answer read (default 4 MiB).
    pub fn max_response(mut self, bytes: usize) -> Self {
        self.max_response = bytes;
        self
    }

    /// The most instances accepted in one answer (default 10 000).
    pub fn max_instances(mut self, n: usize) -> Self {
        self.max_instances = n;
        self
    }

    /// The instances now, once: the endpoints and the records skipped as
    /// invalid. For a command line or a readiness check; a balancer takes
    /// [`into_stream`](NacosDiscovery::into_stream).
    pub async fn list(&self) -> Result<(Vec<Endpoint>, Vec<SourceError>), NacosError> {
        let mut client = Client::new(&self.config, self.max_response);
        let (set, invalid) = self.fetch(&mut client).await?;
        Ok((set.into_values().collect(), invalid))
    }

    /// The stream of changes. The polling runs in a task spawned on the
    /// current tokio runtime when the stream is first polled, and ends when
    /// the stream is dropped (with the balancer that holds it).
    pub fn into_stream(self) -> impl Stream<Item = Discovered> + Send + 'static {
        spawn_on_poll(move |tx| async move { self.run(&tx).await })
    }

    async fn run(&self, tx: &Sender) {
        let mut client = Client::new(&self.config, self.max_response);
        let mut announced = Announced::default();
        // Invalid records already reported (key and reason), so that one
        // bad record is not reported at every refresh.
        let mut reported = BTreeSet::new();
        let mut failures: u32 = 0;
        loop {
            let wait = match self.fetch(&mut client).await {
                Ok((set, invalid)) => {
                    failures = 0;
                    let mut now_invalid = BTreeSet::new();
                    for e in invalid {
                        let text = e.to_string();
                        now_invalid.insert(text.clone());
                        if !reported.contains(&text) && tx.send(Err(e)).await.is_err() {
                            return;
                        }
                    }
                    reported = now_invalid;
                    if !send_all(tx, announced.changes(set)).await {
                        return;
                    }
                    self.refresh
                }
                Err(e) => {
                    tracing::debug!(error = %e, service = %self.config.service, "Nacos poll failed");
                    if tx.send(Err(e.into_source_error())).await.is_err() {
                        return;
                    }
                    failures = failures.saturating_add(1);
                    retry_after(failures, self.refresh, self.max_backoff)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One poll: the endpoints by address and the invalid records.
    async fn fetch(
        &self,
        client: &mut Client,
    ) -> Result<(BTreeMap<String, Endpoint>, Vec<SourceError>), NacosError> {
        let c = &self.config;
        let mut params = vec![
            ("serviceName", c.service.as_str()),
            ("groupName", c.group.as_str()),
            ("healthyOnly", "true"),
        ];
        if !c.namespace.is_empty() {
            params.push(("namespaceId", c.namespace.as_str()));
        }
        if let Some(cluster) = &c.cluster {
            params.push(("clusters", cluster.as_str()));
        }
        let body = client
            .call(Method::GET, "/nacos/v1/ns/instance/list", &params)
            .await?;
        let hosts = parse_list(&body, self.max_instances)?;
        Ok(endpoints(hosts, c.cluster.as_deref()))
    }
}

/// When to ask again after `failures` failed polls in a row: `min`,
/// doubling, at most `max`.
fn retry_after(failures: u32, min: Duration, max: Duration) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    min.saturating_mul(factor).min(max.max(min))
}

/// The `hosts` of an instance list, each still raw JSON, at most `max` of
/// them (the rest of the answer is skipped unparsed).
fn parse_list(body: &[u8], max: usize) -> Result<Vec<serde_json::Value>, NacosError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let hosts = ListSeed { max }
        .deserialize(&mut de)
        .and_then(|h| de.end().map(|()| h))
        .map_err(|e| {
            NacosError::Server(format!(
                "the instance list is not Nacos's ({e}): {}",
                quote(body)
            ))
        })?;
    Ok(hosts)
}

struct ListSeed {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for ListSeed {
    type Value = Vec<serde_json::Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ListSeed {
    type Value = Vec<serde_json::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with \"hosts\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut hosts = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "hosts" && hosts.is_none() {
                hosts = Some(map.next_value_seed(HostsSeed { max: self.max })?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        hosts.ok_or_else(|| de::Error::missing_field("hosts"))
    }
}

struct HostsSeed {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for HostsSeed {
    type Value = Vec<serde_json::Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HostsSeed {
    type Value = Vec<serde_json::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of instances")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max).min(1024));
        while let Some(host) = seq.next_element::<serde_json::Value>()? {
            if out.len() == self.max {
                return Err(de::Error::custom(format!(
                    "more than {} instances",
                    self.max
                )));
            }
            out.push(host);
        }
        Ok(out)
    }
}

/// One instance as Nacos lists it (fields this version does not use are
/// ignored).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Host {
    ip: String,
    port: i64,
    #[serde(default = "one")]
    weight: f64,
    #[serde(default = "yes")]
    healthy: bool,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    cluster_name: Option<String>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

/// Where a host was, for messages: its instance id, else `ip#port`, else
/// its place in the list.
fn host_key(i: usize, raw: &serde_json::Value) -> String {
    if let Some(id) = raw.get("instanceId").and_then(|v| v.as_str()) {
        return format!("instance {id}");
    }
    match (raw.get("ip"), raw.get("port")) {
        (Some(ip), Some(port)) => format!("instance {ip}#{port}"),
        _ => format!("hosts[{i}]"),
    }
}

/// The endpoints among `hosts` by address, and the invalid records.
fn endpoints(
    hosts: Vec<serde_json::Value>,
    cluster: Option<&str>,
) -> (BTreeMap<String, Endpoint>, Vec<SourceError>) {
    let mut set = BTreeMap::new();
    let mut invalid = Vec::new();
    for (i, raw) in hosts.into_iter().enumerate() {
        let key = host_key(i, &raw);
        let host: Host = match serde_json::from_value(raw) {
            Ok(h) => h,
            Err(e) => {
                invalid.push(SourceError::InvalidRecord {
                    key,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if !host.healthy || !host.enabled {
            continue;
        }
        if let Some(want) = cluster {
            if host
                .cluster_name
                .as_deref()
                .unwrap_or(super::DEFAULT_CLUSTER)
                != want
            {
                continue;
            }
        }
        match endpoint(host) {
            Ok(Some(e)) => {
                set.insert(e.address.clone(), e);
            }
            Ok(None) => {}
            Err(reason) => invalid.push(SourceError::InvalidRecord { key, reason }),
        }
    }
    (set, invalid)
}

/// The endpoint of a healthy, enabled instance; `None` for weight 0.
fn endpoint(host: Host) -> Result<Option<Endpoint>, String> {
    if !host.weight.is_finite() || host.weight < 0.0 {
        return Err(format!(
            "weight {} is not a finite number >= 0",
            host.weight
        ));
    }
    if host.weight == 0.0 {
        return Ok(None);
    }
    let port = u16::try_from(host.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port {} is not from 1 to 65535", host.port))?;
    let ip = host.ip.trim();
    let address = if ip.contains(':') && !ip.starts_with('[') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    };
    if ip.is_empty()
        || crate::endpoints::EndpointState::new(Endpoint::new(address.clone())).is_none()
    {
        return Err(format!(
            "ip {:?} with port {port} is not host:port",
            host.ip
        ));
    }
    let mut e = Endpoint::new(address).weight(host.weight);
    for (k, v) in host.metadata.unwrap_or_default() {
        let v = match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        e.metadata.insert(k, v);
    }
    Ok(Some(e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn backoff_doubles_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(retry_after(1, ms(500), ms(5000)), ms(500));
        assert_eq!(retry_after(3, ms(500), ms(5000)), ms(2000));
        assert_eq!(retry_after(40, ms(500), ms(5000)), ms(5000));
    }

    #[test]
    fn a_list_becomes_endpoints_and_bad_records_are_named() {
        let body = br#"{"name":"DEFAULT_GROUP@@inventory","cacheMillis":10000,"hosts":[
            {"ip":"10.0.0.1","port":9001,"weight":2.5,"healthy":true,"enabled":true,
             "clusterName":"DEFAULT","metadata":{"zone":"a","n":3},"instanceId":"10.0.0.1#9001"},
            {"ip":"10.0.0.2","port":9002,"healthy":false},
            {"ip":"10.0.0.3","port":9003,"enabled":false},
            {"ip":"10.0.0.4","port":9004,"weight":0.0},
            {"ip":"fe80::1","port":9005,"clusterName":"B"},
            {"ip":"10.0.0.6","port":70000,"instanceId":"big-port"},
            {"ip":"","port":9007},
            {"port":9008},
            {"ip":"10.0.0.9","port":9009,"weight":-1}
        ],"clusters":""}"#;
        let hosts = parse_list(body, 100).unwrap();
        let (set, invalid) = endpoints(hosts, None);
        let addrs: Vec<&str> = set.keys().map(String::as_str).collect();
        assert_eq!(addrs, ["10.0.0.1:9001", "[fe80::1]:9005"]);
        let a = &set["10.0.0.1:9001"];
        assert_eq!(a.weight, 2.5);
        assert_eq!(a.metadata["zone"], "a");
        assert_eq!(a.metadata["n"], "3");
        let text: Vec<String> = invalid.iter().map(|e| e.to_string()).collect();
        assert_eq!(text.len(), 4, "{text:?}");
        assert!(text[0].contains("instance big-port") && text[0].contains("port 70000"));
        assert!(text[1].contains("is not host:port"), "{text:?}");
        assert!(
            text[2].contains("hosts[7]") && text[2].contains("ip"),
            "{text:?}"
        );
        assert!(text[3].contains("weight -1"), "{text:?}");
        // The cluster filter.
        let (set, _) = endpoints(parse_list(body, 100).unwrap(), Some("B"));
        assert_eq!(set.keys().collect::<Vec<_>>(), ["[fe80::1]:9005"]);
    }

    #[test]
    fn answers_that_are_not_lists_or_too_long_are_errors() {
        assert!(parse_list(br#"{"hosts":null}"#, 1).unwrap().is_empty());
        for bad in [
            &b"<html>oops</html>"[..],
            br#"{"name":"x"}"#,
            br#"{"hosts":{}}"#,
            br#"{"hosts":[]} trailing"#,
            br#"[1,2]"#,
        ] {
            let err = parse_list(bad, 10).unwrap_err().to_string();
            assert!(err.contains("not Nacos's"), "{err}");
        }
        let many = format!(
            r#"{{"hosts":[{}]}}"#,
            [r#"{"ip":"10.0.0.1","port":1}"#; 11].join(",")
        );
        let err = parse_list(many.as_bytes(), 10).unwrap_err().to_string();
        assert!(err.contains("more than 10 instances"), "{err}");
        assert_eq!(parse_list(many.as_bytes(), 11).unwrap().len(), 11);
    }
}
