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
        self.body
            .collect()
            .await
            .map(|c| c.to_bytes())
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
