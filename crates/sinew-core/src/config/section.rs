//! Config sections made of a layer's own config type plus a few keys of
//! the section's own ([`Toggle`]'s `enabled`, a signing section's `key`),
//! without `#[serde(flatten)]`: the layer's type reads the map directly, so
//! unknown keys and bad values are still reported with their line.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Deserialize a `T` from `map`, except that the keys named in `names` are
/// handed to `extra` (which must read their value with
/// [`MapAccess::next_value`]) instead of to `T`.
///
/// ```
/// use serde::de::{Deserializer, MapAccess, Visitor};
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// #[serde(deny_unknown_fields)]
/// struct Layer { attempts: u32 }
/// struct Section { layer: Layer, note: Option<String> }
/// impl<'de> serde::Deserialize<'de> for Section {
///     fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
///         struct V;
///         impl<'de> Visitor<'de> for V {
///             type Value = Section;
///             fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result { f.write_str("a table") }
///             fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Section, A::Error> {
///                 let mut note = None;
///                 let layer = sinew_core::config::split_map(map, &["note"], |_, m| {
///                     note = Some(m.next_value()?);
///                     Ok(())
///                 })?;
///                 Ok(Section { layer, note })
///             }
///         }
///         d.deserialize_map(V)
///     }
/// }
/// let s: Section = serde_json::from_str(r#"{"attempts": 3, "note": "hi"}"#).unwrap();
/// assert_eq!((s.layer, s.note.as_deref()), (Layer { attempts: 3 }, Some("hi")));
/// assert!(serde_json::from_str::<Section>(r#"{"atempts": 3}"#).is_err());
/// ```
pub fn split_map<'de, A, T, F>(
    map: A,
    names: &'static [&'static str],
    extra: F,
) -> Result<T, A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
    F: FnMut(&'static str, &mut A) -> Result<(), A::Error>,
{
    T::deserialize(MapAccessDeserializer::new(Split {
        inner: map,
        names,
        extra,
    }))
}

struct Split<A, F> {
    inner: A,
    names: &'static [&'static str],
    extra: F,
}

impl<'de, A, F> MapAccess<'de> for Split<A, F>
where
    A: MapAccess<'de>,
    F: FnMut(&'static str, &mut A) -> Result<(), A::Error>,
{
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        mut seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        loop {
            let capture = Capture {
                seed,
                names: self.names,
            };
            match self.inner.next_key_seed(capture)? {
                None => return Ok(None),
                Some(Ok(key)) => return Ok(Some(key)),
                Some(Err((back, name))) => {
                    (self.extra)(name, &mut self.inner)?;
                    seed = back;
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// A key seed that gives the seed back, with the name, for the keys in
/// `names`, and otherwise runs it (so its errors carry the key's position).
struct Capture<K> {
    seed: K,
    names: &'static [&'static str],
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for Capture<K> {
    type Value = Result<K::Value, (K, &'static str)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for Capture<K> {
    type Value = Result<K::Value, (K, &'static str)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        if let Some(name) = self.names.iter().find(|n| **n == key) {
            return Ok(Err((self.seed, name)));
        }
        self.seed
            .deserialize(IntoDeserializer::<E>::into_deserializer(key))
            .map(Ok)
    }

    fn visit_string<E: serde::de::Error>(self, key: String) -> Result<Self::Value, E> {
        self.visit_str(&key)
    }
}

/// A section that is on unless the config turns it off, written either as
/// the layer's own table (with an optional `enabled = false`) or as a
/// boolean:
///
/// ```toml
/// [retry]              # on, with these settings
/// max_attempts = 2
///
/// [deadline]
/// enabled = false      # off (the other keys are still checked)
/// ```
///
/// or `retry = false` at the top of the file.
///
/// ```
/// use sinew_core::config::Toggle;
/// #[derive(serde::Deserialize, Default, Debug, PartialEq)]
/// #[serde(deny_unknown_fields, default)]
/// struct Retry { max_attempts: u32 }
/// #[derive(serde::Deserialize)]
/// struct File { #[serde(default)] retry: Toggle<Retry> }
///
/// let f: File = serde_json::from_str(r#"{"retry": {"max_attempts": 2}}"#).unwrap();
/// assert_eq!(f.retry.get(), Some(&Retry { max_attempts: 2 }));
/// let f: File = serde_json::from_str(r#"{"retry": {"enabled": false, "max_attempts": 2}}"#).unwrap();
/// assert_eq!(f.retry.get(), None);
/// let f: File = serde_json::from_str(r#"{"retry": false}"#).unwrap();
/// assert!(!f.retry.is_on());
/// let f: File = serde_json::from_str(r#"{}"#).unwrap();
/// assert_eq!(f.retry.get(), Some(&Retry::default()));
/// assert!(serde_json::from_str::<File>(r#"{"retry": {"max_atempts": 2}}"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Toggle<T> {
    /// On, with these settings.
    On(T),
    /// Turned off by the config.
    Off,
}

impl<T: Default> Default for Toggle<T> {
    /// On, with the layer's defaults.
    fn default() -> Self {
        Toggle::On(T::default())
    }
}

impl<T> Toggle<T> {
    /// The settings when on.
    pub fn get(&self) -> Option<&T> {
        match self {
            Toggle::On(t) => Some(t),
            Toggle::Off => None,
        }
    }

    /// The settings when on, mutably.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        match self {
            Toggle::On(t) => Some(t),
            Toggle::Off => None,
        }
    }

    /// Whether the section is on.
    pub fn is_on(&self) -> bool {
        matches!(self, Toggle::On(_))
    }

    /// The settings when on, by value.
    pub fn into_option(self) -> Option<T> {
        match self {
            Toggle::On(t) => Some(t),
            Toggle::Off => None,
        }
    }
}

impl<T> From<Option<T>> for Toggle<T> {
    fn from(o: Option<T>) -> Self {
        o.map_or(Toggle::Off, Toggle::On)
    }
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Toggle<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ToggleVisitor(PhantomData))
    }
}

struct ToggleVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for ToggleVisitor<T> {
    type Value = Toggle<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of settings, or true / false")
    }

    fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<Toggle<T>, E> {
        Ok(if on {
            Toggle::On(T::default())
        } else {
            Toggle::Off
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Toggle<T>, A::Error> {
        let mut enabled = true;
        let settings: T = split_map(map, &["enabled"], |_, m| {
            enabled = m.next_value()?;
            Ok(())
        })?;
        Ok(if enabled {
            Toggle::On(settings)
        } else {
            Toggle::Off
        })
    }
}

impl<T: Serialize> Serialize for Toggle<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Toggle::On(t) => t.serialize(s),
            Toggle::Off => s.serialize_bool(false),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, Default, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Retry {
        max_attempts: u32,
        backoff: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        retry: Toggle<Retry>,
    }

    #[test]
    fn toml_errors_keep_their_line() {
        let e = toml::from_str::<File>("[retry]\nenabled = true\nmax_atempts = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("max_atempts"), "{e}");
        let e = toml::from_str::<File>("[retry]\nmax_attempts = \"three\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = toml::from_str::<File>("[retry]\nenabled = \"no\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = toml::from_str::<File>("retry = \"off\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("true / false"), "{e}");
    }

    #[test]
    fn forms() {
        let f: File = toml::from_str("[retry]\nmax_attempts = 2\nenabled = true\n").unwrap();
        assert_eq!(f.retry.get().unwrap().max_attempts, 2);
        let f: File = toml::from_str("[retry]\nenabled = false\nmax_attempts = 2\n").unwrap();
        assert!(!f.retry.is_on());
        let f: File = toml::from_str("retry = false\n").unwrap();
        assert!(!f.retry.is_on());
        let f: File = toml::from_str("retry = true\n").unwrap();
        assert_eq!(f.retry, Toggle::On(Retry::default()));
        let f: File = toml::from_str("").unwrap();
        assert!(f.retry.is_on());
    }
}
