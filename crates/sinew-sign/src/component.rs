//! Component identifiers (RFC 9421 section 2): what a signature covers.

use std::fmt;
use std::str::FromStr;

use sfv::{FieldType as _, Item, List, ListEntry, Parser, RefBareItem, StringRef};

use crate::SF_VERSION;

/// One covered component: a derived component such as `@method`, or an HTTP
/// field such as `content-digest`, with its parameters.
///
/// Parse it from the text a user writes (`@method`, `content-type`,
/// `@query-param;name="Pet"`, `x-tenant;bs`) or from a structured-field
/// item (`"@query-param";name="Pet"`).
///
/// ```
/// use sinew_sign::Component;
/// let c: Component = "@query-param;name=\"Pet\"".parse().unwrap();
/// assert_eq!(c.to_string(), "\"@query-param\";name=\"Pet\"");
/// assert_eq!(c.name(), "@query-param");
/// let h: Component = "Content-Type".parse().unwrap();
/// assert_eq!(h.to_string(), "\"content-type\"");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    pub(crate) kind: Kind,
    pub(crate) item: Item,
    pub(crate) id: String,
}

/// What a component identifier designates. `S` is `String` in a
/// [`Component`] and `&str` for an identifier borrowed from a received
/// `Signature-Input`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind<S = String> {
    Method,
    TargetUri,
    Authority,
    Scheme,
    RequestTarget,
    Path,
    Query,
    QueryParam(S),
    Status,
    Field(FieldOpts<S>),
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct FieldOpts<S = String> {
    pub(crate) name: S,
    pub(crate) sf: bool,
    pub(crate) bs: bool,
    pub(crate) key: Option<S>,
}

impl Kind {
    /// The same kind, borrowing its strings.
    pub(crate) fn borrowed(&self) -> Kind<&str> {
        match self {
            Kind::Method => Kind::Method,
            Kind::TargetUri => Kind::TargetUri,
            Kind::Authority => Kind::Authority,
            Kind::Scheme => Kind::Scheme,
            Kind::RequestTarget => Kind::RequestTarget,
            Kind::Path => Kind::Path,
            Kind::Query => Kind::Query,
            Kind::QueryParam(n) => Kind::QueryParam(n),
            Kind::Status => Kind::Status,
            Kind::Field(f) => Kind::Field(FieldOpts {
                name: &f.name,
                sf: f.sf,
                bs: f.bs,
                key: f.key.as_deref(),
            }),
        }
    }
}

impl Kind<&str> {
    fn to_owned_kind(&self) -> Kind {
        match *self {
            Kind::Method => Kind::Method,
            Kind::TargetUri => Kind::TargetUri,
            Kind::Authority => Kind::Authority,
            Kind::Scheme => Kind::Scheme,
            Kind::RequestTarget => Kind::RequestTarget,
            Kind::Path => Kind::Path,
            Kind::Query => Kind::Query,
            Kind::QueryParam(n) => Kind::QueryParam(n.to_owned()),
            Kind::Status => Kind::Status,
            Kind::Field(ref f) => Kind::Field(FieldOpts {
                name: f.name.to_owned(),
                sf: f.sf,
                bs: f.bs,
                key: f.key.map(str::to_owned),
            }),
        }
    }
}

/// Classify a component identifier (its bare item and parameters, in
/// order, without duplicates), borrowing from them.
///
/// Names must be lower case; unknown derived components, parameters sinew
/// does not implement (`req`, `tr`) and contradictory parameters are
/// errors.
pub(crate) fn classify<'a>(
    bare: RefBareItem<'a>,
    params: impl IntoIterator<Item = (&'a str, RefBareItem<'a>)>,
) -> Result<Kind<&'a str>, ComponentError> {
    let RefBareItem::String(name) = bare else {
        return Err(ComponentError::new(
            "a component identifier must be a string",
        ));
    };
    let name = name.as_str();
    if name.is_empty() {
        return Err(ComponentError::new("empty component name"));
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ComponentError::new(format!(
            "component name {name:?} must be lower case"
        )));
    }
    let mut sf = false;
    let mut bs = false;
    let mut key = None;
    let mut qname = None;
    for (p, v) in params {
        match (p, v) {
            ("sf", RefBareItem::Boolean(true)) => sf = true,
            ("bs", RefBareItem::Boolean(true)) => bs = true,
            ("key", RefBareItem::String(k)) => key = Some(k.as_str()),
            ("name", RefBareItem::String(n)) => qname = Some(n.as_str()),
            (other, _) => {
                return Err(ComponentError::new(format!(
                    "unsupported parameter {other:?} on component {name:?}"
                )))
            }
        }
    }
    let derived = name.starts_with('@');
    if derived && (sf || bs || key.is_some()) {
        return Err(ComponentError::new(format!(
            "parameters sf, bs and key apply to fields, not to {name:?}"
        )));
    }
    if qname.is_some() && name != "@query-param" {
        return Err(ComponentError::new(format!(
            "parameter name applies to @query-param, not to {name:?}"
        )));
    }
    if bs && (sf || key.is_some()) {
        return Err(ComponentError::new(format!(
            "bs cannot be combined with sf or key on {name:?}"
        )));
    }
    Ok(match name {
        "@method" => Kind::Method,
        "@target-uri" => Kind::TargetUri,
        "@authority" => Kind::Authority,
        "@scheme" => Kind::Scheme,
        "@request-target" => Kind::RequestTarget,
        "@path" => Kind::Path,
        "@query" => Kind::Query,
        "@status" => Kind::Status,
        "@query-param" => Kind::QueryParam(
            qname.ok_or_else(|| ComponentError::new("@query-param needs a name parameter"))?,
        ),
        n if derived => {
            return Err(ComponentError::new(format!(
                "unknown derived component {n:?}"
            )))
        }
        n => {
            if !n.bytes().all(is_tchar) {
                return Err(ComponentError::new(format!("invalid field name {n:?}")));
            }
            Kind::Field(FieldOpts {
                name: n,
                sf: sf || key.is_some(),
                bs,
                key,
            })
        }
    })
}

/// A component identifier that sinew cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentError {
    message: String,
}

impl ComponentError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for ComponentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ComponentError {}

impl Component {
    /// `@method`.
    pub fn method() -> Self {
        Self::fixed("@method", Kind::Method)
    }
    /// `@authority`.
    pub fn authority() -> Self {
        Self::fixed("@authority", Kind::Authority)
    }
    /// `@path`.
    pub fn path() -> Self {
        Self::fixed("@path", Kind::Path)
    }
    /// `@query`.
    pub fn query() -> Self {
        Self::fixed("@query", Kind::Query)
    }
    /// The `content-digest` field.
    pub fn content_digest() -> Self {
        Self::fixed(
            "content-digest",
            Kind::Field(FieldOpts {
                name: "content-digest".into(),
                ..FieldOpts::default()
            }),
        )
    }

    /// The default covered set: `@method @authority @path @query content-digest`.
    pub fn defaults() -> Vec<Component> {
        vec![
            Self::method(),
            Self::authority(),
            Self::path(),
            Self::query(),
            Self::content_digest(),
        ]
    }

    fn fixed(name: &'static str, kind: Kind) -> Self {
        Component {
            kind,
            item: Item::new(StringRef::constant(name)),
            id: format!("\"{name}\""),
        }
    }

    /// The component's name (`@method`, `content-type`, …).
    pub fn name(&self) -> &str {
        self.item
            .bare_item
            .as_string()
            .map(StringRef::as_str)
            .unwrap_or_default()
    }

    /// Whether this is the `content-digest` field (without parameters).
    pub fn is_content_digest(&self) -> bool {
        matches!(&self.kind, Kind::Field(f) if f.name == "content-digest" && !f.sf && !f.bs && f.key.is_none())
    }

    /// The structured-field item this identifier serialises to.
    pub fn as_item(&self) -> &Item {
        &self.item
    }

    /// A component from a structured-field item as found in `Signature-Input`.
    ///
    /// Names must be lower case; unknown derived components, parameters
    /// sinew does not implement (`req`, `tr`) and contradictory parameters are
    /// errors.
    pub fn from_item(item: &Item) -> Result<Self, ComponentError> {
        Self::from_owned_item(item.clone())
    }

    pub(crate) fn from_owned_item(item: Item) -> Result<Self, ComponentError> {
        let kind = classify(
            RefBareItem::from(&item.bare_item),
            item.params
                .iter()
                .map(|(k, v)| (k.as_str(), RefBareItem::from(v))),
        )?
        .to_owned_kind();
        let name = item
            .bare_item
            .as_string()
            .map(StringRef::as_str)
            .unwrap_or_default();
        // Names are lower-case tokens or known derived names here, so a
        // bare name needs no escaping.
        let id = if item.params.is_empty() {
            let mut id = String::with_capacity(name.len() + 2);
            id.push('"');
            id.push_str(name);
            id.push('"');
            id
        } else {
            item.serialize()
        };
        Ok(Component { kind, item, id })
    }

    /// Parse one component as a user writes it: `@method`,
    /// `Content-Type` (field names are lower-cased),
    /// `@query-param;name="Pet"`, or the quoted form `"content-type";bs`.
    pub fn parse(text: &str) -> Result<Self, ComponentError> {
        let text = text.trim();
        let sf_text = if text.starts_with('"') {
            text.to_owned()
        } else {
            let (name, rest) = match text.find(';') {
                Some(i) => (&text[..i], &text[i..]),
                None => (text, ""),
            };
            if name.contains('"') || name.contains('\\') {
                return Err(ComponentError::new(format!(
                    "invalid component name {name:?}"
                )));
            }
            format!("\"{}\"{rest}", name.to_ascii_lowercase())
        };
        let item: Item = Parser::new(&sf_text)
            .with_version(SF_VERSION)
            .parse()
            .map_err(|e| ComponentError::new(format!("invalid component {text:?}: {e}")))?;
        Self::from_item(&item)
    }
}

impl FromStr for Component {
    type Err = ComponentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Component::parse(s)
    }
}

/// Shown as its structured-field serialisation, e.g. `"@query-param";name="Pet"`.
impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parse a list of components as a user writes it: separated by spaces or
/// commas (`"@method @authority @path content-digest"`), or a structured
/// inner list (`("@method" "@query-param";name="a b")`).
///
/// ```
/// let list = sinew_sign::parse_components("date @authority content-type").unwrap();
/// assert_eq!(list.len(), 3);
/// assert!(sinew_sign::parse_components("@nope").is_err());
/// ```
pub fn parse_components(text: &str) -> Result<Vec<Component>, ComponentError> {
    let text = text.trim();
    let out: Vec<Component> = if text.starts_with('(') {
        let list: List = Parser::new(text)
            .with_version(SF_VERSION)
            .parse()
            .map_err(|e| ComponentError::new(format!("invalid component list: {e}")))?;
        match list.as_slice() {
            [ListEntry::InnerList(inner)] if inner.params.is_empty() => inner
                .items
                .iter()
                .map(Component::from_item)
                .collect::<Result<_, _>>()?,
            _ => return Err(ComponentError::new("expected one inner list of components")),
        }
    } else {
        text.split(|c: char| c.is_ascii_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .map(Component::parse)
            .collect::<Result<_, _>>()?
    };
    check_unique(&out)?;
    Ok(out)
}

pub(crate) fn check_unique(list: &[Component]) -> Result<(), ComponentError> {
    match crate::unique::first_repeat(list, |c| c.id.as_str()) {
        Some(i) => Err(ComponentError::new(format!(
            "component {} is listed twice",
            list[i].id
        ))),
        None => Ok(()),
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Component {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Component {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Component::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_forms() {
        let c = Component::parse("@query-param;name=\"Pet\"").unwrap();
        assert_eq!(c.kind, Kind::QueryParam("Pet".into()));
        let c = Component::parse("\"x-data\";bs").unwrap();
        assert!(matches!(c.kind, Kind::Field(FieldOpts { bs: true, .. })));
        assert_eq!(c.to_string(), "\"x-data\";bs");
        let c = Component::parse("example-dict;key=\"a\"").unwrap();
        assert!(matches!(&c.kind, Kind::Field(f) if f.sf && f.key.as_deref() == Some("a")));
    }

    #[test]
    fn refuses_bad_ones() {
        for bad in [
            "@unknown",
            "@query-param",
            "@method;bs",
            "a;bs;sf",
            "a;req",
            "\"Upper\"",
            "a b",
            "",
            "x\"y",
            "@path;name=\"x\"",
        ] {
            assert!(Component::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists() {
        let l = parse_components("@method, @authority  @path").unwrap();
        assert_eq!(l.len(), 3);
        let l = parse_components("(\"@method\" \"@query-param\";name=\"a b\")").unwrap();
        assert_eq!(l[1].kind, Kind::QueryParam("a b".into()));
        assert!(parse_components("@method @method").is_err());
        assert!(parse_components("").unwrap().is_empty());
    }
}
