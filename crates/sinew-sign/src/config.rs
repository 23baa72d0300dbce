//! Configuration of the signer and the verifier.

use std::time::Duration;

use crate::component::Component;

/// The wire format of a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Profile {
    /// RFC 9421 HTTP Message Signatures with `hmac-sha256` (`Signature-Input`,
    /// `Signature`, `Content-Digest`).
    #[default]
    Rfc9421,
    /// microservice_comms' scheme: `X-Service-ID`, `X-Timestamp`,
    /// `X-Signature` = hex HMAC-SHA256 of `METHOD|PATH|TIMESTAMP`.
    Legacy,
}

impl Profile {
    /// `"rfc9421"` or `"legacy"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Rfc9421 => "rfc9421",
            Profile::Legacy => "legacy",
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rfc9421" => Ok(Profile::Rfc9421),
            "legacy" => Ok(Profile::Legacy),
            other => Err(format!("unknown profile {other:?} (rfc9421 or legacy)")),
        }
    }
}

/// How a [`Signer`](crate::Signer) signs. The key is given separately.
///
/// | field | default |
/// |---|---|
/// | `profile` | `rfc9421` |
/// | `key_id` | `""` (must be set): the `keyid`, or the `X-Service-ID` for `legacy` |
/// | `components` | `@method @authority @path @query content-digest` |
/// | `label` | `sig1` |
/// | `tag` | none |
/// | `expires_in` | none (no `expires`) |
/// | `expires_at` | none; an absolute `expires` (Unix seconds) that wins over `expires_in` (for the CLI and tests) |
/// | `nonce` | `true` (fresh random nonce per signing) |
/// | `alg` | `true` (`alg="hmac-sha256"`) |
/// | `scheme` | `http` (for `@scheme`/`@target-uri`/default port when the URI has no scheme) |
/// | `body_limit` | 1 MiB (the layer buffers at most this much to compute `Content-Digest`) |
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct SignConfig {
    /// The signature format.
    pub profile: Profile,
    /// `keyid` (RFC 9421) or service id (legacy).
    pub key_id: String,
    /// The covered components (RFC 9421).
    pub components: Vec<Component>,
    /// The signature label in `Signature-Input`/`Signature`.
    pub label: String,
    /// The `tag` parameter.
    pub tag: Option<String>,
    /// Add `expires = created + expires_in`.
    #[cfg_attr(feature = "serde", serde(with = "crate::config::opt_duration"))]
    pub expires_in: Option<Duration>,
    /// Set `expires` to this Unix time (wins over `expires_in`).
    pub expires_at: Option<u64>,
    /// Add a fresh random `nonce` to every signature.
    pub nonce: bool,
    /// Add `alg="hmac-sha256"`.
    pub alg: bool,
    /// The scheme assumed when the request URI has none.
    pub scheme: String,
    /// The most body the layer buffers to compute `Content-Digest`.
    pub body_limit: usize,
}

impl Default for SignConfig {
    fn default() -> Self {
        Self {
            profile: Profile::Rfc9421,
            key_id: String::new(),
            components: Component::defaults(),
            label: "sig1".into(),
            tag: None,
            expires_in: None,
            expires_at: None,
            nonce: true,
            alg: true,
            scheme: "http".into(),
            body_limit: 1024 * 1024,
        }
    }
}

impl SignConfig {
    /// RFC 9421 signing under `key_id` with the defaults.
    pub fn rfc9421(key_id: impl Into<String>) -> Self {
        Self {
            key_id: key_id.into(),
            ..Self::default()
        }
    }

    /// Legacy signing as service `service_id`.
    pub fn legacy(service_id: impl Into<String>) -> Self {
        Self {
            profile: Profile::Legacy,
            key_id: service_id.into(),
            ..Self::default()
        }
    }

    /// Set the covered components.
    pub fn components(mut self, components: Vec<Component>) -> Self {
        self.components = components;
        self
    }
    /// Set the label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }
    /// Set the `tag`.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }
    /// Add `expires` this long after `created`.
    pub fn expires_in(mut self, d: Duration) -> Self {
        self.expires_in = Some(d);
        self
    }
    /// Set `expires` to this Unix time.
    pub fn expires_at(mut self, unix: u64) -> Self {
        self.expires_at = Some(unix);
        self
    }
    /// Add a nonce (default) or not.
    pub fn nonce(mut self, on: bool) -> Self {
        self.nonce = on;
        self
    }
    /// Add `alg` (default) or not.
    pub fn alg(mut self, on: bool) -> Self {
        self.alg = on;
        self
    }
    /// The scheme assumed for origin-form URIs.
    pub fn scheme(mut self, scheme: impl Into<String>) -> Self {
        self.scheme = scheme.into();
        self
    }
    /// The most body buffered for `Content-Digest`.
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }
}

/// Which profiles a [`Verifier`](crate::Verifier) accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Accept {
    /// RFC 9421 only (default).
    #[default]
    Rfc9421,
    /// The legacy profile only.
    Legacy,
    /// Both: RFC 9421 when `Signature-Input` is present, else legacy (for a
    /// fleet moving one service at a time).
    Any,
}

impl Accept {
    pub(crate) fn rfc9421(self) -> bool {
        matches!(self, Accept::Rfc9421 | Accept::Any)
    }
    pub(crate) fn legacy(self) -> bool {
        matches!(self, Accept::Legacy | Accept::Any)
    }
}

impl From<Profile> for Accept {
    fn from(p: Profile) -> Self {
        match p {
            Profile::Rfc9421 => Accept::Rfc9421,
            Profile::Legacy => Accept::Legacy,
        }
    }
}

/// How a [`Verifier`](crate::Verifier) checks. Keys come from a
/// [`KeyStore`](crate::KeyStore) given separately.
///
/// | field | default |
/// |---|---|
/// | `accept` | `rfc9421` |
/// | `required_components` | `@method @authority @path @query content-digest` |
/// | `label` | none: the first signature in `Signature-Input` |
/// | `max_age` | 300 s (`created` older than this is refused) |
/// | `skew` | 30 s (`created` this far in the future, or `expires` this far past, is tolerated) |
/// | `body_limit` | 1 MiB (larger bodies: 413) |
/// | `replay_capacity` | 1 000 000 live signatures remembered: with `max_age` + `skew` = 330 s that sustains about 3 000 signed requests/s; memory grows with use (a 40-byte entry in a hash table at most 7/8 full: 47–86 bytes an entry, ~86 MB when full) |
/// | `replay_protection` | `true` (RFC 9421) |
/// | `legacy_replay_protection` | `false` (microservice_comms resends the same signature on retries) |
/// | `scheme` | `http` (for `@scheme`/`@target-uri` of origin-form requests) |
/// | `max_header_bytes` | 8 KiB: `Signature-Input`, `Signature` and `Content-Digest`, each field with all its lines |
/// | `max_signatures` | 16 members (signatures) in `Signature-Input` and in `Signature` |
/// | `max_components` | 64 components in the checked signature |
/// | `max_component_params` | 8 parameters on one component (RFC 9421 defines 6) |
/// | `max_signature_params` | 32 parameters of the checked signature (sinew sends 5 or 6) |
/// | `max_covered_bytes` | 16 KiB of the request read by the covered components (a structured-field parse counts 8 times, `@query-param`'s scan of the query 4 times) |
///
/// # Limits on what a peer sends
///
/// A request that exceeds a limit is refused with 400 and the reason
/// `limit_exceeded` (the detail names the key) before the work the limit
/// bounds. The sizes of the fields are checked before they are parsed
/// (which bounds the parse); nothing past the first signature, component
/// or parameter over its count is kept or looked at; and each covered
/// component is charged against `max_covered_bytes` before its value is
/// read into the signature base: a field with the size of all its values,
/// eight times that when it is parsed (`;sf`, `;key`); `@query-param` with
/// four times the query (every name in it is decoded); the other derived
/// components with what they write. So a signature cannot make the verifier
/// read one large header 64 times. The key id and the signature's times are
/// checked before the components are interpreted and before the body is
/// read. The defaults are far above what real signatures need; verification
/// work stays within a small multiple of verifying a normal request
/// whatever a peer sends.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct VerifyConfig {
    /// Accepted profiles.
    pub accept: Accept,
    /// Components every RFC 9421 signature must cover.
    pub required_components: Vec<Component>,
    /// The label to verify; `None`: the first one.
    pub label: Option<String>,
    /// The oldest accepted `created` (or `X-Timestamp`).
    #[cfg_attr(feature = "serde", serde(with = "crate::config::duration"))]
    pub max_age: Duration,
    /// Tolerated clock difference.
    #[cfg_attr(feature = "serde", serde(with = "crate::config::duration"))]
    pub skew: Duration,
    /// The most body buffered to check `Content-Digest`.
    pub body_limit: usize,
    /// How many live signatures the replay cache holds at most. Each is
    /// kept for `max_age + skew`, so this caps the sustained rate of signed
    /// requests at `replay_capacity / (max_age + skew)`; past it, requests
    /// are refused with 503 `replay_cache_full` rather than a live
    /// signature being forgotten.
    pub replay_capacity: usize,
    /// Refuse an RFC 9421 signature seen before within its window.
    pub replay_protection: bool,
    /// Refuse a legacy signature seen before within the window.
    pub legacy_replay_protection: bool,
    /// The scheme assumed when the request URI has none.
    pub scheme: String,
    /// The most bytes of `Signature-Input`, of `Signature` and of
    /// `Content-Digest` (each field, all its lines together) read.
    pub max_header_bytes: usize,
    /// The most signatures (dictionary members) in `Signature-Input` and
    /// in `Signature`.
    pub max_signatures: usize,
    /// The most components the checked signature may cover.
    pub max_components: usize,
    /// The most parameters on one covered component.
    pub max_component_params: usize,
    /// The most parameters of the checked signature (`created`, `keyid`,
    /// … and extensions).
    pub max_signature_params: usize,
    /// The most bytes of the request the covered components may read
    /// together (each counts the size of the field or URI part it is taken
    /// from, more when it is parsed); bounds the signature base
    /// and the work of building it.
    pub max_covered_bytes: usize,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            accept: Accept::Rfc9421,
            required_components: Component::defaults(),
            label: None,
            max_age: Duration::from_secs(300),
            skew: Duration::from_secs(30),
            body_limit: 1024 * 1024,
            replay_capacity: 1_000_000,
            replay_protection: true,
            legacy_replay_protection: false,
            scheme: "http".into(),
            max_header_bytes: 8 * 1024,
            max_signatures: 16,
            max_components: 64,
            max_component_params: 8,
            max_signature_params: 32,
            max_covered_bytes: 16 * 1024,
        }
    }
}

impl VerifyConfig {
    /// Set the accepted profiles.
    pub fn accept(mut self, accept: impl Into<Accept>) -> Self {
        self.accept = accept.into();
        self
    }
    /// Set the required components.
    pub fn required_components(mut self, components: Vec<Component>) -> Self {
        self.required_components = components;
        self
    }
    /// Verify the signature with this label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
    /// Set the maximum age.
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = d;
        self
    }
    /// Set the tolerated skew.
    pub fn skew(mut self, d: Duration) -> Self {
        self.skew = d;
        self
    }
    /// Set the body limit.
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }
    /// Set the replay cache capacity.
    pub fn replay_capacity(mut self, n: usize) -> Self {
        self.replay_capacity = n;
        self
    }
    /// Turn RFC 9421 replay protection on (default) or off.
    pub fn replay_protection(mut self, on: bool) -> Self {
        self.replay_protection = on;
        self
    }
    /// Turn legacy replay protection on or off (default).
    pub fn legacy_replay_protection(mut self, on: bool) -> Self {
        self.legacy_replay_protection = on;
        self
    }
    /// The scheme assumed for origin-form URIs.
    pub fn scheme(mut self, scheme: impl Into<String>) -> Self {
        self.scheme = scheme.into();
        self
    }
    /// Set the most bytes read of each signature field.
    pub fn max_header_bytes(mut self, n: usize) -> Self {
        self.max_header_bytes = n;
        self
    }
    /// Set the most signatures per field.
    pub fn max_signatures(mut self, n: usize) -> Self {
        self.max_signatures = n;
        self
    }
    /// Set the most components per signature.
    pub fn max_components(mut self, n: usize) -> Self {
        self.max_components = n;
        self
    }
    /// Set the most parameters per component.
    pub fn max_component_params(mut self, n: usize) -> Self {
        self.max_component_params = n;
        self
    }
    /// Set the most parameters per signature.
    pub fn max_signature_params(mut self, n: usize) -> Self {
        self.max_signature_params = n;
        self
    }
    /// Set the most bytes the covered components may read.
    pub fn max_covered_bytes(mut self, n: usize) -> Self {
        self.max_covered_bytes = n;
        self
    }
}

#[cfg(feature = "serde")]
pub(crate) use sinew_core::config::{duration, opt_duration};
