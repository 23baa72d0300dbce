//! Raw HTTP/1.1 requests on stdin and stdout.
//!
//! The CLI reads a request as it would cross the wire (request line with an
//! origin-form target, header lines, CRLF or LF line ends, a blank line, the
//! body) and writes it back the same way, with any headers it added at the
//! end of the header block.

use std::fmt;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Uri, Version};

/// A raw request: what was read, kept as written, plus the parsed parts.
#[derive(Debug, Clone)]
pub(crate) struct RawRequest {
    /// The parsed request (headers in the order read).
    pub(crate) parts: Parts,
    /// The body bytes (everything after the blank line).
    pub(crate) body: Bytes,
    /// Header names as written, in order, with their values.
    written: Vec<(String, Vec<u8>)>,
    /// The request line as written (without its line end).
    request_line: String,
    /// `\r\n` or `\n`, whichever the input used.
    line_end: &'static str,
}

/// Why the input is not a request we can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read the request: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

const MAX_HEADERS: usize = 256;

impl RawRequest {
    /// Parse a whole request.
    pub(crate) fn parse(input: &[u8]) -> Result<RawRequest, ParseError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let status = req.parse(input).map_err(|e| ParseError(format!("{e}")))?;
        let head_len = match status {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => {
                // Allow a request without the final blank line when there is
                // no body: add it and try once more.
                if input.ends_with(b"\n") {
                    let mut padded = input.to_vec();
                    let end: &[u8] = if input.ends_with(b"\r\n") {
                        b"\r\n"
                    } else {
                        b"\n"
                    };
                    padded.extend_from_slice(end);
                    return RawRequest::parse(&padded).map(|mut r| {
                        r.body = Bytes::new();
                        r
                    });
                }
                return Err(ParseError(
                    "the header block does not end with a blank line".into(),
                ));
            }
        };
        let method_str = req.method.ok_or_else(|| ParseError("no method".into()))?;
        let target = req
            .path
            .ok_or_else(|| ParseError("no request target".into()))?;
        if !target.starts_with('/') && target != "*" {
            return Err(ParseError(format!(
                "the request target must be in origin form (start with '/'), got {target:?}"
            )));
        }
        let method = Method::from_bytes(method_str.as_bytes())
            .map_err(|_| ParseError(format!("invalid method {method_str:?}")))?;
        let uri: Uri = target
            .parse()
            .map_err(|e| ParseError(format!("invalid request target {target:?}: {e}")))?;
        let version = match req.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let mut builder = Request::builder().method(method).uri(uri).version(version);
        let mut written = Vec::with_capacity(req.headers.len());
        for h in req.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| ParseError(format!("invalid header name {:?}", h.name)))?;
            let value = HeaderValue::from_bytes(h.value)
                .map_err(|_| ParseError(format!("invalid value for header {}", h.name)))?;
            builder = builder.header(name, value);
            written.push((h.name.to_string(), h.value.to_vec()));
        }
        let (parts, ()) = builder
            .body(())
            .map_err(|e| ParseError(e.to_string()))?
            .into_parts();
        let first_line_end = input
            .iter()
            .position(|b| *b == b'\n')
            .unwrap_or(input.len());
        let line_end = if first_line_end > 0 && input.get(first_line_end - 1) == Some(&b'\r') {
            "\r\n"
        } else {
            "\n"
        };
        let request_line = String::from_utf8_lossy(&input[..first_line_end])
            .trim_end_matches('\r')
            .to_string();
        Ok(RawRequest {
            parts,
            body: Bytes::copy_from_slice(&input[head_len..]),
            written,
            request_line,
            line_end,
        })
    }

    /// Write the request back: the original lines as written, then every
    /// header of `parts` that was not in the input, then the body.
    pub(crate) fn render(&self, parts: &Parts) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 512);
        out.extend_from_slice(self.request_line.as_bytes());
        out.extend_from_slice(self.line_end.as_bytes());
        for (name, value) in &self.written {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(self.line_end.as_bytes());
        }
        for (name, value) in parts.headers.iter() {
            let seen = self.parts.headers.get_all(name).iter().any(|v| v == value);
            if !seen {
                out.extend_from_slice(name.as_str().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(self.line_end.as_bytes());
            }
        }
        out.extend_from_slice(self.line_end.as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B2: &str = "POST /foo?param=Value&Pet=dog HTTP/1.1\r\nHost: example.com\r\nDate: Tue, 20 Apr 2021 02:07:55 GMT\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n{\"hello\": \"world\"}";

    #[test]
    fn parses_crlf() {
        let r = RawRequest::parse(B2.as_bytes()).unwrap();
        assert_eq!(r.parts.method, Method::POST);
        assert_eq!(r.parts.uri, "/foo?param=Value&Pet=dog");
        assert_eq!(r.parts.headers["host"], "example.com");
        assert_eq!(&r.body[..], b"{\"hello\": \"world\"}");
        assert_eq!(r.render(&r.parts), B2.as_bytes());
    }

    #[test]
    fn parses_lf_and_adds_headers_at_the_end() {
        let lf = B2.replace("\r\n", "\n");
        let r = RawRequest::parse(lf.as_bytes()).unwrap();
        let mut parts = r.parts.clone();
        parts
            .headers
            .insert("signature", HeaderValue::from_static("sig1=:AA==:"));
        let out = String::from_utf8(r.render(&parts)).unwrap();
        assert!(
            out.contains("Content-Length: 18\nsignature: sig1=:AA==:\n\n{\"hello\""),
            "{out}"
        );
    }

    #[test]
    fn no_body_no_blank_line() {
        let r = RawRequest::parse(b"GET /x HTTP/1.1\nHost: a\n").unwrap();
        assert!(r.body.is_empty());
        assert_eq!(r.parts.uri, "/x");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            &b""[..],
            b"GET",
            b"GET http://a/x HTTP/1.1\n\n",
            b"G@T /x HTTP/1.1\n\n",
            b"GET /x HTTP/1.1\nBad Header\n\n",
        ] {
            assert!(
                RawRequest::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
