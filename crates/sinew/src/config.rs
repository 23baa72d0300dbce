//! The config file (TOML): one file for [`Client::from_config`](crate::Client::from_config),
//! `sinew call --config` and, with `[server]`, the
//! [`ServerStack`](crate::server::ServerStack).
//!
//! Each section is the config type of the layer crate that owns it, so the
//! keys are exactly those the layer documents:
//!
//! | section | type | on by default |
//! |---|---|---|
//! | `base_url`, `timeout` | here | `timeout = "30s"` (`"off"` turns it off) |
//! | `[pool]` | [`PoolConfig`] | yes |
//! | `[tls]` | [`TlsConfig`] | yes (system roots) |
//! | `[deadline]` | [`sinew_deadline::DeadlineConfig`] | yes |
//! | `[retry]` | [`sinew_retry::RetryConfig`] | yes |
//! | `[hedge]` | [`sinew_retry::HedgeConfig`] | no |
//! | `[breaker]` | [`sinew_breaker::BreakerConfig`] | no |
//! | `[balance]` | [`sinew_balance::BalanceSection`] | no |
//! | `[sign]` | [`SignSection`]: `key` + [`sinew_sign::SignConfig`] | no |
//! | `[metrics]` | [`sinew_metrics::MetricsConfig`] | no |
//! | `[auth]` | [`AuthConfig`] | no |
//! | `[server]` | [`ServerConfig`] | (server side) |
//! | `[registry]` | [`RegistryConfig`](crate::registry::RegistryConfig) | (services by name) |
//! | `[services.NAME]` | any of the above, per service ([`Services`](crate::Services)) | |
//! | `[proxy]` | [`ProxyConfig`](crate::proxy::ProxyConfig) | (`sinew proxy`) |
//!
//! A section that is on by default is turned off with `enabled = false` in
//! it, or `retry = false` at the top of the file. Unknown keys and bad values
//! are errors that name the key and its line. Secrets are never written
//! inline only: `key = { env = "VAR" }`, `{ file = "/path" }`,
//! `{ base64 = "..." }` or `{ text = "..." }` ([`Secret`]).
//!
//! ```
//! let config = sinew::config::ClientConfig::from_toml(r#"
//!     base_url = "http://127.0.0.1:8080"
//!     timeout = "2s"
//!     [retry]
//!     max_attempts = 2
//!     jitter = "equal"
//!     [sign]
//!     key_id = "orders"
//!     key = { env = "ORDERS_KEY" }
//! "#, "client.toml").unwrap();
//! assert_eq!(config.timeout, Some(sinew::config::CallTimeout::After(std::time::Duration::from_secs(2))));
//!
//! let err = sinew::config::ClientConfig::from_toml("[retry]\nmax_atempts = 3\n", "client.toml")
//!     .unwrap_err();
//! assert!(err.to_string().contains("line 2"), "{err}");
//! assert!(err.to_string().contains("max_atempts"), "{err}");
//! ```

use std::path::Path;
use std::time::Duration;

#[cfg(feature = "sign")]
use serde::de::MapAccess;
use serde::de::{Deserializer, Visitor};
use serde::Deserialize;

pub use sinew_core::config::{duration, Secret, Toggle};

#[cfg(feature = "server")]
pub use crate::server::ServerConfig;
pub use crate::transport::{PoolConfig, TlsConfig};
use crate::{Error, ErrorKind};

/// The most bytes of a config file read (a config is small; a larger file
/// is a mistake).
pub const MAX_CONFIG_FILE: u64 = 1024 * 1024;

/// The sections that exist only with a cargo feature: (section, feature,
/// whether this build has it).
const FEATURE_SECTIONS: &[(&str, &str, bool)] = &[
    ("deadline", "deadline", cfg!(feature = "deadline")),
    ("retry", "retry", cfg!(feature = "retry")),
    ("hedge", "retry", cfg!(feature = "retry")),
    ("breaker", "breaker", cfg!(feature = "breaker")),
    ("balance", "balance", cfg!(feature = "balance")),
    ("registry", "balance", cfg!(feature = "balance")),
    ("services", "balance", cfg!(feature = "balance")),
    ("sign", "sign", cfg!(feature = "sign")),
    ("metrics", "metrics", cfg!(feature = "metrics")),
    ("server", "server", cfg!(feature = "server")),
    ("proxy", "proxy", cfg!(feature = "proxy")),
];

/// The first section of `text` whose feature is off in `sections`.
fn missing_feature(
    text: &str,
    sections: &[(&'static str, &'static str, bool)],
) -> Option<(&'static str, &'static str)> {
    let table = toml::from_str::<toml::Table>(text).ok()?;
    sections
        .iter()
        .find(|(section, _, on)| !on && table.contains_key(*section))
        .map(|(section, feature, _)| (*section, *feature))
}

/// The default deadline of every call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Relative paths are joined to this URL.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Every call's deadline (unset: [`DEFAULT_TIMEOUT`], 30 s; `"off"`:
    /// none of the client's own, only per-request and inherited deadlines
    /// apply). `[deadline] timeout` says the same; set one of them.
    #[serde(default)]
    pub timeout: Option<CallTimeout>,
    /// `[pool]`: connections and protocol.
    #[serde(default)]
    pub pool: PoolConfig,
    /// `[tls]`: roots, client certificate, server name.
    #[serde(default)]
    pub tls: TlsConfig,
    /// `[deadline]`: deadline propagation (on by default).
    #[cfg(feature = "deadline")]
    #[serde(default)]
    pub deadline: Toggle<sinew_deadline::DeadlineConfig>,
    /// `[retry]` (on by default).
    #[cfg(feature = "retry")]
    #[serde(default)]
    pub retry: Toggle<sinew_retry::RetryConfig>,
    /// `[hedge]`.
    #[cfg(feature = "retry")]
    #[serde(default)]
    pub hedge: Option<sinew_retry::HedgeConfig>,
    /// `[breaker]`: a circuit breaker per endpoint.
    #[cfg(feature = "breaker")]
    #[serde(default)]
    pub breaker: Option<sinew_breaker::BreakerConfig>,
    /// `[balance]`: endpoints and how to pick one per attempt.
    #[cfg(feature = "balance")]
    #[serde(default)]
    pub balance: Option<sinew_balance::BalanceSection>,
    /// `[sign]`: sign every attempt.
    #[cfg(feature = "sign")]
    #[serde(default)]
    pub sign: Option<SignSection>,
    /// `[metrics]`: per-call and per-attempt metrics.
    #[cfg(feature = "metrics")]
    #[serde(default)]
    pub metrics: Option<sinew_metrics::MetricsConfig>,
    /// `[auth]`: log in for a bearer token.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// `[server]`: the server stack built from the same file.
    #[cfg(feature = "server")]
    #[serde(default)]
    pub server: Option<ServerConfig>,
    /// `[registry]`: where service names resolve, for
    /// [`Services`](crate::Services) and `[server.register]`.
    #[cfg(feature = "balance")]
    #[serde(default)]
    pub registry: Option<crate::registry::RegistryConfig>,
    /// `[services.NAME]`: what the client of service NAME does differently
    /// (any of the sections above, merged key by key over the top-level
    /// ones; see [`Services`](crate::Services)).
    #[cfg(feature = "balance")]
    #[serde(default)]
    pub services: std::collections::BTreeMap<String, toml::Table>,
    /// `[proxy]`: the listeners of `sinew proxy` (see
    /// [`crate::proxy`]); clients ignore it.
    #[cfg(feature = "proxy")]
    #[serde(default)]
    pub proxy: Option<crate::proxy::ProxyConfig>,
}

impl ClientConfig {
    /// Parse TOML; `origin` (a file name) prefixes error messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<ClientConfig, Error> {
        toml::from_str(text).map_err(|e| {
            // A section this build has no feature for reads as an unknown
            // key; say which feature it needs instead.
            let message = match missing_feature(text, FEATURE_SECTIONS) {
                Some((section, feature)) => {
                    format!("[{section}] needs the `{feature}` feature of sinew")
                }
                None => e.to_string(),
            };
            Error::new(ErrorKind::Config, format!("{origin}: {message}"))
        })
    }

    /// Read and parse a TOML file (at most [`MAX_CONFIG_FILE`] bytes).
    pub fn from_file(path: impl AsRef<Path>) -> Result<ClientConfig, Error> {
        let path = path.as_ref();
        let text = read_bounded(path, MAX_CONFIG_FILE).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The names of the file's sections and top-level keys, as the schema
    /// declares them (for tools and for the test that every one of them has
    /// an effect).
    pub fn section_names() -> &'static [&'static str] {
        section_names_of::<ClientConfig>()
    }
}

pub(crate) fn read_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "larger than {limit} bytes; is it the right file?"
        )));
    }
    Ok(text)
}

/// The field names a derived `Deserialize` asks for: serde hands them to
/// `deserialize_struct`, so a recording deserializer reads them off.
pub(crate) fn section_names_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Recorder(Option<&'static [&'static str]>);
    impl<'de> Deserializer<'de> for &mut Recorder {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("recording only"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(serde::de::Error::custom("recording only"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut r = Recorder(None);
    let _ = T::deserialize(&mut r);
    r.0.unwrap_or(&[])
}

/// The client's own deadline for every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallTimeout {
    /// Each call must finish within this long.
    After(Duration),
    /// No deadline of the client's own (per-request and inherited ones
    /// still apply). Written `"off"`.
    Off,
}

impl Default for CallTimeout {
    fn default() -> Self {
        CallTimeout::After(DEFAULT_TIMEOUT)
    }
}

impl CallTimeout {
    /// The duration, when on.
    pub fn duration(&self) -> Option<Duration> {
        match self {
            CallTimeout::After(d) => Some(*d),
            CallTimeout::Off => None,
        }
    }
}

impl<'de> Deserialize<'de> for CallTimeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        if s.trim().eq_ignore_ascii_case("off") {
            return Ok(CallTimeout::Off);
        }
        match sinew_core::config::duration::parse(&s) {
            Ok(d) if d.is_zero() => Err(serde::de::Error::custom(
                "a zero timeout fails every call; write \"off\" for no timeout",
            )),
            Ok(d) => Ok(CallTimeout::After(d)),
            Err(e) => Err(serde::de::Error::custom(format!("{e}, or \"off\""))),
        }
    }
}

/// `[sign]`: the signing key and sinew-sign's
/// [`SignConfig`](sinew_sign::SignConfig) (`profile`, `key_id`,
/// `components`, `label`, `tag`, `expires_in`, `nonce`, `alg`, `scheme`,
/// `body_limit`).
///
/// ```toml
/// [sign]
/// profile = "rfc9421"        # or "legacy" (key_id is then the X-Service-ID)
/// key_id = "orders"
/// key = { env = "ORDERS_SIGNING_KEY" }
/// ```
#[cfg(feature = "sign")]
#[derive(Debug, Clone, PartialEq)]
pub struct SignSection {
    /// The shared secret.
    pub key: Secret,
    /// How to sign.
    pub config: sinew_sign::SignConfig,
}

#[cfg(feature = "sign")]
impl SignSection {
    /// The signing layer this section describes.
    pub fn layer(&self) -> Result<sinew_sign::HmacSignLayer, Error> {
        let cfg = |m: String| Error::new(ErrorKind::Config, format!("[sign] {m}"));
        if self.config.key_id.is_empty() {
            return Err(cfg(
                "key_id: set the key id (the service id for the legacy profile)".into(),
            ));
        }
        let bytes = self.key.load().map_err(|e| cfg(format!("key: {e}")))?;
        let key = sinew_sign::SecretKey::from_bytes(bytes).map_err(|e| cfg(format!("key: {e}")))?;
        let signer =
            sinew_sign::Signer::new(self.config.clone(), key).map_err(|e| cfg(e.to_string()))?;
        Ok(sinew_sign::HmacSignLayer::new(signer))
    }
}

#[cfg(feature = "sign")]
impl<'de> Deserialize<'de> for SignSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SignSection;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a [sign] table")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SignSection, A::Error> {
                let mut key = None;
                let config = sinew_core::config::split_map(map, &["key"], |_, m| {
                    key = Some(m.next_value::<Secret>()?);
                    Ok(())
                })?;
                let key = key.ok_or_else(|| {
                    serde::de::Error::custom(
                        "missing field `key`: write key = { env = \"VAR\" } (or file, base64, text)",
                    )
                })?;
                Ok(SignSection { key, config })
            }
        }
        d.deserialize_map(V)
    }
}

/// `[auth]`: log in for a bearer token, cache it, refresh it before it
/// expires and once on a 401 (see [`crate::auth`]).
///
/// ```toml
/// [auth]
/// login_url = "http://auth.internal/token"
/// username = "orders"
/// password = { env = "ORDERS_PASSWORD" }   # POSTs {"username": ..., "password": ...}
/// # or: credentials = { file = "/run/secrets/login.json" }   (the JSON body itself)
/// refresh_before = "30s"
/// default_ttl = "5m"                       # for tokens without expires_in
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Where to POST the credentials.
    pub login_url: String,
    /// The user name (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// The password (with `username`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// The whole JSON body to POST, instead of `username` and `password`.
    #[serde(default)]
    pub credentials: Option<Secret>,
    /// Refresh this long before the token expires (default 30 s).
    #[serde(default, with = "sinew_core::config::opt_duration")]
    pub refresh_before: Option<Duration>,
    /// How long a token without `expires_in` lives (default: until a 401).
    #[serde(default, with = "sinew_core::config::opt_duration")]
    pub default_ttl: Option<Duration>,
}

impl AuthConfig {
    /// The token-auth settings this section describes (reads the secrets).
    pub fn token_auth(&self) -> Result<crate::auth::TokenAuthConfig, Error> {
        let cfg = |m: String| Error::new(ErrorKind::Config, format!("[auth] {m}"));
        let url: http::Uri = self
            .login_url
            .parse()
            .ok()
            .filter(|u: &http::Uri| u.scheme().is_some() && u.authority().is_some())
            .ok_or_else(|| {
                cfg(format!(
                    "login_url: {:?} is not an absolute URL",
                    self.login_url
                ))
            })?;
        let credentials =
            match (&self.username, &self.password, &self.credentials) {
                (Some(user), Some(pass), None) => {
                    let pass = pass.load().map_err(|e| cfg(format!("password: {e}")))?;
                    let pass =
                        String::from_utf8(pass).map_err(|_| cfg("password: not UTF-8".into()))?;
                    serde_json::json!({ "username": user, "password": pass })
                }
                (None, None, Some(c)) => {
                    let body = c.load().map_err(|e| cfg(format!("credentials: {e}")))?;
                    serde_json::from_slice(&body)
                        .map_err(|e| cfg(format!("credentials: not a JSON document ({e})")))?
                }
                _ => return Err(cfg(
                    "write `username` and `password`, or `credentials` (the JSON body), not both"
                        .into(),
                )),
            };
        let mut auth = crate::auth::TokenAuthConfig::new(url, credentials);
        if let Some(d) = self.refresh_before {
            auth = auth.refresh_before(d);
        }
        if let Some(d) = self.default_ttl {
            auth = auth.default_ttl(d);
        }
        Ok(auth)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn err(text: &str) -> String {
        ClientConfig::from_toml(text, "client.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_layers_own_keys_are_accepted() {
        // Keys the old copies of the layer configs refused.
        let c = ClientConfig::from_toml(
            r#"
[retry]
jitter = "equal"
min_attempt_time = "10ms"
budget_window = "30s"
retry_circuit_open = false
[hedge]
percentile = 0.95
"#,
            "client.toml",
        )
        .unwrap();
        let r = c.retry.get().unwrap();
        assert_eq!(r.budget_window, Duration::from_secs(30));
        assert_eq!(r.retry_circuit_open, Some(false));
        assert_eq!(c.hedge.unwrap().percentile, Some(0.95));
    }

    #[test]
    fn defaults_when_empty() {
        let c = ClientConfig::from_toml("", "x.toml").unwrap();
        assert!(c.deadline.is_on() && c.retry.is_on());
        assert_eq!(c.timeout, None);
        assert_eq!(CallTimeout::default(), CallTimeout::After(DEFAULT_TIMEOUT));
        assert!(c.breaker.is_none() && c.sign.is_none() && c.balance.is_none());
        let c = ClientConfig::from_toml(
            "timeout = \"off\"\nretry = false\n[deadline]\nenabled = false\n",
            "x.toml",
        )
        .unwrap();
        assert_eq!(c.timeout, Some(CallTimeout::Off));
        assert!(!c.retry.is_on() && !c.deadline.is_on());
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let e = err("base_url = \"x\"\n[retry]\nmax_attempts = \"many\"\n");
        assert!(e.contains("client.toml") && e.contains("line 3"), "{e}");
        let e = err("[deadline]\ntimeout = \"soon\"\n");
        assert!(
            e.contains("line 2") && e.contains("invalid duration"),
            "{e}"
        );
        let e = err("timeout = \"0s\"\n");
        assert!(e.contains("line 1") && e.contains("\"off\""), "{e}");
        let e = err("[breaker]\npolicies = [{ sometimes = 1 }]\n");
        assert!(e.contains("line 2") && e.contains("sometimes"), "{e}");
        let e = err("[pool]\nhttp3 = true\n");
        assert!(e.contains("line 2") && e.contains("http3"), "{e}");
        let e = err("[sign]\nkey = { env = \"X\" }\nkey_idd = \"a\"\n");
        assert!(e.contains("line 3") && e.contains("key_idd"), "{e}");
        let e = err("[sign]\nkey_id = \"a\"\n");
        assert!(e.contains("missing field `key`"), "{e}");
        let e = err("[sign]\nkey_id = \"a\"\nkey = \"s3cret\"\n");
        assert!(e.contains("line 3"), "{e}");
        let e = err("[metrics]\nnaming = \"prom\"\n");
        assert!(e.contains("line 2") && e.contains("prom"), "{e}");
        let e = err("[balance]\nstrategy = \"fastest\"\n");
        assert!(e.contains("line 2") && e.contains("fastest"), "{e}");
        let e = err("[servers]\n");
        assert!(e.contains("servers"), "{e}");
    }

    #[test]
    fn a_section_without_its_feature_names_the_feature() {
        let sections = [("breaker", "breaker", false), ("retry", "retry", true)];
        let text = "[retry]\nmax_attempts = 2\n[breaker]\nopen_duration = \"1s\"\n";
        assert_eq!(
            missing_feature(text, &sections),
            Some(("breaker", "breaker"))
        );
        assert_eq!(missing_feature("[retry]\n", &sections), None);
        assert_eq!(missing_feature("not toml [", &sections), None);
    }

    #[test]
    fn section_names_come_from_the_schema() {
        let names = ClientConfig::section_names();
        for s in [
            "base_url", "timeout", "pool", "tls", "retry", "sign", "server", "auth",
        ] {
            assert!(names.contains(&s), "{s} in {names:?}");
        }
    }
}
