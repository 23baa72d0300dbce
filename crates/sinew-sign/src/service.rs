//! The services the layers build.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use sinew_core::body::ResponseBody;
use sinew_core::problem::Problem;
use sinew_core::{Body, BoxError};
use tower::Service;

use crate::error::{Rejection, SignError};
use crate::future::{SignFuture, VerifyFuture};
use crate::signer::Signer;
use crate::verifier::Verifier;

/// Signs requests, then calls the inner service with
/// `http::Request<sinew_core::Body>`. Built by
/// [`HmacSignLayer`](crate::HmacSignLayer).
#[derive(Debug, Clone)]
pub struct HmacSign<S> {
    inner: S,
    signer: Signer,
}

impl<S> HmacSign<S> {
    /// Sign requests to `inner` with `signer`.
    pub fn new(inner: S, signer: Signer) -> Self {
        Self { inner, signer }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B> Service<Request<B>> for HmacSign<S>
where
    S: Service<Request<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = SignFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        // A body known to be empty, or a sinew `Body` already in memory, is
        // signed here and the inner service called at once: no copy of the
        // inner service, no boxed future.
        let body = match in_memory(body) {
            Ok(body) => {
                return match sign_parts(&self.signer, &mut parts, &body) {
                    Ok(()) => SignFuture::direct(self.inner.call(Request::from_parts(parts, body))),
                    Err(e) => SignFuture::failed(e.into()),
                };
            }
            Err(body) => body,
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let signer = self.signer.clone();
        SignFuture::buffering(Box::pin(async move {
            let body = Body::buffer(body, signer.config().body_limit)
                .await
                .map_err(|e| BoxError::from(SignError::Body(e)))?;
            sign_parts(&signer, &mut parts, &body)?;
            inner
                .call(Request::from_parts(parts, body))
                .await
                .map_err(Into::into)
        }))
    }
}

/// Sign `parts` for `body`: over the body when it is in memory within the
/// signing limit; without it when content-digest is not covered; else
/// refuse to send.
fn sign_parts(
    signer: &Signer,
    parts: &mut http::request::Parts,
    body: &Body,
) -> Result<(), SignError> {
    let limit = signer.config().body_limit;
    match body.bytes() {
        Some(bytes) if bytes.len() <= limit => signer.sign(parts, bytes),
        _ if signer.needs_body() => {
            tracing::warn!(
                limit,
                "request not sent: content-digest is covered and the body exceeds the signing limit"
            );
            Err(SignError::BodyTooLarge { limit })
        }
        _ => signer.sign(parts, &[]),
    }
}

/// The body as a sinew [`Body`] held in memory, when it is one already or
/// is known to be empty; else the body back.
fn in_memory<B>(body: B) -> Result<Body, B>
where
    B: http_body::Body + 'static,
{
    let mut slot = Some(body);
    if let Some(sinew) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Body>>() {
        if let Some(b) = sinew.take_if(|b| b.bytes().is_some()) {
            return Ok(b);
        }
    }
    match slot {
        Some(body) if body.is_end_stream() => Ok(Body::empty()),
        Some(body) => Err(body),
        // Only reached if the slot was taken above, which returns.
        None => Ok(Body::empty()),
    }
}

/// Verifies request signatures before calling the inner service. Built by
/// [`VerifySignatureLayer`](crate::VerifySignatureLayer).
#[derive(Debug, Clone)]
pub struct VerifySignature<S> {
    inner: S,
    verifier: Verifier,
}

impl<S> VerifySignature<S> {
    /// Verify requests to `inner` with `verifier`.
    pub fn new(inner: S, verifier: Verifier) -> Self {
        Self { inner, verifier }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

fn refusal<ResB>(problem: Problem) -> Response<ResponseBody<ResB>> {
    let retry = problem.status() == StatusCode::SERVICE_UNAVAILABLE;
    let mut res: Response<ResponseBody<ResB>> = problem.into_response();
    if retry {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}

fn rejected<ResB>(rejection: &Rejection) -> Response<ResponseBody<ResB>> {
    refusal(rejection.to_problem())
}

fn too_large<ResB>(limit: usize) -> Response<ResponseBody<ResB>> {
    metrics::counter!("sinew_signature_verifications_total", "result" => "body_too_large")
        .increment(1);
    tracing::info!(limit, "signed request refused: body too large");
    refusal(
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            .detail(format!(
                "the body exceeds the {limit} bytes the signature check reads"
            ))
            .with("reason", "body_too_large"),
    )
}

impl<S, B, ResB> Service<Request<B>> for VerifySignature<S>
where
    S: Service<Request<Body>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    ResB: Send + 'static,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = VerifyFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        VerifyFuture {
            inner: Box::pin(async move {
                let limit = verifier.config().body_limit;
                let (parts, body) = req.into_parts();
                // Everything but the body first: a request that cannot pass
                // is refused without reading its body.
                let head = match verifier.verify_head(&parts) {
                    Ok(head) => head,
                    Err(rejection) => return Ok(rejected(&rejection)),
                };
                let declared = parts
                    .headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if declared.is_some_and(|n| n > limit as u64) {
                    return Ok(too_large(limit));
                }
                let body = match Body::buffer(body, limit).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::info!(error = %e, "signed request refused: body unreadable");
                        return Ok(refusal(
                            Problem::new(StatusCode::BAD_REQUEST, "request body unreadable")
                                .detail("the request body could not be read")
                                .with("reason", "body_unreadable"),
                        ));
                    }
                };
                let bytes: Bytes = match body.bytes() {
                    Some(b) => b.clone(),
                    None => return Ok(too_large(limit)),
                };
                match verifier.verify_body(head, &parts, &bytes) {
                    Ok(caller) => {
                        let mut req = Request::from_parts(parts, body);
                        req.extensions_mut().insert(caller);
                        inner.call(req).await.map(|r| r.map(ResponseBody::new))
                    }
                    Err(rejection) => Ok(rejected(&rejection)),
                }
            }),
        }
    }
}
