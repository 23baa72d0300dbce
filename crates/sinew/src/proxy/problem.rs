//! The proxy's own refusals: `application/problem+json` (RFC 9457) with a
//! `reason`, like the layers' refusals, counted by side and reason.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use sinew_core::problem::Problem;

use super::ProxyBody;

/// A refusal by the proxy itself.
pub(crate) fn respond(
    side: &'static str,
    status: StatusCode,
    title: &str,
    reason: &'static str,
    detail: impl Into<String>,
) -> Response<ProxyBody> {
    metrics::counter!("sinew_proxy_refusals_total", "side" => side, "reason" => reason)
        .increment(1);
    let res: Response<Full<Bytes>> = Problem::new(status, title)
        .detail(detail)
        .with("reason", reason)
        .into_response();
    let mut res = res.map(|b| b.map_err(|never| match never {}).boxed_unsync());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}
