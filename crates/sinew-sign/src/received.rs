//! `Signature-Input` and `Signature` as received, parsed with sfv's
//! visitor API: only the member of the chosen label is kept, and its
//! strings, keys and tokens borrow the header bytes (nothing is allocated
//! for them unless a string holds an escape).
//!
//! Duplicates follow RFC 8941 exactly as sfv's owned `Dictionary` and
//! `Parameters` (ordered maps) do: a later dictionary member replaces an
//! earlier one of the same name (which keeps its position), a later
//! parameter replaces the value of an earlier one of the same name (which
//! keeps its position).

use std::cell::Cell;
use std::convert::Infallible;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use sfv::visitor::{
    DictionaryVisitor, EntryVisitor, Ignored, InnerListVisitor, ItemVisitor, ParameterVisitor,
};
use sfv::{BareItemFromInput, ItemSerializer, KeyRef, RefBareItem, StringRef};

use crate::component::{classify, ComponentError, Kind};
use crate::unique::{first_repeat_in, last_value_wins};
use crate::Covered;

/// Parameters in order, without duplicate keys.
pub(crate) type RawParams<'de> = Vec<(&'de KeyRef, BareItemFromInput<'de>)>;

/// One covered component identifier as received.
#[derive(Debug)]
pub(crate) struct RawItem<'de> {
    pub(crate) bare: BareItemFromInput<'de>,
    pub(crate) params: RawParams<'de>,
}

impl<'de> RawItem<'de> {
    /// The parameters as `(name, value)` pairs.
    pub(crate) fn params<'s>(&'s self) -> impl Iterator<Item = (&'s str, RefBareItem<'s>)> {
        self.params
            .iter()
            .map(|(k, v)| (k.as_str(), RefBareItem::from(v)))
    }

    /// Append the serialised identifier (RFC 8941 section 4.1.3: the bare
    /// item, then its parameters).
    pub(crate) fn write_id(&self, out: &mut String) {
        write_bare_item(out, RefBareItem::from(&self.bare));
        write_params(out, &self.params);
    }
}

/// Append `;name[=value]` for each parameter (RFC 8941 section 4.1.1.2).
pub(crate) fn write_params(out: &mut String, params: &RawParams<'_>) {
    for (k, v) in params {
        out.push(';');
        out.push_str(k.as_str());
        let v = RefBareItem::from(v);
        if v != RefBareItem::Boolean(true) {
            out.push('=');
            write_bare_item(out, v);
        }
    }
}

/// Append a bare item as RFC 8941 section 4.1.3.1 serialises it. Strings,
/// integers, booleans and tokens (what signature parameters hold) are
/// written here in one pass; the other types go through sfv.
fn write_bare_item(out: &mut String, v: RefBareItem<'_>) {
    match v {
        RefBareItem::String(s) => push_sf_string(out, s.as_str()),
        RefBareItem::Integer(i) => push_i64(out, i64::from(i)),
        RefBareItem::Boolean(b) => out.push_str(if b { "?1" } else { "?0" }),
        RefBareItem::Token(t) => out.push_str(t.as_str()),
        other => {
            let _ = ItemSerializer::with_buffer(out).bare_item(other).finish();
        }
    }
}

/// Append `"s"`, escaping `"` and `\` (RFC 8941 section 4.1.6). `s` is
/// an sfv string: printable ASCII only.
pub(crate) fn push_sf_string(out: &mut String, s: &str) {
    out.push('"');
    let mut rest = s;
    while let Some(i) = rest.bytes().position(|b| b == b'"' || b == b'\\') {
        out.push_str(&rest[..i]);
        out.push('\\');
        out.push_str(&rest[i..=i]);
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

/// Append the decimal digits of `n`.
pub(crate) fn push_i64(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
}

/// The MAC of `Signature` when the field is exactly `<label>=:<base64 of
/// 32 bytes>:`, the form sinew (and most peers) send. That text is a valid
/// dictionary of one member whose value sfv decodes to the same bytes
/// (same alphabet, padding and trailing-bit rules); anything else is
/// `None` and goes through the parser.
pub(crate) fn canonical_signature(field: &[u8], label: &str) -> Option<[u8; 32]> {
    let rest = field.strip_prefix(label.as_bytes())?.strip_prefix(b"=:")?;
    let b64 = rest.strip_suffix(b":")?;
    if b64.len() != 44 {
        return None;
    }
    let mut mac = [0u8; 32];
    match SFV_BASE64.decode_slice(b64, &mut mac) {
        Ok(32) => Some(mac),
        _ => None,
    }
}

/// sfv's base64 configuration for byte sequences.
const SFV_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_encode_padding(true),
);

/// The inner list of one `Signature-Input` member.
#[derive(Debug)]
pub(crate) struct RawInput<'de> {
    pub(crate) items: Vec<RawItem<'de>>,
    pub(crate) params: RawParams<'de>,
}

impl Default for RawInput<'_> {
    fn default() -> Self {
        // Room for the usual case (up to 8 components, 6 parameters)
        // without growing.
        Self {
            items: Vec::with_capacity(8),
            params: Vec::with_capacity(6),
        }
    }
}

/// The signature parameters sinew interprets, borrowed.
#[derive(Debug, Default)]
pub(crate) struct Metadata<'a> {
    pub(crate) created: Option<i64>,
    pub(crate) expires: Option<i64>,
    pub(crate) nonce: Option<&'a str>,
    pub(crate) alg: Option<&'a str>,
    pub(crate) keyid: Option<&'a str>,
    pub(crate) tag: Option<&'a str>,
}

impl<'de> RawInput<'de> {
    /// Classify the covered components and serialise their identifiers;
    /// an unusable or repeated identifier is an error.
    pub(crate) fn components(&self) -> Result<(Vec<Kind<&str>>, Covered), ComponentError> {
        let kinds = self
            .items
            .iter()
            .map(|item| classify(RefBareItem::from(&item.bare), item.params()))
            .collect::<Result<Vec<_>, _>>()?;
        // All identifiers in one buffer.
        let mut covered = Covered::with_capacity(24 * self.items.len());
        for item in &self.items {
            covered.push_with(|out| item.write_id(out));
        }
        let repeated =
            first_repeat_in(covered.len(), covered.iter()).and_then(|i| covered.iter().nth(i));
        if let Some(id) = repeated {
            return Err(ComponentError::new(format!(
                "component {id} is listed twice"
            )));
        }
        Ok((kinds, covered))
    }

    /// `created`, `expires`, `nonce`, `alg`, `keyid` and `tag`; the error
    /// names a parameter of the wrong type. Extension parameters are signed
    /// but not interpreted.
    pub(crate) fn metadata(&self) -> Result<Metadata<'_>, &str> {
        let mut m = Metadata::default();
        for (name, value) in &self.params {
            let name = name.as_str();
            let int = || value.as_integer().map(i64::from).ok_or(name);
            let string = || value.as_string().map(StringRef::as_str).ok_or(name);
            match name {
                "created" => m.created = Some(int()?),
                "expires" => m.expires = Some(int()?),
                "nonce" => m.nonce = Some(string()?),
                "alg" => m.alg = Some(string()?),
                "keyid" => m.keyid = Some(string()?),
                "tag" => m.tag = Some(string()?),
                _ => {}
            }
        }
        Ok(m)
    }
}

/// How much one `Signature-Input` (or `Signature`) may hold. The visitors
/// keep nothing past the first element over a limit (and note it); the
/// parse itself is bounded by the field's size, checked before parsing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Dictionary members (signatures) in the field.
    pub(crate) members: usize,
    /// Components of the chosen signature.
    pub(crate) components: usize,
    /// Parameters of one component.
    pub(crate) component_params: usize,
    /// Parameters of the chosen signature.
    pub(crate) signature_params: usize,
}

impl Limits {
    /// No limit (for the public, owned parsing paths and tests).
    #[cfg(test)]
    pub(crate) const NONE: Limits = Limits {
        members: usize::MAX,
        components: usize::MAX,
        component_params: usize::MAX,
        signature_params: usize::MAX,
    };
}

/// Which limit stopped a parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    Members,
    Components,
    ComponentParams,
    SignatureParams,
}

/// The limits of one parse and the one it hit, if any. The visitors share
/// it by reference. (They do not stop the parse with an error: infallible
/// visitors let sfv's parser compile to much less code.)
#[derive(Debug)]
pub(crate) struct Guard {
    limits: Limits,
    over: Cell<Option<Over>>,
}

impl Guard {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            over: Cell::new(None),
        }
    }

    /// The limit that stopped the parse.
    pub(crate) fn over(&self) -> Option<Over> {
        self.over.get()
    }

    /// Note that `over` was exceeded (the first limit hit is kept).
    fn hit(&self, over: Over) {
        if self.over.get().is_none() {
            self.over.set(Some(over));
        }
    }
}

/// What the chosen `Signature-Input` member holds.
#[derive(Debug)]
pub(crate) enum InputEntry<'de> {
    InnerList(RawInput<'de>),
    /// An item where an inner list belongs.
    NotInnerList,
}

/// Picks one member of `Signature-Input`: the one named `want`, or the
/// first one when `want` is `None`.
pub(crate) struct InputVisitor<'de, 'w> {
    want: Option<&'w str>,
    guard: &'w Guard,
    members: usize,
    label: Option<&'de KeyRef>,
    /// Whether the chosen member was seen, and as an inner list or not.
    seen: Option<bool>,
    list: RawInput<'de>,
}

impl<'de, 'w> InputVisitor<'de, 'w> {
    pub(crate) fn new(want: Option<&'w str>, guard: &'w Guard) -> Self {
        Self {
            want,
            guard,
            members: 0,
            label: None,
            seen: None,
            list: RawInput::default(),
        }
    }
}

impl<'de> DictionaryVisitor<'de> for InputVisitor<'de, '_> {
    /// The chosen label (the first member's when none is wanted) and its
    /// member, if present.
    type Out = (Option<&'de KeyRef>, Option<InputEntry<'de>>);
    type Error = Infallible;

    fn entry(&mut self, key: &'de KeyRef) -> Result<impl EntryVisitor<'de>, Self::Error> {
        self.members += 1;
        if self.members > self.guard.limits.members {
            self.guard.hit(Over::Members);
            return Ok(None);
        }
        let chosen = match self.want {
            Some(want) => key.as_str() == want,
            None => *self.label.get_or_insert(key) == key,
        };
        if !chosen {
            return Ok(None);
        }
        self.label = Some(key);
        Ok(Some(InputEntryVisitor {
            seen: &mut self.seen,
            list: &mut self.list,
            guard: self.guard,
        }))
    }

    fn finish(self) -> Result<Self::Out, Self::Error> {
        let entry = self.seen.map(|inner_list| {
            if inner_list {
                InputEntry::InnerList(self.list)
            } else {
                InputEntry::NotInnerList
            }
        });
        Ok((self.label, entry))
    }
}

struct InputEntryVisitor<'a, 'de> {
    seen: &'a mut Option<bool>,
    list: &'a mut RawInput<'de>,
    guard: &'a Guard,
}

impl<'de> EntryVisitor<'de> for InputEntryVisitor<'_, 'de> {
    type Error = Infallible;

    fn item(self) -> Result<impl ItemVisitor<'de>, Self::Error> {
        *self.seen = Some(false);
        Ok(Ignored)
    }

    fn inner_list(self) -> Result<impl InnerListVisitor<'de>, Self::Error> {
        // A later member of the same name replaces an earlier one.
        *self.seen = Some(true);
        self.list.items.clear();
        self.list.params.clear();
        Ok(InnerListV {
            list: self.list,
            guard: self.guard,
        })
    }
}

struct InnerListV<'a, 'de> {
    list: &'a mut RawInput<'de>,
    guard: &'a Guard,
}

impl<'de> InnerListVisitor<'de> for InnerListV<'_, 'de> {
    type Error = Infallible;

    fn item(&mut self) -> Result<impl ItemVisitor<'de>, Self::Error> {
        if self.list.items.len() >= self.guard.limits.components {
            self.guard.hit(Over::Components);
            return Ok(None);
        }
        Ok(Some(ItemV {
            items: &mut self.list.items,
            guard: self.guard,
        }))
    }

    fn finish(self) -> Result<impl ParameterVisitor<'de>, Self::Error> {
        Ok(ParamsV {
            params: &mut self.list.params,
            guard: self.guard,
        })
    }
}

struct ItemV<'a, 'de> {
    items: &'a mut Vec<RawItem<'de>>,
    guard: &'a Guard,
}

impl<'de> ItemVisitor<'de> for ItemV<'_, 'de> {
    type Out = ();
    type Error = Infallible;

    fn bare_item(
        self,
        bare: BareItemFromInput<'de>,
    ) -> Result<impl ParameterVisitor<'de, Out = Self::Out>, Self::Error> {
        Ok(ItemParamsV {
            items: self.items,
            bare,
            params: Vec::new(),
            guard: self.guard,
        })
    }
}

/// Collects an item's parameters, then adds the item to the list.
struct ItemParamsV<'a, 'de> {
    items: &'a mut Vec<RawItem<'de>>,
    bare: BareItemFromInput<'de>,
    params: RawParams<'de>,
    guard: &'a Guard,
}

impl<'de> ParameterVisitor<'de> for ItemParamsV<'_, 'de> {
    type Out = ();
    type Error = Infallible;

    fn parameter(
        &mut self,
        key: &'de KeyRef,
        value: BareItemFromInput<'de>,
    ) -> Result<(), Self::Error> {
        if self.params.len() >= self.guard.limits.component_params {
            self.guard.hit(Over::ComponentParams);
        } else {
            self.params.push((key, value));
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Self::Out, Self::Error> {
        if self.params.len() > 1 {
            last_value_wins(&mut self.params);
        }
        self.items.push(RawItem {
            bare: self.bare,
            params: self.params,
        });
        Ok(())
    }
}

/// Collects the signature's parameters.
struct ParamsV<'a, 'de> {
    params: &'a mut RawParams<'de>,
    guard: &'a Guard,
}

impl<'de> ParameterVisitor<'de> for ParamsV<'_, 'de> {
    type Out = ();
    type Error = Infallible;

    fn parameter(
        &mut self,
        key: &'de KeyRef,
        value: BareItemFromInput<'de>,
    ) -> Result<(), Self::Error> {
        if self.params.len() >= self.guard.limits.signature_params {
            self.guard.hit(Over::SignatureParams);
        } else {
            self.params.push((key, value));
        }
        Ok(())
    }

    fn finish(self) -> Result<Self::Out, Self::Error> {
        // A later parameter of the same name replaces the value of the
        // earlier one, which keeps its position.
        last_value_wins(self.params);
        Ok(())
    }
}

/// What the chosen `Signature` member holds.
#[derive(Debug)]
pub(crate) enum SignatureEntry {
    /// 32 bytes, from [`canonical_signature`].
    Mac([u8; 32]),
    ByteSequence(Vec<u8>),
    /// Another type of item, or an inner list.
    Other,
}

/// Picks the member `label` of `Signature` (validating the others).
pub(crate) struct SignatureVisitor<'w> {
    label: Option<&'w str>,
    guard: &'w Guard,
    members: usize,
    entry: Option<SignatureEntry>,
}

impl<'w> SignatureVisitor<'w> {
    /// `label` `None` keeps nothing (the field is only validated). More
    /// members than the guard's limit stop the parse.
    pub(crate) fn new(label: Option<&'w str>, guard: &'w Guard) -> Self {
        Self {
            label,
            guard,
            members: 0,
            entry: None,
        }
    }
}

impl<'de> DictionaryVisitor<'de> for SignatureVisitor<'_> {
    type Out = Option<SignatureEntry>;
    type Error = Infallible;

    fn entry(&mut self, key: &'de KeyRef) -> Result<impl EntryVisitor<'de>, Self::Error> {
        self.members += 1;
        if self.members > self.guard.limits.members {
            self.guard.hit(Over::Members);
            return Ok(None);
        }
        Ok((self.label == Some(key.as_str())).then_some(SignatureEntryV(&mut self.entry)))
    }

    fn finish(self) -> Result<Self::Out, Self::Error> {
        Ok(self.entry)
    }
}

struct SignatureEntryV<'a>(&'a mut Option<SignatureEntry>);

impl<'de> EntryVisitor<'de> for SignatureEntryV<'_> {
    type Error = Infallible;

    fn item(self) -> Result<impl ItemVisitor<'de>, Self::Error> {
        Ok(self)
    }

    fn inner_list(self) -> Result<impl InnerListVisitor<'de>, Self::Error> {
        *self.0 = Some(SignatureEntry::Other);
        Ok(Ignored)
    }
}

impl<'de> ItemVisitor<'de> for SignatureEntryV<'_> {
    type Out = ();
    type Error = Infallible;

    fn bare_item(
        self,
        bare: BareItemFromInput<'de>,
    ) -> Result<impl ParameterVisitor<'de, Out = Self::Out>, Self::Error> {
        *self.0 = Some(match bare {
            BareItemFromInput::ByteSequence(b) => SignatureEntry::ByteSequence(b),
            _ => SignatureEntry::Other,
        });
        Ok(Ignored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::{received_base, signature_base, MessageRef};
    use crate::{SignatureParams, SF_VERSION};
    use proptest::prelude::*;
    use sfv::{Dictionary, FieldType as _, ListEntry, Parser};

    fn serialize(l: &RawInput<'_>) -> String {
        let mut out = String::from("(");
        for (i, item) in l.items.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            item.write_id(&mut out);
        }
        out.push(')');
        write_params(&mut out, &l.params);
        out
    }

    fn input(text: &str, want: Option<&str>) -> (Option<String>, Option<String>) {
        let (label, entry) = Parser::new(text)
            .with_version(SF_VERSION)
            .parse_dictionary_with_visitor(InputVisitor::new(want, &Guard::new(Limits::NONE)))
            .unwrap();
        let entry = entry.map(|e| match e {
            InputEntry::NotInnerList => "item".to_owned(),
            InputEntry::InnerList(l) => serialize(&l),
        });
        (label.map(|l| l.as_str().to_owned()), entry)
    }

    /// What sfv's owned dictionary makes of the same text.
    fn owned(text: &str, want: Option<&str>) -> (Option<String>, Option<String>) {
        let dict: Dictionary = Parser::new(text).with_version(SF_VERSION).parse().unwrap();
        let (label, entry) = match want {
            Some(w) => (dict.contains_key(w).then(|| w.to_owned()), dict.get(w)),
            None => match dict.get_index(0) {
                Some((k, v)) => (Some(k.as_str().to_owned()), Some(v)),
                None => (None, None),
            },
        };
        let entry = entry.map(|e| match e {
            ListEntry::Item(_) => "item".to_owned(),
            ListEntry::InnerList(l) => {
                let list: sfv::List = vec![ListEntry::InnerList(l.clone())];
                list.serialize().unwrap_or_default()
            }
        });
        (label, entry)
    }

    #[test]
    fn agrees_with_the_owned_dictionary_on_duplicates() {
        for text in [
            r#"a=("x" "y";bs);created=1, b=("z")"#,
            r#"a=("x");p=1;q=2;p=3, a=("y";k=1;l;k=2);r=4"#,
            r#"a=1, b=("z");n="n", a=("w")"#,
            r#"a=("w"), b=2, a=3"#,
            r#"b=(), a=()"#,
            r#"a=(  "x"   "y"  );created=1;  keyid="k\"q\\";t=tok/x:y;d=-1.50;e=?0;f=:AAEC:"#,
            "",
        ] {
            for want in [None, Some("a"), Some("b"), Some("c")] {
                assert_eq!(input(text, want), owned(text, want), "{text} {want:?}");
            }
        }
    }

    #[test]
    fn signature_member() {
        let pick = |text: &str, label| {
            Parser::new(text)
                .with_version(SF_VERSION)
                .parse_dictionary_with_visitor(SignatureVisitor::new(
                    label,
                    &Guard::new(Limits::NONE),
                ))
        };
        assert!(matches!(
            pick("a=:AAEC:, b=1", Some("a")),
            Ok(Some(SignatureEntry::ByteSequence(b))) if b == [0, 1, 2]
        ));
        assert!(matches!(
            pick("a=:AAEC:, b=1", Some("b")),
            Ok(Some(SignatureEntry::Other))
        ));
        assert!(matches!(
            pick("a=(:AAEC:)", Some("a")),
            Ok(Some(SignatureEntry::Other))
        ));
        assert!(matches!(
            pick("a=1, a=:AAEC:;x", Some("a")),
            Ok(Some(SignatureEntry::ByteSequence(_)))
        ));
        assert!(matches!(pick("a=:AAEC:", Some("c")), Ok(None)));
        assert!(matches!(pick("a=:AAEC:", None), Ok(None)));
        assert!(pick("a=:AA*C:", None).is_err());
    }

    /// The fast path decodes exactly what sfv decodes, or steps aside.
    fn sfv_mac(field: &str, label: &str) -> Option<Vec<u8>> {
        match Parser::new(field)
            .with_version(SF_VERSION)
            .parse_dictionary_with_visitor(SignatureVisitor::new(
                Some(label),
                &Guard::new(Limits::NONE),
            )) {
            Ok(Some(SignatureEntry::ByteSequence(b))) => Some(b),
            _ => None,
        }
    }

    fn request() -> http::request::Parts {
        http::Request::post("https://Example.com:443/foo/bar?param=Value&Pet=dog&a=b+c")
            .header("date", "Tue, 20 Apr 2021 02:07:55 GMT")
            .header("content-type", "application/json")
            .header("x-dict", " a=1,  b=2;x=?1 ")
            .header("x-list", "a, b")
            .header("x-list", "c")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    /// The base the verifier builds (visitor, identifiers serialised here)
    /// and the base of the public, owned path (sfv `Dictionary`,
    /// `SignatureParams::from_inner_list`, `signature_base`).
    fn both_bases(text: &str) -> (Result<String, String>, Result<String, String>) {
        let parts = request();
        let message = MessageRef::request(&parts);
        let ours = (|| {
            let (_, entry) = Parser::new(text)
                .with_version(SF_VERSION)
                .parse_dictionary_with_visitor(InputVisitor::new(None, &Guard::new(Limits::NONE)))
                .map_err(|e| e.to_string())?;
            let Some(InputEntry::InnerList(l)) = entry else {
                return Err("no inner list".to_owned());
            };
            let (kinds, ids) = l.components().map_err(|e| e.to_string())?;
            l.metadata()
                .map_err(|name| format!("parameter {name} has the wrong type"))?;
            let mut base = String::new();
            received_base(&message, &ids, &kinds, &l.params, &mut base, usize::MAX).map_err(
                |e| match e {
                    crate::base::ReceivedBaseError::Base(e) => e.to_string(),
                    e => format!("{e:?}"),
                },
            )?;
            Ok(base)
        })();
        let theirs = (|| {
            let dict: Dictionary = Parser::new(text)
                .with_version(SF_VERSION)
                .parse()
                .map_err(|e| e.to_string())?;
            let Some((_, ListEntry::InnerList(l))) = dict.get_index(0) else {
                return Err("no inner list".to_owned());
            };
            let p = SignatureParams::from_inner_list(l).map_err(|e| e.to_string())?;
            signature_base(&message, &p).map_err(|e| e.to_string())
        })();
        (ours, theirs)
    }

    #[test]
    fn received_base_matches_the_owned_path() {
        for text in [
            r#"sig1=("@method" "@authority" "@path" "@query" "@target-uri" "@scheme" "@request-target");created=1;keyid="k""#,
            r#"sig1=(  "date"   "content-type" );created=1618884473;keyid="test-shared-secret""#,
            r#"sig1=("@query-param";name="Pet" "@query-param";name="a" "x-dict";sf "x-dict";key="b" "x-list" "x-list";bs);created=-5;nonce="n\"\\";alg="hmac-sha256";tag="t";ext=tok;d=1.50;b=?0;y;bin=:AAEC:"#,
            r#"sig1=("date");created=1;created=2;keyid="a";created=3"#,
            r#"sig1=("date";bs;bs);keyid="a""#,
            r#"sig1=();created=1"#,
        ] {
            let (ours, theirs) = both_bases(text);
            assert!(ours.is_ok(), "{text}: {ours:?}");
            assert_eq!(ours, theirs, "{text}");
        }
    }

    #[test]
    fn a_component_listed_twice_is_named_in_short_and_long_lists() {
        let short = r#"sig1=("@method" "date" "@path" "date");created=1;keyid="k""#.to_owned();
        // Past the in-place scan (16): the hashed check.
        let names: Vec<String> = (0..40).map(|i| format!(r#""x-h{i}""#)).collect();
        let long = format!(r#"sig1=({} "x-h7");created=1;keyid="k""#, names.join(" "));
        for (text, id) in [(short, r#""date""#), (long, r#""x-h7""#)] {
            let (ours, theirs) = both_bases(&text);
            let e = ours.unwrap_err();
            assert!(
                e.contains(&format!("component {id} is listed twice")),
                "{e}"
            );
            assert!(theirs.is_err());
        }
        // And without a repeat, every identifier is kept, in order.
        let text = format!(r#"sig1=({});created=1;keyid="k""#, names.join(" "));
        let (_, entry) = Parser::new(&text)
            .with_version(SF_VERSION)
            .parse_dictionary_with_visitor(InputVisitor::new(None, &Guard::new(Limits::NONE)))
            .unwrap();
        let Some(InputEntry::InnerList(l)) = entry else {
            panic!("no inner list")
        };
        let (_, covered) = l.components().unwrap();
        assert_eq!(covered.len(), 40);
        assert_eq!(covered.iter().collect::<Vec<_>>(), names);
    }

    fn ws() -> impl Strategy<Value = String> {
        "[ ]{0,2}"
    }

    fn component() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#""@method""#.to_owned()),
            Just(r#""@authority""#.to_owned()),
            Just(r#""@path""#.to_owned()),
            Just(r#""@query""#.to_owned()),
            Just(r#""@target-uri""#.to_owned()),
            Just(r#""date""#.to_owned()),
            Just(r#""x-list""#.to_owned()),
            Just(r#""x-list";bs"#.to_owned()),
            Just(r#""x-dict";sf"#.to_owned()),
            Just(r#""x-dict";key="a""#.to_owned()),
            "[a-zA-Z]{1,3}".prop_map(|n| format!(r#""@query-param";name="{n}""#)),
        ]
    }

    fn param() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("created"),
            Just("expires"),
            Just("keyid"),
            Just("nonce"),
            Just("alg"),
            Just("tag"),
            Just("ext")
        ];
        let value = prop_oneof![
            (-999_999_999_999_999i64..=999_999_999_999_999).prop_map(|i| format!("={i}")),
            r#"[ !#-\[\]-~]{0,12}"#.prop_map(|s| format!("=\"{s}\"")),
            "[ -~]{0,6}".prop_map(|s| {
                let escaped: String = s
                    .chars()
                    .flat_map(|c| match c {
                        '"' | '\\' => vec!['\\', c],
                        c => vec![c],
                    })
                    .collect();
                format!("=\"{escaped}\"")
            }),
            "[a-z][a-z0-9:/*]{0,5}".prop_map(|t| format!("={t}")),
            Just(String::new()),
            Just("=?0".to_owned()),
            Just("=:AAEC:".to_owned()),
            (0u32..1000, 0u32..1000).prop_map(|(a, b)| format!("={a}.{b}")),
        ];
        (key, value, ws()).prop_map(|(k, v, w)| format!(";{w}{k}{v}"))
    }

    proptest! {
        #[test]
        fn received_base_matches_the_owned_path_for_any_input(
            comps in proptest::collection::vec((component(), ws()), 0..6),
            params in proptest::collection::vec(param(), 0..8),
            lead in ws(),
        ) {
            let mut text = format!("sig1=({lead}");
            for (c, w) in &comps {
                text.push_str(c);
                text.push(' ');
                text.push_str(w);
            }
            text.push(')');
            for p in &params {
                text.push_str(p);
            }
            let (ours, theirs) = both_bases(&text);
            prop_assert_eq!(ours, theirs, "{}", text);
        }

        #[test]
        fn canonical_signature_agrees_with_sfv(
            bytes in proptest::collection::vec(any::<u8>(), 32),
            tweak in proptest::option::of((0usize..44, "[A-Za-z0-9+/=*:]")),
            label in "[a-z][a-z0-9]{0,3}",
        ) {
            let mut b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            if let Some((i, c)) = &tweak {
                let i = *i;
                b64.replace_range(i..=i, c);
            }
            let field = format!("{label}=:{b64}:");
            let fast = canonical_signature(field.as_bytes(), &label).map(|m| m.to_vec());
            if let Some(mac) = &fast {
                prop_assert_eq!(Some(mac.clone()), sfv_mac(&field, &label));
            }
            if tweak.is_none() {
                prop_assert_eq!(fast, Some(bytes));
            }
        }

        #[test]
        fn strings_and_integers_serialise_as_sfv_does(s in "[ -~]{0,20}", i in any::<i64>()) {
            let mut ours = String::new();
            push_sf_string(&mut ours, &s);
            let sfv_s = sfv::StringRef::from_str(&s).unwrap();
            prop_assert_eq!(ours, sfv::ItemSerializer::new().bare_item(sfv_s).finish());
            let mut ours = String::new();
            push_i64(&mut ours, i);
            prop_assert_eq!(ours, i.to_string());
        }
    }
}
