//! DNS discovery: [`DnsDiscovery`] resolves a name (A/AAAA with a port, or
//! SRV) through `hickory-resolver` and re-resolves it when its records'
//! TTL runs out.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::Stream;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

use crate::source::{send_all, spawn_on_poll, Announced, Discovered, Sender, SourceError};
use crate::Endpoint;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Query {
    /// A and AAAA records of a host, every address with one port.
    Host { name: String, port: u16 },
    /// SRV records: targets, ports and weights.
    Srv { name: String },
}

/// Resolves a name to endpoints and follows it: re-resolved when the
/// shortest TTL among its records runs out (kept between
/// [`min_refresh`](DnsDiscovery::min_refresh) and
/// [`max_refresh`](DnsDiscovery::max_refresh)).
///
/// * `host:port` ([`DnsDiscovery::host`]): every A and AAAA address, with
///   that port, weight 1.
/// * SRV ([`DnsDiscovery::srv`]): the records of the lowest priority
///   (RFC 2782), each target's addresses with the record's port and weight
///   (weight 0, "very rarely" in RFC 2782, becomes 0.01 so that a
///   weighted strategy still picks it now and then).
///
/// A lookup that fails, or finds no address, keeps the last good set (the
/// error is reported on the stream and the balancer logs it) and is tried
/// again, backing off from `min_refresh` up to `max_refresh`.
///
/// Endpoints are `ip:port`, so the balancer connects to the address it
/// picked; the resolver's own cache is off (each refresh asks the server).
#[derive(Debug, Clone)]
pub struct DnsDiscovery {
    query: Query,
    name_servers: Vec<SocketAddr>,
    min_refresh: Duration,
    max_refresh: Duration,
    timeout: Duration,
}

impl DnsDiscovery {
    /// The A and AAAA addresses of `name`, each with `port`.
    pub fn host(name: impl Into<String>, port: u16) -> Self {
        Self::with(Query::Host {
            name: name.into(),
            port,
        })
    }

    /// The SRV records of `name` (`_http._tcp.inventory.internal`).
    pub fn srv(name: impl Into<String>) -> Self {
        Self::with(Query::Srv { name: name.into() })
    }

    /// From configuration text: `host:port` for A/AAAA, `srv:<name>` for
    /// SRV.
    pub fn parse(text: &str) -> Result<Self, SourceError> {
        let invalid = |reason: &str| SourceError::InvalidRecord {
            key: text.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(name) = text.strip_prefix("srv:") {
            if name.is_empty() {
                return Err(invalid("write srv:<name>"));
            }
            return Ok(Self::srv(name));
        }
        let (name, port) = text
            .rsplit_once(':')
            .ok_or_else(|| invalid("write host:port or srv:<name>"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| invalid("the port is not a number from 0 to 65535"))?;
        if name.is_empty() {
            return Err(invalid("the host name is empty"));
        }
        Ok(Self::host(name, port))
    }

    fn with(query: Query) -> Self {
        DnsDiscovery {
            query,
            name_servers: Vec::new(),
            min_refresh: Duration::from_secs(1),
            max_refresh: Duration::from_secs(60),
            timeout: Duration::from_secs(2),
        }
    }

    /// Ask this name server (UDP, then TCP for long answers) instead of the
    /// system's (`/etc/resolv.conf`); may be given more than once.
    pub fn name_server(mut self, addr: SocketAddr) -> Self {
        self.name_servers.push(addr);
        self
    }

    /// The shortest time between lookups (default 1 s), also the first
    /// wait after a failure.
    pub fn min_refresh(mut self, d: Duration) -> Self {
        self.min_refresh = d;
        self
    }

    /// The longest time between lookups, whatever the TTL (default 60 s).
    pub fn max_refresh(mut self, d: Duration) -> Self {
        self.max_refresh = d;
        self
    }

    /// How long one query may take (default 2 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// The stream of changes. The resolving runs in a task spawned on the
    /// current tokio runtime when the stream is first polled, and ends when
    /// the stream is dropped.
    pub fn into_stream(self) -> impl Stream<Item = Discovered> + Send + 'static {
        spawn_on_poll(move |tx| async move { self.run(&tx).await })
    }

    fn resolver(&self) -> Result<TokioResolver, SourceError> {
        let mut builder = if self.name_servers.is_empty() {
            TokioResolver::builder_tokio().map_err(unreachable)?
        } else {
            let servers = self
                .name_servers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            let config = ResolverConfig::from_parts(None, Vec::new(), servers);
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.cache_size = 0;
        opts.timeout = self.timeout;
        opts.attempts = 1;
        // Both families: every A and every AAAA address is an endpoint.
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        builder.build().map_err(unreachable)
    }

    async fn run(&self, tx: &Sender) {
        let mut announced = Announced::default();
        let mut resolver = None;
        let mut failures: u32 = 0;
        loop {
            // The resolver is built once, on the first lookup that can.
            let outcome = match &mut resolver {
                Some(r) => self.resolve(r).await,
                slot @ None => match self.resolver() {
                    Ok(r) => self.resolve(slot.insert(r)).await,
                    Err(e) => Err(e),
                },
            };
            let wait = match outcome {
                Ok((set, ttl)) => {
                    failures = 0;
                    if !send_all(tx, announced.changes(set)).await {
                        return;
                    }
                    refresh_after(ttl, self.min_refresh, self.max_refresh)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "DNS lookup failed; keeping the last good endpoints");
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                    failures = failures.saturating_add(1);
                    retry_after(failures, self.min_refresh, self.max_refresh)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One lookup: the endpoints and the shortest TTL among the records.
    async fn resolve(
        &self,
        resolver: &TokioResolver,
    ) -> Result<(BTreeMap<String, Endpoint>, Duration), SourceError> {
        let mut set = BTreeMap::new();
        let ttl = match &self.query {
            Query::Host { name, port } => {
                let lookup = resolver
                    .lookup_ip(name.as_str())
                    .await
                    .map_err(unreachable)?;
                for ip in lookup.iter() {
                    let e = endpoint(ip, *port, 1.0);
                    set.insert(e.address.clone(), e);
                }
                shortest_ttl(lookup.as_lookup())
            }
            Query::Srv { name } => {
                let lookup = resolver
                    .srv_lookup(name.as_str())
                    .await
                    .map_err(unreachable)?;
                let mut ttl = shortest_ttl(&lookup);
                let records: Vec<_> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::SRV(srv) => Some(srv),
                        _ => None,
                    })
                    .collect();
                let lowest = records.iter().map(|s| s.priority).min();
                for srv in records.iter().filter(|s| Some(s.priority) == lowest) {
                    let target = srv.target.to_ascii();
                    let ips = resolver.lookup_ip(srv.target.clone()).await.map_err(|e| {
                        SourceError::Unreachable {
                            source_name: format!("DNS ({target})"),
                            reason: e.to_string(),
                        }
                    })?;
                    ttl = ttl.min(shortest_ttl(ips.as_lookup()));
                    let weight = match srv.weight {
                        0 => 0.01,
                        w => f64::from(w),
                    };
                    for ip in ips.iter() {
                        let e = endpoint(ip, srv.port, weight)
                            .meta("srv_target", target.trim_end_matches('.'))
                            .meta("srv_priority", srv.priority.to_string());
                        set.insert(e.address.clone(), e);
                    }
                }
                ttl
            }
        };
        if set.is_empty() {
            return Err(unreachable("the name has no addresses"));
        }
        Ok((set, ttl))
    }
}

fn endpoint(ip: IpAddr, port: u16, weight: f64) -> Endpoint {
    Endpoint::new(SocketAddr::new(ip, port).to_string()).weight(weight)
}

fn shortest_ttl(lookup: &Lookup) -> Duration {
    let secs = lookup.answers().iter().map(|r| r.ttl).min().unwrap_or(0);
    Duration::from_secs(u64::from(secs))
}

fn unreachable(e: impl std::fmt::Display) -> SourceError {
    SourceError::Unreachable {
        source_name: "DNS".into(),
        reason: e.to_string(),
    }
}

/// When to look again after a lookup whose shortest TTL was `ttl`.
fn refresh_after(ttl: Duration, min: Duration, max: Duration) -> Duration {
    ttl.max(min).min(max.max(min))
}

/// When to look again after `failures` failed lookups in a row: `min`,
/// doubling, at most `max`.
fn retry_after(failures: u32, min: Duration, max: Duration) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    min.saturating_mul(factor).min(max.max(min))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn refresh_honours_the_ttl_within_bounds() {
        let s = Duration::from_secs;
        assert_eq!(refresh_after(s(30), s(1), s(60)), s(30));
        assert_eq!(refresh_after(s(0), s(1), s(60)), s(1));
        assert_eq!(refresh_after(s(3600), s(1), s(60)), s(60));
        assert_eq!(retry_after(1, s(1), s(60)), s(1));
        assert_eq!(retry_after(3, s(1), s(60)), s(4));
        assert_eq!(retry_after(40, s(1), s(60)), s(60));
    }

    #[test]
    fn parse_forms() {
        assert_eq!(
            DnsDiscovery::parse("inventory.internal:8080")
                .unwrap()
                .query,
            Query::Host {
                name: "inventory.internal".into(),
                port: 8080
            }
        );
        assert_eq!(
            DnsDiscovery::parse("srv:_http._tcp.inventory")
                .unwrap()
                .query,
            Query::Srv {
                name: "_http._tcp.inventory".into()
            }
        );
        for bad in ["inventory", "inventory:http", ":80", "srv:", "x:70000"] {
            let e = DnsDiscovery::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }
}
