//! Route templates for the inbound metrics: the proxy does not know the
//! application's routes, so `[proxy.inbound] routes` names them, and each
//! request is labelled with the first template its path matches (never the
//! raw path, so a scanner cannot create series).

use std::borrow::Cow;

use sinew_metrics::PathTemplate;

/// The most templates `[proxy.inbound] routes` may list.
pub const MAX_ROUTES: usize = 256;

/// The most bytes of one template.
const MAX_TEMPLATE: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Matches itself.
    Literal(String),
    /// `{name}`: any one non-empty segment.
    Param,
    /// `{*name}`, last: the rest of the path (one segment or more).
    Rest,
}

#[derive(Debug, Clone)]
struct Template {
    text: String,
    segments: Vec<Segment>,
}

/// Templates in the order given; the first match wins.
#[derive(Debug, Clone, Default)]
pub(crate) struct Routes {
    templates: Vec<Template>,
}

/// Whether `template` is one: starts with `/`, `{name}` segments whole,
/// `{*name}` only last.
pub(crate) fn check_template(template: &str) -> Result<(), String> {
    parse(template).map(|_| ())
}

fn parse(template: &str) -> Result<Vec<Segment>, String> {
    if template.len() > MAX_TEMPLATE {
        return Err(format!("longer than {MAX_TEMPLATE} bytes"));
    }
    let rest = template
        .strip_prefix('/')
        .ok_or("a template starts with '/'")?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(
            |(i, p)| match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if name.starts_with('*') => {
                    if i != last {
                        Err("{*rest} must be the last segment".to_string())
                    } else if name.len() == 1 {
                        Err("{*} needs a name".into())
                    } else {
                        Ok(Segment::Rest)
                    }
                }
                Some("") => Err("{} needs a name".into()),
                Some(name) if name.contains(['{', '}']) => Err(format!("bad parameter {{{name}}}")),
                Some(_) => Ok(Segment::Param),
                None if p.contains(['{', '}']) => Err(format!(
                    "{p:?}: a parameter is a whole segment, like {{id}}"
                )),
                None => Ok(Segment::Literal((*p).to_string())),
            },
        )
        .collect()
}

impl Routes {
    /// The templates, checked (see [`check_template`]).
    pub(crate) fn new(templates: &[String]) -> Result<Routes, String> {
        let templates = templates
            .iter()
            .map(|t| {
                Ok(Template {
                    text: t.clone(),
                    segments: parse(t).map_err(|e| format!("{t:?}: {e}"))?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Routes { templates })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// The template `path` matches first, if any. Work is linear in the
    /// path's length times the number of templates.
    pub(crate) fn find(&self, path: &str) -> Option<PathTemplate> {
        let rest = path.strip_prefix('/')?;
        'next: for t in &self.templates {
            let mut parts = if rest.is_empty() {
                None
            } else {
                Some(rest.split('/'))
            };
            let mut got = parts.as_mut().and_then(|p| p.next());
            for seg in &t.segments {
                match (seg, got) {
                    (Segment::Rest, Some(p)) if !p.is_empty() => {
                        return Some(PathTemplate(Cow::Owned(t.text.clone())));
                    }
                    (Segment::Param, Some(p)) if !p.is_empty() => {}
                    (Segment::Literal(l), Some(p)) if l == p => {}
                    _ => continue 'next,
                }
                got = parts.as_mut().and_then(|p| p.next());
            }
            if got.is_none() {
                return Some(PathTemplate(Cow::Owned(t.text.clone())));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn first_match_wins() {
        let r = Routes::new(&[
            "/items/new".into(),
            "/items/{id}".into(),
            "/items/{id}/parts".into(),
            "/files/{*path}".into(),
            "/".into(),
        ])
        .unwrap();
        let find = |p: &str| r.find(p).map(|t| t.0.into_owned());
        assert_eq!(find("/items/new").as_deref(), Some("/items/new"));
        assert_eq!(find("/items/7").as_deref(), Some("/items/{id}"));
        assert_eq!(find("/items/7/parts").as_deref(), Some("/items/{id}/parts"));
        assert_eq!(find("/items/7/other"), None);
        assert_eq!(find("/items/"), None);
        assert_eq!(find("/items"), None);
        assert_eq!(find("/files/a/b/c").as_deref(), Some("/files/{*path}"));
        assert_eq!(find("/files"), None);
        assert_eq!(find("/").as_deref(), Some("/"));
        assert_eq!(find("*"), None);
    }

    #[test]
    fn bad_templates() {
        for (t, want) in [
            ("items", "starts with '/'"),
            ("/a/{*rest}/b", "last"),
            ("/a/x{id}", "whole segment"),
            ("/a/{}", "needs a name"),
            ("/a/{*}", "needs a name"),
        ] {
            let e = check_template(t).unwrap_err();
            assert!(e.contains(want), "{t}: {e}");
        }
        assert!(check_template(&format!("/{}", "a".repeat(600))).is_err());
    }
}
