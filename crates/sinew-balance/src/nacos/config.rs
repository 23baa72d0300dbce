//! [`NacosConfig`]: where the Nacos server is, which service, and how to log
//! in; checked once ([`NacosConfig::validate`]) before any traffic.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sinew_core::config::Secret;

use super::NacosError;

/// The Nacos port when `server_addr` names none.
pub const DEFAULT_PORT: u16 = 8848;
/// The group when the config names none.
pub const DEFAULT_GROUP: &str = "DEFAULT_GROUP";
/// The cluster a registered instance joins when the config names none.
pub const DEFAULT_CLUSTER: &str = "DEFAULT";

/// A Nacos registry and one service in it, as written in a config file:
///
/// ```toml
/// server_addr = "10.0.0.5:8848,10.0.0.6:8848"  # HTTP port(s), tried in turn
/// namespace = "dev"                 # namespace id; default "" (public)
/// group = "DEFAULT_GROUP"           # the default
/// cluster = "DEFAULT"               # discovery: only this cluster (default: all)
/// service = "inventory"
/// username = "nacos"                # with password: log in, token refreshed
/// password = { env = "NACOS_PASSWORD" }
/// timeout = "3s"                    # per request (the default)
/// ```
///
/// The same type serves discovery ([`NacosDiscovery`](super::NacosDiscovery):
/// `service` is the service looked up, `cluster` filters) and registration
/// ([`NacosRegistration`](super::NacosRegistration): `service` is this
/// instance's service, `cluster` the one it joins, `DEFAULT` when absent).
/// Unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NacosConfig {
    /// The server's HTTP address, `host:port` (port 8848 when absent,
    /// `http://` allowed); several separated by commas, tried in turn when
    /// one cannot be reached.
    pub server_addr: String,
    /// The namespace id; empty (the default) is Nacos's `public`.
    #[serde(default)]
    pub namespace: String,
    /// The group (default `DEFAULT_GROUP`).
    #[serde(default = "default_group")]
    pub group: String,
    /// Discovery: only instances of this cluster (default: every cluster).
    /// Registration: the cluster the instance joins (default `DEFAULT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The service name. It may be left out where the service comes from
    /// elsewhere (the sinew facade's `[registry]`, which fills in the name
    /// of each service it calls); an empty name is refused when used.
    #[serde(default)]
    pub service: String,
    /// The user to log in as (`/nacos/v1/auth/login`); needs `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password (`{ env | file | base64 | text }`); needs `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// How long one request (with its connection) may take (default 3 s).
    #[serde(default = "default_timeout", with = "sinew_core::config::duration")]
    pub timeout: Duration,
}

fn default_group() -> String {
    DEFAULT_GROUP.into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(3)
}

impl NacosConfig {
    /// A config for `service` at `server_addr`, everything else default.
    pub fn new(server_addr: impl Into<String>, service: impl Into<String>) -> Self {
        NacosConfig {
            server_addr: server_addr.into(),
            namespace: String::new(),
            group: default_group(),
            cluster: None,
            service: service.into(),
            username: None,
            password: None,
            timeout: default_timeout(),
        }
    }

    /// Check every field and load the password: the first problem, naming
    /// the key, as [`NacosError::Config`].
    pub fn validate(&self) -> Result<(), NacosError> {
        Checked::new(self).map(drop)
    }
}

/// One login: the user and the loaded password.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A validated config, the password loaded.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    /// `host:port` of every server, in the order given.
    pub(crate) servers: Vec<String>,
    pub(crate) namespace: String,
    pub(crate) group: String,
    pub(crate) cluster: Option<String>,
    pub(crate) service: String,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) timeout: Duration,
}

/// The longest namespace, group, cluster or service name accepted.
const MAX_NAME: usize = 256;

fn config_error(key: &str, what: impl std::fmt::Display) -> NacosError {
    NacosError::Config(format!("{key}: {what}"))
}

/// Namespace ids, groups and clusters: letters, digits, `_ - . :`.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// Service names: anything printable without spaces, except `@@` (Nacos's
/// group separator).
fn is_service_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && !s.contains("@@")
        && s.chars().all(|c| !c.is_control() && !c.is_whitespace())
}

/// `host:port`, `host` (port 8848), or either after `http://`.
fn server(entry: &str) -> Result<String, NacosError> {
    let key = "server_addr";
    let e = entry.trim();
    if e.is_empty() {
        return Err(config_error(key, "an empty address in the list"));
    }
    if e.starts_with("https://") {
        return Err(config_error(
            key,
            format!("{e:?}: https is not supported; give the server's plain HTTP address"),
        ));
    }
    let bare = e.strip_prefix("http://").unwrap_or(e);
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    if bare.contains('/') || bare.contains("://") {
        return Err(config_error(
            key,
            format!("{e:?} is not host:port (no path: the API is under /nacos)"),
        ));
    }
    let authority: http::uri::Authority = bare
        .parse()
        .map_err(|_| config_error(key, format!("{e:?} is not host:port")))?;
    if authority.as_str().contains('@') {
        return Err(config_error(
            key,
            format!("{e:?}: no user info in the address; use username and password"),
        ));
    }
    match authority.port_u16() {
        Some(0) => Err(config_error(key, format!("{e:?}: port 0"))),
        Some(_) => Ok(authority.as_str().to_owned()),
        // Something after the host that is not a port number.
        None if authority.as_str().len() != authority.host().len() => Err(config_error(
            key,
            format!("{e:?}: the port is not a number from 1 to 65535"),
        )),
        None => Ok(format!("{}:{DEFAULT_PORT}", authority.host())),
    }
}

impl Checked {
    pub(crate) fn new(c: &NacosConfig) -> Result<Checked, NacosError> {
        let servers = c
            .server_addr
            .split(',')
            .map(server)
            .collect::<Result<Vec<_>, _>>()?;
        if servers.len() > 64 {
            return Err(config_error("server_addr", "more than 64 addresses"));
        }
        if !c.namespace.is_empty() && !is_plain_name(&c.namespace) {
            return Err(config_error(
                "namespace",
                format!(
                    "{:?} is not a namespace id (letters, digits, _ - . : only)",
                    c.namespace
                ),
            ));
        }
        if !is_plain_name(&c.group) {
            return Err(config_error(
                "group",
                format!(
                    "{:?} is not a group name (letters, digits, _ - . : only)",
                    c.group
                ),
            ));
        }
        if let Some(cluster) = &c.cluster {
            if !is_plain_name(cluster) {
                return Err(config_error(
                    "cluster",
                    format!("{cluster:?} is not a cluster name (letters, digits, _ - . : only)"),
                ));
            }
        }
        if !is_service_name(&c.service) {
            return Err(config_error(
                "service",
                format!(
                    "{:?} is not a service name (non-empty, no spaces, no \"@@\")",
                    c.service
                ),
            ));
        }
        let credentials = match (&c.username, &c.password) {
            (None, None) => None,
            (Some(_), None) => return Err(config_error("password", "username needs a password")),
            (None, Some(_)) => return Err(config_error("username", "password needs a username")),
            (Some(user), Some(secret)) => {
                if user.is_empty() || user.chars().any(char::is_control) {
                    return Err(config_error("username", "empty or with control characters"));
                }
                let bytes = secret
                    .load()
                    .map_err(|e| config_error("password", format!("cannot load it: {e}")))?;
                let password = String::from_utf8(bytes).map_err(|_| {
                    config_error("password", format!("{} is not UTF-8 text", secret.origin()))
                })?;
                Some(Credentials {
                    username: user.clone(),
                    password,
                })
            }
        };
        if c.timeout.is_zero() {
            return Err(config_error("timeout", "must be more than 0"));
        }
        Ok(Checked {
            servers,
            namespace: c.namespace.clone(),
            group: c.group.clone(),
            cluster: c.cluster.clone(),
            service: c.service.clone(),
            credentials,
            timeout: c.timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(toml_like_json: &str) -> Result<NacosConfig, String> {
        serde_json::from_str(toml_like_json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_every_key() {
        let c = parse(r#"{"server_addr": "127.0.0.1:8848", "service": "inventory"}"#).unwrap();
        assert_eq!(c, NacosConfig::new("127.0.0.1:8848", "inventory"));
        assert_eq!(c.group, "DEFAULT_GROUP");
        assert_eq!(c.timeout, Duration::from_secs(3));
        let c = parse(
            r#"{"server_addr": "http://a:1,b", "namespace": "dev", "group": "G",
                "cluster": "c1", "service": "s", "username": "u",
                "password": {"text": "p"}, "timeout": "250ms"}"#,
        )
        .unwrap();
        let k = Checked::new(&c).unwrap();
        assert_eq!(k.servers, ["a:1", "b:8848"]);
        assert_eq!(k.namespace, "dev");
        assert_eq!(k.cluster.as_deref(), Some("c1"));
        assert_eq!(k.credentials.as_ref().unwrap().password, "p");
        assert_eq!(k.timeout, Duration::from_millis(250));
        // The password is never printed.
        assert!(!format!("{k:?}").contains("\"p\""), "{k:?}");
        let err = parse(r#"{"server_addr": "a", "service": "s", "pasword": "x"}"#).unwrap_err();
        assert!(err.contains("unknown field `pasword`"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let base = NacosConfig::new("127.0.0.1:8848", "inventory");
        let cases: Vec<(NacosConfig, &str)> = vec![
            (
                NacosConfig {
                    server_addr: "".into(),
                    ..base.clone()
                },
                "server_addr",
            ),
            (
                NacosConfig {
                    server_addr: "https://a:1".into(),
                    ..base.clone()
                },
                "https",
            ),
            (
                NacosConfig {
                    server_addr: "a:1/nacos".into(),
                    ..base.clone()
                },
                "no path",
            ),
            (
                NacosConfig {
                    server_addr: "a:x".into(),
                    ..base.clone()
                },
                "server_addr",
            ),
            (
                NacosConfig {
                    server_addr: "u:p@a:1".into(),
                    ..base.clone()
                },
                "user info",
            ),
            (
                NacosConfig {
                    server_addr: "a:1,,b:2".into(),
                    ..base.clone()
                },
                "empty address",
            ),
            (
                NacosConfig {
                    namespace: "a b".into(),
                    ..base.clone()
                },
                "namespace",
            ),
            (
                NacosConfig {
                    group: "".into(),
                    ..base.clone()
                },
                "group",
            ),
            (
                NacosConfig {
                    cluster: Some("x/y".into()),
                    ..base.clone()
                },
                "cluster",
            ),
            (
                NacosConfig {
                    service: "G@@s".into(),
                    ..base.clone()
                },
                "service",
            ),
            (
                NacosConfig {
                    service: "".into(),
                    ..base.clone()
                },
                "service",
            ),
            (
                NacosConfig {
                    username: Some("u".into()),
                    ..base.clone()
                },
                "password: username needs a password",
            ),
            (
                NacosConfig {
                    password: Some(Secret::Text("p".into())),
                    ..base.clone()
                },
                "username: password needs a username",
            ),
            (
                NacosConfig {
                    username: Some("u".into()),
                    password: Some(Secret::Env("SURELY_UNSET_NACOS_PASSWORD_42".into())),
                    ..base.clone()
                },
                "SURELY_UNSET_NACOS_PASSWORD_42",
            ),
            (
                NacosConfig {
                    timeout: Duration::ZERO,
                    ..base.clone()
                },
                "timeout",
            ),
        ];
        for (c, want) in cases {
            let Err(err) = c.validate() else {
                panic!("{want}: accepted {c:?}")
            };
            assert!(matches!(err, NacosError::Config(_)), "{err:?}");
            assert!(err.to_string().contains(want), "{want}: {err}");
        }
        base.validate().unwrap();
        // IPv6 literals keep their brackets.
        let k = Checked::new(&NacosConfig::new("[::1]:9000,[::1]", "s")).unwrap();
        assert_eq!(k.servers, ["[::1]:9000", "[::1]:8848"]);
    }
}
