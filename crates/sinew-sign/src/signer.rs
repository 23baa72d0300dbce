//! Signing: the synchronous core used by [`HmacSignLayer`](crate::HmacSignLayer)
//! and by the `sinew sign` command.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use rand::Rng as _;
use sfv::{
    key_ref, DictSerializer, Dictionary, FieldType as _, ItemSerializer, KeyRef, Parser,
    RefBareItem,
};
use sinew_core::clock::{Clock, SystemClock};
use sinew_core::headers::{
    CONTENT_DIGEST, SIGNATURE, SIGNATURE_INPUT, X_SERVICE_ID, X_SIGNATURE, X_TIMESTAMP,
};

use crate::base::{
    push_base64_32, sf_integer, sf_string, with_buffer, write_base, BaseError, MessageRef,
};
use crate::config::{Profile, SignConfig};
use crate::digest::content_digest;
use crate::error::SignError;
use crate::key::SecretKey;
use crate::received::push_i64;
use crate::SF_VERSION;

/// The algorithm name of RFC 9421's HMAC-SHA256.
pub const ALG_HMAC_SHA256: &str = "hmac-sha256";

/// Signs requests. Cheap to clone.
///
/// ```
/// use sinew_sign::{SecretKey, SignConfig, Signer};
/// use sinew_core::FixedClock;
///
/// let signer = Signer::new(SignConfig::rfc9421("orders"), SecretKey::from_text("k").unwrap())
///     .unwrap()
///     .with_clock(FixedClock::at_unix(1_700_000_000));
/// let (mut parts, body) = http::Request::post("http://inventory.internal/reserve?sku=1")
///     .body(b"{}".to_vec())
///     .unwrap()
///     .into_parts();
/// signer.sign(&mut parts, &body).unwrap();
/// assert!(parts.headers["signature-input"].to_str().unwrap().starts_with(
///     "sig1=(\"@method\" \"@authority\" \"@path\" \"@query\" \"content-digest\");created=1700000000;keyid=\"orders\";nonce="
/// ));
/// assert_eq!(parts.headers["content-digest"], "sha-256=:RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o=:");
/// ```
#[derive(Clone)]
pub struct Signer {
    inner: Arc<SignerInner>,
    clock: Arc<dyn Clock>,
}

struct SignerInner {
    config: SignConfig,
    key: SecretKey,
    covers_digest: bool,
    service_id: Option<HeaderValue>,
    template: Template,
}

/// What does not change from one signature to the next, serialised once
/// by sfv when the signer is built; per request only `created`, `expires`
/// and `nonce` are written (an integer and a base64url string need no
/// escaping), so the fields stay exactly what sfv would write.
#[derive(Default)]
struct Template {
    /// `label=(<component ids>);created=`
    head: String,
    /// `;keyid="…"`
    keyid: String,
    /// `;alg="hmac-sha256"` and `;tag="…"`, as configured.
    tail: String,
    /// `label=:`
    signature_head: String,
}

impl Template {
    fn new(config: &SignConfig) -> Result<Self, BaseError> {
        let label = KeyRef::from_str(&config.label)
            .map_err(|e| BaseError::Params(format!("label {:?}: {e}", config.label)))?;
        let mut head = String::with_capacity(96);
        {
            let mut dict = DictSerializer::with_buffer(&mut head);
            let mut list = dict.inner_list(label);
            for c in &config.components {
                list.bare_item(&c.item.bare_item).parameters(&c.item.params);
            }
        }
        head.push_str(";created=");
        let keyid = param_text(key_ref("keyid"), sf_string(&config.key_id)?);
        let mut tail = String::new();
        if config.alg {
            tail.push_str(&param_text(key_ref("alg"), sf_string(ALG_HMAC_SHA256)?));
        }
        if let Some(t) = &config.tag {
            tail.push_str(&param_text(key_ref("tag"), sf_string(t)?));
        }
        let mut signature_head = String::with_capacity(config.label.len() + 2);
        signature_head.push_str(label.as_str());
        signature_head.push_str("=:");
        Ok(Self {
            head,
            keyid,
            tail,
            signature_head,
        })
    }
}

/// `;name=value` as sfv serialises a parameter.
fn param_text(name: &KeyRef, value: RefBareItem<'_>) -> String {
    // A parameter list needs an item to hang on: serialise `?1;name=value`
    // and keep what follows the boolean.
    let mut text = ItemSerializer::new()
        .bare_item(true)
        .parameter(name, value)
        .finish();
    text.replace_range(..2, "");
    text
}

/// The length of `n` written in decimal.
fn decimal_len(n: i64) -> usize {
    let digits = n
        .unsigned_abs()
        .checked_ilog10()
        .map_or(1, |l| l as usize + 1);
    digits + usize::from(n < 0)
}

/// Append a structured-field integer (at most 15 digits), as sfv writes it.
fn push_integer(out: &mut String, n: i64) -> Result<(), BaseError> {
    sf_integer(n)?;
    push_i64(out, n);
    Ok(())
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("config", &self.inner.config)
            .field("key", &self.inner.key)
            .field("clock", &self.clock)
            .finish()
    }
}

impl Signer {
    /// A signer for `config` with `key`, on the system clock.
    ///
    /// Fails when the key id is empty, the label is not a valid
    /// structured-field key, a component is listed twice, or the tag or key
    /// id cannot be written as a structured-field string.
    pub fn new(config: SignConfig, key: SecretKey) -> Result<Self, SignError> {
        if config.key_id.is_empty() {
            return Err(SignError::Config("the key id is empty".into()));
        }
        let mut service_id = None;
        let mut template = Template::default();
        match config.profile {
            Profile::Rfc9421 => {
                crate::component::check_unique(&config.components)
                    .map_err(|e| SignError::Config(e.to_string()))?;
                // The label, key id and tag must serialise.
                template = Template::new(&config).map_err(|e| {
                    SignError::Config(format!("label, key id or tag cannot be serialised: {e}"))
                })?;
            }
            Profile::Legacy => {
                service_id = Some(HeaderValue::from_str(&config.key_id).map_err(|_| {
                    SignError::Config("the service id is not a valid header value".into())
                })?);
            }
        }
        let covers_digest = config.profile == Profile::Rfc9421
            && config.components.iter().any(|c| c.is_content_digest());
        Ok(Self {
            inner: Arc::new(SignerInner {
                config,
                key,
                covers_digest,
                service_id,
                template,
            }),
            clock: Arc::new(SystemClock),
        })
    }

    /// Take "now" (`created`, `X-Timestamp`) from `clock`.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &SignConfig {
        &self.inner.config
    }

    /// Whether signing needs the body (`content-digest` is covered).
    pub fn needs_body(&self) -> bool {
        self.inner.covers_digest
    }

    /// Sign the request described by `parts` whose body is `body`: add
    /// `Content-Digest` (when covered), `Signature-Input` and `Signature`
    /// (RFC 9421; a signature already present under another label is kept,
    /// one under the same label replaced), or `X-Service-ID`, `X-Timestamp`
    /// and `X-Signature` (legacy).
    pub fn sign(&self, parts: &mut http::request::Parts, body: &[u8]) -> Result<(), SignError> {
        let now = self.clock.unix_seconds();
        match self.inner.config.profile {
            Profile::Rfc9421 => self.sign_rfc9421(parts, body, now),
            Profile::Legacy => {
                self.sign_legacy(parts, now);
                Ok(())
            }
        }
    }

    fn sign_rfc9421(
        &self,
        parts: &mut http::request::Parts,
        body: &[u8],
        now: u64,
    ) -> Result<(), SignError> {
        let cfg = &self.inner.config;
        if self.inner.covers_digest {
            let digest = match body.is_empty() {
                // A constant: no hashing, no allocation.
                true => HeaderValue::from_static(EMPTY_BODY_DIGEST),
                false => header_value(content_digest(body))?,
            };
            parts.headers.insert(CONTENT_DIGEST, digest);
        }
        let created = i64::try_from(now).unwrap_or(i64::MAX);
        let expires = match (cfg.expires_at, cfg.expires_in) {
            (Some(at), _) => Some(i64::try_from(at).unwrap_or(i64::MAX)),
            (None, Some(d)) => {
                Some(created.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
            }
            (None, None) => None,
        };
        let t = &self.inner.template;
        // The exact length: a header value made from a string with spare
        // capacity costs `Bytes` an extra allocation.
        let len = t.head.len()
            + decimal_len(created)
            + expires.map_or(0, |e| ";expires=".len() + decimal_len(e))
            + t.keyid.len()
            + if cfg.nonce {
                ";nonce=\"\"".len() + 22
            } else {
                0
            }
            + t.tail.len();
        let mut input = String::with_capacity(len);
        input.push_str(&t.head);
        push_integer(&mut input, created)?;
        if let Some(e) = expires {
            input.push_str(";expires=");
            push_integer(&mut input, e)?;
        }
        input.push_str(&t.keyid);
        if cfg.nonce {
            input.push_str(";nonce=\"");
            push_fresh_nonce(&mut input);
            input.push('"');
        }
        input.push_str(&t.tail);
        debug_assert_eq!(input.len(), len);
        let params_value = &input[cfg.label.len() + 1..];
        let message = MessageRef::request(parts).with_scheme(&cfg.scheme);
        let mac = with_buffer(|base| {
            write_base(&message, &cfg.components, params_value, base)?;
            Ok::<_, BaseError>(self.inner.key.hmac_sha256(base.as_bytes()))
        })?;
        let mut signature = String::with_capacity(t.signature_head.len() + 45);
        signature.push_str(&t.signature_head);
        push_base64_32(&mut signature, &mac);
        signature.push(':');
        tracing::debug!(
            key_id = %cfg.key_id,
            label = %cfg.label,
            created,
            "request signed (rfc9421)"
        );
        set_member(&mut parts.headers, SIGNATURE_INPUT, &cfg.label, input)?;
        set_member(&mut parts.headers, SIGNATURE, &cfg.label, signature)?;
        Ok(())
    }

    fn sign_legacy(&self, parts: &mut http::request::Parts, now: u64) {
        let method = parts.method.as_str().to_ascii_uppercase();
        let ts = now.to_string();
        let message = format!("{method}|{}|{ts}", parts.uri.path());
        let mac = self.inner.key.hmac_sha256(message.as_bytes());
        let h = &mut parts.headers;
        if let Some(sid) = &self.inner.service_id {
            h.insert(X_SERVICE_ID, sid.clone());
        }
        h.insert(X_TIMESTAMP, HeaderValue::from(now));
        // Lower-case hex is always a valid header value.
        if let Ok(v) = HeaderValue::from_str(&hex::encode(mac)) {
            h.insert(X_SIGNATURE, v);
        }
        tracing::debug!(service_id = %self.inner.config.key_id, timestamp = now, "request signed (legacy)");
    }
}

/// Append 128 random bits from the thread's CSPRNG, base64url without
/// padding (22 characters, none of which a structured-field string escapes).
fn push_fresh_nonce(out: &mut String) {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut buf = [0u8; 22];
    match engine
        .encode_slice(bytes, &mut buf)
        .map(|n| buf.get(..n).map(std::str::from_utf8))
    {
        Ok(Some(Ok(text))) => out.push_str(text),
        _ => engine.encode_string(bytes, out),
    }
}

/// The `Content-Digest` of an empty body (SHA-256 of nothing).
const EMPTY_BODY_DIGEST: &str = "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:";

fn header_value(text: String) -> Result<HeaderValue, SignError> {
    HeaderValue::from_maybe_shared(Bytes::from(text))
        .map_err(|_| SignError::Config("a signature header is not a valid header value".into()))
}

/// Set the dictionary field `name` to `member` (`label=…`), keeping the
/// other members of a field already there (an unparsable one is replaced).
fn set_member(
    headers: &mut HeaderMap,
    name: HeaderName,
    label: &str,
    member: String,
) -> Result<(), SignError> {
    let existing: Vec<&[u8]> = headers
        .get_all(&name)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if existing.is_empty() {
        headers.insert(name, header_value(member)?);
        return Ok(());
    }
    let joined = existing.join(&b", "[..]);
    let mut dict: Dictionary = Parser::new(&joined)
        .with_version(SF_VERSION)
        .parse()
        .unwrap_or_default();
    dict.shift_remove(label);
    let mut text = dict.serialize().unwrap_or_default();
    if !text.is_empty() {
        text.push_str(", ");
    }
    text.push_str(&member);
    headers.insert(name, header_value(text)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn empty_body_digest_is_the_digest_of_nothing() {
        assert_eq!(super::EMPTY_BODY_DIGEST, super::content_digest(b""));
    }
}
