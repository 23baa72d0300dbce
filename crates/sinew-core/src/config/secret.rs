//! Where a secret comes from: the one type every sinew config uses for keys
//! and passwords.

use std::fmt;
use std::path::PathBuf;

/// The most bytes read from a secret file (secrets are short; a larger file
/// is a mistake, such as a path pointing at the wrong file).
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A secret in a config file, written as one of
///
/// ```toml
/// key = { env = "SINEW_KEY" }          # an environment variable's value
/// key = { file = "/run/secrets/key" }  # a file's bytes (one final newline dropped)
/// key = { base64 = "c2VjcmV0" }        # base64 inline (`b64` works too)
/// key = { text = "s3cret" }            # inline text (for tests and examples)
/// ```
///
/// [`Debug`](fmt::Debug) and [`Display`](fmt::Display) never print the
/// secret itself, only where it comes from.
///
/// ```
/// use sinew_core::config::Secret;
/// #[derive(serde::Deserialize)]
/// struct Sign { key: Secret }
/// let s: Sign = serde_json::from_str(r#"{"key": {"b64": "c2VjcmV0"}}"#).unwrap();
/// assert_eq!(s.key.load().unwrap(), b"secret");
/// assert_eq!(format!("{:?}", s.key), "Base64(..)");
/// let s: Sign = serde_json::from_str(r#"{"key": {"env": "SURELY_UNSET_VARIABLE_42"}}"#).unwrap();
/// let err = s.key.load().unwrap_err().to_string();
/// assert!(err.contains("SURELY_UNSET_VARIABLE_42"), "{err}");
/// ```
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum Secret {
    /// The value of an environment variable.
    Env(String),
    /// The bytes of a file (at most [`MAX_SECRET_FILE`]); one final `\n` or
    /// `\r\n` is dropped, as editors and `echo` add one.
    File(PathBuf),
    /// Base64 (standard alphabet, padding optional).
    #[serde(alias = "b64")]
    Base64(String),
    /// The secret itself, as UTF-8 text.
    Text(String),
}

/// Why a [`Secret`] could not be loaded. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretError(String);

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SecretError {}

impl Secret {
    /// The secret's bytes.
    pub fn load(&self) -> Result<Vec<u8>, SecretError> {
        use base64::Engine as _;
        let err = |m: String| Err(SecretError(m));
        let bytes = match self {
            Secret::Env(var) => match std::env::var_os(var) {
                Some(v) => v.into_encoded_bytes(),
                None => return err(format!("environment variable {var} is not set")),
            },
            Secret::Text(t) => t.clone().into_bytes(),
            Secret::Base64(b) => {
                let b = b.trim();
                let engine = if b.ends_with('=') {
                    &base64::engine::general_purpose::STANDARD
                } else {
                    &base64::engine::general_purpose::STANDARD_NO_PAD
                };
                match engine.decode(b) {
                    Ok(v) => v,
                    Err(_) => return err("the base64 value is not valid base64".into()),
                }
            }
            Secret::File(path) => read_bounded(path).map_err(SecretError)?,
        };
        if bytes.is_empty() {
            return err(format!("{} is empty", self.origin()));
        }
        Ok(bytes)
    }

    /// Where the secret comes from, for messages: `environment variable X`,
    /// `file /path`, `inline base64`, `inline text`.
    pub fn origin(&self) -> String {
        match self {
            Secret::Env(v) => format!("environment variable {v}"),
            Secret::File(p) => format!("file {}", p.display()),
            Secret::Base64(_) => "inline base64".into(),
            Secret::Text(_) => "inline text".into(),
        }
    }
}

fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(format!(
            "{} is larger than {MAX_SECRET_FILE} bytes; is it the right file?",
            path.display()
        ));
    }
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(bytes.len() - 2);
    } else if bytes.ends_with(b"\n") {
        bytes.truncate(bytes.len() - 1);
    }
    Ok(bytes)
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Env(v) => write!(f, "Env({v:?})"),
            Secret::File(p) => write!(f, "File({p:?})"),
            Secret::Base64(_) => f.write_str("Base64(..)"),
            Secret::Text(_) => f.write_str("Text(..)"),
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_source_loads_and_none_prints_the_secret() {
        let dir = std::env::temp_dir().join(format!("sinew-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("key");
        std::fs::write(&f, b"from-file\n").unwrap();
        assert_eq!(Secret::File(f.clone()).load().unwrap(), b"from-file");
        std::fs::write(&f, b"crlf\r\n").unwrap();
        assert_eq!(Secret::File(f.clone()).load().unwrap(), b"crlf");
        std::fs::write(&f, vec![b'a'; MAX_SECRET_FILE as usize + 1]).unwrap();
        let e = Secret::File(f.clone()).load().unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
        std::fs::write(&f, b"").unwrap();
        assert!(Secret::File(f.clone())
            .load()
            .unwrap_err()
            .to_string()
            .contains("empty"));
        let e = Secret::File(dir.join("missing"))
            .load()
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read") && e.contains("missing"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();

        assert_eq!(Secret::Text("s3cret".into()).load().unwrap(), b"s3cret");
        assert_eq!(Secret::Base64("c2VjcmV0".into()).load().unwrap(), b"secret");
        assert_eq!(
            Secret::Base64("c2VjcmV0MQ".into()).load().unwrap(),
            b"secret1"
        );
        assert_eq!(
            Secret::Base64("c2VjcmV0MQ==".into()).load().unwrap(),
            b"secret1"
        );
        assert!(Secret::Base64("***".into()).load().is_err());
        for s in [
            Secret::Text("s3cret".into()),
            Secret::Base64("czNjcmV0".into()),
        ] {
            assert!(!format!("{s:?} {s}").contains("s3cret"));
            assert!(!format!("{s:?} {s}").contains("czNjcmV0"));
        }
    }

    #[test]
    fn config_forms() {
        #[derive(serde::Deserialize)]
        struct C {
            key: Secret,
        }
        for (text, want) in [
            (r#"{"key":{"text":"a"}}"#, Secret::Text("a".into())),
            (r#"{"key":{"b64":"YQ=="}}"#, Secret::Base64("YQ==".into())),
            (
                r#"{"key":{"base64":"YQ=="}}"#,
                Secret::Base64("YQ==".into()),
            ),
            (r#"{"key":{"file":"/k"}}"#, Secret::File("/k".into())),
            (r#"{"key":{"env":"K"}}"#, Secret::Env("K".into())),
        ] {
            assert_eq!(serde_json::from_str::<C>(text).unwrap().key, want);
        }
        assert!(serde_json::from_str::<C>(r#"{"key":"inline"}"#).is_err());
        assert!(serde_json::from_str::<C>(r#"{"key":{"vault":"x"}}"#).is_err());
    }
}
