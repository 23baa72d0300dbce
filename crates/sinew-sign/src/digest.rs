//! `Content-Digest` (RFC 9530).

use base64::Engine as _;
use sfv::{BareItem, Dictionary, ListEntry, Parser};

use crate::base::push_base64_32;
use crate::SF_VERSION;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The `Content-Digest` value for `body` with SHA-256: `sha-256=:<base64>:`.
///
/// ```
/// assert_eq!(
///     sinew_sign::content_digest(b"{\"hello\": \"world\"}"),
///     "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
/// );
/// assert_eq!(
///     sinew_sign::content_digest(b""),
///     "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
/// );
/// ```
pub fn content_digest(body: &[u8]) -> String {
    let digest: [u8; 32] = Sha256::digest(body).into();
    let mut out = String::with_capacity(54);
    out.push_str("sha-256=:");
    push_base64_32(&mut out, &digest);
    out.push(':');
    out
}

/// The outcome of checking a `Content-Digest` against a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DigestCheck {
    /// Every supported digest in the field matches the body.
    Match,
    /// A supported digest does not match.
    Mismatch,
    /// The field holds no algorithm sinew supports (sha-256, sha-512).
    Unsupported,
    /// The field is not a valid dictionary of byte sequences.
    Malformed,
}

/// Check the combined `Content-Digest` field value against `body`.
pub(crate) fn check_content_digest(value: &[u8], body: &[u8]) -> DigestCheck {
    // Fast path for the form sinew (and most peers) send, a single
    // `sha-256=:<44 base64 characters>:` member, which is a valid
    // structured dictionary with exactly that meaning; anything else goes
    // through the sfv parser.
    if value.len() == 54 && value.starts_with(b"sha-256=:") && value.ends_with(b":") {
        let mut expected = [0u8; 32];
        if let Ok(32) =
            base64::engine::general_purpose::STANDARD.decode_slice(&value[9..53], &mut expected)
        {
            let ok: bool = Sha256::digest(body).as_slice().ct_eq(&expected).into();
            return if ok {
                DigestCheck::Match
            } else {
                DigestCheck::Mismatch
            };
        }
    }
    let Ok(dict) = Parser::new(value)
        .with_version(SF_VERSION)
        .parse::<Dictionary>()
    else {
        return DigestCheck::Malformed;
    };
    let mut checked = false;
    for (alg, entry) in &dict {
        let ListEntry::Item(item) = entry else {
            return DigestCheck::Malformed;
        };
        let BareItem::ByteSequence(expected) = &item.bare_item else {
            return DigestCheck::Malformed;
        };
        let ok: bool = match alg.as_str() {
            "sha-256" => Sha256::digest(body).as_slice().ct_eq(expected).into(),
            "sha-512" => Sha512::digest(body).as_slice().ct_eq(expected).into(),
            _ => continue,
        };
        if !ok {
            return DigestCheck::Mismatch;
        }
        checked = true;
    }
    if checked {
        DigestCheck::Match
    } else {
        DigestCheck::Unsupported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        let body = br#"{"hello": "world"}"#;
        assert_eq!(
            check_content_digest(content_digest(body).as_bytes(), body),
            DigestCheck::Match
        );
        // RFC 9421's test request carries a sha-512 digest.
        let sha512 = b"sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";
        assert_eq!(check_content_digest(sha512, body), DigestCheck::Match);
        assert_eq!(check_content_digest(sha512, b"x"), DigestCheck::Mismatch);
        assert_eq!(
            check_content_digest(content_digest(body).as_bytes(), b"{}"),
            DigestCheck::Mismatch
        );
        assert_eq!(
            check_content_digest(b"md5=:AAAA:", body),
            DigestCheck::Unsupported
        );
        assert_eq!(
            check_content_digest(b"sha-256", body),
            DigestCheck::Malformed
        );
        assert_eq!(check_content_digest(b"((", body), DigestCheck::Malformed);
        // The fast path and sfv agree on near misses.
        let good = content_digest(body);
        let bad_b64 = good.replacen(":X", ":*", 1);
        assert_eq!(
            check_content_digest(bad_b64.as_bytes(), body),
            DigestCheck::Malformed
        );
        let with_param = format!("{good};a=1");
        assert_eq!(
            check_content_digest(with_param.as_bytes(), body),
            DigestCheck::Match
        );
    }
}
