//! RFC 9457 `application/problem+json` refusals for server layers.
//!
//! A refusal says *what* was wrong (which check, which header), never which
//! secret or which byte.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem document (RFC 9457) to answer a refused request with.
///
/// ```
/// use http::StatusCode;
/// use sinew_core::problem::Problem;
/// let res: http::Response<bytes::Bytes> = Problem::new(StatusCode::BAD_REQUEST, "invalid deadline")
///     .detail("x-request-timeout must be a non-negative number of seconds")
///     .into_response();
/// assert_eq!(res.status(), StatusCode::BAD_REQUEST);
/// assert_eq!(res.headers()["content-type"], "application/problem+json");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    status: StatusCode,
    title: String,
    detail: Option<String>,
    kind: Option<String>,
    extra: Vec<(String, serde_json::Value)>,
}

impl Problem {
    /// A problem with `status` and a short, human-readable `title`.
    pub fn new(status: StatusCode, title: impl Into<String>) -> Self {
        Self {
            status,
            title: title.into(),
            detail: None,
            kind: None,
            extra: Vec::new(),
        }
    }

    /// An explanation specific to this occurrence.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The problem type URI (`type` member); `about:blank` when not set.
    pub fn type_uri(mut self, uri: impl Into<String>) -> Self {
        self.kind = Some(uri.into());
        self
    }

    /// An extension member, e.g. `("reason", "replayed")`.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// The status this problem is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The problem document as JSON bytes.
    pub fn to_json(&self) -> Bytes {
        let mut map = serde_json::Map::new();
        map.insert(
            "type".into(),
            self.kind
                .clone()
                .unwrap_or_else(|| "about:blank".into())
                .into(),
        );
        map.insert("title".into(), self.title.clone().into());
        map.insert("status".into(), self.status.as_u16().into());
        if let Some(d) = &self.detail {
            map.insert("detail".into(), d.clone().into());
        }
        for (k, v) in &self.extra {
            map.insert(k.clone(), v.clone());
        }
        Bytes::from(serde_json::Value::Object(map).to_string())
    }

    /// The response: status, `Content-Type: application/problem+json`, body.
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let body = self.to_json();
        let mut res = Response::new(B::from(body));
        *res.status_mut() = self.status;
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}
