//! Verification: the synchronous core used by
//! [`VerifySignatureLayer`](crate::VerifySignatureLayer) and by the
//! `sinew verify` command.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::HeaderMap;
use sfv::Parser;
use sinew_core::clock::{Clock, SystemClock};
use sinew_core::headers::{
    CONTENT_DIGEST, SIGNATURE, SIGNATURE_INPUT, X_SERVICE_ID, X_SIGNATURE, X_TIMESTAMP,
};

use crate::base::{received_base, with_buffer, BaseError, MessageRef, ReceivedBaseError};
use crate::config::{Profile, VerifyConfig};
use crate::digest::{check_content_digest, DigestCheck};
use crate::error::{Rejection, RejectionKind};
use crate::key::KeyStore;
use crate::received::{
    canonical_signature, Guard, InputEntry, InputVisitor, Limits, Metadata, Over, SignatureEntry,
    SignatureVisitor,
};
use crate::replay::{ReplayCache, ReplayError};
use crate::signer::ALG_HMAC_SHA256;
use crate::SF_VERSION;

/// Who signed a verified request. The verify layer inserts it into the
/// request's extensions so handlers can authorise by caller.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedCaller {
    /// The `keyid` (RFC 9421) or `X-Service-ID` (legacy).
    pub key_id: String,
    /// The profile of the signature.
    pub profile: Profile,
    /// The signature's label (RFC 9421).
    pub label: Option<String>,
    /// `created` or `X-Timestamp` (Unix seconds).
    pub created: i64,
    /// `expires`, when given.
    pub expires: Option<i64>,
    /// `nonce`, when given.
    pub nonce: Option<String>,
    /// `tag`, when given.
    pub tag: Option<String>,
    /// The covered components as serialised identifiers (RFC 9421), e.g.
    /// `"@method"`; for legacy: `@method` and `@path`.
    pub covered: Covered,
}

/// The covered components of a verified signature: their serialised
/// identifiers (RFC 9421 section 2.1, e.g. `"@method"` or
/// `"content-type";sf`), in the order they were signed.
///
/// Kept in one buffer (one allocation per request, whatever the number of
/// components).
///
/// ```
/// use sinew_sign::Covered;
///
/// let covered: Covered = ["\"@method\"", "\"@path\""].into_iter().collect();
/// assert_eq!(covered.len(), 2);
/// assert!(covered.contains("\"@path\""));
/// assert_eq!(covered.iter().collect::<Vec<_>>(), ["\"@method\"", "\"@path\""]);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Covered {
    /// Each identifier followed by `\n` (a serialised structured field
    /// never holds a control character).
    text: String,
}

impl Covered {
    /// The identifiers, in signed order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + Clone + '_ {
        self.text.split_terminator('\n')
    }

    /// How many components are covered.
    pub fn len(&self) -> usize {
        self.text.bytes().filter(|&b| b == b'\n').count()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Whether `id` (a serialised identifier) is covered.
    pub fn contains(&self, id: &str) -> bool {
        self.iter().any(|c| c == id)
    }

    /// Room for about `bytes` of identifiers.
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Covered {
            text: String::with_capacity(bytes),
        }
    }

    /// Append one identifier, written by `write` (which must not write a
    /// line break; serialised identifiers cannot hold one).
    pub(crate) fn push_with(&mut self, write: impl FnOnce(&mut String)) {
        write(&mut self.text);
        self.text.push('\n');
    }
}

impl fmt::Debug for Covered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Covered {
    /// Identifiers holding a line break are skipped (none can be valid).
    fn from_iter<I: IntoIterator<Item = S>>(ids: I) -> Self {
        let mut covered = Covered::default();
        for id in ids {
            let id = id.as_ref();
            if !id.contains('\n') {
                covered.push_with(|out| out.push_str(id));
            }
        }
        covered
    }
}

impl<'a> IntoIterator for &'a Covered {
    type Item = &'a str;
    type IntoIter = std::str::SplitTerminator<'a, char>;

    fn into_iter(self) -> Self::IntoIter {
        self.text.split_terminator('\n')
    }
}

/// Verifies signed requests. Cheap to clone; clones share the replay cache.
///
/// Checks, in order, each with its own [`RejectionKind`], the cheapest
/// refusals first: a signature of an accepted profile is present; its
/// fields are within the [limits](VerifyConfig#limits-on-what-a-peer-sends)
/// (`limit_exceeded`) and parse (`keyid` and `created` present); the key is
/// known; `alg`, if given, is `hmac-sha256`; `created` is not in the future
/// beyond the skew; `expires` has not passed (beyond the skew); `created`
/// is not older than the maximum age; the components are valid and the
/// required ones covered; every covered component is present; the
/// signature matches (constant time); then, with the body (the layer reads
/// it only now): `Content-Digest`, when present, matches the body; the
/// signature was not seen before within its window.
///
/// ```
/// use sinew_sign::{SecretKey, SignConfig, Signer, StaticKeyStore, Verifier, VerifyConfig};
/// let key = SecretKey::from_text("k").unwrap();
/// let signer = Signer::new(SignConfig::rfc9421("orders"), key.clone()).unwrap();
/// let verifier = Verifier::new(VerifyConfig::default(), StaticKeyStore::new().with_key("orders", key));
///
/// let (mut parts, _) = http::Request::get("http://inventory.internal/items").body(()).unwrap().into_parts();
/// signer.sign(&mut parts, b"").unwrap();
/// let caller = verifier.verify(&parts, b"").unwrap();
/// assert_eq!(caller.key_id, "orders");
/// // The same signature again is a replay.
/// assert_eq!(verifier.verify(&parts, b"").unwrap_err().reason(), "replayed");
/// ```
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<VerifierInner>,
    clock: Arc<dyn Clock>,
}

struct VerifierInner {
    config: VerifyConfig,
    keys: Box<dyn KeyStore>,
    replay: ReplayCache,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.inner.config)
            .field("replay", &self.inner.replay)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for `config` taking keys from `keys`, on the system clock.
    pub fn new(config: VerifyConfig, keys: impl KeyStore) -> Self {
        let replay = ReplayCache::new(config.replay_capacity);
        Self {
            inner: Arc::new(VerifierInner {
                config,
                keys: Box::new(keys),
                replay,
            }),
            clock: Arc::new(SystemClock),
        }
    }

    /// Take "now" from `clock`.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &VerifyConfig {
        &self.inner.config
    }

    /// Verify the request described by `parts` whose body is `body` (the
    /// bytes actually received). Counts the outcome in
    /// `sinew_signature_verifications_total{result}` (`ok` or the reason).
    pub fn verify(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<VerifiedCaller, Rejection> {
        let outcome = self
            .check_head(parts)
            .and_then(|head| self.check_body(head, &parts.headers, body));
        self.record(parts, &outcome);
        outcome
    }

    /// The checks that need no body (all but `Content-Digest` and the
    /// replay cache), so a server can refuse before reading the body. A
    /// rejection is counted and logged; a success is counted by
    /// [`Verifier::verify_body`].
    pub(crate) fn verify_head(&self, parts: &http::request::Parts) -> Result<Head, Rejection> {
        let head = self.check_head(parts);
        if let Err(r) = &head {
            self.record_rejection(parts, r);
        }
        head
    }

    /// Finish what [`Verifier::verify_head`] started, with the body.
    pub(crate) fn verify_body(
        &self,
        head: Head,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<VerifiedCaller, Rejection> {
        let outcome = self.check_body(head, &parts.headers, body);
        self.record(parts, &outcome);
        outcome
    }

    fn record(&self, parts: &http::request::Parts, outcome: &Result<VerifiedCaller, Rejection>) {
        match outcome {
            Ok(caller) => {
                metrics::counter!("sinew_signature_verifications_total", "result" => "ok")
                    .increment(1);
                tracing::debug!(
                    key_id = %caller.key_id,
                    profile = caller.profile.as_str(),
                    "signature verified"
                );
            }
            Err(r) => self.record_rejection(parts, r),
        }
    }

    fn record_rejection(&self, parts: &http::request::Parts, r: &Rejection) {
        metrics::counter!("sinew_signature_verifications_total", "result" => r.reason())
            .increment(1);
        if r.kind() == RejectionKind::ReplayCacheFull {
            tracing::warn!(
                reason = r.reason(),
                "signature check refused: replay cache full; raise replay_capacity (each signature is kept max_age + skew)"
            );
        } else {
            tracing::info!(
                reason = r.reason(),
                detail = r.detail(),
                method = %parts.method,
                path = %Shown(parts.uri.path()),
                "signature rejected"
            );
        }
    }

    fn check_head(&self, parts: &http::request::Parts) -> Result<Head, Rejection> {
        let cfg = &self.inner.config;
        let h = &parts.headers;
        let has_rfc = h.contains_key(SIGNATURE_INPUT) || h.contains_key(SIGNATURE);
        if cfg.accept.rfc9421() && has_rfc {
            return self.check_rfc9421(parts);
        }
        if cfg.accept.legacy() && h.contains_key(X_SIGNATURE) {
            return self.check_legacy(parts);
        }
        let expected = match (cfg.accept.rfc9421(), cfg.accept.legacy()) {
            (true, true) => "no Signature-Input/Signature or X-Signature header",
            (false, true) => "no X-Signature header",
            _ => "no Signature-Input/Signature header",
        };
        Err(Rejection::new(RejectionKind::MissingSignature, expected))
    }

    fn check_body(
        &self,
        head: Head,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<VerifiedCaller, Rejection> {
        let cfg = &self.inner.config;
        if body.len() > cfg.body_limit {
            return Err(Rejection::new(
                RejectionKind::BodyTooLarge,
                format!("the body exceeds {} bytes", cfg.body_limit),
            ));
        }
        self.check_digest(headers, body)?;
        if let Some(mac) = head.remember {
            self.remember(&mac, head.caller.created)?;
        }
        Ok(head.caller)
    }

    fn now(&self) -> i64 {
        i64::try_from(self.clock.unix_seconds()).unwrap_or(i64::MAX)
    }

    fn check_times(&self, created: i64, expires: Option<i64>) -> Result<(), Rejection> {
        let cfg = &self.inner.config;
        let now = self.now();
        let skew = i64::try_from(cfg.skew.as_secs()).unwrap_or(i64::MAX);
        let max_age = i64::try_from(cfg.max_age.as_secs()).unwrap_or(i64::MAX);
        if created > now.saturating_add(skew) {
            return Err(Rejection::new(
                RejectionKind::CreatedInFuture,
                format!("created lies more than {skew} s in the future"),
            ));
        }
        if let Some(e) = expires {
            if now > e.saturating_add(skew) {
                return Err(Rejection::new(RejectionKind::Expired, "expires has passed"));
            }
        }
        if now.saturating_sub(created) > max_age {
            return Err(Rejection::new(
                RejectionKind::TooOld,
                format!("created is more than {max_age} s old"),
            ));
        }
        Ok(())
    }

    fn remember(&self, mac: &[u8; 32], created: i64) -> Result<(), Rejection> {
        let max_age = self.inner.config.max_age.as_secs();
        let expires_at = u64::try_from(created.max(0))
            .unwrap_or(0)
            .saturating_add(max_age)
            .saturating_add(1);
        let now = self.clock.unix_seconds();
        self.inner
            .replay
            .insert(*mac, expires_at, now)
            .map_err(|e| match e {
                ReplayError::Replayed => Rejection::new(
                    RejectionKind::Replayed,
                    "this signature was already used within its window",
                ),
                ReplayError::Full => Rejection::new(
                    RejectionKind::ReplayCacheFull,
                    "too many live signatures to remember; try again shortly",
                ),
            })
    }

    /// The field `name` (all lines joined with ", "), or `None` when
    /// absent; over `max_header_bytes` (measured before joining) is
    /// refused.
    fn field<'h>(
        &self,
        headers: &'h HeaderMap,
        name: http::HeaderName,
    ) -> Result<Option<Cow<'h, [u8]>>, Rejection> {
        let limit = self.inner.config.max_header_bytes;
        let over = || {
            Rejection::new(
                RejectionKind::LimitExceeded,
                format!("{name} exceeds {limit} bytes (max_header_bytes)"),
            )
        };
        let lines = headers.get_all(&name);
        let mut all = lines.iter();
        let Some(first) = all.next() else {
            return Ok(None);
        };
        let Some(second) = all.next() else {
            // The usual case: one line, borrowed.
            return if first.len() > limit {
                Err(over())
            } else {
                Ok(Some(Cow::Borrowed(first.as_bytes())))
            };
        };
        let size = lines
            .iter()
            .map(|v| v.len() + 2)
            .sum::<usize>()
            .saturating_sub(2);
        if size > limit {
            return Err(over());
        }
        let mut v = Vec::with_capacity(size);
        for line in [first, second].into_iter().chain(all) {
            if !v.is_empty() {
                v.extend_from_slice(b", ");
            }
            v.extend_from_slice(line.as_bytes());
        }
        Ok(Some(Cow::Owned(v)))
    }

    fn check_digest(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Rejection> {
        let Some(value) = self.field(headers, CONTENT_DIGEST)? else {
            return Ok(());
        };
        match check_content_digest(&value, body) {
            DigestCheck::Match => Ok(()),
            DigestCheck::Mismatch => Err(Rejection::new(
                RejectionKind::DigestMismatch,
                "Content-Digest does not match the body received",
            )),
            DigestCheck::Unsupported => Err(Rejection::new(
                RejectionKind::DigestMismatch,
                "Content-Digest has no supported algorithm (sha-256, sha-512)",
            )),
            DigestCheck::Malformed => Err(Rejection::new(
                RejectionKind::Malformed,
                "Content-Digest is not a valid dictionary of byte sequences",
            )),
        }
    }

    /// RFC 9421, cheapest refusals first: field sizes; the chosen
    /// `Signature-Input` member, parsed within the count limits; `keyid`
    /// and `created` present, the key known, `alg`, the times; only then
    /// the `Signature` field, the components (classified, no duplicates,
    /// the required ones covered, within `max_covered_bytes`), the base
    /// and the MAC.
    fn check_rfc9421(&self, parts: &http::request::Parts) -> Result<Head, Rejection> {
        let cfg = &self.inner.config;
        let malformed = |d: String| Rejection::new(RejectionKind::Malformed, d);
        let inputs = self
            .field(&parts.headers, SIGNATURE_INPUT)?
            .ok_or_else(|| {
                Rejection::new(RejectionKind::MissingSignature, "no Signature-Input header")
            })?;
        let sigs = self.field(&parts.headers, SIGNATURE)?.ok_or_else(|| {
            Rejection::new(RejectionKind::MissingSignature, "no Signature header")
        })?;
        let guard = Guard::new(Limits {
            members: cfg.max_signatures,
            components: cfg.max_components,
            component_params: cfg.max_component_params,
            signature_params: cfg.max_signature_params,
        });
        // Only the chosen member is kept, borrowing from the header bytes;
        // nothing past a count limit is kept.
        let parsed = Parser::new(&*inputs)
            .with_version(SF_VERSION)
            .parse_dictionary_with_visitor(InputVisitor::new(cfg.label.as_deref(), &guard));
        if let Some(o) = guard.over() {
            return Err(over_limit(o, "Signature-Input", cfg));
        }
        let (label, input) = parsed.map_err(|_| {
            malformed("Signature-Input is not a valid structured dictionary".into())
        })?;
        let (label, input) = match (label, input) {
            (Some(l), Some(i)) => (l.as_str(), i),
            _ => {
                return Err(match &cfg.label {
                    Some(l) => Rejection::new(
                        RejectionKind::MissingSignature,
                        format!("no signature labelled {}", Shown(l)),
                    ),
                    None => {
                        Rejection::new(RejectionKind::MissingSignature, "Signature-Input is empty")
                    }
                })
            }
        };
        let InputEntry::InnerList(input) = input else {
            return Err(malformed(format!(
                "Signature-Input member {} is not an inner list",
                Shown(label)
            )));
        };
        let bad_params =
            |e: &dyn fmt::Display| malformed(format!("signature {}: {e}", Shown(label)));
        let Metadata {
            created,
            expires,
            nonce,
            alg,
            keyid,
            tag,
        } = input
            .metadata()
            .map_err(|name| bad_params(&format_args!("parameter {name} has the wrong type")))?;
        let key_id = keyid.ok_or_else(|| malformed("the keyid parameter is missing".into()))?;
        let created =
            created.ok_or_else(|| malformed("the created parameter is missing".into()))?;
        let key = self.inner.keys.key(key_id).ok_or_else(|| {
            Rejection::new(
                RejectionKind::UnknownKey,
                format!("keyid {} is not known", Shown(key_id)),
            )
        })?;
        if let Some(alg) = alg {
            if alg != ALG_HMAC_SHA256 {
                return Err(Rejection::new(
                    RejectionKind::AlgorithmNotAllowed,
                    format!("alg {} is not allowed (hmac-sha256 only)", Shown(alg)),
                ));
            }
        }
        self.check_times(created, expires)?;
        let sig = match canonical_signature(&sigs, label) {
            Some(mac) => Some(SignatureEntry::Mac(mac)),
            None => {
                let parsed = Parser::new(&*sigs)
                    .with_version(SF_VERSION)
                    .parse_dictionary_with_visitor(SignatureVisitor::new(Some(label), &guard));
                if let Some(o) = guard.over() {
                    return Err(over_limit(o, "Signature", cfg));
                }
                parsed.map_err(|_| {
                    malformed("Signature is not a valid structured dictionary".into())
                })?
            }
        };
        let mac = match sig {
            Some(SignatureEntry::Mac(b)) => MacBytes::Array(b),
            Some(SignatureEntry::ByteSequence(b)) => MacBytes::Vec(b),
            Some(SignatureEntry::Other) => {
                return Err(malformed(format!(
                    "Signature member {} is not a byte sequence",
                    Shown(label)
                )))
            }
            None => {
                return Err(Rejection::new(
                    RejectionKind::MissingSignature,
                    format!("Signature has no member {}", Shown(label)),
                ))
            }
        };
        // The serialised identifiers: compared, written twice into the
        // base, and handed to the application.
        let (kinds, covered) = input.components().map_err(|e| bad_params(&e))?;
        for required in &cfg.required_components {
            if !covered.contains(&required.id) {
                return Err(Rejection::new(
                    RejectionKind::MissingRequiredComponent,
                    format!("the signature does not cover {}", required.id),
                ));
            }
        }
        let message = MessageRef::request(parts).with_scheme(&cfg.scheme);
        // Each component is charged with what reading it costs before it
        // is read (max_covered_bytes), so one large header cannot be read
        // 64 times.
        let budget = cfg.max_covered_bytes;
        let matches = with_buffer(|base| {
            received_base(&message, &covered, &kinds, &input.params, base, budget)?;
            Ok(key.verify_hmac_sha256(base.as_bytes(), &mac))
        })
        .map_err(|e| match e {
            ReceivedBaseError::OverBudget => Rejection::new(
                RejectionKind::LimitExceeded,
                format!(
                    "reading the covered components costs more than {budget} bytes (max_covered_bytes)"
                ),
            ),
            ReceivedBaseError::Base(e @ BaseError::MissingComponent(_)) => {
                Rejection::new(RejectionKind::MissingComponent, e.to_string())
            }
            ReceivedBaseError::Base(other) => malformed(other.to_string()),
        })?;
        if !matches {
            return Err(Rejection::new(
                RejectionKind::BadSignature,
                format!(
                    "signature {} does not match the covered components",
                    Shown(label)
                ),
            ));
        }
        Ok(Head {
            remember: cfg.replay_protection.then(|| mac.replay_key()),
            caller: VerifiedCaller {
                key_id: key_id.to_owned(),
                profile: Profile::Rfc9421,
                label: Some(label.to_owned()),
                created,
                expires,
                covered,
                nonce: nonce.map(str::to_owned),
                tag: tag.map(str::to_owned),
            },
        })
    }

    fn check_legacy(&self, parts: &http::request::Parts) -> Result<Head, Rejection> {
        let cfg = &self.inner.config;
        let h = &parts.headers;
        let single = |name: &http::HeaderName| -> Result<&str, Rejection> {
            let mut all = h.get_all(name).iter();
            match (all.next(), all.next()) {
                (Some(v), None) => v.to_str().map(str::trim).map_err(|_| {
                    Rejection::new(RejectionKind::Malformed, format!("{name} is not text"))
                }),
                (None, _) => Err(Rejection::new(
                    RejectionKind::Malformed,
                    format!("{name} is missing"),
                )),
                _ => Err(Rejection::new(
                    RejectionKind::Malformed,
                    format!("{name} is repeated"),
                )),
            }
        };
        let service_id = single(&X_SERVICE_ID)?;
        let ts_text = single(&X_TIMESTAMP)?;
        let sig_text = single(&X_SIGNATURE)?;
        if ts_text.is_empty() || ts_text.len() > 18 || !ts_text.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Rejection::new(
                RejectionKind::Malformed,
                "x-timestamp is not whole Unix seconds",
            ));
        }
        let ts: i64 = ts_text.parse().map_err(|_| {
            Rejection::new(
                RejectionKind::Malformed,
                "x-timestamp is not whole Unix seconds",
            )
        })?;
        let mut mac = [0u8; 32];
        hex::decode_to_slice(sig_text, &mut mac).map_err(|_| {
            Rejection::new(
                RejectionKind::Malformed,
                "x-signature is not 64 hexadecimal digits",
            )
        })?;
        let key = self.inner.keys.legacy_key(service_id).ok_or_else(|| {
            Rejection::new(
                RejectionKind::UnknownKey,
                format!("service {} is not known", Shown(service_id)),
            )
        })?;
        self.check_times(ts, None)?;
        let method = parts.method.as_str().to_ascii_uppercase();
        let message = format!("{method}|{}|{ts_text}", parts.uri.path());
        if !key.verify_hmac_sha256(message.as_bytes(), &mac) {
            return Err(Rejection::new(
                RejectionKind::BadSignature,
                "x-signature does not match METHOD|PATH|TIMESTAMP",
            ));
        }
        Ok(Head {
            remember: cfg.legacy_replay_protection.then_some(mac),
            caller: VerifiedCaller {
                key_id: service_id.to_owned(),
                profile: Profile::Legacy,
                label: None,
                created: ts,
                expires: None,
                nonce: None,
                tag: None,
                covered: ["\"@method\"", "\"@path\""].into_iter().collect(),
            },
        })
    }
}

/// What the header checks established: the caller, and the replay-cache
/// key when replay protection applies. The body checks finish it.
#[derive(Debug)]
pub(crate) struct Head {
    caller: VerifiedCaller,
    remember: Option<[u8; 32]>,
}

/// The rejection for a parse stopped by `over` in `field`.
fn over_limit(over: Over, field: &str, cfg: &VerifyConfig) -> Rejection {
    let detail = match over {
        Over::Members => format!(
            "{field} holds more than {} signatures (max_signatures)",
            cfg.max_signatures
        ),
        Over::Components => format!(
            "the signature covers more than {} components (max_components)",
            cfg.max_components
        ),
        Over::ComponentParams => format!(
            "a component has more than {} parameters (max_component_params)",
            cfg.max_component_params
        ),
        Over::SignatureParams => format!(
            "the signature has more than {} parameters (max_signature_params)",
            cfg.max_signature_params
        ),
    };
    Rejection::new(RejectionKind::LimitExceeded, detail)
}

/// A string from the request, quoted for a message and cut after 64
/// bytes: a rejection (and the log line) never echoes a large input.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 64;
        if self.0.len() <= MAX {
            return write!(f, "{:?}", self.0);
        }
        let cut = self.0.floor_char_boundary(MAX);
        write!(f, "{:?}… ({} bytes)", &self.0[..cut], self.0.len())
    }
}

/// A received MAC: parsed by the fast path, or by sfv.
enum MacBytes {
    Array([u8; 32]),
    Vec(Vec<u8>),
}

impl MacBytes {
    /// The key of the replay cache: the first 32 bytes (zero-padded).
    fn replay_key(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        let n = self.len().min(32);
        key[..n].copy_from_slice(&self[..n]);
        key
    }
}

impl std::ops::Deref for MacBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            MacBytes::Array(a) => a,
            MacBytes::Vec(v) => v,
        }
    }
}
