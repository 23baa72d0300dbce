//! Label values: bounded, allocation-light.

use std::borrow::Cow;

use http::{header, Method, Request, StatusCode};
use metrics::SharedString;

/// A route or path template attached to a request as an extension, e.g.
/// `/users/{id}`.
///
/// The server layer prefers it over axum's `MatchedPath`; the client layer
/// uses it for aio-request's `request_path` label (and the span's
/// `url.template`) instead of the raw path, which keeps the series count
/// bounded. Declarative clients set it for every call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathTemplate(pub Cow<'static, str>);

impl PathTemplate {
    /// A template known at compile time.
    pub const fn from_static(template: &'static str) -> Self {
        PathTemplate(Cow::Borrowed(template))
    }

    /// The template.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The OpenTelemetry method label: the well-known methods as they are,
/// anything else `_OTHER` (so a peer cannot create series at will).
pub(crate) fn method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The status code as a label value, without allocating for common codes.
pub(crate) fn status(status: StatusCode) -> SharedString {
    let s: &'static str = match status.as_u16() {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        206 => "206",
        301 => "301",
        302 => "302",
        303 => "303",
        304 => "304",
        307 => "307",
        308 => "308",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        409 => "409",
        410 => "410",
        412 => "412",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        501 => "501",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => return SharedString::from(status.as_str().to_owned()),
    };
    SharedString::const_str(s)
}

/// The peer of a client request: host, port and scheme, from the URI, else
/// from the `Host` header (borrowed from the request).
pub(crate) struct Peer<'a> {
    pub(crate) address: &'a str,
    pub(crate) port: u16,
    pub(crate) scheme: &'static str,
}

impl<'a> Peer<'a> {
    pub(crate) fn of<B>(req: &'a Request<B>) -> Peer<'a> {
        let uri = req.uri();
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => "https",
            _ => "http",
        };
        let default_port = if scheme == "https" { 443 } else { 80 };
        if let Some(authority) = uri.authority() {
            let (host, port) = host_port(authority.as_str());
            return Peer {
                address: host,
                port: port.unwrap_or(default_port),
                scheme,
            };
        }
        let from_header = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| authority(v).map(|host| (v, host)));
        match from_header {
            Some((value, (host, port))) => Peer {
                address: &value[host],
                port: port.unwrap_or(default_port),
                scheme,
            },
            None => Peer {
                address: "unknown",
                port: default_port,
                scheme,
            },
        }
    }

    /// `scheme://host:port`, aio-request's `request_endpoint`.
    pub(crate) fn endpoint(&self) -> String {
        // IPv6 hosts keep their brackets (`[::1]`), as `http` gives them.
        format!("{}://{}:{}", self.scheme, self.address, self.port)
    }
}

/// The host and port of a parsed authority, as `Authority::host()` and
/// `port_u16()` give them, in one cheap pass (those search the string
/// several times).
fn host_port(authority: &str) -> (&str, Option<u16>) {
    let bytes = authority.as_bytes();
    let port = bytes
        .iter()
        .rposition(|b| *b == b':')
        .and_then(|i| authority[i + 1..].parse::<u16>().ok());
    let start = bytes.iter().rposition(|b| *b == b'@').map_or(0, |i| i + 1);
    let host_port = &authority[start..];
    let end = if host_port.starts_with('[') {
        host_port.find(']').map_or(host_port.len(), |i| i + 1)
    } else {
        host_port.find(':').unwrap_or(host_port.len())
    };
    (&host_port[..end], port)
}

/// Where the host is in a `Host` header value, and its port: the value must
/// parse as an [`Authority`](http::uri::Authority) (whose `host()` is a
/// prefix of the value, after any userinfo).
fn authority(value: &str) -> Option<(std::ops::Range<usize>, Option<u16>)> {
    let authority = value.parse::<http::uri::Authority>().ok()?;
    let host = authority.host();
    let start = value.rfind('@').map_or(0, |at| at + 1);
    value[start..]
        .starts_with(host)
        .then(|| (start..start + host.len(), authority.port_u16()))
}

/// The port as a label value.
pub(crate) fn port(port: u16) -> SharedString {
    match port {
        80 => SharedString::const_str("80"),
        443 => SharedString::const_str("443"),
        8080 => SharedString::const_str("8080"),
        p => SharedString::from(p.to_string()),
    }
}

/// The longest client name kept by [`client_name`].
pub(crate) const CLIENT_NAME_MAX: usize = 64;

/// A client name from a header, as aio-request's `request_client` label:
/// lower-cased (into `buf`); anything that is not a short token of
/// `[a-z0-9._-]` is `other`, so a peer cannot create series at will.
pub(crate) fn client_name<'a>(
    value: Option<&http::HeaderValue>,
    buf: &'a mut [u8; CLIENT_NAME_MAX],
) -> &'a str {
    let Some(value) = value else {
        return "unknown";
    };
    let bytes = value.as_bytes().trim_ascii();
    let ok = !bytes.is_empty()
        && bytes.len() <= CLIENT_NAME_MAX
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return "other";
    }
    let out = &mut buf[..bytes.len()];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_from_uri_and_host() {
        let req = Request::get("http://example.com/a").body(()).unwrap();
        let p = Peer::of(&req);
        assert_eq!((p.address, p.port, p.scheme), ("example.com", 80, "http"));
        let req = Request::get("https://[::1]:8443/a").body(()).unwrap();
        let p = Peer::of(&req);
        assert_eq!((p.address, p.port), ("[::1]", 8443));
        let req = Request::get("/a")
            .header("host", "svc:81")
            .body(())
            .unwrap();
        let p = Peer::of(&req);
        assert_eq!((p.address, p.port), ("svc", 81));
        assert_eq!(p.endpoint(), "http://svc:81");
        let req = Request::get("/a")
            .header("host", "bad host")
            .body(())
            .unwrap();
        assert_eq!(Peer::of(&req).address, "unknown");
    }

    #[test]
    fn host_and_port_as_http_gives_them() {
        for a in [
            "example.com",
            "example.com:8080",
            "user:pw@example.com:81",
            "u@h",
            "[::1]",
            "[::1]:8443",
            "u:p@[fe80::1%25eth0]:1",
            "h:",
            "h:99999",
            "127.0.0.1:0",
        ] {
            let parsed: http::uri::Authority = a.parse().unwrap();
            assert_eq!(host_port(a), (parsed.host(), parsed.port_u16()), "{a}");
        }
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method(&Method::from_bytes(b"BREW").unwrap()), "_OTHER");
        assert_eq!(&*status(StatusCode::IM_A_TEAPOT), "418");
        assert_eq!(&*status(StatusCode::OK), "200");
        let mut buf = [0; CLIENT_NAME_MAX];
        let v = http::HeaderValue::from_static("Orders-Service");
        assert_eq!(client_name(Some(&v), &mut buf), "orders-service");
        let v = http::HeaderValue::from_static("a b");
        assert_eq!(client_name(Some(&v), &mut buf), "other");
        assert_eq!(client_name(None, &mut buf), "unknown");
        let long = http::HeaderValue::from_str(&"a".repeat(CLIENT_NAME_MAX)).unwrap();
        assert_eq!(client_name(Some(&long), &mut buf).len(), CLIENT_NAME_MAX);
        let longer = http::HeaderValue::from_str(&"a".repeat(CLIENT_NAME_MAX + 1)).unwrap();
        assert_eq!(client_name(Some(&longer), &mut buf), "other");
        assert_eq!(&*port(9000), "9000");
    }
}
