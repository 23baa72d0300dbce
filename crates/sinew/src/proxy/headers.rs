//! What a proxy does to headers: hop-by-hop fields removed (RFC 9110
//! §7.6.1), `Forwarded` (RFC 7239), `X-Forwarded-For` and `Via` appended.

use std::net::{IpAddr, SocketAddr};

use http::header::{CONNECTION, FORWARDED, HOST, TE, TRANSFER_ENCODING, UPGRADE, VIA};
use http::{HeaderMap, HeaderName, HeaderValue, Version};

/// `X-Sinew-Caller`: the key id of the verified caller, as the inbound
/// side tells the application. Never taken from outside: the inbound side
/// removes any the caller sent.
pub const X_SINEW_CALLER: HeaderName = HeaderName::from_static("x-sinew-caller");

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The most `Connection` options honoured; a field naming more is a
/// hostile one, and the rest of its names are ignored (their fields stay).
const MAX_CONNECTION_OPTIONS: usize = 64;

/// Remove the hop-by-hop fields: `Connection` and every field it names,
/// `Proxy-Connection`, `Keep-Alive`, `TE` (but `te: trailers`, which gRPC
/// over HTTP/2 needs, when `keep_te_trailers`), `Transfer-Encoding` and
/// `Upgrade`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_te_trailers: bool) {
    if headers.contains_key(CONNECTION) {
        let mut named: Vec<HeaderName> = Vec::new();
        'values: for value in headers.get_all(CONNECTION) {
            let Ok(text) = value.to_str() else { continue };
            for token in text.split(',') {
                if named.len() >= MAX_CONNECTION_OPTIONS {
                    break 'values;
                }
                if let Ok(name) = HeaderName::from_bytes(token.trim().as_bytes()) {
                    named.push(name);
                }
            }
        }
        for name in named {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    let trailers = keep_te_trailers
        && headers.get_all(TE).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
        });
    for name in [PROXY_CONNECTION, KEEP_ALIVE, TE, TRANSFER_ENCODING, UPGRADE] {
        headers.remove(name);
    }
    if trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
}

/// The end of the connection a request came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The peer (the caller, or the local application on the outbound side).
    pub peer: SocketAddr,
    /// This proxy's listening address.
    pub local: SocketAddr,
}

/// Append this hop to `Forwarded`, `X-Forwarded-For` and `Via`. `host` is
/// the request's `Host` (or `:authority`) as received.
pub(crate) fn append_forwarded(
    headers: &mut HeaderMap,
    client: &ClientAddr,
    version: Version,
    host: Option<&str>,
) {
    let peer = client.peer.ip();
    // Forwarded: for=...;host=...;proto=http
    let mut fwd = format!("for={}", node(peer));
    if let Some(h) = host.filter(|h| is_host_value(h)) {
        fwd.push_str(";host=");
        quoted(&mut fwd, h);
    }
    fwd.push_str(";proto=http");
    append(headers, FORWARDED, &fwd);
    append(headers, X_FORWARDED_FOR, &peer.to_string());
    let via = match version {
        Version::HTTP_2 => "2 sinew",
        Version::HTTP_10 => "1.0 sinew",
        _ => "1.1 sinew",
    };
    append(headers, VIA, via);
}

/// Append `Via` on a response passed back (RFC 9110 §7.6.3).
pub(crate) fn append_via(headers: &mut HeaderMap, version: Version) {
    let via = match version {
        Version::HTTP_2 => "2 sinew",
        Version::HTTP_10 => "1.0 sinew",
        _ => "1.1 sinew",
    };
    append(headers, VIA, via);
}

/// The request's host as received: `Host`, else the URI's authority
/// (HTTP/2's `:authority`, or an absolute-form target).
pub(crate) fn request_host<'a>(headers: &'a HeaderMap, uri: &'a http::Uri) -> Option<&'a str> {
    headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
}

/// Join `value` to the field's existing values into one line (`a, b`), so
/// a list split over several lines stays one list.
fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let joined = {
        let mut existing = headers
            .get_all(&name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .peekable();
        if existing.peek().is_none() {
            None
        } else {
            let mut s = String::new();
            for v in existing {
                if !v.trim().is_empty() {
                    s.push_str(v.trim());
                    s.push_str(", ");
                }
            }
            s.push_str(value);
            Some(s)
        }
    };
    let line = joined.as_deref().unwrap_or(value);
    match HeaderValue::from_str(line) {
        Ok(v) => {
            headers.insert(name, v);
        }
        // An existing value was not visible ASCII: replace it with ours.
        Err(_) => {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        }
    }
}

/// A node of `Forwarded` (RFC 7239 §6): an IPv4 address as it is, an IPv6
/// one bracketed and quoted.
fn node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("\"[{v6}]\""),
        },
    }
}

fn is_host_value(h: &str) -> bool {
    !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_graphic())
}

fn quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_fields_go() {
        let mut h = map(&[
            ("connection", "close, X-Hop"),
            ("connection", "x-other"),
            ("x-hop", "1"),
            ("x-other", "2"),
            ("x-end", "3"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "trailers, deflate"),
            ("content-length", "4"),
        ]);
        strip_hop_by_hop(&mut h, true);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["content-length", "te", "x-end"]);
        assert_eq!(h["te"], "trailers");
        let mut h = map(&[("te", "trailers")]);
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty());
        let mut h = map(&[("te", "gzip")]);
        strip_hop_by_hop(&mut h, true);
        assert!(h.is_empty());
    }

    #[test]
    fn a_hostile_connection_field_is_bounded() {
        let names: Vec<String> = (0..1000).map(|i| format!("x-{i}")).collect();
        let mut h = map(&[("connection", &names.join(","))]);
        for n in &names {
            h.insert(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1000 - MAX_CONNECTION_OPTIONS);
        assert!(!h.contains_key("x-0") && h.contains_key("x-999"));
    }

    #[test]
    fn forwarded_is_appended() {
        let client = ClientAddr {
            peer: "10.1.2.3:5555".parse().unwrap(),
            local: "127.0.0.1:4143".parse().unwrap(),
        };
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("forwarded", "for=1.1.1.1"),
        ]);
        append_forwarded(&mut h, &client, Version::HTTP_11, Some("inventory:80"));
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.1.2.3");
        assert_eq!(
            h["forwarded"],
            "for=1.1.1.1, for=10.1.2.3;host=\"inventory:80\";proto=http"
        );
        assert_eq!(h["via"], "1.1 sinew");
        let client6 = ClientAddr {
            peer: "[::1]:1".parse().unwrap(),
            ..client
        };
        let mut h = HeaderMap::new();
        append_forwarded(&mut h, &client6, Version::HTTP_2, None);
        assert_eq!(h["forwarded"], "for=\"[::1]\";proto=http");
        assert_eq!(h["via"], "2 sinew");
        append_via(&mut h, Version::HTTP_11);
        assert_eq!(h["via"], "2 sinew, 1.1 sinew");
    }
}
