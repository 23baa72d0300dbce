//! Header names sinew reads and writes, as ready [`HeaderName`] constants.
//!
//! All names are lower-case, as HTTP/2 requires and `http` stores them.

use http::HeaderName;

/// `x-request-timeout`: the caller's remaining time in seconds, as a decimal
/// (aio-request's deadline header).
pub const X_REQUEST_TIMEOUT: HeaderName = HeaderName::from_static("x-request-timeout");
/// `x-request-deadline-at`: an absolute deadline as naive UTC ISO-8601
/// (older aio-request versions).
pub const X_REQUEST_DEADLINE_AT: HeaderName = HeaderName::from_static("x-request-deadline-at");
/// `x-request-priority`: `high`, `normal` or `low`.
pub const X_REQUEST_PRIORITY: HeaderName = HeaderName::from_static("x-request-priority");
/// `grpc-timeout`: 1–8 digits and a unit of `H M S m u n`.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// `x-envoy-expected-rq-timeout-ms`: Envoy's deadline in integer milliseconds;
/// trusted only from internal hops.
pub const X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: HeaderName =
    HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
/// `x-do-not-retry`: a response that must be neither retried nor counted as a
/// failure.
pub const X_DO_NOT_RETRY: HeaderName = HeaderName::from_static("x-do-not-retry");
/// `x-circuit-breaker`: marks a response produced by an open circuit breaker.
pub const X_CIRCUIT_BREAKER: HeaderName = HeaderName::from_static("x-circuit-breaker");
/// `idempotency-key`: marks a POST or PATCH as safe to retry.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// `content-digest` (RFC 9530).
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");
/// `signature` (RFC 9421).
pub const SIGNATURE: HeaderName = HeaderName::from_static("signature");
/// `signature-input` (RFC 9421).
pub const SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
/// `x-service-id` (microservice_comms' legacy signing).
pub const X_SERVICE_ID: HeaderName = HeaderName::from_static("x-service-id");
/// `x-timestamp` (microservice_comms' legacy signing).
pub const X_TIMESTAMP: HeaderName = HeaderName::from_static("x-timestamp");
/// `x-signature` (microservice_comms' legacy signing).
pub const X_SIGNATURE: HeaderName = HeaderName::from_static("x-signature");
/// `traceparent` (W3C Trace Context).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate` (W3C Trace Context).
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
