//! Bodies that can be sent more than once, and the response body of server
//! layers.
//!
//! Retrying, hedging and content digests need a request body more than once.
//! The client path buffers request bodies up to a configured cap into a
//! [`Body`] and replays the buffer. A larger body is never truncated: it
//! becomes a one-shot stream that carries the bytes already read followed by
//! the rest, it is sent once, and [`TryCloneBody::try_clone_body`] says so by
//! returning `None`.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::BodyExt;
//! use sinew_core::body::{Body, TryCloneBody};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let small = Body::buffer(String::from("hello"), 1024).await.unwrap();
//! assert_eq!(small.bytes().map(|b| &b[..]), Some(&b"hello"[..]));
//! let again = small.try_clone_body().expect("buffered bodies replay");
//! assert_eq!(again.collect().await.unwrap().to_bytes(), Bytes::from("hello"));
//!
//! let big = Body::buffer(String::from("0123456789"), 4).await.unwrap();
//! assert!(big.try_clone_body().is_none(), "over the cap: sent once");
//! assert_eq!(big.collect().await.unwrap().to_bytes(), Bytes::from("0123456789"));
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;

use crate::error::BoxError;

type BoxBody = Pin<Box<dyn http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static>>;

/// A request body that is either held in memory (and can be replayed) or a
/// one-shot stream.
pub struct Body {
    kind: Kind,
}

enum Kind {
    Full {
        data: Bytes,
        // Boxed: trailers are rare, and a request's body moves through
        // every layer by value (an inline map would triple its size).
        trailers: Option<Box<HeaderMap>>,
        data_sent: bool,
        done: bool,
    },
    Stream {
        prefix: VecDeque<Frame<Bytes>>,
        rest: Option<BoxBody>,
    },
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full { data, .. } => f.debug_struct("Body").field("len", &data.len()).finish(),
            Kind::Stream { .. } => f.debug_struct("Body").field("stream", &true).finish(),
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Body::full(Bytes::new())
    }

    /// A body held in memory.
    pub fn full(data: impl Into<Bytes>) -> Self {
        Body {
            kind: Kind::Full {
                data: data.into(),
                trailers: None,
                data_sent: false,
                done: false,
            },
        }
    }

    /// A one-shot streaming body. It is sent once and never retried.
    pub fn stream<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Body {
            kind: Kind::Stream {
                prefix: VecDeque::new(),
                rest: Some(Box::pin(body.map_err(Into::into))),
            },
        }
    }

    /// Read `body` into memory if it holds at most `limit` bytes of data.
    ///
    /// A body within the cap comes back replayable ([`Body::bytes`] is
    /// `Some`). A larger one comes back as a one-shot stream of the frames
    /// already read followed by the rest: nothing is lost or truncated. An
    /// error while reading is returned as it is.
    pub async fn buffer<B>(body: B, limit: usize) -> Result<Body, BoxError>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        Self::buffer_unpin(Box::pin(body), limit).await
    }

    /// [`Body::buffer`] for a body that is `Unpin` (hyper's `Incoming` is):
    /// it is read in place, and boxed only if it turns out larger than
    /// `limit` and streams on.
    pub async fn buffer_unpin<B>(mut body: B, limit: usize) -> Result<Body, BoxError>
    where
        B: http_body::Body + Unpin + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        // Fast path: the whole body is one chunk, kept without a list (the
        // list is allocated only when a second chunk comes).
        let mut first: Option<Bytes> = None;
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        let mut trailers = None;
        loop {
            match body.frame().await {
                None => break,
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let data = data.copy_to_bytes(data.remaining());
                        total = total.saturating_add(data.len());
                        match first.take() {
                            None if chunks.is_empty() => first = Some(data),
                            earlier => {
                                chunks.extend(earlier);
                                chunks.push(data);
                            }
                        }
                        if total > limit {
                            let prefix = first
                                .take()
                                .into_iter()
                                .chain(chunks)
                                .map(Frame::data)
                                .collect();
                            let rest = body
                                .map_frame(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))
                                .map_err(Into::into);
                            return Ok(Body {
                                kind: Kind::Stream {
                                    prefix,
                                    rest: Some(Box::pin(rest)),
                                },
                            });
                        }
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            match &mut trailers {
                                None => trailers = Some(Box::new(t)),
                                Some(existing) => existing.extend(t),
                            }
                        }
                    }
                },
            }
        }
        let data = match (first, chunks.len()) {
            (Some(data), _) => data,
            (None, 0) => Bytes::new(),
            (None, 1) => chunks.pop().unwrap_or_default(),
            (None, _) => {
                let mut buf = Vec::with_capacity(total);
                for c in chunks {
                    buf.extend_from_slice(&c);
                }
                Bytes::from(buf)
            }
        };
        Ok(Body {
            kind: Kind::Full {
                data,
                trailers,
                data_sent: false,
                done: false,
            },
        })
    }

    /// The whole body, when it is held in memory.
    pub fn bytes(&self) -> Option<&Bytes> {
        match &self.kind {
            Kind::Full { data, .. } => Some(data),
            Kind::Stream { .. } => None,
        }
    }

    /// Whether the body is held in memory and can be replayed.
    pub fn is_replayable(&self) -> bool {
        matches!(self.kind, Kind::Full { .. })
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Full {
                data,
                trailers,
                data_sent,
                done,
            } => {
                if !*data_sent {
                    *data_sent = true;
                    if !data.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(data.clone()))));
                    }
                }
                if !*done {
                    *done = true;
                    if let Some(t) = trailers.as_deref() {
                        return Poll::Ready(Some(Ok(Frame::trailers(t.clone()))));
                    }
                }
                Poll::Ready(None)
            }
            Kind::Stream { prefix, rest } => {
                if let Some(frame) = prefix.pop_front() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                match rest {
                    Some(body) => {
                        let polled = body.as_mut().poll_frame(cx);
                        if let Poll::Ready(None) = polled {
                            *rest = None;
                        }
                        polled
                    }
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full {
                data,
                trailers,
                data_sent,
                done,
            } => *done || ((*data_sent || data.is_empty()) && trailers.is_none()),
            Kind::Stream { prefix, rest } => {
                prefix.is_empty() && rest.as_ref().is_none_or(|b| b.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full {
                data, data_sent, ..
            } => SizeHint::with_exact(if *data_sent { 0 } else { data.len() as u64 }),
            Kind::Stream { prefix, rest } => {
                let buffered: u64 = prefix
                    .iter()
                    .filter_map(|f| f.data_ref())
                    .map(|d| d.len() as u64)
                    .sum();
                let mut hint = rest
                    .as_ref()
                    .map(|b| b.size_hint())
                    .unwrap_or_else(|| SizeHint::with_exact(0));
                let lower = hint.lower().saturating_add(buffered);
                let upper = hint.upper().map(|u| u.saturating_add(buffered));
                hint.set_lower(lower);
                if let Some(u) = upper {
                    hint.set_upper(u);
                }
                hint
            }
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::full(b)
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::full(v)
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::full(s)
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::full(Bytes::from_static(s.as_bytes()))
    }
}

impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Self {
        Body::full(Bytes::from_static(s))
    }
}

impl From<()> for Body {
    fn from(_: ()) -> Self {
        Body::empty()
    }
}

/// A body type that may be able to give a fresh copy of itself, so a request
/// can be sent again (retries, hedges).
pub trait TryCloneBody: Sized {
    /// A fresh, unread copy of this body, or `None` if it can be sent once
    /// only. Call it before the body is polled.
    fn try_clone_body(&self) -> Option<Self>;
}

impl TryCloneBody for Body {
    fn try_clone_body(&self) -> Option<Self> {
        match &self.kind {
            Kind::Full { data, trailers, .. } => Some(Body {
                kind: Kind::Full {
                    data: data.clone(),
                    trailers: trailers.clone(),
                    data_sent: false,
                    done: false,
                },
            }),
            Kind::Stream { .. } => None,
        }
    }
}

impl<D: Clone> TryCloneBody for http_body_util::Full<D> {
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D> TryCloneBody for http_body_util::Empty<D> {
    fn try_clone_body(&self) -> Option<Self> {
        Some(http_body_util::Empty::new())
    }
}

impl TryCloneBody for String {
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

/// Clone a request (method, URI, version, headers, extensions, body) when its
/// body can be cloned.
pub fn try_clone_request<B: TryCloneBody>(req: &http::Request<B>) -> Option<http::Request<B>> {
    let body = req.body().try_clone_body()?;
    let mut out = http::Request::new(body);
    *out.method_mut() = req.method().clone();
    *out.uri_mut() = req.uri().clone();
    *out.version_mut() = req.version();
    // An empty map may still hold an allocation (reserved capacity): a
    // fresh one costs nothing.
    if !req.headers().is_empty() {
        *out.headers_mut() = req.headers().clone();
    }
    *out.extensions_mut() = req.extensions().clone();
    Some(out)
}

pin_project! {
    /// The response body of sinew's server layers: the inner service's body,
    /// or a body the layer wrote itself (a refusal).
    ///
    /// Variant fields: `body` is the inner body; `data` the bytes not yet sent.
    #[project = ResponseBodyProj]
    #[allow(missing_docs)]
    pub enum ResponseBody<B> {
        /// The inner service's body.
        Inner {
            #[pin]
            body: B,
        },
        /// A body written by the layer.
        Full {
            data: Option<Bytes>,
        },
    }
}

impl<B> ResponseBody<B> {
    /// Wrap the inner service's body.
    pub fn new(body: B) -> Self {
        ResponseBody::Inner { body }
    }

    /// A body written by the layer.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        ResponseBody::Full {
            data: (!data.is_empty()).then_some(data),
        }
    }
}

impl<B> From<Bytes> for ResponseBody<B> {
    fn from(b: Bytes) -> Self {
        ResponseBody::full(b)
    }
}

impl<B: Default> Default for ResponseBody<B> {
    fn default() -> Self {
        ResponseBody::new(B::default())
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseBody::Inner { .. } => f.write_str("ResponseBody::Inner"),
            ResponseBody::Full { data } => f
                .debug_struct("ResponseBody::Full")
                .field("len", &data.as_ref().map_or(0, |d| d.len()))
                .finish(),
        }
    }
}

impl<B> http_body::Body for ResponseBody<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project() {
            ResponseBodyProj::Inner { body } => body.poll_frame(cx),
            ResponseBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Inner { body } => body.is_end_stream(),
            ResponseBody::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Inner { body } => body.size_hint(),
            ResponseBody::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::{BodyExt, StreamBody};

    type Frames =
        futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>;

    fn chunked(parts: &[&'static str]) -> StreamBody<Frames> {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn buffered_within_cap_replays() {
        let body = Body::buffer(chunked(&["ab", "cd", "ef"]), 6).await.unwrap();
        assert_eq!(body.bytes().unwrap(), &Bytes::from("abcdef"));
        let copy = body.try_clone_body().unwrap();
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdef");
        assert_eq!(copy.collect().await.unwrap().to_bytes(), "abcdef");
    }

    #[tokio::test]
    async fn over_cap_streams_everything_once() {
        let body = Body::buffer(chunked(&["ab", "cd", "ef", "gh"]), 3)
            .await
            .unwrap();
        assert!(!body.is_replayable());
        assert!(body.try_clone_body().is_none());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdefgh");
    }

    #[tokio::test]
    async fn one_chunk_and_empty_bodies() {
        let body = Body::buffer(chunked(&["abcdef"]), 6).await.unwrap();
        assert_eq!(body.bytes().unwrap(), &Bytes::from("abcdef"));
        let body = Body::buffer(chunked(&[]), 6).await.unwrap();
        assert_eq!(body.bytes().unwrap(), &Bytes::new());
        // Over the cap with the first chunk: streamed, nothing lost.
        let body = Body::buffer(chunked(&["abcdefg", "h"]), 3).await.unwrap();
        assert!(!body.is_replayable());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdefgh");
    }

    #[tokio::test]
    async fn errors_propagate() {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from("a"))),
            Err(std::io::Error::other("boom")),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames));
        assert!(Body::buffer(body, 10).await.is_err());
    }

    #[tokio::test]
    async fn trailers_are_kept() {
        let mut t = HeaderMap::new();
        t.insert("x-check", http::HeaderValue::from_static("1"));
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from("a"))),
            Ok(Frame::trailers(t.clone())),
        ];
        let body = Body::buffer(StreamBody::new(futures_util::stream::iter(frames)), 10)
            .await
            .unwrap();
        let collected = body.try_clone_body().unwrap().collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&t));
    }

    #[test]
    fn clone_request_copies_everything() {
        let mut req = http::Request::builder()
            .method("PUT")
            .uri("http://a/b?c")
            .header("x-a", "1")
            .body(Body::from("x"))
            .unwrap();
        req.extensions_mut().insert(crate::Priority::High);
        let copy = try_clone_request(&req).unwrap();
        assert_eq!(copy.method(), "PUT");
        assert_eq!(copy.uri(), "http://a/b?c");
        assert_eq!(copy.headers()["x-a"], "1");
        assert_eq!(
            copy.extensions().get::<crate::Priority>(),
            Some(&crate::Priority::High)
        );
        assert_eq!(copy.body().bytes().unwrap(), "x");
    }

    #[tokio::test]
    async fn response_body_full() {
        let b: ResponseBody<Body> = ResponseBody::full("problem");
        assert_eq!(b.size_hint().exact(), Some(7));
        assert_eq!(b.collect().await.unwrap().to_bytes(), "problem");
    }
}
