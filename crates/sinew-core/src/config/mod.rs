//! serde helpers for durations in config files, written like `"250ms"`,
//! `"2s"` or `"1m 30s"` (humantime), shared by every crate's config
//! structs (feature `serde`).
//!
//! ```
//! use std::time::Duration;
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     #[serde(with = "sinew_core::config::duration")]
//!     timeout: Duration,
//! }
//! let c: Config = serde_json::from_str(r#"{"timeout": "250ms"}"#).unwrap();
//! assert_eq!(c.timeout, Duration::from_millis(250));
//! ```
//!
//! Secrets (signing keys, passwords) are a [`Secret`]: `{ text = "..." }`,
//! `{ base64 = "..." }` (or `b64`), `{ file = "/path" }` or `{ env = "VAR" }`.

mod secret;
mod section;
pub use secret::{Secret, SecretError, MAX_SECRET_FILE};
pub use section::{split_map, Toggle};

/// A duration.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Write a duration like `250ms`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    /// Read a duration like `250ms` or `2s`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    /// Parse `250ms`, `2s`, `1m 30s`.
    pub fn parse(s: &str) -> Result<Duration, String> {
        humantime::parse_duration(s.trim())
            .map_err(|e| format!("invalid duration {s:?} ({e}); write it like \"250ms\" or \"2s\""))
    }
}

/// An optional duration (skip `None` when serialising with
/// `skip_serializing_if = "Option::is_none"`; add `default` when the key
/// may be absent).
pub mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Write a duration like `250ms`, or none.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Read a duration like `250ms` or `2s`, or none (`null`).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<std::borrow::Cow<'de, str>>::deserialize(d)?
            .map(|s| super::duration::parse(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// A list of durations.
pub mod durations {
    use std::time::Duration;

    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Write durations like `["50ms", "100ms"]`.
    pub fn serialize<S: Serializer>(list: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(list.len()))?;
        for d in list {
            seq.serialize_element(&humantime::format_duration(*d).to_string())?;
        }
        seq.end()
    }

    /// Read durations like `["50ms", "100ms"]`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let list = Vec::<std::borrow::Cow<'de, str>>::deserialize(d)?;
        list.iter()
            .map(|s| super::duration::parse(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct C {
        #[serde(with = "super::duration")]
        a: Duration,
        #[serde(
            default,
            with = "super::opt_duration",
            skip_serializing_if = "Option::is_none"
        )]
        b: Option<Duration>,
        #[serde(default, with = "super::durations")]
        c: Vec<Duration>,
    }

    #[test]
    fn round_trips_and_explains_bad_values() {
        let c: C = serde_json::from_str(r#"{"a": " 1m 30s ", "c": ["50ms", "2s"]}"#).unwrap();
        assert_eq!(
            c,
            C {
                a: Duration::from_secs(90),
                b: None,
                c: vec![Duration::from_millis(50), Duration::from_secs(2)],
            }
        );
        let text = serde_json::to_string(&C {
            b: Some(Duration::from_millis(250)),
            ..c
        })
        .unwrap();
        assert_eq!(text, r#"{"a":"1m 30s","b":"250ms","c":["50ms","2s"]}"#);
        let c: C = serde_json::from_str(r#"{"a": "1s", "b": null}"#).unwrap();
        assert_eq!(c.b, None);
        let err = serde_json::from_str::<C>(r#"{"a": "soon"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid duration \"soon\""), "{err}");
        assert!(err.contains("\"250ms\""), "{err}");
    }
}
