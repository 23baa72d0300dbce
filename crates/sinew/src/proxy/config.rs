//! `[proxy]`: the listeners of `sinew proxy`, in the same file as the
//! client sections (outbound calls) and `[server]` (the inbound stack).
//!
//! ```toml
//! [proxy]
//! drain_timeout = "20s"             # after SIGTERM, in-flight requests get this long
//!
//! [proxy.inbound]                   # callers -> [server] stack -> the local application
//! listen = "0.0.0.0:4143"
//! upstream = "127.0.0.1:8000"       # the application
//! upstream_http2 = false            # h2c (prior knowledge) to the application
//! connect_timeout = "1s"            # to the application
//! request_timeout = "60s"           # until the application's response head; "off" for none
//! routes = ["/items/{id}"]          # route templates for the metrics' http_route label
//! header_read_timeout = "10s"       # a client must send its request head within this
//! idle_timeout = "60s"              # a connection with no request in flight is closed after this
//! max_connections = 1024            # open connections at once (more wait to be accepted)
//!
//! [proxy.outbound]                  # the application -> the client stack -> a service by name
//! listen = "127.0.0.1:4140"
//! buffer_request_body = 65536       # bodies declared this small are buffered, so they can be retried
//! header_read_timeout = "10s"
//! idle_timeout = "60s"
//! max_connections = 1024
//!
//! [proxy.admin]                     # GET /metrics, GET /healthz
//! listen = "127.0.0.1:9990"
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::config::CallTimeout;

/// The `[proxy]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `[proxy.inbound]`: callers reach the local application through the
    /// server stack of `[server]`.
    #[serde(default)]
    pub inbound: Option<InboundConfig>,
    /// `[proxy.outbound]`: the local application calls services by name
    /// through the client stack of the file's client sections.
    #[serde(default)]
    pub outbound: Option<OutboundConfig>,
    /// `[proxy.admin]`: `GET /metrics` and `GET /healthz`.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// After SIGTERM (or [`Draining::drain`](super::Draining::drain)), how
    /// long requests in flight may take to finish before their connections
    /// are closed (default 20 s).
    #[serde(default = "default_drain", with = "sinew_core::config::duration")]
    pub drain_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            inbound: None,
            outbound: None,
            admin: None,
            drain_timeout: default_drain(),
        }
    }
}

/// `[proxy.inbound]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundConfig {
    /// Where callers connect.
    pub listen: SocketAddr,
    /// The local application, `host:port` (plain HTTP).
    #[serde(deserialize_with = "authority")]
    pub upstream: http::uri::Authority,
    /// Speak HTTP/2 (h2c, prior knowledge) to the application (default:
    /// HTTP/1.1).
    #[serde(default)]
    pub upstream_http2: bool,
    /// Give up connecting to the application after this long (default 1 s;
    /// answered 502).
    #[serde(default = "default_connect", with = "sinew_core::config::duration")]
    pub connect_timeout: Duration,
    /// The application must answer (its response head) within this long
    /// (default 60 s; answered 504; `"off"` for no limit). The caller's
    /// deadline is the application's to honour: it receives it as
    /// `X-Request-Timeout`, and `[server.deadline] cancel_at_deadline`
    /// makes the proxy enforce it too.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: CallTimeout,
    /// Route templates (`/items/{id}`) for the server metrics'
    /// `http_route` label; a path matching none is `unmatched`.
    #[serde(default)]
    pub routes: Vec<String>,
    /// A client must send each request head within this long (default
    /// 10 s; HTTP/1; `"off"` for no limit).
    #[serde(default = "default_header_read")]
    pub header_read_timeout: CallTimeout,
    /// A connection with no request in flight for this long is closed
    /// (default 60 s; `"off"` to keep it).
    #[serde(default = "default_idle")]
    pub idle_timeout: CallTimeout,
    /// At most this many open connections; more wait to be accepted
    /// (default 1024).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

/// `[proxy.outbound]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// Where the local application connects (a loopback address unless
    /// `allow_remote`).
    pub listen: SocketAddr,
    /// Listen on an address other hosts can reach. Off by default: whoever
    /// reaches the outbound side calls services with this instance's
    /// signing key and credentials.
    #[serde(default)]
    pub allow_remote: bool,
    /// A request body whose declared length is at most this many bytes is
    /// read before the call, so retries and hedges can send it again
    /// (default 64 KiB). Longer bodies, and bodies of unknown length,
    /// stream through once and are not retried.
    #[serde(default = "default_buffer")]
    pub buffer_request_body: usize,
    /// A client must send each request head within this long (default
    /// 10 s; HTTP/1; `"off"` for no limit).
    #[serde(default = "default_header_read")]
    pub header_read_timeout: CallTimeout,
    /// A connection with no request in flight for this long is closed
    /// (default 60 s; `"off"` to keep it).
    #[serde(default = "default_idle")]
    pub idle_timeout: CallTimeout,
    /// At most this many open connections; more wait to be accepted
    /// (default 1024).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

/// `[proxy.admin]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where `GET /metrics` and `GET /healthz` are served.
    pub listen: SocketAddr,
}

impl ProxyConfig {
    /// The names of the section's parts, as the schema declares them.
    pub fn section_names() -> &'static [&'static str] {
        crate::config::section_names_of::<ProxyConfig>()
    }
}

fn default_drain() -> Duration {
    Duration::from_secs(20)
}
fn default_connect() -> Duration {
    Duration::from_secs(1)
}
fn default_request_timeout() -> CallTimeout {
    CallTimeout::After(Duration::from_secs(60))
}
fn default_header_read() -> CallTimeout {
    CallTimeout::After(Duration::from_secs(10))
}
fn default_idle() -> CallTimeout {
    CallTimeout::After(Duration::from_secs(60))
}
fn default_max_connections() -> usize {
    1024
}
fn default_buffer() -> usize {
    64 * 1024
}

fn authority<'de, D: Deserializer<'de>>(d: D) -> Result<http::uri::Authority, D::Error> {
    let s = std::borrow::Cow::<str>::deserialize(d)?;
    let bad = |why: &str| {
        serde::de::Error::custom(format!(
            "{s:?} {why}: write the application's address as \"127.0.0.1:8000\""
        ))
    };
    if s.contains("://") {
        return Err(bad("is a URL"));
    }
    let a: http::uri::Authority = s.parse().map_err(|_| bad("is not host:port"))?;
    if a.as_str().contains('@') {
        return Err(bad("has user info"));
    }
    match a.port_u16() {
        Some(p) if p != 0 => Ok(a),
        _ => Err(bad("has no port")),
    }
}

/// A bad `[proxy]` value found after parsing (the parser names key and line
/// for the rest).
pub(crate) fn check(config: &ProxyConfig) -> Result<(), String> {
    if config.inbound.is_none() && config.outbound.is_none() {
        return Err(
            "[proxy] has neither [proxy.inbound] nor [proxy.outbound]: nothing to serve".into(),
        );
    }
    if let Some(i) = &config.inbound {
        if i.max_connections == 0 {
            return Err("[proxy.inbound] max_connections: must be at least 1".into());
        }
        for r in &i.routes {
            super::routes::check_template(r)
                .map_err(|e| format!("[proxy.inbound] routes: {r:?}: {e}"))?;
        }
        if i.routes.len() > super::routes::MAX_ROUTES {
            return Err(format!(
                "[proxy.inbound] routes: at most {} templates",
                super::routes::MAX_ROUTES
            ));
        }
    }
    if let Some(o) = &config.outbound {
        if o.max_connections == 0 {
            return Err("[proxy.outbound] max_connections: must be at least 1".into());
        }
        if !o.allow_remote && !o.listen.ip().is_loopback() {
            return Err(format!(
                "[proxy.outbound] listen: {} is not a loopback address; whoever reaches the outbound side calls with this instance's keys (set allow_remote = true if that is meant)",
                o.listen
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<ProxyConfig, String> {
        toml::from_str::<ProxyConfig>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_keys() {
        let c = parse("[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:8000\"\n[outbound]\nlisten = \"127.0.0.1:0\"\n").unwrap();
        let i = c.inbound.as_ref().unwrap();
        assert_eq!(i.upstream.as_str(), "127.0.0.1:8000");
        assert_eq!(
            i.request_timeout,
            CallTimeout::After(Duration::from_secs(60))
        );
        assert_eq!(i.max_connections, 1024);
        assert_eq!(c.outbound.as_ref().unwrap().buffer_request_body, 65536);
        assert_eq!(c.drain_timeout, Duration::from_secs(20));
        check(&c).unwrap();
        let names = ProxyConfig::section_names();
        assert!(names.contains(&"inbound") && names.contains(&"drain_timeout"));
    }

    #[test]
    fn bad_values_are_named() {
        for (text, want) in [
            ("[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:8000\"\n", "is a URL"),
            ("[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1\"\n", "has no port"),
            ("[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"a@b:1\"\n", "user info"),
            ("[inbound]\nlisten = \"localhost:80\"\nupstream = \"127.0.0.1:1\"\n", "line 2"),
            ("[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:1\"\nidle_timeout = \"0s\"\n", "\"off\""),
            ("[outbound]\nlisten = \"127.0.0.1:0\"\nbuffer = 1\n", "buffer"),
            ("[outbound]\nlisten = \"127.0.0.1:0\"\n[admn]\n", "admn"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        let e = check(&parse("drain_timeout = \"1s\"\n").unwrap()).unwrap_err();
        assert!(e.contains("nothing to serve"), "{e}");
        let e = check(&parse("[outbound]\nlisten = \"0.0.0.0:4140\"\n").unwrap()).unwrap_err();
        assert!(e.contains("allow_remote"), "{e}");
        check(&parse("[outbound]\nlisten = \"0.0.0.0:4140\"\nallow_remote = true\n").unwrap())
            .unwrap();
        let e = check(&parse("[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:1\"\nroutes = [\"items\"]\n").unwrap()).unwrap_err();
        assert!(e.contains("routes") && e.contains("items"), "{e}");
        let e =
            check(&parse("[outbound]\nlisten = \"127.0.0.1:0\"\nmax_connections = 0\n").unwrap())
                .unwrap_err();
        assert!(e.contains("max_connections"), "{e}");
    }
}
