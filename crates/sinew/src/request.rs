//! Building one call.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Uri};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use sinew_core::{Body, Deadline, Priority};

use crate::client::Client;
use crate::{Error, ErrorKind, Response};

/// Characters left as they are in a path segment: RFC 3986 unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode a path parameter so it stays one path segment.
///
/// ```
/// assert_eq!(sinew::encode_path_param("a b/c?d"), "a%20b%2Fc%3Fd");
/// ```
pub fn encode_path_param(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// A call being built: `client.get("/users/{id}").param("id", 7).send()`.
#[must_use = "a request does nothing until it is sent"]
#[derive(Debug)]
pub struct RequestBuilder {
    /// `None` only when `error` says why there is no client.
    client: Option<Client>,
    method: Method,
    template: String,
    /// The path parameters, percent-encoded, in one buffer (see [`Params`]).
    params: Params,
    query: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Bytes>,
    content_type: Option<HeaderValue>,
    deadline: Option<Deadline>,
    priority: Option<Priority>,
    idempotent: bool,
    extensions: http::Extensions,
    error: Option<Error>,
}

impl RequestBuilder {
    pub(crate) fn new(client: Client, method: Method, path: &str) -> Self {
        Self::with(Some(client), method, path)
    }

    /// A call that fails with `error` when sent (its client could not be
    /// made).
    #[cfg_attr(not(feature = "balance"), allow(dead_code))]
    pub(crate) fn failed(error: Error, method: Method, path: &str) -> Self {
        let mut b = Self::with(None, method, path);
        b.error = Some(error);
        b
    }

    fn with(client: Option<Client>, method: Method, path: &str) -> Self {
        RequestBuilder {
            client,
            method,
            template: path.to_string(),
            params: Params::default(),
            query: String::new(),
            headers: Vec::new(),
            body: None,
            content_type: None,
            deadline: None,
            priority: None,
            idempotent: false,
            extensions: http::Extensions::new(),
            error: None,
        }
    }

    fn fail(mut self, message: impl Into<String>) -> Self {
        if self.error.is_none() {
            self.error = Some(Error::new(ErrorKind::InvalidRequest, message));
        }
        self
    }

    /// Fill the `{name}` placeholder of the path; the value is
    /// percent-encoded so it stays one segment.
    pub fn param(mut self, name: &str, value: impl ToString) -> Self {
        self.params.push(name, &value.to_string());
        self
    }

    /// Add one query parameter.
    pub fn query_param(mut self, name: &str, value: impl ToString) -> Self {
        if !self.query.is_empty() {
            self.query.push('&');
        }
        let value = value.to_string();
        let _ = write!(
            self.query,
            "{}={}",
            percent_encoding::utf8_percent_encode(name, SEGMENT),
            percent_encoding::utf8_percent_encode(&value, SEGMENT)
        );
        self
    }

    /// Add query parameters from anything serde can write as a form
    /// (a struct, a map, a slice of pairs).
    pub fn query<T: Serialize + ?Sized>(mut self, query: &T) -> Self {
        match serde_urlencoded::to_string(query) {
            Ok(q) if q.is_empty() => self,
            Ok(q) => {
                if !self.query.is_empty() {
                    self.query.push('&');
                }
                self.query.push_str(&q);
                self
            }
            Err(e) => self.fail(format!("cannot encode the query: {e}")),
        }
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                self.headers.push((n, v));
                self
            }
            (Err(_), _) => self.fail(format!("invalid header name {name:?}")),
            (_, Err(_)) => self.fail(format!("invalid value for header {name}")),
        }
    }

    /// A JSON body (`Content-Type: application/json`).
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(v) => {
                self.body = Some(Bytes::from(v));
                self.content_type = Some(HeaderValue::from_static("application/json"));
                self
            }
            Err(e) => self.fail(format!("cannot encode the JSON body: {e}")),
        }
    }

    /// A raw body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// This call must finish within `timeout` (the stack also honours the
    /// client's timeout and any inherited deadline: the earliest wins).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.deadline = Some(Deadline::after(timeout));
        self
    }

    /// This call must finish by `deadline`.
    pub fn deadline(mut self, deadline: tokio::time::Instant) -> Self {
        self.deadline = Some(Deadline(deadline));
        self
    }

    /// The call's priority (sent as `X-Request-Priority`).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Mark the call safe to retry and hedge even if its method is not
    /// idempotent (e.g. a POST the server deduplicates): inserts
    /// `sinew_retry::Retryable`, the marker the retry and hedge layers read.
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Add a typed request extension for the layers below.
    pub fn extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(value);
        self
    }

    /// Build the `http::Request` without sending it.
    pub fn build(self) -> Result<(Client, Request<Body>), Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let client = self
            .client
            .ok_or_else(|| Error::new(ErrorKind::InvalidRequest, "the call has no client"))?;
        // The path is filled straight into the URL's one buffer.
        let (template, params) = (&self.template, &self.params);
        let uri = join_with(
            client.base(),
            client.base_valid(),
            template.len() + 16,
            |out| fill_template_into(out, template, params),
            &self.query,
        )?;
        let mut req = Request::new(self.body.map(Body::full).unwrap_or_default());
        // Room for the headers the layers add to every attempt (deadline,
        // priority, traceparent, signature, host), reserved once.
        *req.headers_mut() = http::HeaderMap::with_capacity(12 + self.headers.len());
        *req.method_mut() = self.method;
        *req.uri_mut() = uri;
        if let Some(ct) = self.content_type {
            req.headers_mut().insert(CONTENT_TYPE, ct);
        }
        for (name, value) in self.headers {
            req.headers_mut().append(name, value);
        }
        *req.extensions_mut() = self.extensions;
        if let Some(d) = self.deadline {
            req.extensions_mut().insert(d);
        }
        if let Some(p) = self.priority {
            req.extensions_mut().insert(p);
        }
        #[cfg(feature = "retry")]
        if self.idempotent {
            // The one marker: sinew-retry's, read by retries and hedging.
            req.extensions_mut().insert(sinew_retry::Retryable);
        }
        Ok((client, req))
    }

    /// Send the call. A 2xx or 3xx response is `Ok`; any other status is an
    /// [`Error`] whose kind follows the status (see [`ErrorKind`]), with the
    /// body's JSON `message` when present.
    pub async fn send(self) -> Result<Response, Error> {
        let (client, req) = self.build()?;
        client.execute(req).await
    }

    /// Send and decode a JSON response.
    pub async fn send_json<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        self.send().await?.json().await
    }
}

/// Path parameters, each stored once as `<name length>:<name><encoded
/// value>\0` in one string: one allocation for all of them (a value is
/// percent-encoded, so it holds no `\0`; the length prefix keeps any name
/// unambiguous).
#[derive(Debug, Default)]
struct Params(String);

impl Params {
    fn push(&mut self, name: &str, value: &str) {
        if self.0.is_empty() {
            // Room for a few parameters at once, instead of growing.
            self.0.reserve(64 + name.len() + value.len());
        }
        let _ = write!(
            self.0,
            "{}:{name}{}\0",
            name.len(),
            utf8_percent_encode(value, SEGMENT)
        );
    }

    /// The encoded value of `name` (the last one given wins).
    fn get(&self, name: &str) -> Option<&str> {
        let mut found = None;
        let mut rest = self.0.as_str();
        while let Some((len, tail)) = rest.split_once(':') {
            let len: usize = len.parse().ok()?;
            let entry_name = tail.get(..len)?;
            let (value, next) = tail.get(len..)?.split_once('\0')?;
            if entry_name == name {
                found = Some(value);
            }
            rest = next;
        }
        found
    }
}

/// Replace `{name}` placeholders with percent-encoded values.
#[cfg(test)]
fn fill_template(template: &str, params: &Params) -> Result<String, Error> {
    let mut out = String::with_capacity(template.len() + 16);
    fill_template_into(&mut out, template, params)?;
    Ok(out)
}

/// Write `template` to `out` with its `{name}` placeholders filled.
fn fill_template_into(out: &mut String, template: &str, params: &Params) -> Result<(), Error> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidRequest,
                format!("unclosed '{{' in path {template:?}"),
            )
        })?;
        let name = &after[..close];
        let value = params.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidRequest,
                format!("no value for path parameter {{{name}}}"),
            )
        })?;
        out.push_str(value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// Why a URI cannot be called: not http(s), no host, a port out of range.
pub(crate) fn check_target(uri: &Uri) -> Result<(), String> {
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(other) => {
            return Err(format!(
                "the scheme {other}:// is not supported (sinew speaks http:// and https://)"
            ))
        }
        None => return Err("not an absolute URL (write http://host:port/path)".into()),
    }
    let Some(authority) = uri.authority() else {
        return Err("no host".into());
    };
    if authority.host().is_empty() {
        return Err("no host".into());
    }
    // `Authority::port` is `None` for a port that is not a u16: read the
    // text after the host.
    let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
    if let Some(port) = host_port
        .strip_prefix(authority.host())
        .and_then(|tail| tail.strip_prefix(':'))
    {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("the port {port} is not in 1..=65535"));
        }
    }
    Ok(())
}

/// Join a base URI and a path (and query).
#[cfg(any(test, feature = "proxy"))]
pub(crate) fn join(
    base: Option<&Uri>,
    base_valid: bool,
    path: &str,
    query: &str,
) -> Result<Uri, Error> {
    join_with(
        base,
        base_valid,
        path.len(),
        |out| {
            out.push_str(path);
            Ok(())
        },
        query,
    )
}

/// Join a base URI, the path `write_path` writes (about `path_len` bytes)
/// and a query, in one buffer the URI then keeps. `base_valid`: the base
/// passed [`check_target`], so a URL below it (same scheme and authority,
/// the path starting with `/`) needs no check of its own.
fn join_with(
    base: Option<&Uri>,
    base_valid: bool,
    path_len: usize,
    write_path: impl FnOnce(&mut String) -> Result<(), Error>,
    query: &str,
) -> Result<Uri, Error> {
    let invalid = |e: &dyn std::fmt::Display| {
        Error::new(ErrorKind::InvalidRequest, format!("invalid URL: {e}"))
    };
    let (scheme, authority, prefix) = match base {
        Some(b) => (
            b.scheme_str().unwrap_or("http"),
            b.authority().map(|a| a.as_str()).unwrap_or_default(),
            b.path().trim_end_matches('/'),
        ),
        None => ("", "", ""),
    };
    let extra = if query.is_empty() { 0 } else { query.len() + 1 };
    let mut full = String::with_capacity(
        scheme.len() + 3 + authority.len() + prefix.len() + 1 + path_len + 16 + extra,
    );
    if base.is_some() {
        full.push_str(scheme);
        full.push_str("://");
        full.push_str(authority);
        full.push_str(prefix);
    }
    let start = full.len();
    write_path(&mut full)?;
    let path = &full[start..];
    // A path that starts with `/` is below the base; anything else may be
    // an absolute URL of its own.
    let absolute = !path.starts_with('/') && path.contains("://");
    if absolute {
        // An absolute URL: the base is not used.
        full.drain(..start);
    } else if base.is_none() {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!("{path:?} is not an absolute URL and the client has no base URL"),
        ));
    } else if !path.starts_with('/') {
        full.insert(start, '/');
    }
    if !query.is_empty() {
        full.push(if full.contains('?') { '&' } else { '?' });
        full.push_str(query);
    }
    // The URI keeps the bytes of `full` (no copy).
    let full = Bytes::from(full);
    let uri = Uri::from_maybe_shared(full.clone()).map_err(|e| invalid(&e))?;
    if absolute || !base_valid {
        check_target(&uri).map_err(|m| {
            Error::new(
                ErrorKind::InvalidRequest,
                format!("invalid URL {:?}: {m}", String::from_utf8_lossy(&full)),
            )
        })?;
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_encode_params() {
        let mut p = Params::default();
        p.push("id", "a b/c");
        assert_eq!(
            fill_template("/users/{id}/x", &p).unwrap(),
            "/users/a%20b%2Fc/x"
        );
        assert_eq!(
            fill_template("/users/{nope}", &p).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
        assert!(fill_template("/users/{id", &p).is_err());
        assert_eq!(
            fill_template("/plain", &Params::default()).unwrap(),
            "/plain"
        );
        // The last value given wins; names may hold any character.
        p.push("id", "2");
        p.push("a:1\0", "x");
        assert_eq!(fill_template("/u/{id}", &p).unwrap(), "/u/2");
        assert_eq!(fill_template("/u/{a:1\0}", &p).unwrap(), "/u/x");
    }

    #[test]
    fn join_base_and_path() {
        let base: Uri = "http://inventory:8080/api/".parse().unwrap();
        assert_eq!(
            join(Some(&base), true, "/items/1", "q=2").unwrap(),
            "http://inventory:8080/api/items/1?q=2"
        );
        assert_eq!(
            join(Some(&base), true, "http://other/x", "").unwrap(),
            "http://other/x"
        );
        assert!(join(None, false, "/x", "").is_err());
        let e = join(None, false, "http://127.0.0.1:99999/x", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("port 99999"), "{e}");
        let e = join(None, false, "ftp://host/x", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ftp:// is not supported"), "{e}");
        let e = join(None, false, "http://127.0.0.1:0/x", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("port 0"), "{e}");
        // Below a checked base, an absolute URL is still checked; below a
        // base that failed the checks (Client::from_stack takes any), every
        // URL is.
        let e = join(Some(&base), true, "http://127.0.0.1:0/x", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("port 0"), "{e}");
        let ftp: Uri = "ftp://files/".parse().unwrap();
        let e = join(Some(&ftp), false, "/x", "").unwrap_err().to_string();
        assert!(e.contains("ftp:// is not supported"), "{e}");
    }
}
