//! The signature base (RFC 9421 section 2.5) and signature parameters.

use std::cell::RefCell;
use std::fmt;

use base64::Engine as _;
use http::{HeaderMap, Method, StatusCode, Uri};
use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sfv::{
    key_ref, BareItem, DictSerializer, Dictionary, FieldType as _, InnerList, Integer, Item, Key,
    KeyRef, List, ListEntry, Parameters, Parser, RefBareItem, StringRef,
};

use sinew_core::headers::CONTENT_DIGEST;

use crate::component::{Component, FieldOpts, Kind};
use crate::received::{write_params, RawParams};
use crate::SF_VERSION;

/// The `application/x-www-form-urlencoded` percent-encode set (RFC 9421
/// section 2.2.8 re-encodes query parameter names and values with it).
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// The message a signature base is built from: a request (method, target
/// URI, headers) or a response (status, headers).
///
/// When a request's URI is in origin form (`/path?query`, as servers see
/// it), `@authority` comes from the `Host` header and `@scheme` from
/// [`MessageRef::with_scheme`] (default `http`).
#[derive(Debug, Clone, Copy)]
pub struct MessageRef<'a> {
    kind: MsgKind<'a>,
    headers: &'a HeaderMap,
    scheme: &'a str,
}

#[derive(Debug, Clone, Copy)]
enum MsgKind<'a> {
    Request { method: &'a Method, uri: &'a Uri },
    Response { status: StatusCode },
}

impl<'a> MessageRef<'a> {
    /// A request.
    pub fn request(parts: &'a http::request::Parts) -> Self {
        Self::from_request(&parts.method, &parts.uri, &parts.headers)
    }

    /// A request given by its pieces.
    pub fn from_request(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        Self {
            kind: MsgKind::Request { method, uri },
            headers,
            scheme: "http",
        }
    }

    /// A response (only `@status` and fields can be covered).
    pub fn response(parts: &'a http::response::Parts) -> Self {
        Self {
            kind: MsgKind::Response {
                status: parts.status,
            },
            headers: &parts.headers,
            scheme: "http",
        }
    }

    /// The scheme to assume when the URI has none (origin form).
    pub fn with_scheme(mut self, scheme: &'a str) -> Self {
        self.scheme = scheme;
        self
    }

    fn request_parts(&self) -> Result<(&'a Method, &'a Uri), ValueError> {
        match self.kind {
            MsgKind::Request { method, uri } => Ok((method, uri)),
            MsgKind::Response { .. } => Err(ValueError::NotApplicable),
        }
    }

    fn scheme_str(&self, uri: &'a Uri) -> &'a str {
        match uri.scheme_str() {
            Some(s) => s,
            None => self.scheme,
        }
    }

    fn write_scheme(&self, uri: &Uri, out: &mut String) {
        push_lowercase(out, uri.scheme_str().unwrap_or(self.scheme));
    }

    /// The normalised `@authority`: lower-case host, default port dropped.
    /// From the URI's authority, or else the `Host` header.
    pub fn authority(&self) -> Result<String, BaseError> {
        let mut out = String::new();
        self.write_authority(&mut out)
            .map_err(|e| e.with_id("\"@authority\""))?;
        Ok(out)
    }

    fn write_authority(&self, out: &mut String) -> Result<(), ValueError> {
        let uri = match self.kind {
            MsgKind::Request { uri, .. } => uri,
            MsgKind::Response { .. } => return Err(ValueError::NotApplicable),
        };
        let scheme = self.scheme_str(uri);
        let parsed;
        let authority = match uri.authority() {
            Some(a) => a,
            None => {
                let mut hosts = self.headers.get_all(http::header::HOST).iter();
                let host = hosts.next().ok_or(BaseError::NoAuthority)?;
                if hosts.next().is_some() {
                    return Err(BaseError::NoAuthority.into());
                }
                parsed = host
                    .to_str()
                    .ok()
                    .and_then(|h| h.trim().parse::<http::uri::Authority>().ok())
                    .ok_or(BaseError::NoAuthority)?;
                &parsed
            }
        };
        let host = authority.host();
        if host.is_empty() {
            return Err(BaseError::NoAuthority.into());
        }
        push_lowercase(out, host);
        match authority.port_u16() {
            Some(80) if scheme.eq_ignore_ascii_case("http") => {}
            Some(443) if scheme.eq_ignore_ascii_case("https") => {}
            Some(p) => {
                out.push(':');
                out.push_str(itoa_u16(p, &mut [0u8; 5]));
            }
            None => {}
        }
        Ok(())
    }

    /// The value of one component, as it appears after `": "` in the base.
    pub fn component_value(&self, c: &Component) -> Result<String, BaseError> {
        let mut out = String::new();
        self.write_component_value(&c.kind.borrowed(), &mut out)
            .map_err(|e| e.with_id(&c.id))?;
        Ok(out)
    }

    /// Append the value of the component `kind` to `out`.
    pub(crate) fn write_component_value(
        &self,
        kind: &Kind<&str>,
        out: &mut String,
    ) -> Result<(), ValueError> {
        let mut unlimited = usize::MAX;
        self.write_value(kind, out, &mut unlimited)
    }

    /// [`write_component_value`](Self::write_component_value) charging
    /// `budget` with what the value costs to build, in bytes read: a field
    /// its values (and the separators joining them), eight times that when
    /// it is parsed (`;sf`, `;key`); `@query-param` four times the query
    /// (every name in it is decoded); the other components what they write.
    /// A field or `@query-param` is charged before it is read; past the
    /// budget, [`ValueError::OverBudget`].
    pub(crate) fn write_value(
        &self,
        kind: &Kind<&str>,
        out: &mut String,
        budget: &mut usize,
    ) -> Result<(), ValueError> {
        let start = out.len();
        self.write_value_charged(kind, out, budget)?;
        if !matches!(kind, Kind::Field(_) | Kind::QueryParam(_)) {
            charge(budget, out.len() - start)?;
        }
        Ok(())
    }

    fn write_value_charged(
        &self,
        kind: &Kind<&str>,
        out: &mut String,
        budget: &mut usize,
    ) -> Result<(), ValueError> {
        let write_path = |uri: &Uri, out: &mut String| {
            let p = uri.path();
            out.push_str(if p.is_empty() { "/" } else { p });
        };
        match *kind {
            Kind::Method => out.push_str(self.request_parts()?.0.as_str()),
            Kind::Authority => self.write_authority(out)?,
            Kind::Scheme => {
                let (_, uri) = self.request_parts()?;
                self.write_scheme(uri, out);
            }
            Kind::TargetUri => {
                let (_, uri) = self.request_parts()?;
                self.write_scheme(uri, out);
                out.push_str("://");
                self.write_authority(out)?;
                write_path(uri, out);
                if let Some(q) = uri.query() {
                    out.push('?');
                    out.push_str(q);
                }
            }
            Kind::RequestTarget => {
                let (method, uri) = self.request_parts()?;
                if method == Method::CONNECT {
                    return self.write_authority(out);
                }
                write_path(uri, out);
                if let Some(q) = uri.query() {
                    out.push('?');
                    out.push_str(q);
                }
            }
            Kind::Path => write_path(self.request_parts()?.1, out),
            Kind::Query => {
                let (_, uri) = self.request_parts()?;
                out.push('?');
                out.push_str(uri.query().unwrap_or(""));
            }
            Kind::QueryParam(name) => {
                let (_, uri) = self.request_parts()?;
                let query = uri.query().unwrap_or("");
                charge(budget, DECODED.saturating_mul(query.len() + 1))?;
                let v = query_param(query, name).ok_or(ValueError::Missing)??;
                out.push_str(&v);
            }
            Kind::Status => match self.kind {
                MsgKind::Response { status } => out.push_str(status.as_str()),
                MsgKind::Request { .. } => return Err(ValueError::NotApplicable),
            },
            Kind::Field(ref opts) => self.write_field_value(opts, out, budget)?,
        }
        Ok(())
    }

    fn write_field_value(
        &self,
        opts: &FieldOpts<&str>,
        out: &mut String,
        budget: &mut usize,
    ) -> Result<(), ValueError> {
        // The field sinew covers by default is looked up by its constant
        // name (no parse of the name per request).
        let lines = if opts.name == CONTENT_DIGEST.as_str() {
            self.headers.get_all(&CONTENT_DIGEST)
        } else {
            self.headers.get_all(opts.name)
        };
        let mut values = lines.iter().peekable();
        if values.peek().is_none() {
            return Err(ValueError::Missing);
        }
        // Charged before it is read.
        let size = lines.iter().map(|v| v.len() + 2).sum::<usize>() - 2;
        charge(
            budget,
            if opts.sf {
                PARSED.saturating_mul(size)
            } else {
                size
            },
        )?;
        let ascii = |v: &'a [u8]| -> Result<&'a str, ValueError> {
            std::str::from_utf8(trim_ows(v))
                .ok()
                .filter(|s| s.is_ascii())
                .ok_or(ValueError::NonAscii)
        };
        if !opts.bs && !opts.sf {
            for (i, v) in values.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(ascii(v.as_bytes())?);
            }
            return Ok(());
        }
        if opts.bs {
            for (i, v) in values.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push(':');
                base64::engine::general_purpose::STANDARD
                    .encode_string(trim_ows(v.as_bytes()), out);
                out.push(':');
            }
            return Ok(());
        }
        let mut combined = String::new();
        for (i, v) in values.enumerate() {
            if i > 0 {
                combined.push_str(", ");
            }
            combined.push_str(ascii(v.as_bytes())?);
        }
        let v = structured(&combined, opts.key).ok_or(ValueError::NotStructured)?;
        out.push_str(&v);
        Ok(())
    }
}

/// What reading a byte costs, relative to copying and hashing it (1), when
/// the value is parsed as a structured field (an owned sfv parse, an
/// allocation per member: measured 6x).
const PARSED: usize = 8;

/// The same for a query scanned by `@query-param` (every name decoded:
/// measured 3x).
const DECODED: usize = 4;

/// Take `cost` from `budget`, or fail when it is not there.
fn charge(budget: &mut usize, cost: usize) -> Result<(), ValueError> {
    match budget.checked_sub(cost) {
        Some(left) => {
            *budget = left;
            Ok(())
        }
        None => Err(ValueError::OverBudget),
    }
}

/// Why a component value could not be written; [`ValueError::with_id`]
/// names the component.
#[derive(Debug)]
pub(crate) enum ValueError {
    /// Building it would exceed the budget of
    /// [`MessageRef::write_value`].
    OverBudget,
    Missing,
    NotApplicable,
    NonAscii,
    NotStructured,
    Other(BaseError),
}

impl ValueError {
    /// The [`BaseError`] for the component whose serialised identifier is `id`.
    pub(crate) fn with_id(self, id: &str) -> BaseError {
        match self {
            // Only `received_base` sets a budget, and it handles this.
            ValueError::OverBudget => BaseError::Params(format!("component {id} is too large")),
            ValueError::Missing => BaseError::MissingComponent(id.to_owned()),
            ValueError::NotApplicable => BaseError::NotApplicable(id.to_owned()),
            ValueError::NonAscii => BaseError::NonAscii(id.to_owned()),
            ValueError::NotStructured => BaseError::NotStructured(id.to_owned()),
            ValueError::Other(e) => e,
        }
    }
}

impl From<BaseError> for ValueError {
    fn from(e: BaseError) -> Self {
        ValueError::Other(e)
    }
}

/// Append `s` in ASCII lower case.
fn push_lowercase(out: &mut String, s: &str) {
    let start = out.len();
    out.push_str(s);
    if let Some(appended) = out.get_mut(start..) {
        appended.make_ascii_lowercase();
    }
}

/// Append the base64 (standard alphabet, padded) of 32 bytes: a digest or
/// a MAC. (`encode_string` goes through a chunked encoder; a fixed buffer
/// is faster for a fixed size.)
pub(crate) fn push_base64_32(out: &mut String, bytes: &[u8; 32]) {
    let mut buf = [0u8; 44];
    if let Ok(n) = base64::engine::general_purpose::STANDARD.encode_slice(bytes, &mut buf) {
        if let Some(Ok(text)) = buf.get(..n).map(std::str::from_utf8) {
            out.push_str(text);
            return;
        }
    }
    base64::engine::general_purpose::STANDARD.encode_string(bytes, out);
}

fn itoa_u16(mut n: u16, buf: &mut [u8; 5]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// Re-serialise a structured field (dictionary, then list, then item), or
/// one member of a dictionary when `key` is given.
fn structured(value: &str, key: Option<&str>) -> Option<String> {
    let parser = || Parser::new(value).with_version(SF_VERSION);
    if let Some(key) = key {
        let dict: Dictionary = parser().parse().ok()?;
        return match dict.get(key)? {
            ListEntry::Item(item) => Some(item.serialize()),
            ListEntry::InnerList(inner) => {
                let list: List = vec![ListEntry::InnerList(inner.clone())];
                list.serialize()
            }
        };
    }
    if let Ok(d) = parser().parse::<Dictionary>() {
        if let Some(s) = d.serialize() {
            return Some(s);
        }
    }
    if let Ok(l) = parser().parse::<List>() {
        if let Some(s) = l.serialize() {
            return Some(s);
        }
    }
    parser().parse::<Item>().ok().map(|i| i.serialize())
}

/// `Some(Ok(value))` for exactly one occurrence of the (encoded) `name`;
/// `Some(Err)` when it occurs more than once; `None` when absent.
fn query_param(query: &str, name: &str) -> Option<Result<String, BaseError>> {
    let mut found: Option<String> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (n, v) = match pair.find('=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, ""),
        };
        if form_reencode(n) != name {
            continue;
        }
        if found.is_some() {
            return Some(Err(BaseError::RepeatedQueryParam(name.to_owned())));
        }
        found = Some(form_reencode(v));
    }
    found.map(Ok)
}

fn form_reencode(raw: &str) -> String {
    let plus_as_space = raw.replace('+', " ");
    let decoded = percent_decode(plus_as_space.as_bytes()).decode_utf8_lossy();
    utf8_percent_encode(&decoded, FORM).to_string()
}

/// Why a signature base could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BaseError {
    /// A covered component is absent from the message.
    MissingComponent(String),
    /// A covered component does not exist for this kind of message.
    NotApplicable(String),
    /// A covered field holds non-ASCII bytes (use `;bs`).
    NonAscii(String),
    /// A field covered with `;sf` or `;key` is not a valid structured field
    /// (or lacks the key).
    NotStructured(String),
    /// A `@query-param` occurs more than once in the query.
    RepeatedQueryParam(String),
    /// Neither the URI nor a single `Host` header gives an authority.
    NoAuthority,
    /// A component identifier is listed twice.
    DuplicateComponent(String),
    /// The parameters cannot be serialised.
    Params(String),
}

impl fmt::Display for BaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaseError::MissingComponent(c) => write!(f, "covered component {c} is missing"),
            BaseError::NotApplicable(c) => {
                write!(f, "component {c} does not apply to this message")
            }
            BaseError::NonAscii(c) => write!(f, "component {c} is not ASCII"),
            BaseError::NotStructured(c) => {
                write!(f, "component {c} is not a valid structured field")
            }
            BaseError::RepeatedQueryParam(n) => {
                write!(f, "query parameter {n:?} occurs more than once")
            }
            BaseError::NoAuthority => f.write_str("the request has no (single) authority"),
            BaseError::DuplicateComponent(c) => write!(f, "component {c} is covered twice"),
            BaseError::Params(e) => write!(f, "invalid signature parameters: {e}"),
        }
    }
}

impl std::error::Error for BaseError {}

/// The signature parameters (RFC 9421 section 2.3): covered components and
/// metadata. Serialises as the inner list found in `Signature-Input` and in
/// the last line of the base.
///
/// ```
/// use sinew_sign::{parse_components, SignatureParams};
/// let params = SignatureParams::new(parse_components("date @authority content-type").unwrap())
///     .created(1618884473)
///     .keyid("test-shared-secret");
/// assert_eq!(
///     params.serialize().unwrap(),
///     r#"("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureParams {
    /// The covered components, in order.
    pub components: Vec<Component>,
    /// `created` (Unix seconds).
    pub created: Option<i64>,
    /// `expires` (Unix seconds).
    pub expires: Option<i64>,
    /// `nonce`.
    pub nonce: Option<String>,
    /// `alg`.
    pub alg: Option<String>,
    /// `keyid`.
    pub keyid: Option<String>,
    /// `tag`.
    pub tag: Option<String>,
    /// As received (kept so the base repeats exactly what was signed,
    /// including unknown parameters and their order); `None` when built here.
    pub(crate) received: Option<InnerList>,
}

impl SignatureParams {
    /// Parameters covering `components`, with no metadata yet.
    pub fn new(components: Vec<Component>) -> Self {
        Self {
            components,
            created: None,
            expires: None,
            nonce: None,
            alg: None,
            keyid: None,
            tag: None,
            received: None,
        }
    }

    /// Set `created`.
    pub fn created(mut self, t: i64) -> Self {
        self.created = Some(t);
        self
    }
    /// Set `expires`.
    pub fn expires(mut self, t: i64) -> Self {
        self.expires = Some(t);
        self
    }
    /// Set `nonce`.
    pub fn nonce(mut self, n: impl Into<String>) -> Self {
        self.nonce = Some(n.into());
        self
    }
    /// Set `alg`.
    pub fn alg(mut self, a: impl Into<String>) -> Self {
        self.alg = Some(a.into());
        self
    }
    /// Set `keyid`.
    pub fn keyid(mut self, k: impl Into<String>) -> Self {
        self.keyid = Some(k.into());
        self
    }
    /// Set `tag`.
    pub fn tag(mut self, t: impl Into<String>) -> Self {
        self.tag = Some(t.into());
        self
    }

    /// The inner list: components, then `created`, `expires`, `keyid`,
    /// `nonce`, `alg`, `tag` (those that are set), or the list as received.
    ///
    /// A parameter that is not a valid structured-field value (a string
    /// with characters outside printable ASCII, an integer of more than 15
    /// digits) cannot be represented and is left out;
    /// [`serialize`](Self::serialize) reports it as an error instead.
    pub fn to_inner_list(&self) -> InnerList {
        if let Some(r) = &self.received {
            return r.clone();
        }
        let items: Vec<Item> = self.components.iter().map(|c| c.item.clone()).collect();
        let mut params = Parameters::new();
        let mut put = |k: &str, v: Option<BareItem>| {
            if let (Some(v), Ok(k)) = (v, Key::from_string(k.to_owned())) {
                params.insert(k, v);
            }
        };
        let int = |t: Option<i64>| {
            t.and_then(|t| Integer::try_from(t).ok())
                .map(BareItem::Integer)
        };
        let string = |s: &Option<String>| {
            s.as_deref()
                .and_then(|s| StringRef::from_str(s).ok())
                .map(BareItem::from)
        };
        put("created", int(self.created));
        put("expires", int(self.expires));
        put("keyid", string(&self.keyid));
        put("nonce", string(&self.nonce));
        put("alg", string(&self.alg));
        put("tag", string(&self.tag));
        InnerList::with_params(items, params)
    }

    /// The serialised inner list (the `@signature-params` value).
    pub fn serialize(&self) -> Result<String, BaseError> {
        let mut out = String::with_capacity(128);
        self.write_member(&mut out, "x")?;
        out.replace_range(..2, "");
        Ok(out)
    }

    /// Write `label=<inner list>` (a `Signature-Input` member) into an
    /// empty `out`, through sfv's serializer.
    pub(crate) fn write_member(&self, out: &mut String, label: &str) -> Result<(), BaseError> {
        match &self.received {
            Some(r) => {
                let params: Vec<(&KeyRef, RefBareItem<'_>)> = r
                    .params
                    .iter()
                    .map(|(k, v)| (k.as_ref(), RefBareItem::from(v)))
                    .collect();
                write_signature_input(out, label, &self.components, &params)
            }
            None => {
                let mut params: Vec<(&KeyRef, RefBareItem<'_>)> = Vec::with_capacity(6);
                if let Some(t) = self.created {
                    params.push((key_ref("created"), sf_integer(t)?));
                }
                if let Some(t) = self.expires {
                    params.push((key_ref("expires"), sf_integer(t)?));
                }
                if let Some(k) = &self.keyid {
                    params.push((key_ref("keyid"), sf_string(k)?));
                }
                if let Some(n) = &self.nonce {
                    params.push((key_ref("nonce"), sf_string(n)?));
                }
                if let Some(a) = &self.alg {
                    params.push((key_ref("alg"), sf_string(a)?));
                }
                if let Some(t) = &self.tag {
                    params.push((key_ref("tag"), sf_string(t)?));
                }
                write_signature_input(out, label, &self.components, &params)
            }
        }
    }

    /// Read parameters from an inner list of `Signature-Input`.
    pub fn from_inner_list(inner: &InnerList) -> Result<Self, ParamsError> {
        Self::from_received(inner.clone())
    }

    pub(crate) fn from_received(mut inner: InnerList) -> Result<Self, ParamsError> {
        let components = std::mem::take(&mut inner.items)
            .into_iter()
            .map(Component::from_owned_item)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ParamsError(e.to_string()))?;
        crate::component::check_unique(&components).map_err(|e| ParamsError(e.to_string()))?;
        let mut p = SignatureParams::new(components);
        for (name, value) in &inner.params {
            let bad = || ParamsError(format!("parameter {name} has the wrong type"));
            let int = || value.as_integer().map(i64::from).ok_or_else(bad);
            let string = || {
                value
                    .as_string()
                    .map(|s| s.as_str().to_owned())
                    .ok_or_else(bad)
            };
            match name.as_str() {
                "created" => p.created = Some(int()?),
                "expires" => p.expires = Some(int()?),
                "nonce" => p.nonce = Some(string()?),
                "alg" => p.alg = Some(string()?),
                "keyid" => p.keyid = Some(string()?),
                "tag" => p.tag = Some(string()?),
                _ => {} // extension parameters are signed but not interpreted
            }
        }
        p.received = Some(inner);
        Ok(p)
    }
}

/// `Signature-Input` parameters sinew cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamsError(pub(crate) String);

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParamsError {}

/// Build the signature base (RFC 9421 section 2.5): one line per covered
/// component, `"<id>": <value>`, then `"@signature-params": <params>`,
/// joined by LF with no final LF.
///
/// ```
/// use sinew_sign::{parse_components, signature_base, MessageRef, SignatureParams};
/// let req = http::Request::post("/foo?param=Value&Pet=dog")
///     .header("host", "example.com")
///     .body(())
///     .unwrap();
/// let (parts, ()) = req.into_parts();
/// let params = SignatureParams::new(parse_components("@method @authority @query-param;name=\"Pet\"").unwrap())
///     .created(1618884473);
/// let base = signature_base(&MessageRef::request(&parts), &params).unwrap();
/// assert_eq!(base, "\"@method\": POST\n\"@authority\": example.com\n\"@query-param\";name=\"Pet\": dog\n\
/// \"@signature-params\": (\"@method\" \"@authority\" \"@query-param\";name=\"Pet\");created=1618884473");
/// ```
pub fn signature_base(
    message: &MessageRef<'_>,
    params: &SignatureParams,
) -> Result<String, BaseError> {
    let mut input = String::with_capacity(160);
    params.write_member(&mut input, "x")?;
    build_base(message, &params.components, &input[2..])
}

/// The base from the components and the serialised `@signature-params`.
pub(crate) fn build_base(
    message: &MessageRef<'_>,
    components: &[Component],
    params_value: &str,
) -> Result<String, BaseError> {
    let mut base = String::with_capacity(64 * components.len() + params_value.len() + 24);
    write_base(message, components, params_value, &mut base)?;
    Ok(base)
}

/// [`build_base`] into `base`.
pub(crate) fn write_base(
    message: &MessageRef<'_>,
    components: &[Component],
    params_value: &str,
    base: &mut String,
) -> Result<(), BaseError> {
    if let Some(i) = crate::unique::first_repeat(components, |c| c.id.as_str()) {
        return Err(BaseError::DuplicateComponent(components[i].id.clone()));
    }
    for c in components {
        base.push_str(&c.id);
        base.push_str(": ");
        message
            .write_component_value(&c.kind.borrowed(), base)
            .map_err(|e| e.with_id(&c.id))?;
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(params_value);
    Ok(())
}

thread_local! {
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Run `f` with an empty string that is reused from call to call on this
/// thread: a signature base is only hashed, never kept, so building it
/// need not allocate. (A buffer grown past 16 KiB is not kept.)
pub(crate) fn with_buffer<T>(f: impl FnOnce(&mut String) -> T) -> T {
    // Take the buffer out (leaving an empty, unallocated string), so a
    // nested call or a thread being torn down simply gets a fresh one.
    let mut buf = SCRATCH
        .try_with(|cell| cell.try_borrow_mut().map(|mut b| std::mem::take(&mut *b)))
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    buf.clear();
    let out = f(&mut buf);
    if buf.capacity() <= 16 * 1024 {
        let _ = SCRATCH.try_with(|cell| {
            if let Ok(mut b) = cell.try_borrow_mut() {
                *b = buf;
            }
        });
    }
    out
}

/// The signature base of a received signature (RFC 9421 section 2.5)
/// into `base`: each covered component's serialised identifier (`ids`,
/// serialised from the received items, so canonical whatever spacing the
/// sender used) and value, then the received inner list re-serialised:
/// the same identifiers and the parameters in received order.
/// `kinds` are the items' classifications.
///
/// Building the component values may cost at most `budget` bytes read (see
/// [`MessageRef::write_value`]); each component is charged before its value
/// is read, and the first one over stops the base.
pub(crate) fn received_base(
    message: &MessageRef<'_>,
    ids: &crate::Covered,
    kinds: &[Kind<&str>],
    params: &RawParams<'_>,
    base: &mut String,
    mut budget: usize,
) -> Result<(), ReceivedBaseError> {
    for (id, kind) in ids.iter().zip(kinds) {
        base.push_str(id);
        base.push_str(": ");
        message
            .write_value(kind, base, &mut budget)
            .map_err(|e| match e {
                ValueError::OverBudget => ReceivedBaseError::OverBudget,
                e => ReceivedBaseError::Base(e.with_id(id)),
            })?;
        base.push('\n');
    }
    base.push_str("\"@signature-params\": (");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            base.push(' ');
        }
        base.push_str(id);
    }
    base.push(')');
    write_params(base, params);
    Ok(())
}

/// Why the base of a received signature was not built.
#[derive(Debug)]
pub(crate) enum ReceivedBaseError {
    Base(BaseError),
    /// Building the component values would cost more than the budget.
    OverBudget,
}

/// Write `label=(<components>);<params>` through sfv's serializer into an
/// empty `out`.
pub(crate) fn write_signature_input(
    out: &mut String,
    label: &str,
    components: &[Component],
    params: &[(&KeyRef, RefBareItem<'_>)],
) -> Result<(), BaseError> {
    let label =
        KeyRef::from_str(label).map_err(|e| BaseError::Params(format!("label {label:?}: {e}")))?;
    let mut dict = DictSerializer::with_buffer(out);
    let mut list = dict.inner_list(label);
    for c in components {
        list.bare_item(&c.item.bare_item).parameters(&c.item.params);
    }
    list.finish().parameters(params.iter().copied());
    Ok(())
}

/// `t` as a structured-field integer (at most 15 digits).
pub(crate) fn sf_integer<'a>(t: i64) -> Result<RefBareItem<'a>, BaseError> {
    Integer::try_from(t).map(RefBareItem::Integer).map_err(|_| {
        BaseError::Params(format!(
            "{t} is not a structured-field integer (at most 15 digits)"
        ))
    })
}

/// `s` as a structured-field string (printable ASCII).
pub(crate) fn sf_string(s: &str) -> Result<RefBareItem<'_>, BaseError> {
    StringRef::from_str(s)
        .map(RefBareItem::String)
        .map_err(|e| BaseError::Params(format!("{s:?} is not a structured-field string: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn value(parts: &http::request::Parts, c: &str) -> Result<String, BaseError> {
        MessageRef::request(parts).component_value(&Component::parse(c).unwrap())
    }

    #[test]
    fn authority_is_normalised() {
        let p = req("http://Example.COM:80/a", &[]);
        assert_eq!(value(&p, "@authority").unwrap(), "example.com");
        let p = req("https://example.com:443/a", &[]);
        assert_eq!(value(&p, "@authority").unwrap(), "example.com");
        let p = req("https://example.com:80/a", &[]);
        assert_eq!(value(&p, "@authority").unwrap(), "example.com:80");
        let p = req("/a", &[("host", "API.example.com:8080")]);
        assert_eq!(value(&p, "@authority").unwrap(), "api.example.com:8080");
        let p = req("/a", &[]);
        assert_eq!(value(&p, "@authority"), Err(BaseError::NoAuthority));
        let p = req("/a", &[("host", "a"), ("host", "b")]);
        assert_eq!(value(&p, "@authority"), Err(BaseError::NoAuthority));
    }

    #[test]
    fn derived_components() {
        let p = req("https://www.example.com/path?param=value", &[]);
        assert_eq!(
            value(&p, "@target-uri").unwrap(),
            "https://www.example.com/path?param=value"
        );
        assert_eq!(value(&p, "@scheme").unwrap(), "https");
        assert_eq!(value(&p, "@request-target").unwrap(), "/path?param=value");
        assert_eq!(value(&p, "@path").unwrap(), "/path");
        assert_eq!(value(&p, "@query").unwrap(), "?param=value");
        let p = req("/path", &[("host", "h")]);
        assert_eq!(value(&p, "@query").unwrap(), "?");
        assert_eq!(value(&p, "@target-uri").unwrap(), "http://h/path");
        let p = req(
            "/path?param=value&foo=bar&baz=batman&qux=",
            &[("host", "h")],
        );
        assert_eq!(
            value(&p, "@query").unwrap(),
            "?param=value&foo=bar&baz=batman&qux="
        );
        assert_eq!(value(&p, "@query-param;name=\"qux\"").unwrap(), "");
        assert_eq!(value(&p, "@query-param;name=\"baz\"").unwrap(), "batman");
        // RFC 9421 section 2.2.8 examples.
        let p = req(
            "/parameters?var=this%20is%20a%20big%0Aval&bar=with+plus+whitespace",
            &[("host", "h")],
        );
        assert_eq!(
            value(&p, "@query-param;name=\"var\"").unwrap(),
            "this%20is%20a%20big%0Aval"
        );
        assert_eq!(
            value(&p, "@query-param;name=\"bar\"").unwrap(),
            "with%20plus%20whitespace"
        );
        let p = req("/p?a=1&a=2", &[("host", "h")]);
        assert!(matches!(
            value(&p, "@query-param;name=\"a\""),
            Err(BaseError::RepeatedQueryParam(_))
        ));
        assert!(matches!(
            value(&p, "@query-param;name=\"b\""),
            Err(BaseError::MissingComponent(_))
        ));
        assert!(matches!(
            value(&p, "@status"),
            Err(BaseError::NotApplicable(_))
        ));
    }

    #[test]
    fn fields() {
        // RFC 9421 section 2.1 examples.
        let p = req(
            "/",
            &[
                ("x-ows-header", "   Leading and trailing whitespace.   "),
                ("x-obs-fold-header", "Obsolete line folding."),
                ("cache-control", "max-age=60"),
                ("cache-control", "   must-revalidate"),
                ("example-dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c)"),
                ("x-empty-header", ""),
            ],
        );
        assert_eq!(
            value(&p, "x-ows-header").unwrap(),
            "Leading and trailing whitespace."
        );
        assert_eq!(
            value(&p, "cache-control").unwrap(),
            "max-age=60, must-revalidate"
        );
        assert_eq!(value(&p, "x-empty-header").unwrap(), "");
        assert_eq!(
            value(&p, "example-dict").unwrap(),
            "a=1,    b=2;x=1;y=2,   c=(a   b   c)"
        );
        assert_eq!(
            value(&p, "example-dict;sf").unwrap(),
            "a=1, b=2;x=1;y=2, c=(a b c)"
        );
        assert_eq!(value(&p, "example-dict;key=\"a\"").unwrap(), "1");
        assert_eq!(value(&p, "example-dict;key=\"b\"").unwrap(), "2;x=1;y=2");
        assert_eq!(value(&p, "example-dict;key=\"c\"").unwrap(), "(a b c)");
        assert!(value(&p, "example-dict;key=\"zz\"").is_err());
        assert!(matches!(
            value(&p, "x-missing"),
            Err(BaseError::MissingComponent(_))
        ));
        let p = req(
            "/",
            &[
                ("example-header", "value, with, lots"),
                ("example-header", "of, commas"),
            ],
        );
        assert_eq!(
            value(&p, "example-header;bs").unwrap(),
            ":dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:"
        );
    }

    #[test]
    fn params_round_trip_through_sfv() {
        let list: List =
            Parser::new("(\"@method\" \"x\";bs);keyid=\"k\";created=5;ext=?1;nonce=\"n\"")
                .parse()
                .unwrap();
        let ListEntry::InnerList(inner) = &list[0] else {
            panic!("inner list expected")
        };
        let p = SignatureParams::from_inner_list(inner).unwrap();
        assert_eq!(p.created, Some(5));
        assert_eq!(p.keyid.as_deref(), Some("k"));
        assert_eq!(p.nonce.as_deref(), Some("n"));
        // The received order and unknown parameters are kept.
        assert_eq!(
            p.serialize().unwrap(),
            "(\"@method\" \"x\";bs);keyid=\"k\";created=5;ext;nonce=\"n\""
        );
    }
}
