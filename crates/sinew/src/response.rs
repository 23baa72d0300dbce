//! Responses with convenient body readers.

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Version};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::stack::ResBody;
use crate::{Error, ErrorKind};

/// A response from a sinew call. The body is read on demand.
#[derive(Debug)]
pub struct Response {
    head: http::response::Parts,
    body: ResBody,
}

impl Response {
    pub(crate) fn new(head: http::response::Parts, body: ResBody) -> Self {
        Response { head, body }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.head.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.head.version
    }

    /// The response extensions (layers put markers there, e.g. a retry
    /// budget that ran out).
    pub fn extensions(&self) -> &http::Extensions {
        &self.head.extensions
    }

    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes, Error> {
        collect_bytes(self.body)
            .await
            .map_err(|e| Error::with_source(ErrorKind::Decode, e))
    }

    /// The body as UTF-8 text (invalid sequences replaced).
    pub async fn text(self) -> Result<String, Error> {
        let bytes = self.bytes().await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The body decoded from JSON.
    pub async fn json<T: DeserializeOwned>(self) -> Result<T, Error> {
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::with_source(ErrorKind::Decode, e))
    }

    /// The head and the raw body.
    pub fn into_parts(self) -> (http::response::Parts, ResBody) {
        (self.head, self.body)
    }
}

/// The data of a body, joined. A body of one chunk (the usual case: the
/// stack reads bodies within the attempt) is returned as that chunk, without
/// a list or a copy; trailers are skipped.
pub(crate) async fn collect_bytes(mut body: ResBody) -> Result<Bytes, sinew_core::BoxError> {
    use bytes::BufMut as _;
    let mut first: Option<Bytes> = None;
    let mut joined: Option<bytes::BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        match (&mut joined, first.take()) {
            (Some(buf), _) => buf.put(data),
            (None, None) => first = Some(data),
            (None, Some(earlier)) => {
                let mut buf = bytes::BytesMut::with_capacity(earlier.len() + data.len());
                buf.put(earlier);
                buf.put(data);
                joined = Some(buf);
            }
        }
    }
    Ok(match joined {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}
